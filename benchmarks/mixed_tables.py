"""Imputers on real tables with mixed column kinds: RMSE on the hidden numbers (standardised columns) and accuracy
on the hidden categories, MCAR over all cells at 10%, 20% and 30%, seeds 0-4, one thread.

The tables install offline through pip: Palmer penguins (palmerpenguins: 3 categorical, 5 numeric columns) and
three of vega_datasets' packaged tables: cars (its name column is an id and goes; the model year becomes a number),
seattle-weather (the date goes) and iris. Rows with a missing value are dropped first, so every hidden cell has a
known truth and every imputer sees the same holes.

References: the most frequent category and the column mean (SimpleImputer); MissForest as published (Stekhoven &
Buhlmann 2012: a random forest of 100 trees per column, classification forests for categories, up to 10 rounds
stopping when the change grows; the MissForest package with scikit-learn's forests); miceforest (LightGBM MICE, 5
iterations). Writes results/imputers-mixed/mixed.json.

    OMP_NUM_THREADS=1 python benchmarks/mixed_tables.py [--seeds 0 1 2 3 4] [--imputers ...] [--tables ...]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "results" / "imputers-mixed" / "mixed.json"
RATES = (0.1, 0.2, 0.3)
from seqimpute.reporting.benchmarks import MIXED_IMPUTERS as IMPUTERS  # noqa: E402 (one order for runs and tables)


def load(name: str) -> pd.DataFrame:
    """A table with its categorical columns as pandas categories and every other column numeric, complete rows."""
    from vega_datasets import local_data

    if name == "penguins":
        import palmerpenguins

        df = palmerpenguins.load_penguins()
    elif name == "cars":
        df = local_data.cars().drop(columns="Name")
        df["Year"] = pd.to_datetime(df["Year"]).dt.year
    elif name == "seattle-weather":
        df = local_data.seattle_weather().drop(columns="date")
    elif name == "iris":
        df = local_data.iris()
    else:
        raise ValueError(name)
    df = df.dropna().reset_index(drop=True)
    for c in df.columns:
        if not pd.api.types.is_numeric_dtype(df[c]):
            df[c] = df[c].astype(str).astype("category")
        else:
            df[c] = df[c].astype(float)
    return df


TABLES = ("penguins", "cars", "seattle-weather", "iris")


def categorical(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if isinstance(df[c].dtype, pd.CategoricalDtype)]


def impute(name: str, holed: pd.DataFrame, seed: int) -> pd.DataFrame:
    cats = categorical(holed)
    nums = [c for c in holed.columns if c not in cats]
    if name == "simple":
        out = holed.copy()
        for c in nums:
            out[c] = out[c].fillna(out[c].mean())
        for c in cats:
            out[c] = out[c].fillna(out[c].mode().iloc[0])
        return out
    if name == "missforest":
        return missforest(holed, seed)
    if name == "miceforest":
        import miceforest as mf

        kernel = mf.ImputationKernel(holed, random_state=seed)
        kernel.mice(5)
        return kernel.complete_data()
    if name == "sequential":
        from seqimpute import SequentialImputer

        return SequentialImputer(random_state=seed, n_threads=1).fit_transform(holed)
    raise ValueError(name)


def missforest(holed: pd.DataFrame, seed: int, trees: int = 100, max_iter: int = 10) -> pd.DataFrame:
    """MissForest as Stekhoven & Buhlmann (2012) publish it: mean / mode start; then rounds over the columns with
    holes, fewest holes first, each fitting a random forest (a classifier for categories) on the rows where that
    column is observed and predicting its holes from the current imputation of the others; stop when the change
    between rounds grows for every column kind present, keeping the round before. Categories enter the other
    columns' forests as their codes. (The MissForest package on PyPI fits each forest on all rows, its own initial
    guesses included, so that its forests learn to reproduce the guesses. Hence this short transcription of the
    published algorithm with scikit-learn's forests.)"""
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

    cats = categorical(holed)
    X = holed.copy()
    for c in cats:
        X[c] = X[c].cat.codes.replace(-1, np.nan).astype(float)
    holes = X.isna()
    imp = X.fillna({c: (X[c].mode().iloc[0] if c in cats else X[c].mean()) for c in X.columns})
    order = [c for c in holes.sum().sort_values(kind="stable").index if holes[c].any()]
    kinds = [k for k in (cats, [c for c in X.columns if c not in cats]) if any(holes[c].any() for c in k)]
    before, last_change = imp, [np.inf] * len(kinds)
    for _ in range(max_iter):
        new = before.copy()
        for c in order:
            forest = (RandomForestClassifier if c in cats else RandomForestRegressor)(
                n_estimators=trees, random_state=seed, n_jobs=1)
            rest, obs = new.drop(columns=c), ~holes[c]
            forest.fit(rest[obs], new.loc[obs, c])
            new.loc[~obs, c] = forest.predict(rest[~obs])
        change = [float((new[k] != before[k]).to_numpy()[holes[k].to_numpy()].mean()) if k is cats else
                  float(((new[k] - before[k]) ** 2).to_numpy().sum() / (new[k] ** 2).to_numpy().sum()) for k in kinds]
        if all(a > b for a, b in zip(change, last_change)):
            break  # the change grew for every kind: keep the previous round
        before, last_change = new, change
    out = before.copy()
    for c in cats:
        out[c] = pd.Categorical.from_codes(out[c].round().astype(int), holed[c].cat.categories)
    return out


