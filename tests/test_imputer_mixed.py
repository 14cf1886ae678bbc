"""SequentialImputer on tables with binary, integer and categorical columns (seqimpute.tabular.columns): each kind's
likelihood, holes drawn per input column, DataFrames back with their dtypes, categorical_features, save/load, the
CLI on a CSV with a text column."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from seqimpute import SeqImputeError, SequentialImputer
from seqimpute.cli import main
from seqimpute.tabular.columns import Column, ColumnLayout
from seqimpute.models.registry import MODELS

pd = pytest.importorskip("pandas")

TINY = dict(hidden=16, latent=2, steps=2, max_updates=20, max_minutes=None, n_rollouts=3, batch_size=32,
            random_state=0)
DATA = __import__("pathlib").Path(__file__).parent / "data"


def mixed_table(n=80, rate=0.2, seed=0):
    """A category, a nullable bool, a nullable integer and a float column, NaN/NA in each, a string index."""
    rng = np.random.default_rng(seed)
    t = rng.normal(size=n)
    df = pd.DataFrame({"colour": pd.Categorical(np.where(t > 0.5, "red", np.where(t < -0.5, "blue", "green")),
                                                categories=["blue", "green", "red", "never"]),
                       "flag": pd.array(t > 0, dtype="boolean"),
                       "count": pd.array(np.clip(np.round(4 + 2 * t), 0, None).astype(int), dtype="Int64"),
                       "size": 10 + t + 0.1 * rng.normal(size=n)},
                      index=[f"row{i}" for i in range(n)][::-1])
    holes = rng.random(df.shape) < rate
    holes[0] = True  # a row with nothing observed
    out = df.copy()
    for j, c in enumerate(df.columns):
        out.loc[holes[:, j], c] = None
    return out, holes, df


def test_a_dataframe_round_trip_keeps_columns_index_dtypes_and_observed_values():
    dfm, holes, _ = mixed_table()
    imp = SequentialImputer(**TINY).fit(dfm)
    assert imp.likelihood_ == "mixed"
    assert [c.kind for c in imp.layout_.columns] == ["categorical", "binary", "integer", "numeric"]
    assert imp.layout_.columns[0].categories == ["blue", "green", "red"]  # the observed ones, in the dtype's order
    assert imp.layout_.width == 3 + 1 + 1 + 1 and imp.mean_.shape == (6,)
    seen = dfm["count"].dropna().astype(int)
    for out in (imp.transform(dfm), imp.set_output(transform="pandas").transform(dfm)):
        assert isinstance(out, pd.DataFrame)
        assert list(out.columns) == list(dfm.columns) and list(out.index) == list(dfm.index)
        assert out.dtypes.equals(dfm.dtypes) and not out.isna().any().any()
        for j, c in enumerate(dfm.columns):  # observed entries unchanged
            assert out[c][~holes[:, j]].equals(dfm[c][~holes[:, j]]), c
        assert set(out["colour"][holes[:, 0]]) <= {"blue", "green", "red"}
        counts = out["count"][holes[:, 2]].to_numpy(dtype=np.int64)
        assert counts.min() >= seen.min() and counts.max() <= seen.max()
        assert np.isfinite(out["size"].to_numpy()).all()
    assert list(imp.get_feature_names_out()) == list(dfm.columns)


def test_a_frame_without_holes_and_new_rows_come_back_as_given():
    dfm, _, df = mixed_table()
    imp = SequentialImputer(**TINY).fit(dfm)
    out = imp.transform(df.iloc[:5])
    assert out.equals(df.iloc[:5]) and out is not df


def test_the_nll_of_each_kind_is_the_hand_computed_one():
    """One row of a fitted mixed imputer's canvas [numeric | binary | 3 categories]: the elementwise NLL summed
    over a hidden group is -log softmax at the true category; the others are the Gaussian and Bernoulli NLLs."""
    df = pd.DataFrame({"x": [0.0, 1.0, 2.0, np.nan] * 10, "b": [True, False, None, True] * 10,
                       "c": ["u", "v", "w", None] * 10})
    imp = SequentialImputer(**TINY).fit(df)
    assert [c.kind for c in imp.layout_.columns] == ["numeric", "binary", "categorical"]
    c = torch.tensor([[0.3, -1.2, 0.5, 2.0, -0.7]])
    z = torch.tensor([[1.5, 1.0, 0.0, 0.0, 1.0]])  # x = 1.5 (standardised), b = True, c = "w"
    lv = torch.tensor([0.4, 0.0, 0.0, 0.0, 0.0])
    nll = imp._nll(z, c, lv, paper=False)[0]
    assert math.isclose(float(nll[0]), 0.5 * (math.log(2 * math.pi) + 0.4 + (1.5 - 0.3) ** 2 / math.exp(0.4)),
                        rel_tol=1e-6)
    assert math.isclose(float(nll[1]), math.log(1 + math.exp(1.2)), rel_tol=1e-6)  # -log sigmoid(-1.2)
    softmax_w = math.exp(-0.7) / (math.exp(0.5) + math.exp(2.0) + math.exp(-0.7))
    assert math.isclose(float(nll[2:].sum()), -math.log(softmax_w), rel_tol=1e-6)
    assert float(nll[2]) == 0.0 and float(nll[3]) == 0.0  # only the true category's entry counts
    probs = imp._link(c)[0]
    assert math.isclose(float(probs[1]), 1 / (1 + math.exp(1.2)), rel_tol=1e-6)
    assert math.isclose(float(probs[4]), softmax_w, rel_tol=1e-6)
    assert math.isclose(float(probs[2:].sum()), 1.0, rel_tol=1e-6)


def test_holes_hide_a_category_group_as_a_whole():
    dfm, _, _ = mixed_table(200)
    imp = SequentialImputer(**TINY).fit(dfm)
    _, _, T = imp._check_X(dfm, reset=False)
    _, O = imp._to_model(T)
    hidden = imp._hide(O, torch.Generator().manual_seed(0))
    group = hidden[:, 0:3]
    assert hidden.any() and not (hidden & ~O).any()
    assert torch.equal(group.all(1), group.any(1))  # the whole group or none of it
    assert torch.equal(O[:, 0:3].all(1), O[:, 0:3].any(1))  # a missing category: its whole group unobserved


def test_the_validation_errors_are_standardised_errors_and_one_minus_the_true_probability():
    layout = ColumnLayout([Column("numeric"), Column("binary", [False, True]), Column("categorical", ["a", "b", "c"]),
                           Column("integer", low=0, high=9)])
    V = np.array([[12.0, 0.8, 0.2, 0.5, 0.3, 4.6]])  # canvas values: mean, p(True), p(a), p(b), p(c), mean
    T = np.array([[10.0, 0.0, 2.0, 5.0]])  # truth: 10, False, "c", 5
    scale = np.array([4.0, 1.0, 1.0, 1.0, 1.0, 2.0])
    np.testing.assert_allclose(layout.errors(V, T, scale), [[0.5, 0.8, 0.7, -0.2]])
    np.testing.assert_array_equal(layout.decode(V), [[12.0, 1.0, 1.0, 5.0]])  # mean, p > 0.5, argmax, rounded


def test_a_category_that_follows_a_number_is_learned():
    """category = "high" by the sign of x + noise: the imputed categories of hidden entries beat the majority
    class by far (measured: 0.83 against 0.53)."""
    rng = np.random.default_rng(1)
    n = 400
    x = rng.normal(size=n)
    cat = np.where(x + 0.2 * rng.normal(size=n) > 0, "high", "low")
    df = pd.DataFrame({"x": x, "y": 2 * x + 0.1 * rng.normal(size=n), "cat": cat})
    holes = rng.random((n, 3)) < 0.3
    dfm = df.mask(holes)
    imp = SequentialImputer(hidden=32, latent=4, max_updates=300, early_stopping=False, random_state=0).fit(dfm)
    out = imp.transform(dfm)
    hidden = holes[:, 2]
    accuracy = np.mean(out["cat"][hidden].to_numpy() == cat[hidden])
    majority = max(np.mean(cat[hidden] == "low"), np.mean(cat[hidden] == "high"))
    assert accuracy > majority + 0.2 and accuracy > 0.75, (accuracy, majority)
    assert np.isfinite(imp.score(dfm))


def test_sample_draws_categories_and_gives_one_frame_per_draw():
    dfm, holes, _ = mixed_table()
    imp = SequentialImputer(**TINY).fit(dfm)
    draws = imp.sample(dfm, 30)
    assert isinstance(draws, list) and len(draws) == 30
    assert all(isinstance(d, pd.DataFrame) and d.dtypes.equals(dfm.dtypes) and list(d.index) == list(dfm.index)
               for d in draws)
    colours = {d["colour"].iloc[0] for d in draws}  # row 0: nothing observed
    flags = {bool(d["flag"].iloc[0]) for d in draws}
    assert len(colours) >= 2 and flags == {False, True}
    assert all(d["colour"][~holes[:, 0]].equals(dfm["colour"][~holes[:, 0]]) for d in draws)
    again = imp.sample(dfm, 30)
    assert all(a.equals(b) for a, b in zip(draws, again))  # deterministic for a fitted estimator
    likely = imp.sample(dfm, 2, noise=False)  # the most likely values of each rollout: still valid ones
    assert all(set(d["colour"]) <= {"blue", "green", "red"} and not d.isna().any().any() for d in likely)


def codes_array(n=120, seed=0):
    """Column 2 holds codes 0, 3 and 7 of a category that follows column 0; NaN holes everywhere."""
    rng = np.random.default_rng(seed)
    t = rng.normal(size=n)
    X = np.column_stack([t, 2 * t + 0.1 * rng.normal(size=n), np.where(t > 0.5, 7.0, np.where(t < -0.5, 0.0, 3.0))])
    X[rng.random(X.shape) < 0.2] = np.nan
    return X


@pytest.mark.parametrize("features", [[2], (2,), [False, False, True], np.array([False, False, True])])
def test_categorical_features_names_the_code_columns_of_an_array(features):
    X = codes_array()
    imp = SequentialImputer(categorical_features=features, **TINY).fit(X)
    assert [c.kind for c in imp.layout_.columns] == ["numeric", "numeric", "categorical"]
    assert imp.layout_.columns[2].categories == [0.0, 3.0, 7.0]
    out = imp.transform(X)
    assert isinstance(out, np.ndarray) and out.dtype == np.float64 and not np.isnan(out).any()
    assert set(out[:, 2]) <= {0.0, 3.0, 7.0}
    seen = ~np.isnan(X)
    assert np.array_equal(out[seen], X[seen])
    assert imp.sample(X, 2).shape == (2,) + X.shape


def test_categorical_features_by_name_on_a_frame_and_none():
    df = pd.DataFrame(codes_array(), columns=["a", "b", "code"])
    imp = SequentialImputer(categorical_features=["code"], **TINY).fit(df)
    assert imp.layout_.columns[2].kind == "categorical"
    assert isinstance(imp.transform(df), pd.DataFrame)
    numeric = SequentialImputer(categorical_features=None, **TINY).fit(df)  # a numbers-only frame: as before
    assert numeric.likelihood_ == "gaussian" and isinstance(numeric.transform(df), np.ndarray)


ERRORS = {
    "unknown name": (lambda: mixed_table()[0], dict(categorical_features=["colour", "shape"]),
                     r"categorical_features names \['shape'\] not among X's columns"),
    "bad index": (codes_array, dict(categorical_features=[3]),
                  r"categorical_features holds column indices \[3\] out of range for X's 3 columns; give indices "
                  r"in 0..2"),
    "names on an array": (codes_array, dict(categorical_features=["code"]), "X has no column names"),
    "short mask": (codes_array, dict(categorical_features=[True, False]), "boolean mask of 2 values but X has 3"),
    "wrong type": (codes_array, dict(categorical_features="all"), r"categorical_features='all'; give 'from_dtype'"),
    "text not named": (lambda: mixed_table()[0], dict(categorical_features=None),
                       r"column\(s\) \['colour'\] of X hold text or categories, but categorical_features=None does "
                       r"not name them"),
    "bernoulli": (lambda: mixed_table()[0], dict(likelihood="bernoulli"), "use likelihood='auto'"),
}
if "lstm-add" in MODELS:
    ERRORS["lstm"] = (lambda: mixed_table()[0], dict(model="lstm-add"),
                      r"model 'lstm-add' has a sigmoid output only.*use model='gpsi-add' or 'gpsi-jump'")


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_bad_column_specifications_are_one_clear_error(case):
    data, params, message = ERRORS[case]
    with pytest.raises(SeqImputeError, match=message):
        SequentialImputer(**{**TINY, **params}).fit(data())


@pytest.mark.parametrize("column", [pd.date_range("2020-01-01", periods=80), pd.to_timedelta(np.arange(80), "D"),
                                    pd.date_range("2020-01-01", periods=80).date],
                         ids=["dates", "durations", "date objects"])
def test_a_date_column_is_one_clear_error(column):
    df = mixed_table()[0]
    df["when"] = list(column) if isinstance(column, np.ndarray) else column
    with pytest.raises(SeqImputeError, match=r"column 'when' of X \(.*\) holds dates or times.*convert it to numbers "
                                             r"first.*ColumnTransformer"):
        SequentialImputer(**TINY).fit(df)


def test_a_category_not_seen_in_fitting_is_one_clear_error():
    dfm, _, _ = mixed_table()
    imp = SequentialImputer(**TINY).fit(dfm)
    with pytest.raises(SeqImputeError, match=r"column 'colour' holds 'never', not among the categories seen in "
                                             r"fitting.*set such values missing"):
        imp.transform(dfm.assign(colour=pd.Categorical(["never"] * len(dfm), categories=["never"])))


def test_in_a_column_transformer_and_before_a_one_hot_encoder():
    dfm, _, _ = mixed_table()
    dfm["city"] = ["Oslo", "Lima"] * 40  # passed through untouched
    ct = ColumnTransformer([("imp", SequentialImputer(**TINY), ["colour", "count", "size"])],
                           remainder="passthrough").set_output(transform="pandas")
    out = ct.fit_transform(dfm)
    assert list(out.columns) == ["imp__colour", "imp__count", "imp__size", "remainder__flag", "remainder__city"]
    assert isinstance(out["imp__colour"].dtype, pd.CategoricalDtype) and not out["imp__colour"].isna().any()
    pipe = Pipeline([("imp", SequentialImputer(**TINY)),
                     ("onehot", ColumnTransformer([("oh", OneHotEncoder(sparse_output=False), ["colour"])],
                                                  remainder="drop"))])
    encoded = pipe.fit_transform(dfm[["colour", "size"]])
    assert encoded.shape == (80, 3) and np.array_equal(encoded.sum(1), np.ones(80))  # no category left missing


# ------------------------------------------------------------------------------------------ save/load


def test_a_saved_mixed_imputer_loads_with_its_layout_and_gives_the_same_values(tmp_path):
    dfm, _, _ = mixed_table()
    dfm["city"] = pd.Series(["Oslo", None, "Lima", "Oslo"] * 20, index=dfm.index, dtype=object)
    imp = SequentialImputer(**TINY).fit(dfm)
    imp.save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "imputer.json").read_text())
    assert meta["format_version"] == 5 and meta["fitted"]["likelihood_"] == "mixed"
    assert meta["fitted"]["layout_"][0] == {"kind": "categorical", "categories": ["blue", "green", "red"]}
    assert meta["fitted"]["layout_"][4] == {"kind": "categorical", "categories": ["Lima", "Oslo"]}
    assert meta["fitted"]["layout_"][2]["kind"] == "integer"
    twin = SequentialImputer.load(tmp_path / "m")
    new, _, _ = mixed_table(12, rate=0.4, seed=5)
    new["city"] = pd.Series([None, "Lima", "Oslo"] * 4, index=new.index, dtype=object)
    for X in (dfm, new):
        a, b = imp.transform(X), twin.transform(X)
        assert a.equals(b) and a.dtypes.equals(X.dtypes) and not a.isna().any().any()
        assert all(p.equals(q) for p, q in zip(imp.sample(X, 3), twin.sample(X, 3)))
        assert imp.score(X) == twin.score(X)
    assert np.array_equal(twin.log_var_, imp.log_var_) and twin.layout_.width == imp.layout_.width


def test_a_category_json_cannot_hold_is_one_clear_error_at_save(tmp_path):
    df = pd.DataFrame({"x": np.arange(40.0), "pair": [(1, 2), (3, 4)] * 20})
    imp = SequentialImputer(**TINY).fit(df)
    with pytest.raises(SeqImputeError, match=r"column 'pair' has the category \(1, 2\) \(tuple\).*convert that "
                                             r"column's values to strings"):
        imp.save(tmp_path / "m")
    assert not (tmp_path / "m" / "imputer.json").exists()


def test_a_format_1_save_of_a_numbers_only_imputer_still_loads():
    """tests/data/imputer_v1: saved by seqimpute before mixed tables (format 1, no layout, no categorical_features);
    the .npz holds what that seqimpute's transform and sample gave."""
    twin = SequentialImputer.load(DATA / "imputer_v1")
    assert json.loads((DATA / "imputer_v1" / "imputer.json").read_text())["format_version"] == 1
    assert twin.categorical_features == "from_dtype" and not twin.layout_.mixed
    with np.load(DATA / "imputer_v1_expected.npz") as saved:
        assert np.array_equal(twin.transform(saved["x"]), saved["transform"])
        assert np.array_equal(twin.sample(saved["x"], 2), saved["sample"])


