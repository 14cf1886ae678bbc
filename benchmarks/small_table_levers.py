"""SequentialImputer against IterativeImputer on breast cancer (569 x 30), MCAR 30%, seeds 0-2: RMSE on the hidden
entries of standardised columns and CPU seconds per fit + transform, for the defaults and a few levers (fewer steps,
a full batch, no early stopping with more updates, a wider policy, another hiding range). One thread. A quick look at
what moves accuracy and time on a small table; it prints one line per setting.

    OMP_NUM_THREADS=1 python benchmarks/small_table_levers.py
"""

from __future__ import annotations

import time
import warnings

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.experimental import enable_iterative_imputer  # noqa: F401
from sklearn.impute import IterativeImputer

from seqimpute import SequentialImputer
from seqimpute.precision import cpu_name

SETTINGS = {
    "IterativeImputer": lambda s: IterativeImputer(random_state=s),
    "SequentialImputer defaults": lambda s: SequentialImputer(random_state=s, n_threads=1),
    "steps=2": lambda s: SequentialImputer(random_state=s, n_threads=1, steps=2),
    "batch 569, lr 1e-2, 300 updates": lambda s: SequentialImputer(random_state=s, n_threads=1, batch_size=569,
                                                                    learning_rate=1e-2, max_updates=300),
    "no early stopping, 3000 updates": lambda s: SequentialImputer(random_state=s, n_threads=1, early_stopping=False,
                                                                    max_updates=3000),
    "hidden 256, latent 30": lambda s: SequentialImputer(random_state=s, n_threads=1, hidden=256, latent=30),
    "hide_rate (0.05, 0.4)": lambda s: SequentialImputer(random_state=s, n_threads=1, hide_rate=(0.05, 0.4)),
}


def trial(make, X: np.ndarray, seed: int, rate: float = 0.3) -> tuple[float, float]:
    hidden = np.random.default_rng(seed).random(X.shape) < rate
    Xm = np.where(hidden, np.nan, X)
    cpu = time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = make(seed).fit_transform(Xm)
    cpu = time.process_time() - cpu
    return float(np.sqrt(np.mean((((out - X) / X.std(0))[hidden]) ** 2))), cpu


def main() -> None:
    X = load_breast_cancer().data
    print(f"breast cancer, MCAR 30%, seeds 0-2, one thread; {cpu_name()}")
    for name, make in SETTINGS.items():
        runs = [trial(make, X, seed) for seed in range(3)]
        print(f"{name}: RMSE {np.mean([r for r, _ in runs]):.3f}, CPU-s {np.mean([c for _, c in runs]):.1f}",
              flush=True)


if __name__ == "__main__":
    main()
