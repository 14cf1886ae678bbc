"""SequentialImputer: scikit-learn conformance, observed values untouched, multiple imputation, training from
incomplete data (MAR, known truth), likelihood choice, the fit-transform CLI."""

from __future__ import annotations

import csv
import pickle
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import BaseEstimator, clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

import seqimpute
import seqimpute.tabular.training as training_module
import seqimpute.tabular.early_stopping as early_stopping
from seqimpute.tabular.early_stopping import IMPROVEMENT
from seqimpute import SeqImputeError, SequentialImputer
from seqimpute.cli import main
from seqimpute.models.registry import MODELS

TINY = dict(hidden=16, latent=2, steps=2, max_updates=20, max_minutes=None, n_rollouts=3, batch_size=32)


def small(**kw):
    return SequentialImputer(**{**TINY, "random_state": 0, **kw})


def correlated(n=400, d=4, noise=0.05, seed=0):
    """Rows t * (1, 2, ..., d) + small noise: every column predicts every other (a known truth)."""
    rng = np.random.default_rng(seed)
    t = rng.normal(size=(n, 1))
    return t * np.arange(1, d + 1) + noise * rng.normal(size=(n, d))


def holes(X, rate, seed=1):
    m = np.random.default_rng(seed).random(X.shape) < rate
    Xm = X.copy()
    Xm[m] = np.nan
    return Xm, m


# Every check of scikit-learn's suite applies and passes (array-API input is skipped by scikit-learn itself unless
# SCIPY_ARRAY_API is set); allow_nan is the only tag that differs from a plain transformer, and it is the point.
@parametrize_with_checks([small(), small(add_indicator=True, keep_empty_features=True)])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_tags_declare_nan_input():
    if hasattr(BaseEstimator, "__sklearn_tags__"):  # scikit-learn >= 1.6
        assert small().__sklearn_tags__().input_tags.allow_nan
    else:  # scikit-learn 1.4-1.5 read the older tags
        assert small()._get_tags()["allow_nan"]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_observed_values_bit_identical_in_input_dtype(dtype):
    X = correlated(60, 3).astype(dtype)
    X[0, 0], X[1, 1], X[2, 2] = dtype(1e-30), -0.0, dtype(np.pi)  # awkward values must survive untouched
    Xm, m = holes(X, 0.3)
    m[:3] = False
    Xm[:3] = X[:3]
    imp = small().fit(Xm)
    out = imp.transform(Xm)
    assert out.dtype == dtype and out.shape == X.shape and not np.isnan(out).any()
    assert np.array_equal(out[~m].view(np.uint8), Xm[~m].view(np.uint8))  # bitwise, -0.0 included
    draws = imp.sample(Xm, 3)
    assert draws.shape == (3,) + X.shape and draws.dtype == dtype
    assert all(np.array_equal(d[~m].view(np.uint8), Xm[~m].view(np.uint8)) for d in draws)


def test_samples_differ_and_average_to_transform_on_a_low_noise_model():
    X = correlated(300, 4, noise=0.02)
    Xm, m = holes(X, 0.25)
    imp = SequentialImputer(hidden=32, latent=4, max_updates=300, early_stopping=False, n_rollouts=50,
                            random_state=0).fit(Xm)
    assert np.all(np.exp(0.5 * imp.log_var_) < 0.6)  # the learned noise fell from 1 (standardised units)
    draws = imp.sample(Xm, 100)
    assert not np.allclose(draws[0][m], draws[1][m])  # stochastic rollouts
    assert np.array_equal(draws[0][~m], draws[1][~m])
    gap = np.abs(draws.mean(0)[m] - imp.transform(Xm)[m]).mean()
    spread = draws.std(0)[m].mean()
    assert gap < 0.3 * spread and gap < 0.1 * X.std(0).mean(), (gap, spread)  # Monte Carlo error only


