"""A wide array as a NaN table: the first 5000 MNIST training images (5000 x 784 grey levels), half the values
hidden at random (MCAR 50%, seed 0), filled by SequentialImputer at its defaults with float32 products on 2 threads
(what a CPU without bf16 instructions runs), beside KNNImputer (k=5) and the column mean. Wall-clock and CPU seconds
of fit + transform, the updates made and why training stopped, and the RMSE on the hidden values (grey levels).
Writes results/imputers-wide/mnist-5000.json.

    python benchmarks/wide_table.py
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from seqimpute import SequentialImputer, load_dataset
from seqimpute.precision import cpu_name

ROOT = Path(__file__).resolve().parents[1]
ROWS, RATE, THREADS = 5000, 0.5, 2


def timed(fit_transform, Xm) -> tuple[np.ndarray, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fit_transform(Xm)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    import torch
    from sklearn.impute import KNNImputer, SimpleImputer

    torch.set_num_threads(THREADS)
    load = [os.getloadavg()[0]]
    X = load_dataset("mnist", "train").x[:ROWS].double().numpy()
    hidden = np.random.default_rng(0).random(X.shape) < RATE
    Xm = np.where(hidden, np.nan, X)
    keep = ~np.isnan(Xm).all(0)  # pixels never observed in these rows: left out by every imputer alike
    rmse = lambda out: float(np.sqrt(np.mean((out - X[:, keep])[hidden[:, keep]] ** 2)))  # noqa: E731
    rows = {}
    imp = SequentialImputer(random_state=0, precision="fp32", n_threads=THREADS)
    out, wall, cpu = timed(imp.fit_transform, Xm[:, keep])
    rows["SequentialImputer"] = {"rmse": rmse(out), "wall_s": wall, "cpu_s": cpu, "updates": int(imp.n_updates_),
                                 "stopped_by": imp.stopped_by_, "likelihood": imp.likelihood_}
    for name, ref in (("KNNImputer", KNNImputer(n_neighbors=5)), ("mean", SimpleImputer())):
        out, wall, cpu = timed(ref.fit_transform, Xm[:, keep])
        rows[name] = {"rmse": rmse(out), "wall_s": wall, "cpu_s": cpu}
    load.append(os.getloadavg()[0])
    for name, r in rows.items():
        print(f"{name}: RMSE {r['rmse']:.4f}, {r['wall_s']:.0f} s wall, {r['cpu_s']:.0f} CPU-s"
              + (f", {r['updates']} updates (stopped by {r['stopped_by']})" if "updates" in r else ""), flush=True)
    path = ROOT / "results" / "imputers-wide" / "mnist-5000.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"table": f"MNIST train[:{ROWS}], {int(keep.sum())} columns", "mcar": RATE,
                                "threads": THREADS, "precision": "fp32", "cpu": cpu_name(),
                                "load_average": load,  # 1-minute, before and after: other work on the machine
                                "command": "python benchmarks/wide_table.py", "rows": rows}, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
