"""benchmarks/mixed_tables.py: the published MissForest it runs, the holes it makes and how it scores."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "mixed_tables.py"
_spec = importlib.util.spec_from_file_location("bench_mixed", _PATH)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def table(n=300, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    return pd.DataFrame({"x": x, "y": x ** 2 + rng.normal(0, 0.1, n), "z": rng.normal(size=n),
                         "kind": pd.Categorical(np.where(np.abs(x) > 1, "far", "near"))})


def test_holes_are_mcar_at_the_rate_and_leave_no_row_empty():
    df = table(2000)
    holed, hidden = bench.hide(df, 0.3, 0)
    assert abs(hidden.mean() - 0.3) < 0.02 and not hidden.all(1).any()
    assert (holed.isna().to_numpy() == hidden).all()
    again, _ = bench.hide(df, 0.3, 0)
    assert again.equals(holed)


def test_missforest_learns_the_nonlinear_relations_and_returns_valid_categories():
    df = table()
    holed, hidden = bench.hide(df, 0.2, 1)
    out = bench.missforest(holed, seed=0, trees=30)
    assert list(out.columns) == list(df.columns) and not out.isna().any().any()
    observed = ~hidden
    for j, c in enumerate(df.columns):  # observed cells kept
        assert (out[c].astype(str).to_numpy()[observed[:, j]] == df[c].astype(str).to_numpy()[observed[:, j]]).all()
    assert set(out["kind"].astype(str)) <= {"far", "near"}
    mine, simple = bench.score(df, out, hidden), bench.score(df, bench.impute("simple", holed, 0), hidden)
    assert mine["accuracy"] > simple["accuracy"] + 0.1  # |x| > 1 is learnt from x
    assert mine["rmse"] < simple["rmse"]  # y = x^2 from x


def test_score_counts_numbers_by_standardised_error_and_categories_by_accuracy():
    df = table(10)
    hidden = np.zeros(df.shape, bool)
    hidden[:4, 0] = True
    hidden[:2, 3] = True
    out = df.copy()
    out.loc[:3, "x"] += df["x"].std(ddof=0)  # one standard deviation off at every hidden number
    out.loc[0, "kind"] = "far" if df.loc[0, "kind"] == "near" else "near"  # one of two hidden categories wrong
    s = bench.score(df, out, hidden)
    assert np.isclose(s["rmse"], 1.0) and s["accuracy"] == 0.5
    assert s["hidden_numbers"] == 4 and s["hidden_categories"] == 2
