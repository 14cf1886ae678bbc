"""SequentialImputer against the imputers practitioners use, on real tables, under MCAR, MAR and MNAR missingness.

Protocol (the one of the deep-imputation benchmarks: GAIN, MIWAE, OT imputation, HyperImpute's ``simulate_nan``):
- Tables that ship with scikit-learn and load offline: breast cancer (569x30), wine (178x13), diabetes (442x10, original
  units), iris (150x4), digits (1797x64 pixel counts; its 3 constant columns dropped); and ``mnist`` (only when asked
  for): the first 2000 MNIST training images as a table of grey levels in [0, 1] (2000 x 639 once the pixels that
  are constant over these images are dropped), loaded through seqimpute.data (``seqimpute data get mnist`` caches
  it). Constant columns are dropped everywhere: min-max scaling, and so the metric, is undefined on them.
- A mask is drawn from the complete table after min-max scaling (the logistic models below see [0, 1] columns):
  * ``mcar``: every entry is missing with probability ``rate``.
  * ``mar``: a random 30% of the columns (at least one) stay fully observed; each other column j is missing with
    probability sigmoid(x_obs . w_j + b_j), w_j ~ N(0, I) rescaled so the logit has unit standard deviation, and
    the intercept b_j fitted by bisection so that the column's mean probability is ``rate``. The overall missing
    share is therefore about 0.7 * rate (recorded as ``realised_rate``).
  * ``mnar``: the same logistic model from a random 30% of the columns (the "inputs"), which are then themselves
    masked completely at random with probability ``rate``: the missingness of the other columns depends on values
    that may be missing (HyperImpute's default MNAR, "logistic" with the inputs excluded).
  * ``mnar_self``: self-masking; column j is missing with probability sigmoid(w_j x_j + b_j) (its own value).
- Every imputer is given the incomplete table in its ORIGINAL units (what a user passes), fits on it and fills it
  (``fit`` then ``transform`` on the same table, as in the papers above); it never sees a hidden value.
- Metrics on the hidden entries, after min-max scaling each column with the complete table's min and max: RMSE
  over all hidden entries; the 1-D Wasserstein distance between the imputed and the true hidden values of each
  column, averaged over the columns that have hidden entries; and fit+transform wall-clock and CPU seconds.
- For SequentialImputer, also the coverage of its 90% intervals (``coverage90``): the share of the hidden true
  values inside the 5th-95th percentile of 50 ``sample`` draws (not part of its seconds). With the Bernoulli
  likelihood (every value in [0, 1], as on MNIST) a draw is a rollout's grey level without observation noise, so
  these are not predictive intervals there.
- Summary: for each cell (table, mechanism, rate) the imputers are ranked by their RMSE averaged over the seeds they
  share (ties get the average rank); the mean rank over the cells where every imputer ran; and, per cell, whether an
  imputer's RMSE is no worse than mean imputation's. Imputers recorded as not run (below) are left out of a cell's
  ranks, and the mean rank then skips that cell.

References: mean (SimpleImputer), KNNImputer (k=5, on standardised columns, mapped back), IterativeImputer with
BayesianRidge (MICE-style, 10 rounds), IterativeImputer with ExtraTreesRegressor (the MissForest recipe, bounded for
time: 50 trees, 5 rounds; MissForest itself grows 100 trees per column and stops at the first round whose
imputations change more than the previous round's, usually after a handful of rounds; tree ensembles never meet
IterativeImputer's tolerance, so it would run all of max_iter), and SequentialImputer with its defaults (early
stopping on held-out observed values, an updates budget that grows with the rows, no wall-clock cap: the same
updates whatever the machine's load). One BLAS and one torch thread for every method (a per-core comparison);
seconds are wall-clock and CPU seconds of the process.

Wide tables (more than 100 columns, i.e. MNIST) bound the slow references: IterativeImputer regresses each column on
its 30 nearest columns for 3 rounds (``n_nearest_features=30, max_iter=3``; the default takes hours on 639 columns),
and the MissForest recipe is not run (one 50-tree forest per column and round: hours on one core); its records say
"not run" and why, and the Markdown shows that instead of a number. SequentialImputer keeps its defaults there.

Time against size (``--timing``): fit+transform wall-clock and CPU seconds of each imputer on synthetic tables, a
seeded low-rank Gaussian table plus noise (rank 5; rows and columns from ``--rows`` and ``--cols``, default
{500, 2000, 10000} x {10, 30, 50}), MCAR at ``--rates`` (default 0.3), one seed; the same thread limits. Results go to
OUT/timing.json and OUT/timing.md (default OUT results/imputers-timing), resumable like the grid; each record keeps
the load average when it started (on a shared machine CPU seconds are the comparable number).

    python benchmarks/imputers.py --out results/imputers                  # the full grid (resumable)
    python benchmarks/imputers.py --quick                                 # a smoke run (tiny budgets)
    python benchmarks/imputers.py --out results/imputers --datasets wine diabetes --mechanisms mcar mar \\
        --rates 0.3 0.5 --seeds 0 1 --imputers mean knn iterative           # a subset
    python benchmarks/imputers.py --out results/imputers-mnist --datasets mnist --mechanisms mcar --rates 0.5 \\
        --seeds 0 --imputers mean knn iterative missforest sequential       # the MNIST row
    python benchmarks/imputers.py --timing --out results/imputers-timing   # time against size

Results go to OUT/imputers.json (one record per table, mechanism, rate, seed and imputer, rewritten atomically
after each) and OUT/imputers.md. Records already in the JSON are skipped, so a stopped run continues where it left
off; ``--report`` only rewrites the Markdown from the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
from scipy.optimize import bisect
from scipy.special import expit
from scipy.stats import wasserstein_distance

from seqimpute.reporting.benchmarks import IMPUTERS, MECHANISMS, markdown, timing_markdown

P_INPUTS = 0.3  # share of the columns that drive the MAR / MNAR logistic models (OT-imputation's p_obs / p_params)
DATASETS = ("breast_cancer", "wine", "diabetes", "iris", "digits", "mnist")
DEFAULT_DATASETS = DATASETS[:5]  # mnist only when asked for (its grid takes hours)
WIDE = 100  # more columns than this: the slow references are bounded (module docstring)
MNIST_ROWS = 2000
SAMPLES = 50  # sample() draws behind coverage90


# ---------------------------------------------------------------------------------------------- data


def load_table(name: str) -> np.ndarray:
    """A complete table (N, D) in original units, constant columns dropped."""
    if name == "mnist":
        from seqimpute.data.sources import load_dataset

        X = load_dataset("mnist", "train").x[:MNIST_ROWS].double().numpy()  # grey levels in [0, 1]
    else:
        from sklearn import datasets

        loaders = {"breast_cancer": datasets.load_breast_cancer, "wine": datasets.load_wine,
                   "diabetes": lambda: datasets.load_diabetes(scaled=False), "iris": datasets.load_iris,
                   "digits": datasets.load_digits}
        X = np.asarray(loaders[name]().data, dtype=np.float64)
    return X[:, X.max(0) > X.min(0)]


def synthetic_table(rows: int, cols: int, seed: int, rank: int = 5) -> np.ndarray:
    """The timing tables: a seeded low-rank Gaussian table U V^T (rank ``rank``, unit-variance entries) plus
    N(0, 0.3^2) noise."""
    rng = np.random.default_rng([seed, rows, cols])
    r = min(rank, cols)
    return rng.standard_normal((rows, r)) @ rng.standard_normal((r, cols)) / np.sqrt(r) \
        + 0.3 * rng.standard_normal((rows, cols))


def minmax(X: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """X scaled column-wise by the min and max of the complete table ``ref``."""
    lo, hi = ref.min(0), ref.max(0)
    return (X - lo) / (hi - lo)


# ---------------------------------------------------------------------------------------------- masks


def _logistic_probs(inputs: np.ndarray, n_targets: int, rate: float, rng, self_mask: np.ndarray | None = None):
    """Missingness probabilities (N, n_targets) from a logistic model with random weights (each logit scaled to unit
    standard deviation) and per-target intercepts fitted by bisection so that each target's mean probability is
    ``rate``. ``self_mask``: the targets' own values (N, n_targets), each column's logit w_j x_j."""
    if self_mask is not None:
        logits = self_mask * rng.standard_normal(n_targets)
    else:
        logits = inputs @ rng.standard_normal((inputs.shape[1], n_targets))
    sd = logits.std(0)
    logits = logits / np.where(sd > 0, sd, 1.0)
    b = [bisect(lambda c, j=j: float(expit(logits[:, j] + c).mean()) - rate, -50.0, 50.0)
         for j in range(n_targets)]
    return expit(logits + np.asarray(b))


def make_mask(Z: np.ndarray, mechanism: str, rate: float, rng) -> np.ndarray:
    """Boolean mask (True = hidden) for the complete min-max scaled table Z (module docstring: the mechanisms)."""
    n, d = Z.shape
    if mechanism == "mcar":
        return rng.random((n, d)) < rate
    if mechanism == "mnar_self":
        return rng.random((n, d)) < _logistic_probs(None, d, rate, rng, self_mask=Z)
    if mechanism not in ("mar", "mnar"):
        raise ValueError(f"unknown mechanism {mechanism!r}; choose from {', '.join(MECHANISMS)}")
    d_in = max(int(P_INPUTS * d), 1)
    cols = rng.permutation(d)
    inputs, targets = cols[:d_in], cols[d_in:]
    mask = np.zeros((n, d), dtype=bool)
    mask[:, targets] = rng.random((n, len(targets))) < _logistic_probs(Z[:, inputs], len(targets), rate, rng)
    if mechanism == "mnar":
        mask[:, inputs] = rng.random((n, d_in)) < rate
    return mask


# ---------------------------------------------------------------------------------------------- imputers


def not_run(name: str, n_cols: int) -> str | None:
    """Why ``name`` is not run on a table of ``n_cols`` columns, or None when it is."""
    if name == "missforest" and n_cols > WIDE:
        return f"more than {WIDE} columns: one 50-tree forest per column and round takes hours on one core"
    return None


class StandardizedKNN:
    """KNNImputer on standardised columns (each column's observed mean and standard deviation), mapped back: on raw
    columns one wide-ranged column (wine's proline, breast cancer's areas) would decide every distance."""

    def __init__(self, n_neighbors: int = 5):
        self.n_neighbors = n_neighbors

    def fit(self, X: np.ndarray) -> "StandardizedKNN":
        from sklearn.impute import KNNImputer

        self.mean_ = np.nan_to_num(np.nanmean(X, axis=0))
        sd = np.nanstd(X, axis=0)
        self.scale_ = np.where(np.isfinite(sd) & (sd > 0), sd, 1.0)
        self.knn_ = KNNImputer(n_neighbors=self.n_neighbors, keep_empty_features=True).fit(self._z(X))
        return self

    def _z(self, X: np.ndarray) -> np.ndarray:
        return (X - self.mean_) / self.scale_

    def transform(self, X: np.ndarray) -> np.ndarray:
        return self.knn_.transform(self._z(X)) * self.scale_ + self.mean_


def make_imputer(name: str, seed: int, quick: bool, n_cols: int = 0):
    from sklearn.ensemble import ExtraTreesRegressor
    from sklearn.experimental import enable_iterative_imputer  # noqa: F401
    from sklearn.impute import IterativeImputer, KNNImputer, SimpleImputer

    if name == "mean":
        return SimpleImputer(strategy="mean", keep_empty_features=True)
    if name == "knn":
        return StandardizedKNN(n_neighbors=5)
    if name == "iterative":
        wide = {"n_nearest_features": 30, "max_iter": 3} if n_cols > WIDE else {"max_iter": 10}
        return IterativeImputer(random_state=seed, keep_empty_features=True, **wide)
    if name == "missforest":
        trees = ExtraTreesRegressor(n_estimators=5 if quick else 50, n_jobs=1, random_state=seed)
        return IterativeImputer(estimator=trees, max_iter=2 if quick else 5, random_state=seed,
                                keep_empty_features=True)
    if name == "sequential":
        from seqimpute import SequentialImputer

        return SequentialImputer(random_state=seed, **({"max_updates": 30} if quick else {}))  # the defaults
    raise ValueError(f"unknown imputer {name!r}; choose from {', '.join(IMPUTERS)}")


def coverage90(draws: np.ndarray, X: np.ndarray, mask: np.ndarray) -> float:
    """Share of the hidden true values X[mask] inside the 5th-95th percentile of ``draws`` (n, N, D)."""
    lo, hi = np.percentile(draws, [5, 95], axis=0)
    return float(np.mean((X[mask] >= lo[mask]) & (X[mask] <= hi[mask])))


def run_one(X: np.ndarray, mask: np.ndarray, imputer: str, seed: int, quick: bool, coverage: bool = True) -> dict:
    """Fit ``imputer`` on X with the masked entries removed, fill them, and score the filled values (and, for
    SequentialImputer with ``coverage``, its 90% intervals)."""
    Xm = X.copy()
    Xm[mask] = np.nan
    est = make_imputer(imputer, seed, quick, X.shape[1])  # before the clock: the first one imports its module
    t, cpu = time.perf_counter(), time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # IterativeImputer's "did not converge" at max_iter
        out = est.fit(Xm).transform(Xm)
    secs, cpu = time.perf_counter() - t, time.process_time() - cpu
    true_s, out_s = minmax(X, X), minmax(out, X)
    cols = np.where(mask.any(0))[0]
    rec = {"rmse": float(np.sqrt(np.mean((out_s[mask] - true_s[mask]) ** 2))),
           "wasserstein": float(np.mean([wasserstein_distance(out_s[mask[:, j], j], true_s[mask[:, j], j])
                                         for j in cols])),
           "seconds": secs, "cpu_seconds": cpu}
    if imputer == "sequential":
        rec.update(updates=int(est.n_updates_), stopped_by=est.stopped_by_, likelihood=est.likelihood_)
        if coverage:
            rec["coverage90"] = coverage90(est.sample(Xm, 10 if quick else SAMPLES), X, mask)
    return rec


# ---------------------------------------------------------------------------------------------- bookkeeping


def key(r: dict) -> tuple:
    return r["dataset"], r["mechanism"], float(r["rate"]), int(r["seed"]), r["imputer"]


def mask_rng(dataset: str, mechanism: str, rate: float, seed: int):
    """The same mask for every imputer of a (table, mechanism, rate, seed), independent of the run's order."""
    return np.random.default_rng([seed, zlib.crc32(f"{dataset}/{mechanism}/{rate:g}".encode())])


def machine() -> dict:
    import sklearn
    import torch

    from seqimpute.precision import cpu_name

    return {"cpu": cpu_name(), "cores": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "numpy": np.__version__, "scikit-learn": sklearn.__version__,
            "torch": torch.__version__}


def save_json(path: Path, doc: dict) -> None:
    from seqimpute.files import atomic_write

    atomic_write(path, json.dumps(doc, indent=1).encode())  # a stopped run never leaves a half-written file


# ---------------------------------------------------------------------------------------------- main


def _record(rec: dict, jpath: Path, doc: dict, label: str, t0: float) -> None:
    doc["records"].append(rec)
    save_json(jpath, doc)
    what = rec["not_run"] if "not_run" in rec else (f"RMSE {rec['rmse']:.4f} W {rec['wasserstein']:.4f} "
                                                   f"{rec['seconds']:.2f}s ({rec['cpu_seconds']:.2f} CPU s)")
    print(f"{time.perf_counter() - t0:7.0f}s {label} {rec['imputer']}: {what}", flush=True)


def _result(X, mask, imp, seed, quick, coverage=True) -> dict:
    why = not_run(imp, X.shape[1])
    return {"not_run": why} if why else run_one(X, mask, imp, seed, quick, coverage)


def run_grid(args, doc: dict, jpath: Path) -> None:
    """Run every (table, mechanism, rate, seed, imputer) of ``args`` that ``doc`` lacks, saving after each."""
    todo = {(ds, m, float(r), int(s), i) for ds in args.datasets for m in args.mechanisms for r in args.rates
            for s in args.seeds for i in args.imputers}
    if args.rerun:  # the records this call makes replace the ones it finds
        doc["records"] = [r for r in doc["records"] if key(r) not in todo]
    done = {key(r) for r in doc["records"]}
    t0 = time.perf_counter()
    for ds in args.datasets:
        X = load_table(ds)
        doc.setdefault("tables", {})[ds] = list(X.shape)
        Z = minmax(X, X)
        for mech in args.mechanisms:
            for rate in args.rates:
                for seed in args.seeds:
                    mask = make_mask(Z, mech, rate, mask_rng(ds, mech, rate, seed))
                    for imp in args.imputers:
                        if (ds, mech, float(rate), int(seed), imp) not in done:
                            _record({"dataset": ds, "mechanism": mech, "rate": float(rate), "seed": int(seed),
                                     "imputer": imp, "realised_rate": float(mask.mean()),
                                     **_result(X, mask, imp, seed, args.quick)},
                                    jpath, doc, f"{ds} {mech} {rate:g} seed {seed}", t0)
    save_json(jpath, doc)


def run_timing(args, doc: dict, jpath: Path) -> None:
    """Time every (rows, columns, rate, seed, imputer) of ``args`` that ``doc`` lacks, smallest tables first."""
    done = {(r["rows"], r["cols"], float(r["rate"]), int(r["seed"]), r["imputer"]) for r in doc["records"]}
    t0 = time.perf_counter()
    for rows in sorted(args.rows):
        for cols in sorted(args.cols):
            for seed in args.seeds:
                X = synthetic_table(rows, cols, seed)
                for rate in args.rates:
                    mask = make_mask(minmax(X, X), "mcar", rate, mask_rng(f"synthetic{rows}x{cols}", "mcar", rate,
                                                                          seed))
                    for imp in args.imputers:
                        if (rows, cols, float(rate), int(seed), imp) not in done:
                            load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
                            _record({"rows": rows, "cols": cols, "rate": float(rate), "seed": int(seed),
                                     "imputer": imp, "realised_rate": float(mask.mean()), "load_average": load,
                                     **_result(X, mask, imp, seed, args.quick, coverage=False)},
                                    jpath, doc, f"{rows}x{cols} {rate:g} seed {seed}", t0)
    save_json(jpath, doc)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", help="output folder (default results/imputers, results/imputers-timing with --timing, "
                    "results/imputers-quick with --quick)")
    ap.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DEFAULT_DATASETS))
    ap.add_argument("--mechanisms", nargs="+", choices=MECHANISMS, default=["mcar", "mar", "mnar"])
    ap.add_argument("--rates", nargs="+", type=float, help="missing rates (default 0.1 0.3 0.5 0.7; 0.3 with --timing)")
    ap.add_argument("--seeds", nargs="+", type=int, help="seeds (default 0 1 2 3 4; 0 with --timing)")
    ap.add_argument("--imputers", nargs="+", choices=IMPUTERS,
                    help="imputers (default all; mean knn iterative sequential with --timing)")
    ap.add_argument("--timing", action="store_true", help="time against size on synthetic tables (docstring)")
    ap.add_argument("--rows", nargs="+", type=int, default=[500, 2000, 10000], help="--timing: table rows")
    ap.add_argument("--cols", nargs="+", type=int, default=[10, 30, 50], help="--timing: table columns")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: wine, rate 0.3, seed 0, tiny budgets for the slow imputers")
    ap.add_argument("--report", action="store_true", help="only rewrite the Markdown from the JSON")
    ap.add_argument("--rerun", action="store_true", help="run the given cells again, replacing their records (by "
                    "default a cell already recorded is skipped)")
    args = ap.parse_args(argv)
    args.rates = args.rates or ([0.3] if args.timing else [0.1, 0.3, 0.5, 0.7])
    args.seeds = args.seeds if args.seeds is not None else ([0] if args.timing else [0, 1, 2, 3, 4])
    args.imputers = args.imputers or (["mean", "knn", "iterative", "sequential"] if args.timing else list(IMPUTERS))
    if args.quick:
        args.datasets, args.rates, args.seeds = ["wine"], [0.3], [0]
    out = Path(args.out or ("results/imputers-quick" if args.quick else
                            "results/imputers-timing" if args.timing else "results/imputers"))
    out.mkdir(parents=True, exist_ok=True)
    stem = "timing" if args.timing else "imputers"
    jpath, mpath = out / f"{stem}.json", out / f"{stem}.md"
    doc = json.loads(jpath.read_text()) if jpath.exists() else {"records": [], "runs": []}
    if doc.get("quick", args.quick) != args.quick:
        sys.exit(f"{jpath} holds {'quick' if doc['quick'] else 'full'} results; use another --out.")
    doc["quick"] = args.quick
    if not args.report:
        import torch
        from threadpoolctl import threadpool_limits

        doc["runs"].append({"command": "python benchmarks/imputers.py " + shlex.join(sys.argv[1:] if argv is None
                                                                                      else argv),
                            "machine": machine(),
                            "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                            "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None})
        threads = torch.get_num_threads()
        try:
            with threadpool_limits(1):
                torch.set_num_threads(1)
                (run_timing if args.timing else run_grid)(args, doc, jpath)
        finally:
            torch.set_num_threads(threads)
    mpath.write_text((timing_markdown if args.timing else markdown)(doc))
    print(f"wrote {jpath} and {mpath}")


if __name__ == "__main__":
    main()
