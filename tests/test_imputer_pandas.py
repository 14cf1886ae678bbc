"""SequentialImputer with pandas DataFrames (an optional dependency): feature names in, DataFrames out through
scikit-learn's set_output with columns and index kept, ColumnTransformer and Pipeline, names and output
setting kept by save/load. Text, category, bool, integer and date columns: test_imputer_mixed.py."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.compose import ColumnTransformer, make_column_selector
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from seqimpute import SeqImputeError, SequentialImputer

pd = pytest.importorskip("pandas")

TINY = dict(hidden=16, latent=2, steps=2, max_updates=20, max_minutes=None, n_rollouts=3, batch_size=32,
            random_state=0)


def table(n=60, seed=0):
    """Columns of very different scales (a ~ 0, b ~ 1000, c ~ -0.01 * 1000 = -10), NaN holes and a string index:
    a value imputed into the wrong column would land far outside that column's range."""
    rng = np.random.default_rng(seed)
    t = rng.normal(size=n)
    df = pd.DataFrame({"a": t + 0.1 * rng.normal(size=n), "b": 1000 + 5 * t + rng.normal(size=n),
                       "c": -10 - 0.5 * t + 0.05 * rng.normal(size=n)}, index=[f"row{i}" for i in range(n)][::-1])
    holes = rng.random(df.shape) < 0.2
    return df.mask(holes), holes


RANGES = {"a": (-6, 6), "b": (970, 1030), "c": (-13, -7)}  # each column's values, with room for a wide guess


def check_filled(out, df, holes, columns):
    assert list(out.columns) == columns and list(out.index) == list(df.index)
    values = out.to_numpy()
    assert not np.isnan(values).any()
    assert np.array_equal(values[~holes], df.to_numpy()[~holes])  # observed values kept
    for j, c in enumerate(df.columns):
        lo, hi = RANGES[c]
        assert np.all((values[holes[:, j], j] > lo) & (values[holes[:, j], j] < hi)), c


def test_dataframe_in_and_out_with_columns_and_index_kept():
    df, holes = table()
    imp = SequentialImputer(**TINY).set_output(transform="pandas")
    out = imp.fit_transform(df)
    assert isinstance(out, pd.DataFrame)
    check_filled(out, df, holes, ["a", "b", "c"])
    assert list(imp.feature_names_in_) == ["a", "b", "c"] and list(imp.get_feature_names_out()) == ["a", "b", "c"]
    later = imp.transform(df.iloc[:7])
    assert isinstance(later, pd.DataFrame) and list(later.index) == list(df.index[:7])
    plain = SequentialImputer(**TINY).fit(df)  # scikit-learn's default output: an array
    assert isinstance(plain.transform(df), np.ndarray)
    with pytest.raises(SeqImputeError, match="feature names"):
        plain.transform(df.rename(columns={"a": "z"}))


def test_in_a_column_transformer_and_a_pipeline_with_a_text_column_passed_through():
    df, holes = table()
    df["city"] = ["Oslo", "Lima"] * (len(df) // 2)
    ct = ColumnTransformer([("imp", SequentialImputer(**TINY), make_column_selector(dtype_include="number"))],
                           remainder="passthrough").set_output(transform="pandas")
    out = ct.fit_transform(df)
    assert list(out.columns) == ["imp__a", "imp__b", "imp__c", "remainder__city"]
    assert list(out["remainder__city"]) == list(df["city"])
    check_filled(out[["imp__a", "imp__b", "imp__c"]].set_axis(["a", "b", "c"], axis=1), df[["a", "b", "c"]],
                 holes, ["a", "b", "c"])
    y = df["b"].fillna(1000).to_numpy()
    pipe = Pipeline([("imp", SequentialImputer(**TINY)), ("scale", StandardScaler())]).set_output(transform="pandas")
    scaled = pipe.fit_transform(df[["a", "b", "c"]])
    assert list(scaled.columns) == ["a", "b", "c"] and list(scaled.index) == list(df.index)
    np.testing.assert_allclose(scaled.mean().to_numpy(), 0, atol=1e-9)  # StandardScaler saw no NaN
    model = Pipeline([("imp", SequentialImputer(**TINY)), ("lr", LinearRegression())]).fit(df[["a", "b", "c"]], y)
    assert list(model.feature_names_in_) == ["a", "b", "c"] and np.isfinite(model.predict(df[["a", "b", "c"]])).all()


def test_nullable_integer_boolean_and_boxed_number_columns_are_numbers():
    df, holes = table()
    df["n"] = pd.array([1, None, 3] * 20, dtype="Int64")  # pandas' NA marks a missing value like NaN
    df["flag"] = [True, False] * 30
    df["boxed"] = pd.Series([2.5, None, 4] * 20, index=df.index, dtype=object)  # numbers in an object column are numbers too
    out = SequentialImputer(**TINY).set_output(transform="pandas").fit_transform(df)
    assert not out.isna().any().any() and list(out.columns) == ["a", "b", "c", "n", "flag", "boxed"]
    assert np.array_equal(out["boxed"].to_numpy()[::3], np.full(20, 2.5))
    assert np.array_equal(out["n"].to_numpy()[::3], np.ones(20)) and np.array_equal(out["flag"], df["flag"])


def test_save_and_load_keep_the_names_and_the_output_setting(tmp_path):
    df, _ = table()
    imp = SequentialImputer(**TINY).set_output(transform="pandas").fit(df)
    imp.save(tmp_path / "m")
    twin = SequentialImputer.load(tmp_path / "m")
    assert list(twin.feature_names_in_) == ["a", "b", "c"]
    out = twin.transform(df)
    assert isinstance(out, pd.DataFrame) and out.equals(imp.transform(df))