def score(df: pd.DataFrame, out: pd.DataFrame, hidden: np.ndarray) -> dict:
    cats = categorical(df)
    sq, n_num, right, n_cat = 0.0, 0, 0, 0
    for j, c in enumerate(df.columns):
        h = hidden[:, j]
        if not h.any():
            continue
        if c in cats:
            right += int((out[c].astype(str).to_numpy()[h] == df[c].astype(str).to_numpy()[h]).sum())
            n_cat += int(h.sum())
        else:
            truth = df[c].to_numpy(float)
            z = (out[c].to_numpy(float)[h] - truth[h]) / truth.std()
            sq += float((z ** 2).sum())
            n_num += int(h.sum())
    return {"rmse": float(np.sqrt(sq / n_num)) if n_num else None,
            "accuracy": right / n_cat if n_cat else None, "hidden_numbers": n_num, "hidden_categories": n_cat}


def hide(df: pd.DataFrame, rate: float, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """MCAR over all cells; a row keeps at least one value (an empty row has nothing to impute from)."""
    rng = np.random.default_rng([seed, round(rate * 1000)])
    hidden = rng.random(df.shape) < rate
    empty = hidden.all(1)
    hidden[empty, rng.integers(0, df.shape[1], empty.sum())] = False
    holed = df.copy()
    for j, c in enumerate(df.columns):
        holed.loc[hidden[:, j], c] = np.nan
    return holed, hidden


def main(argv=None) -> None:
    from seqimpute.precision import cpu_name

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--imputers", nargs="+", default=list(IMPUTERS), choices=IMPUTERS)
    ap.add_argument("--tables", nargs="+", default=list(TABLES), choices=TABLES)
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args(argv)
    doc = json.loads(a.out.read_text()) if a.out.exists() else {"records": []}
    keep = lambda r: not (r["imputer"] in a.imputers and r["table"] in a.tables and r["seed"] in a.seeds)
    doc["records"] = [r for r in doc["records"] if keep(r)]  # rerun records replace the old ones
    doc.update({"cpu": cpu_name(), "rates": list(RATES),
                "command": "OMP_NUM_THREADS=1 python benchmarks/mixed_tables.py", "tables": {}})
    for t in TABLES:
        df = load(t)
        doc["tables"][t] = {"rows": len(df), "numeric": len(df.columns) - len(categorical(df)),
                            "categorical": {c: len(df[c].cat.categories) for c in categorical(df)}}
    for t in a.tables:
        df = load(t)
        for rate in RATES:
            for seed in a.seeds:
                holed, hidden = hide(df, rate, seed)
                for name in a.imputers:
                    cpu = time.process_time()
                    rec = {"table": t, "rate": rate, "seed": seed, "imputer": name}
                    try:
                        with warnings.catch_warnings():
                            warnings.simplefilter("ignore")
                            out = impute(name, holed, seed)
                    except Exception as e:  # a reference that fails on a table is recorded as not run there
                        if name == "sequential":
                            raise
                        rec["not_run"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                        print(f"{t} {rate:.0%} seed {seed} {name}: not run ({rec['not_run']})", flush=True)
                    else:
                        rec.update(cpu_s=time.process_time() - cpu, **score(df, out, hidden))
                        print(f"{t} {rate:.0%} seed {seed} {name}: RMSE {rec['rmse']:.3f} accuracy "
                              f"{rec['accuracy']:.3f} ({rec['cpu_s']:.1f} CPU-s)", flush=True)
                    doc["records"].append(rec)
                a.out.parent.mkdir(parents=True, exist_ok=True)
                a.out.write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