def test_learns_from_incomplete_data_under_mar_with_known_truth():
    """Column 0 always observed; the others go missing far more often when column 0 is large (MAR, not MCAR), so
    the observed values of a column are a biased sample. The imputer never sees a true missing value."""
    rng = np.random.default_rng(3)
    X = correlated(600, 4, noise=0.1, seed=3)
    p = np.where(X[:, :1] > 0, 0.6, 0.1) * np.ones((1, 4))
    p[:, 0] = 0.0
    m = rng.random(X.shape) < p
    Xm = X.copy()
    Xm[m] = np.nan
    imp = SequentialImputer(max_updates=400, early_stopping=False, random_state=0).fit(Xm)  # all rows train
    out = imp.transform(Xm)
    rmse = np.sqrt(np.mean((out[m] - X[m]) ** 2))
    mean_rmse = np.sqrt(np.mean((np.where(m, np.nanmean(Xm, 0), X)[m] - X[m]) ** 2))
    assert rmse < 0.3 * mean_rmse, (rmse, mean_rmse)
    assert abs(np.mean(out[m] - X[m])) < 0.1 * X.std()  # no bias toward the observed (lower) values
    assert np.isfinite(imp.score(Xm))


def test_a_fully_missing_column_is_left_out_with_a_warning_and_an_empty_table_is_an_error():
    """As scikit-learn's imputers do (keep_empty_features=True keeps it: tests/test_imputer_parity.py)."""
    X = correlated(30, 3)
    X[:, 1] = np.nan
    with pytest.warns(UserWarning, match=r"Skipping features without any observed values: \[1\]"):
        out = small().fit_transform(X)
    assert out.shape == (30, 2) and np.array_equal(out, X[:, [0, 2]])
    with pytest.warns(UserWarning), pytest.raises(SeqImputeError, match="no column of X has an observed value"):
        small().fit(np.full((10, 2), np.nan))


def test_non_finite_updates_are_skipped_counted_and_reported(monkeypatch):
    """An update whose loss (or a gradient) is NaN/inf is skipped, counted in n_skipped_updates_, and fit warns."""
    import seqimpute.tabular.training as training_module

    real, calls = training_module.training_loss, []

    def faulty(policy, *args, **kwargs):
        loss, stats = real(policy, *args, **kwargs)
        calls.append(None)
        if len(calls) in (2, 5):  # a NaN loss
            loss = loss * float("nan")
        elif len(calls) == 3:  # a finite loss with a NaN gradient: d sqrt(u)/du at u = 0 times du/dtheta = 0
            loss = loss + torch.sqrt(0.0 * next(policy.parameters()).sum())
        return loss, stats

    monkeypatch.setattr(training_module, "training_loss", faulty)
    Xm = holes(correlated(40, 3), 0.2)[0]
    with pytest.warns(RuntimeWarning, match="skipped 3 of 6 training updates"):
        imp = small(max_updates=6).fit(Xm)
    assert imp.n_updates_ == 6 and imp.n_skipped_updates_ == 3
    assert np.isfinite(imp.transform(Xm)).all()
    monkeypatch.setattr(training_module, "training_loss", real)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        assert small(max_updates=6).fit(Xm).n_skipped_updates_ == 0


def test_get_params_clone_round_trip_and_pickle():
    imp = SequentialImputer(hidden=32, hide_rate=(0.2, 0.4), model_options={"l2": 0.0}, random_state=7)
    params = imp.get_params()
    assert params["hidden"] == 32 and params["hide_rate"] == (0.2, 0.4) and params["random_state"] == 7
    twin = clone(imp)
    assert twin.get_params() == params and twin is not imp
    twin.set_params(max_updates=5, likelihood="gaussian")
    assert twin.max_updates == 5 and imp.max_updates == "auto"
    fitted = small().fit(holes(correlated(40, 3), 0.2)[0])
    again = pickle.loads(pickle.dumps(fitted))
    Xm = holes(correlated(10, 3, seed=5), 0.3)[0]
    assert np.array_equal(again.transform(Xm), fitted.transform(Xm))


