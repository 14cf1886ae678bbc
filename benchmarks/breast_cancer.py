"""SequentialImputer against IterativeImputer on breast cancer (569 x 30), MCAR 10%, 20% and 30%, seeds 0-2: RMSE on
the hidden entries of standardised columns and CPU seconds per fit + transform, one thread. The defaults beside
the former start (initial_canvas="mean", patience 10) and the two levers that moved least (steps=2, hidden 256).
Writes results/imputers-defaults/breast-cancer.json.

    OMP_NUM_THREADS=1 python benchmarks/breast_cancer.py
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.experimental import enable_iterative_imputer  # noqa: F401
from sklearn.impute import IterativeImputer

from seqimpute import SequentialImputer
from seqimpute.precision import cpu_name

ROOT = Path(__file__).resolve().parents[1]
RATES, SEEDS = (0.1, 0.2, 0.3), (0, 1, 2)
SETTINGS = {
    "IterativeImputer": lambda s: IterativeImputer(random_state=s),
    "SequentialImputer defaults": lambda s: SequentialImputer(random_state=s, n_threads=1),
    "mean start, patience 10": lambda s: SequentialImputer(random_state=s, n_threads=1, initial_canvas="mean",
                                                           patience=10),
}


def trial(make, X: np.ndarray, seed: int, rate: float) -> tuple[float, float, dict]:
    hidden = np.random.default_rng(seed).random(X.shape) < rate
    Xm = np.where(hidden, np.nan, X)
    cpu = time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        imp = make(seed)
        out = imp.fit(Xm).transform(Xm)
    cpu = time.process_time() - cpu
    info = ({"updates": int(imp.n_updates_), "best_iteration": int(imp.best_iteration_)}
            if isinstance(imp, SequentialImputer) else {})
    return float(np.sqrt(np.mean((((out - X) / X.std(0))[hidden]) ** 2))), cpu, info


def main() -> None:
    X = load_breast_cancer().data
    rows = []
    print(f"breast cancer, MCAR, seeds {list(SEEDS)}, one thread; {cpu_name()}")
    for rate in RATES:
        for name, make in SETTINGS.items():
            runs = [trial(make, X, seed, rate) for seed in SEEDS]
            rows.append({"rate": rate, "setting": name, "rmse": float(np.mean([r for r, _, _ in runs])),
                         "cpu_s": float(np.mean([c for _, c, _ in runs])), "cpu_s_max": float(max(c for _, c, _ in runs)),
                         "per_seed": [{"seed": s, "rmse": r, "cpu_s": c, **i} for s, (r, c, i) in zip(SEEDS, runs)]})
            print(f"MCAR {rate:.0%} {name}: RMSE {rows[-1]['rmse']:.3f}, CPU-s {rows[-1]['cpu_s']:.2f} "
                  f"(max {rows[-1]['cpu_s_max']:.2f})", flush=True)
    out = ROOT / "results" / "imputers-defaults" / "breast-cancer.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"cpu": cpu_name(), "threads": 1, "seeds": list(SEEDS),
                               "command": "OMP_NUM_THREADS=1 python benchmarks/breast_cancer.py", "rows": rows},
                              indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
