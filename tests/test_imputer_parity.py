"""scikit-learn's imputer parameters on SequentialImputer, with SimpleImputer as the reference for what each means:
missing_values (a marker other than NaN), add_indicator (MissingIndicator's columns), keep_empty_features."""

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.impute import MissingIndicator, SimpleImputer

from seqimpute import SequentialImputer
from seqimpute.errors import SeqImputeError

FAST = dict(hidden=16, latent=2, steps=2, max_updates=10, n_rollouts=2, random_state=0)


def data(n=60, seed=0):
    rng = np.random.default_rng(seed)
    t = rng.normal(size=(n, 1))
    X = np.hstack([t, 2 * t, -t]) + 0.05 * rng.normal(size=(n, 3))
    holes = rng.random(X.shape) < 0.2
    holes[0] = False  # every column keeps values
    return X, holes


def test_a_sentinel_marks_the_missing_entries_as_nan_does():
    X, holes = data()
    with_nan, with_sentinel = np.where(holes, np.nan, X), np.where(holes, -999.0, X)
    a = SequentialImputer(**FAST).fit_transform(with_nan)
    b = SequentialImputer(missing_values=-999.0, **FAST).fit_transform(with_sentinel)
    assert np.array_equal(a, b) and not (b == -999.0).any()
    with pytest.raises(SeqImputeError, match="X holds NaN, but missing_values=-999"):
        SequentialImputer(missing_values=-999.0, **FAST).fit(with_nan)


def test_a_text_sentinel_in_a_dataframe():
    X, holes = data()
    frame = pd.DataFrame(np.where(holes, np.nan, X), columns=["a", "b", "c"])
    frame["kind"] = np.where(X[:, 0] > 0, "up", "down").astype(object)
    frame.loc[[3, 8, 20], "kind"] = "?"
    out = SequentialImputer(missing_values="?", **FAST).fit_transform(frame)
    assert set(out["kind"]) == {"up", "down"} and not out[["a", "b", "c"]].isna().any().any()


def test_add_indicator_appends_missing_indicators_columns():
    X, holes = data()
    holes[:, 2] = False  # a feature without holes gets no indicator
    Xm = np.where(holes, np.nan, X)
    imp = SequentialImputer(add_indicator=True, **FAST).fit(Xm)
    out = imp.transform(Xm)
    ref = MissingIndicator().fit(Xm).transform(Xm)
    assert out.shape == (60, 5) and np.array_equal(out[:, 3:], ref.astype(float))
    assert list(imp.get_feature_names_out(["a", "b", "c"])) == ["a", "b", "c", "missingindicator_a",
                                                                "missingindicator_b"]
    simple = SimpleImputer(add_indicator=True).fit(Xm)
    assert list(simple.get_feature_names_out(["a", "b", "c"])) == list(imp.get_feature_names_out(["a", "b", "c"]))
    assert imp.sample(Xm, 2).shape == (2, 60, 5)


@pytest.mark.parametrize("keep", [False, True])
def test_a_feature_without_values_is_dropped_or_kept_as_simple_imputer_does(keep):
    X, holes = data()
    Xm = np.where(holes, np.nan, X)
    Xm = np.hstack([Xm[:, :1], np.full((60, 1), np.nan), Xm[:, 1:]])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        imp = SequentialImputer(keep_empty_features=keep, **FAST).fit(Xm)
    assert any("Skipping features without any observed values" in str(w.message) for w in caught) != keep
    out = imp.transform(Xm)
    ref = SimpleImputer(keep_empty_features=keep).fit(Xm).transform(Xm)
    assert out.shape == ref.shape and not np.isnan(out).any()
    if keep:
        assert np.all(out[:, 1] == 0)
    kept = [0, 2, 3]
    observed = ~np.isnan(Xm[:, kept])
    assert np.array_equal(out[:, [0, 2, 3] if keep else [0, 1, 2]][observed], Xm[:, kept][observed])
    names = ["a", "empty", "b", "c"]
    assert list(imp.get_feature_names_out(names)) == list(SimpleImputer(keep_empty_features=keep).fit(Xm)
                                                          .get_feature_names_out(names))


def test_the_new_parameters_survive_save_and_load(tmp_path):
    X, holes = data()
    Xm = np.where(holes, -1.0, X)
    Xm = np.hstack([Xm, np.full((60, 1), -1.0)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        imp = SequentialImputer(missing_values=-1.0, add_indicator=True, **FAST).fit(Xm)
    imp.save(tmp_path / "imp")
    back = SequentialImputer.load(tmp_path / "imp")
    assert back.missing_values == -1.0 and back.add_indicator and list(back.empty_features_) == [3]
    assert np.array_equal(back.transform(Xm), imp.transform(Xm))
    plain = SequentialImputer(**FAST).fit(np.where(holes, np.nan, X))
    plain.save(tmp_path / "plain")
    assert np.isnan(SequentialImputer.load(tmp_path / "plain").missing_values)


def test_bad_parity_parameters_are_one_clear_error():
    X, holes = data()
    with pytest.raises(SeqImputeError, match="add_indicator must be True or False"):
        SequentialImputer(add_indicator="yes", **FAST).fit(X)
    with pytest.raises(SeqImputeError, match="missing_values must be a number"):
        SequentialImputer(missing_values=[1], **FAST).fit(X)