def test_in_a_pipeline():
    X = correlated(80, 3)
    y = X @ np.array([1.0, -1.0, 0.5])
    Xm, _ = holes(X, 0.2)
    pipe = make_pipeline(small(), LinearRegression()).fit(Xm, y)
    assert np.isfinite(pipe.predict(Xm)).all()


def test_deterministic_given_random_state():
    Xm, _ = holes(correlated(60, 3), 0.3)
    a, b = small(random_state=3).fit(Xm), small(random_state=3).fit(Xm)
    assert np.array_equal(a.transform(Xm), b.transform(Xm))
    assert np.array_equal(a.transform(Xm), a.transform(Xm))
    assert np.array_equal(a.sample(Xm, 2), b.sample(Xm, 2))
    assert a.score(Xm) == b.score(Xm)
    assert len(a.validation_score_) and np.array_equal(a.validation_score_, b.validation_score_)
    assert not np.array_equal(small(random_state=4).fit(Xm).transform(Xm), a.transform(Xm))


def test_likelihood_choice_is_explicit_and_validated():
    unit = np.random.default_rng(0).random((40, 5))
    unit_m, m = holes(unit, 0.3)
    imp = small().fit(unit_m)
    assert imp.likelihood_ == "bernoulli" and np.all(imp.scale_ == 1) and imp.log_var_ is None
    out = imp.transform(unit_m)
    assert np.all((out[m] > 0) & (out[m] < 1))
    assert small(likelihood="gaussian").fit(unit_m).likelihood_ == "gaussian"
    real = holes(correlated(40, 3), 0.3)[0]
    g = small().fit(real)
    assert g.likelihood_ == "gaussian" and g.log_var_.shape == (3,)
    np.testing.assert_allclose(g.mean_, np.nanmean(real, 0))  # statistics from observed values only
    with pytest.raises(SeqImputeError, match=r"likelihood='bernoulli' needs every observed value in \[0, 1\].*"
                                             r"likelihood='gaussian'"):
        small(likelihood="bernoulli").fit(real)
    with pytest.raises(SeqImputeError, match="choose 'auto', 'bernoulli' or 'gaussian'"):
        small(likelihood="poisson").fit(real)
    with pytest.raises(SeqImputeError, match="not a trainable policy"):
        small(model="mean").fit(real)
    with pytest.raises(SeqImputeError, match="hide_rate"):
        small(hide_rate=(0.5, 1.0)).fit(real)
    if "lstm-add" in MODELS:
        with pytest.raises(SeqImputeError, match="sigmoid output only"):
            small(model="lstm-add").fit(real)


def test_lstm_add_by_option():
    if "lstm-add" not in MODELS:
        pytest.skip("lstm-add is not registered")
    unit_m, m = holes(np.random.default_rng(0).random((30, 6)), 0.3)
    out = small(model="lstm-add", max_updates=5).fit_transform(unit_m)
    assert not np.isnan(out).any() and np.array_equal(out[~m], unit_m[~m])


def test_package_exports_the_imputer():
    assert seqimpute.SequentialImputer is SequentialImputer and "SequentialImputer" in seqimpute.__all__


def _read_csv(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], np.array([[float(c) if c else np.nan for c in r] for r in rows[1:]])


