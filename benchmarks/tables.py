"""SequentialImputer against scikit-learn's imputers on real tables and on MNIST images.

Tables shipped with scikit-learn (breast cancer 569x30, wine 178x13, diabetes 442x10 in original units), with 20% and
50% of the values removed completely at random (MCAR); every imputer fills the same incomplete table (it never sees
a removed value). Reported: RMSE on the removed values in original units, the same after dividing each column by
its true standard deviation (NRMSE: the original-unit RMSE is dominated by the widest columns, e.g. breast cancer's
'worst area'), fit+transform seconds, and for SequentialImputer the coverage of the central 90% interval of
``sample`` draws (how often the removed true value lies inside).

MNIST: the first 2000 training and 500 test images (the authors' 50k/10k/10k split, docs/PAPER.md §8 (data); grey
levels in [0,1]), MCAR-50 on both; every imputer is fit on the incomplete training images and fills the incomplete
test images.

    python benchmarks/tables.py --json results/tables.json          # about 6-8 minutes on 2 busy cores
    python benchmarks/tables.py --quick                              # a smoke run (tiny budgets)
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine
from sklearn.experimental import enable_iterative_imputer  # noqa: F401
from sklearn.impute import IterativeImputer, KNNImputer, SimpleImputer

from seqimpute import SequentialImputer


def tables():
    return {"breast_cancer": load_breast_cancer().data, "wine": load_wine().data,
            "diabetes": load_diabetes(scaled=False).data}


def mcar(X, rate, seed):
    m = np.random.default_rng(seed).random(X.shape) < rate
    Xm = X.copy()
    Xm[m] = np.nan
    return Xm, m


def metrics(X, out, m):
    err = out[m] - X[m]
    sd = X.std(0)
    keep = m & (sd > 0)  # NRMSE over columns that vary (MNIST's border pixels are constant 0)
    return {"rmse": float(np.sqrt(np.mean(err ** 2))),
            "nrmse": float(np.sqrt(np.mean(((out - X) / np.where(sd > 0, sd, 1))[keep] ** 2)))}


def references(iter_opts=None):
    return {"mean": lambda: SimpleImputer(strategy="mean"), "knn": lambda: KNNImputer(n_neighbors=5),
            "iterative": lambda: IterativeImputer(random_state=0, **(iter_opts or {}))}


def run_case(name, Xtrain, Xtest, mtest, Xtrue, seq_kw, samples, iter_opts=None):
    rows = []
    for label, make in references(iter_opts).items():
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # IterativeImputer's convergence warning at small max_iter
            imp = make().fit(Xtrain)
            out = imp.transform(Xtest)
        rows.append({"case": name, "imputer": label, **metrics(Xtrue, out, mtest),
                     "seconds": time.perf_counter() - t})
    t = time.perf_counter()
    imp = SequentialImputer(**seq_kw).fit(Xtrain)
    out = imp.transform(Xtest)
    secs = time.perf_counter() - t
    draws = imp.sample(Xtest, samples)
    lo, hi = np.percentile(draws, [5, 95], axis=0)
    cover = float(np.mean((Xtrue[mtest] >= lo[mtest]) & (Xtrue[mtest] <= hi[mtest])))
    rows.append({"case": name, "imputer": "sequential", **metrics(Xtrue, out, mtest), "seconds": secs,
                 "coverage90": cover, "updates": imp.n_updates_, "likelihood": imp.likelihood_})
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--updates", type=int, default=1500, help="SequentialImputer updates on tables (default 1500)")
    ap.add_argument("--mnist-updates", type=int, default=800, help="updates on MNIST (default 800)")
    ap.add_argument("--samples", type=int, default=50, help="draws for the 90%% intervals (default 50)")
    ap.add_argument("--no-mnist", action="store_true")
    ap.add_argument("--quick", action="store_true", help="tiny budgets, to check the script runs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="write the rows to this JSON file")
    args = ap.parse_args()
    if args.quick:
        args.updates, args.mnist_updates, args.samples = 30, 20, 10
    # One BLAS thread for numpy/scikit-learn and one torch thread for the policy: on a shared 2-core machine extra
    # threads only contend (IterativeImputer went from ~1 s to 70 s in one two-thread run); the comparison is per core.
    threadpool_limits(1)
    torch.set_num_threads(1)
    rows, t0 = [], time.perf_counter()
    for tname, X in tables().items():
        for rate in (0.2, 0.5):
            Xm, m = mcar(X, rate, args.seed)
            kw = {"max_updates": args.updates, "max_minutes": 2.0, "random_state": args.seed}
            rows += run_case(f"{tname} MCAR-{int(rate * 100)}", Xm, Xm, m, X, kw, args.samples)
            print(f"done {tname} {rate} ({time.perf_counter() - t0:.0f} s)", flush=True)
    if not args.no_mnist:
        from seqimpute.data.sources import load_dataset

        train = load_dataset("mnist", "train").x[:2000].double().numpy()
        test = load_dataset("mnist", "test").x[:500].double().numpy()
        tr_m, _ = mcar(train, 0.5, args.seed)
        te_m, mt = mcar(test, 0.5, args.seed + 1)
        kw = {"hidden": 300, "latent": 50, "max_updates": args.mnist_updates, "max_minutes": 3.0,
              "random_state": args.seed}
        # IterativeImputer on 784 columns: each column regressed on its 30 nearest columns, 3 rounds (the full
        # default is hours here)
        rows += run_case("mnist 2000/500 MCAR-50", tr_m, te_m, mt, test, kw, args.samples,
                         {"n_nearest_features": 30, "max_iter": 3})
        print(f"done mnist ({time.perf_counter() - t0:.0f} s)", flush=True)
    total = time.perf_counter() - t0
    print("\n| case | imputer | RMSE (orig. units) | NRMSE | 90% coverage | seconds |")
    print("|---|---|---:|---:|---:|---:|")
    for r in rows:
        cov = f"{r['coverage90']:.2f}" if "coverage90" in r else "-"
        print(f"| {r['case']} | {r['imputer']} | {r['rmse']:.4g} | {r['nrmse']:.3f} | {cov} | {r['seconds']:.1f} |")
    print(f"\ntotal {total:.0f} s; torch threads {torch.get_num_threads()}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "total_s": total, "args": vars(args)}, f, indent=2)


if __name__ == "__main__":
    main()
