"""How SequentialImputer's table defaults were chosen: on tables the published benchmark (benchmarks/imputers.py)
does not report, so that its cells stay a test. Four offline tables from scikit-learn's generators (a noisy
S-curve lifted into 12 columns by tanh features, the swiss roll, a 15-column clustered classification table,
Friedman #1 with its target as a column), 800 rows each, MCAR 30%, seeds 0-2; RMSE on the hidden entries of
standardised columns and CPU seconds per fit + transform on one thread. Writes results/imputers-defaults/defaults.json.

    OMP_NUM_THREADS=1 python benchmarks/table_defaults.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from sklearn import datasets
from sklearn.experimental import enable_iterative_imputer  # noqa: F401
from sklearn.impute import IterativeImputer

from breast_cancer import trial  # one trial for both (hide, fit, transform, score)
from seqimpute import SequentialImputer
from seqimpute.precision import cpu_name

ROOT = Path(__file__).resolve().parents[1]
RATE, SEEDS, ROWS = 0.3, (0, 1, 2), 800
SETTINGS = {
    "IterativeImputer": lambda s: IterativeImputer(random_state=s),
    "gaussian start, patience 3": lambda s: SequentialImputer(random_state=s, n_threads=1, patience=3),
    "gaussian start, patience 5": lambda s: SequentialImputer(random_state=s, n_threads=1, patience=5),
    "gaussian start, patience 10": lambda s: SequentialImputer(random_state=s, n_threads=1, patience=10),
    "mean start, patience 10": lambda s: SequentialImputer(random_state=s, n_threads=1, patience=10,
                                                           initial_canvas="mean"),
}


def tables() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    s, _ = datasets.make_s_curve(ROWS, noise=0.05, random_state=0)
    r, _ = datasets.make_swiss_roll(ROWS, noise=0.3, random_state=0)
    c, _ = datasets.make_classification(ROWS, n_features=15, n_informative=8, n_redundant=4,
                                        n_clusters_per_class=3, random_state=0)
    f, y = datasets.make_friedman1(ROWS, n_features=8, random_state=0)
    return {"s-curve (12 cols)": np.tanh(s @ rng.normal(size=(3, 12))) + 0.05 * rng.normal(size=(ROWS, 12)),
            "swiss roll (3)": r, "classification (15)": c, "friedman1 + target (9)": np.c_[f, y]}


def main() -> None:
    rows = []
    for table, X in tables().items():
        for name, make in SETTINGS.items():
            runs = [trial(make, X, seed, RATE)[:2] for seed in SEEDS]
            rows.append({"table": table, "setting": name, "rmse": float(np.mean([r for r, _ in runs])),
                         "cpu_s": float(np.mean([c for _, c in runs]))})
            print(f"{table:24s} {name:28s} RMSE {rows[-1]['rmse']:.4f}  CPU-s {rows[-1]['cpu_s']:.2f}", flush=True)
    out = ROOT / "results" / "imputers-defaults" / "defaults.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"cpu": cpu_name(), "threads": 1, "rate": RATE, "seeds": list(SEEDS),
                               "command": "OMP_NUM_THREADS=1 python benchmarks/table_defaults.py", "rows": rows},
                              indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