def test_cli_fit_transform_csv_with_header_round_trip(tmp_path, capsys):
    X = correlated(50, 3)
    Xm, m = holes(X, 0.2)
    src = tmp_path / "in.csv"
    with open(src, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["alpha", "beta", "gamma"])
        for row in Xm:
            w.writerow(["" if np.isnan(v) else repr(float(v)) for v in row])
    out = tmp_path / "out.csv"
    rc = main(["fit-transform", str(src), str(out), "--updates", "20", "--rollouts", "3", "--samples", "2",
               "--seed", "1", "--quiet"])
    assert rc == 0 and "imputed" in capsys.readouterr().out
    header, filled = _read_csv(out)
    assert header == ["alpha", "beta", "gamma"] and filled.shape == X.shape and not np.isnan(filled).any()
    assert np.array_equal(filled[~m], Xm[~m])
    for k in (1, 2):
        h, s = _read_csv(tmp_path / f"out.sample{k}.csv")
        assert h == header and np.array_equal(s[~m], Xm[~m])
    # .npz in, .npz out with the samples under their own key; a bad output type exits 2 before training
    np.savez(tmp_path / "in.npz", x=Xm.astype(np.float32))
    assert main(["fit-transform", str(tmp_path / "in.npz"), str(tmp_path / "o.npz"), "--updates", "5",
                 "--rollouts", "2", "--samples", "3", "--quiet"]) == 0
    with np.load(tmp_path / "o.npz") as z:
        assert z["x"].shape == X.shape and z["samples"].shape == (3,) + X.shape
    assert main(["fit-transform", str(src), str(tmp_path / "o.txt"), "--quiet"]) == 2
    assert "use .csv, .npy or .npz" in capsys.readouterr().err


class _FastClock:
    """A stand-in for the time module whose perf_counter advances 10 s per call: a one-minute cap binds within a
    few updates, whatever the machine's speed."""

    def __init__(self):
        self.t = 0.0

    def perf_counter(self):
        self.t += 10.0
        return self.t


def test_the_budget_that_stopped_training_is_recorded_and_a_cut_is_warned(monkeypatch):
    X, _ = holes(correlated(60, 3), 0.2)
    imp = small()  # max_updates=20, no cap
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        imp.fit(X)
    assert imp.stopped_by_ == "updates" and imp.n_updates_ == 20
    monkeypatch.setattr(training_module, "time", _FastClock())
    with pytest.warns(ConvergenceWarning, match=r"max_minutes=1 wall-clock cap after \d+ of max_updates=20 updates"):
        imp = small(max_minutes=1.0).fit(X)
    assert imp.stopped_by_ == "minutes" and imp.n_updates_ < 20
    imp = small(max_updates=None, max_minutes=1.0).fit(X)  # a time budget, not a cap: no warning needed
    assert imp.stopped_by_ == "minutes"


