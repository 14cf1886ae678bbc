"""SequentialImputer against the imputers practitioners use, on real tables, under MCAR, MAR and MNAR missingness.

Protocol (the one of the deep-imputation benchmarks: GAIN, MIWAE, OT imputation, HyperImpute's ``simulate_nan``):
- Tables that ship with scikit-learn and load offline: breast cancer (569x30), wine (178x13), diabetes (442x10, original
  units), iris (150x4), digits (1797x64 pixel counts; its 3 constant columns dropped). Constant columns are dropped
  everywhere: min-max scaling, and so the metric, is undefined on them.
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
  column, averaged over the columns that have hidden entries; and fit+transform wall-clock seconds.
- Summary: for each cell (table, mechanism, rate) the imputers are ranked by their RMSE averaged over the seeds they
  share (ties get the average rank); the mean rank over the cells where every imputer ran; and, per cell, whether an
  imputer's RMSE is no worse than mean imputation's.

References: mean (SimpleImputer), KNNImputer (k=5), IterativeImputer with BayesianRidge (MICE-style, 10 rounds),
IterativeImputer with ExtraTreesRegressor (the MissForest recipe, bounded for time: 50 trees, 5 rounds; MissForest
itself grows 100 trees per column and stops at the first round whose imputations change more than the previous
round's, usually after a handful of rounds; tree ensembles never meet IterativeImputer's tolerance, so it would run
all of max_iter), and SequentialImputer with its defaults (early stopping on held-out observed values, an updates
budget that grows with the rows, no wall-clock cap: the same updates whatever the machine's load). One BLAS and one torch thread for every method (a
per-core comparison); seconds are wall-clock and CPU seconds of the process.

    python benchmarks/imputers.py --out results/imputers                  # the full grid (resumable)
    python benchmarks/imputers.py --quick                                 # a smoke run (tiny budgets)
    python benchmarks/imputers.py --out results/imputers --datasets wine diabetes --mechanisms mcar mar \\
        --rates 0.3 0.5 --seeds 0 1 --imputers mean knn iterative           # a subset

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
from scipy.stats import rankdata, wasserstein_distance

P_INPUTS = 0.3  # share of the columns that drive the MAR / MNAR logistic models (OT-imputation's p_obs / p_params)
MECHANISMS = ("mcar", "mar", "mnar", "mnar_self")
DATASETS = ("breast_cancer", "wine", "diabetes", "iris", "digits")
IMPUTERS = ("mean", "knn", "iterative", "missforest", "sequential")


# ---------------------------------------------------------------------------------------------- data


def load_table(name: str) -> np.ndarray:
    """A complete table (N, D) in original units, constant columns dropped."""
    from sklearn import datasets

    loaders = {"breast_cancer": datasets.load_breast_cancer, "wine": datasets.load_wine,
               "diabetes": lambda: datasets.load_diabetes(scaled=False), "iris": datasets.load_iris,
               "digits": datasets.load_digits}
    X = np.asarray(loaders[name]().data, dtype=np.float64)
    return X[:, X.max(0) > X.min(0)]


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


def make_imputer(name: str, seed: int, quick: bool):
    from sklearn.ensemble import ExtraTreesRegressor
    from sklearn.experimental import enable_iterative_imputer  # noqa: F401
    from sklearn.impute import IterativeImputer, KNNImputer, SimpleImputer

    if name == "mean":
        return SimpleImputer(strategy="mean", keep_empty_features=True)
    if name == "knn":
        return KNNImputer(n_neighbors=5, keep_empty_features=True)
    if name == "iterative":
        return IterativeImputer(max_iter=10, random_state=seed, keep_empty_features=True)
    if name == "missforest":
        trees = ExtraTreesRegressor(n_estimators=5 if quick else 50, n_jobs=1, random_state=seed)
        return IterativeImputer(estimator=trees, max_iter=2 if quick else 5, random_state=seed,
                                keep_empty_features=True)
    if name == "sequential":
        from seqimpute import SequentialImputer

        return SequentialImputer(random_state=seed, **({"max_updates": 30} if quick else {}))  # the defaults
    raise ValueError(f"unknown imputer {name!r}; choose from {', '.join(IMPUTERS)}")


def run_one(X: np.ndarray, mask: np.ndarray, imputer: str, seed: int, quick: bool) -> dict:
    """Fit ``imputer`` on X with the masked entries removed, fill them, and score the filled values."""
    Xm = X.copy()
    Xm[mask] = np.nan
    t, cpu = time.perf_counter(), time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # IterativeImputer's "did not converge" at max_iter
        est = make_imputer(imputer, seed, quick)
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

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "numpy": np.__version__, "scikit-learn": sklearn.__version__, "torch": torch.__version__}


def save_json(path: Path, doc: dict) -> None:
    from seqimpute.files import atomic_write

    atomic_write(path, json.dumps(doc, indent=1).encode())  # a stopped run never leaves a half-written file


# ---------------------------------------------------------------------------------------------- summary


def cell_means(records: list[dict]) -> dict:
    """{(dataset, mechanism, rate): {imputer: {metric: mean over the seeds every imputer of the cell has}}}."""
    cells: dict = {}
    for r in records:
        cells.setdefault((r["dataset"], r["mechanism"], float(r["rate"])), {}).setdefault(r["imputer"], {})[
            int(r["seed"])] = r
    out = {}
    for c, by_imp in cells.items():
        seeds = set.intersection(*(set(s) for s in by_imp.values()))
        if not seeds:
            continue
        out[c] = {imp: {m: float(np.mean([by_seed[s].get(m, np.nan) for s in seeds]))
                        for m in ("rmse", "wasserstein", "seconds", "cpu_seconds")}
                  | {"n_seeds": len(seeds), "realised_rate": float(np.mean([by_seed[s]["realised_rate"]
                                                                           for s in seeds]))}
                  for imp, by_seed in by_imp.items()}
    return out


def summary(records: list[dict]) -> dict:
    """Ranks per cell by mean RMSE, mean ranks over the cells where every imputer ran, never-worse-than-mean."""
    means = cell_means(records)
    imputers = sorted({r["imputer"] for r in records}, key=lambda i: IMPUTERS.index(i) if i in IMPUTERS else 99)
    ranks, worse = {}, {}
    for c, by_imp in means.items():
        names = list(by_imp)
        ranks[c] = dict(zip(names, rankdata([by_imp[i]["rmse"] for i in names]).tolist()))
        if "mean" in by_imp:
            worse[c] = [i for i in names if by_imp[i]["rmse"] > by_imp["mean"]["rmse"]]
    full = [c for c in ranks if set(ranks[c]) == set(imputers)]
    mean_rank = {i: float(np.mean([ranks[c][i] for c in full])) if full else None for i in imputers}
    worse_than_mean = {i: [list(c) for c in worse if i in worse[c]] for i in imputers}
    return {"imputers": imputers, "cells": len(ranks), "complete_cells": len(full), "mean_rank": mean_rank,
            "worse_than_mean": worse_than_mean, "means": means, "ranks": ranks}


def markdown(doc: dict) -> str:
    s = summary(doc["records"])
    imps = s["imputers"]
    L = ["# Imputers on real tables: MCAR, MAR, MNAR", "",
         "Made by `benchmarks/imputers.py` (its docstring gives the protocol). Command(s):", ""]
    L += [f"    {run['command']}" for run in doc.get("runs", [])]
    loads = [run["load_average"] for run in doc.get("runs", []) if run.get("load_average") is not None]
    m = doc.get("machine", {})
    L += ["", f"Machine: {m.get('cpu', '?')}, {m.get('cores', '?')} cores, {m.get('platform', '?')}; Python "
          f"{m.get('python', '?')}, numpy {m.get('numpy', '?')}, scikit-learn {m.get('scikit-learn', '?')}, torch "
          f"{m.get('torch', '?')}. One BLAS thread and one torch thread per method. Seconds: wall-clock and the "
          f"process's CPU time"
          + (f"; load average {min(loads):.1f}-{max(loads):.1f} when the runs started (the machine was shared)"
             if loads else "") + ".", ""]
    L += ["## Summary", "",
          f"Mean rank by RMSE (1 = best) over the {s['complete_cells']} cell(s) (table x mechanism x rate) where every "
          f"imputer ran ({s['cells']} cells in all); RMSE averaged over the seeds first. 'Worse than mean': cells "
          f"where the imputer's mean RMSE exceeds mean imputation's.", "",
          "| imputer | mean rank | cells worse than mean | median seconds (wall / CPU) |", "|---|---:|---:|---:|"]
    for i in imps:
        mr = s["mean_rank"][i]
        secs = [(v[i]["seconds"], v[i]["cpu_seconds"]) for v in s["means"].values() if i in v]
        n_cells = sum(1 for v in s["means"].values() if i in v and "mean" in v)
        L.append(f"| {i} | {'-' if mr is None else f'{mr:.2f}'} | {len(s['worse_than_mean'][i])} / {n_cells} | "
                 f"{np.median([w for w, _ in secs]):.2f} / {np.median([c for _, c in secs]):.2f} |")
    L += ["", "## Per cell", "",
          "RMSE / mean per-column Wasserstein distance on the hidden entries of min-max scaled columns (means over "
          "seeds; the best RMSE of the row in bold). 'rate': the asked rate; 'missing': the realised share of missing "
          "entries (MAR leaves 30% of the columns complete).", ""]
    for ds in dict.fromkeys(c[0] for c in s["means"]):
        X = load_table(ds)
        L += [f"### {ds} ({X.shape[0]} x {X.shape[1]})", "",
              "| mechanism | rate | missing | seeds | " + " | ".join(imps) + " |",
              "|---|---:|---:|---:|" + "---:|" * len(imps)]
        for c in sorted((c for c in s["means"] if c[0] == ds), key=lambda c: (MECHANISMS.index(c[1]), c[2])):
            v = s["means"][c]
            best = min(x["rmse"] for x in v.values())
            any_v = next(iter(v.values()))
            cellstr = []
            for i in imps:
                if i not in v:
                    cellstr.append("")
                    continue
                r = f"{v[i]['rmse']:.4f}"
                cellstr.append(f"{'**' + r + '**' if v[i]['rmse'] == best else r} / {v[i]['wasserstein']:.4f}")
            L.append(f"| {c[1]} | {c[2]:g} | {any_v['realised_rate']:.2f} | {any_v['n_seeds']} | "
                     + " | ".join(cellstr) + " |")
        L.append("")
    L += ["## Seconds (fit + transform, wall / CPU, mean over the cells of each table)", "",
          "| table | " + " | ".join(imps) + " |", "|---|" + "---:|" * len(imps)]
    for ds in dict.fromkeys(c[0] for c in s["means"]):
        row = []
        for i in imps:
            secs = [(v[i]["seconds"], v[i]["cpu_seconds"]) for c, v in s["means"].items() if c[0] == ds and i in v]
            row.append(f"{np.mean([w for w, _ in secs]):.2f} / {np.mean([c for _, c in secs]):.2f}" if secs else "")
        L.append(f"| {ds} | " + " | ".join(row) + " |")
    return "\n".join(L) + "\n"


# ---------------------------------------------------------------------------------------------- main


def run_grid(args, doc: dict, jpath: Path) -> None:
    """Run every (table, mechanism, rate, seed, imputer) of ``args`` that ``doc`` lacks, saving after each."""
    done = {key(r) for r in doc["records"]}
    t0 = time.perf_counter()
    for ds in args.datasets:
        X = load_table(ds)
        Z = minmax(X, X)
        for mech in args.mechanisms:
            for rate in args.rates:
                for seed in args.seeds:
                    mask = make_mask(Z, mech, rate, mask_rng(ds, mech, rate, seed))
                    for imp in args.imputers:
                        if (ds, mech, float(rate), int(seed), imp) in done:
                            continue
                        rec = run_one(X, mask, imp, seed, args.quick)
                        doc["records"].append({"dataset": ds, "mechanism": mech, "rate": float(rate),
                                               "seed": int(seed), "imputer": imp,
                                               "realised_rate": float(mask.mean()), **rec})
                        save_json(jpath, doc)
                        print(f"{time.perf_counter() - t0:7.0f}s {ds} {mech} {rate:g} seed {seed} {imp}: "
                              f"RMSE {rec['rmse']:.4f} W {rec['wasserstein']:.4f} {rec['seconds']:.2f}s", flush=True)
    save_json(jpath, doc)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", help="output folder (default results/imputers, or results/imputers-quick with --quick)")
    ap.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS))
    ap.add_argument("--mechanisms", nargs="+", choices=MECHANISMS, default=["mcar", "mar", "mnar"])
    ap.add_argument("--rates", nargs="+", type=float, default=[0.1, 0.3, 0.5, 0.7])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    ap.add_argument("--imputers", nargs="+", choices=IMPUTERS, default=list(IMPUTERS))
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: wine, rate 0.3, seed 0, tiny budgets for the slow imputers")
    ap.add_argument("--report", action="store_true", help="only rewrite the Markdown from the JSON")
    args = ap.parse_args(argv)
    if args.quick:
        args.datasets, args.rates, args.seeds = ["wine"], [0.3], [0]
    out = Path(args.out or ("results/imputers-quick" if args.quick else "results/imputers"))
    out.mkdir(parents=True, exist_ok=True)
    jpath, mpath = out / "imputers.json", out / "imputers.md"
    doc = json.loads(jpath.read_text()) if jpath.exists() else {"records": [], "runs": []}
    if doc.get("quick", args.quick) != args.quick:
        sys.exit(f"{jpath} holds {'quick' if doc['quick'] else 'full'} results; use another --out.")
    doc["quick"] = args.quick
    if not args.report:
        import torch
        from threadpoolctl import threadpool_limits

        doc["machine"] = machine()
        doc["runs"].append({"command": "python benchmarks/imputers.py " + shlex.join(sys.argv[1:] if argv is None
                                                                                      else argv),
                            "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                            "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None})
        threads = torch.get_num_threads()
        try:
            with threadpool_limits(1):
                torch.set_num_threads(1)
                run_grid(args, doc, jpath)
        finally:
            torch.set_num_threads(threads)
    mpath.write_text(markdown(doc))
    print(f"wrote {jpath} and {mpath}")


if __name__ == "__main__":
    main()