# ------------------------------------------------------------------------------------------ the CLI


def _write(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def _read(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def test_cli_fills_a_csv_with_a_text_column_and_writes_text_back(tmp_path, capsys):
    rng = np.random.default_rng(0)
    t = rng.normal(size=60)
    rows = [[repr(float(v)), repr(float(2 * v)), "north" if v > 0 else "south"] for v in t]
    holes = rng.random((60, 3)) < 0.2
    for i, j in zip(*np.nonzero(holes)):
        rows[i][j] = "" if j < 2 else "NA"
    _write(tmp_path / "in.csv", ["x", "y", "region"], rows)
    assert main(["fit-transform", str(tmp_path / "in.csv"), str(tmp_path / "out.csv"), "--updates", "20",
                 "--rollouts", "3", "--samples", "2", "--seed", "0", "--quiet", "--save", str(tmp_path / "m")]) == 0
    assert "text column(s) region as categories" in capsys.readouterr().out
    header, out = _read(tmp_path / "out.csv")
    assert header == ["x", "y", "region"] and len(out) == 60
    for i in range(60):
        for j in range(3):
            if not holes[i, j]:
                assert out[i][j] == rows[i][j]  # observed cells written back as they were
        assert out[i][2] in ("north", "south") and math.isfinite(float(out[i][0]))
    assert _read(tmp_path / "out.sample2.csv")[0] == header
    new = [["0.5", "", ""], ["", "-3.0", "south"], ["", "", ""]]
    _write(tmp_path / "new.csv", ["x", "y", "region"], new)
    assert main(["transform", str(tmp_path / "m"), str(tmp_path / "new.csv"), str(tmp_path / "new_out.csv")]) == 0
    _, filled = _read(tmp_path / "new_out.csv")
    assert filled[0][0] == "0.5" and filled[1][1:] == ["-3.0", "south"]
    assert all(r[2] in ("north", "south") for r in filled)
    assert main(["fit-transform", str(tmp_path / "in.csv"), str(tmp_path / "out.npy"), "--quiet"]) == 2
    assert "text columns can be written to .csv only" in capsys.readouterr().err