def test_cli_fit_transform_updates_are_not_cut_by_a_default_cap(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(training_module, "time", _FastClock())  # every update "takes" 10 s or more
    src = tmp_path / "in.npy"
    np.save(src, holes(correlated(60, 3), 0.2)[0])
    base = ["fit-transform", str(src), str(tmp_path / "o.npy"), "--rollouts", "2", "--quiet"]
    assert main(base + ["--updates", "12"]) == 0
    out = capsys.readouterr().out
    assert "12 updates" in out and "stopped" not in out
    assert main(base + ["--updates", "12", "--minutes", "1"]) == 0  # both given: whichever ends first, said so
    out = capsys.readouterr().out
    assert "stopped at the 1-minute wall-clock cap after" in out and "of 12 updates" in out


def test_validation_holes_are_shares_of_rows_and_leave_every_row_and_column_a_value():
    full = np.ones((1000, 10), dtype=bool)
    held = early_stopping.holdout(full, 0.1, seed=0)
    # 10% of 10000 values; each validation row gives round(0.35 * 10) = 4 of its values: 250 rows
    assert held.sum() == 1000 and set(held.sum(1)) == {0, 4} and (held.sum(1) == 4).sum() == 250
    assert np.array_equal(held, early_stopping.holdout(full, 0.1, seed=0))
    assert not np.array_equal(held, early_stopping.holdout(full, 0.1, seed=1))
    obs = np.random.default_rng(0).random((300, 6)) < 0.5
    obs[:, 5] = False
    obs[:2, 5] = True  # a column observed twice only
    held = early_stopping.holdout(obs, 0.1, seed=0)
    assert not (held & ~obs).any()  # held-out values are observed ones
    assert abs(held.sum() - 0.1 * obs.sum()) <= 3  # the last row taken may overshoot by its share (0.35 * 6 = 2)
    assert (obs & ~held).any(0)[obs.any(0)].all() and (obs & ~held).any(1)[obs.any(1)].all()
    assert not early_stopping.holdout(np.ones((24, 4), bool), 0.1, seed=0).any()  # 96 observed: too few


def test_early_stopping_stops_and_keeps_the_best_update():
    Xm, _ = holes(correlated(300, 4, noise=0.1), 0.3)
    imp = small(max_updates=5000, patience=2, learning_rate=0.03).fit(Xm)
    assert imp.stopped_by_ == "early_stopping" and imp.n_updates_ < 5000
    at, scores = imp.validation_updates_, imp.validation_score_
    # the untrained policy (the conditional-Gaussian start) is scored first, then every epoch of 20 updates
    assert np.array_equal(at, 20 * np.arange(len(at))) and at[-1] == imp.n_updates_
    assert imp.best_iteration_ == at[np.argmin(scores)]
    # progress is a score IMPROVEMENT below the best before it; training ends `patience` scores after the last
    progress = [i for i in range(len(scores)) if scores[i] < (1 - IMPROVEMENT) * min(scores[:i], default=np.inf)]
    assert len(scores) - 1 - progress[-1] == 2
    mean = small(max_updates=5000, patience=2, learning_rate=0.03, initial_canvas="mean").fit(Xm)
    assert mean.validation_updates_[0] == 20  # from the mean canvas, the untrained policy is no candidate
    off = small(max_updates=30, early_stopping=False).fit(Xm)
    assert off.stopped_by_ == "updates" and off.best_iteration_ == 30 and off.validation_score_.size == 0


def test_validation_values_are_never_used_in_training(monkeypatch):
    """Changing the held-out values changes nothing in training (the scaling included), only their score."""
    X = correlated(200, 4, noise=0.1)
    Xm, _ = holes(X, 0.2)
    masks = []

    def spy(observed, share, seed):
        masks.append(real(observed, share, seed))
        return masks[-1]

    real = early_stopping.holdout
    monkeypatch.setattr(early_stopping, "holdout", spy)
    a = small(max_updates=20).fit(Xm)  # one evaluation, at the last update: the weights kept are the last ones
    held = masks[0]
    assert held.sum() >= 50
    X2 = Xm.copy()
    X2[held] = 100.0 + 10 * X2[held]
    b = small(max_updates=20).fit(X2)
    assert np.array_equal(masks[1], held)
    assert np.array_equal(a.mean_, b.mean_) and np.array_equal(a.scale_, b.scale_)
    assert all(torch.equal(p, q) for p, q in zip(a.model_.parameters(), b.model_.parameters()))
    assert b.validation_score_[0] > 10 * a.validation_score_[0]
    assert np.array_equal(a.transform(Xm), b.transform(Xm))


def test_the_auto_budget_grows_with_the_rows():
    imp = SequentialImputer(batch_size=128)
    # 100 epochs of ceil(N / 128) updates, clipped to 1000..2000
    assert [training_module.max_updates(imp, n) for n in (100, 1500, 2000, 10**5)] == [1000, 100 * 12, 100 * 16, 2000]
    assert training_module.max_updates(SequentialImputer(max_updates=77), 10**5) == 77


@pytest.mark.parametrize("kw, match", [({"early_stopping": "yes"}, "early_stopping must be True or False"),
                                       ({"validation_fraction": 0.7}, r"validation_fraction must be a share in"),
                                       ({"patience": 0}, "patience must be a positive integer"),
                                       ({"max_updates": "many"}, "max_updates must be a positive integer, 'auto'")])
def test_early_stopping_parameters_are_validated(kw, match):
    with pytest.raises(SeqImputeError, match=match):
        small(**kw).fit(holes(correlated(40, 3), 0.2)[0])
