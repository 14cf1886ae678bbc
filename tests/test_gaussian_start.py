"""SequentialImputer's starting canvas (seqimpute.tabular.gaussian): the conditional mean and variance against the
closed form, EM against the complete data's moments, and the untrained imputer imputing exactly that mean."""

import numpy as np
import pytest
import torch

from seqimpute import SequentialImputer
from seqimpute.tabular.gaussian import RIDGE, ConditionalGaussian


def gaussian_table(n=400, d=5, seed=0):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(d, d))
    cov = A @ A.T / d + 0.2 * np.eye(d)
    return rng.multivariate_normal(rng.normal(size=d), cov, size=n), cov


def closed_form(mean, cov, z, visible, ridge=RIDGE):
    """Row by row: mu_u + S_uo (S_oo + ridge I)^-1 (z_o - mu_o), and S_uu - S_uo (S_oo + ridge I)^-1 S_ou."""
    means, variances = z.copy(), np.zeros_like(z)
    for i in range(len(z)):
        o, u = visible[i], ~visible[i]
        K = np.linalg.solve(cov[np.ix_(o, o)] + ridge * np.eye(o.sum()), cov[np.ix_(o, u)]).T
        means[i, u] = mean[u] + K @ (z[i, o] - mean[o])
        variances[i, u] = np.diag(cov[np.ix_(u, u)] - K @ cov[np.ix_(o, u)])
    return means, variances


def test_the_conditional_mean_and_variance_are_the_closed_form():
    X, cov = gaussian_table()
    visible = np.random.default_rng(1).random(X.shape) > 0.4
    visible[0] = False  # a row with nothing visible: the mean itself
    mean = X.mean(0)
    g = ConditionalGaussian(torch.tensor(mean), torch.tensor(cov))
    want_mean, want_var = closed_form(mean, cov, X, visible)
    got = g.conditional_mean(torch.tensor(X), torch.tensor(visible)).numpy()
    np.testing.assert_allclose(got, want_mean, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(got[0], mean, rtol=1e-9)
    hidden = (~visible).sum(0)
    np.testing.assert_allclose(g.missing_variance(torch.tensor(X), torch.tensor(visible)).numpy(),
                               want_var.sum(0) / hidden, rtol=1e-9)


def test_em_recovers_the_moments_of_the_complete_table():
    X, _ = gaussian_table(n=3000, d=6, seed=2)
    visible = np.random.default_rng(3).random(X.shape) > 0.3
    g = ConditionalGaussian.fit(torch.tensor(np.where(visible, X, 0.0)), torch.tensor(visible), iterations=30)
    full_cov = np.cov(X.T, bias=True)
    naive = np.cov(np.where(visible, X, X.mean(0)).T, bias=True)  # mean imputation shrinks the covariances
    em_error = np.abs(g.cov.numpy() - full_cov).max()
    assert em_error < 0.1 * np.abs(full_cov).max()
    assert em_error < 0.5 * np.abs(naive - full_cov).max()
    np.testing.assert_allclose(g.mean.numpy(), X.mean(0), atol=0.05)


@pytest.mark.filterwarnings("ignore")
def test_the_untrained_imputer_imputes_the_conditional_mean():
    """Training that cannot move the parameters (learning rate 1e-12) leaves the start's conditional mean."""
    X, _ = gaussian_table(n=300, d=4, seed=4)
    Xm = np.where(np.random.default_rng(5).random(X.shape) < 0.3, np.nan, X)
    imp = SequentialImputer(max_updates=2, early_stopping=False, learning_rate=1e-12, random_state=0,
                            hidden=16, latent=2).fit(Xm)
    assert list(imp.start_entries_) == [0, 1, 2, 3]
    visible = ~np.isnan(Xm)
    z = np.where(visible, (Xm - imp.mean_) / imp.scale_, 0.0)
    want, _ = closed_form(imp._start.mean.numpy(), imp._start.cov.numpy(), z, visible)
    np.testing.assert_allclose(imp.transform(Xm), want * imp.scale_ + imp.mean_, rtol=1e-4, atol=1e-4)
    mean_start = SequentialImputer(max_updates=2, early_stopping=False, random_state=0, hidden=16, latent=2,
                                   initial_canvas="mean").fit(Xm)
    assert mean_start.start_entries_ is None


def test_categories_start_at_the_linear_models_probabilities():
    """A mixed table's start covers the 0/1 targets of its category too: the untrained imputer's category
    probabilities are the conditional means at the category's entries, clipped and renormalised, and they carry
    what the numbers say about the category."""
    import pandas as pd

    from seqimpute.tabular.columns import PROB_FLOOR

    rng = np.random.default_rng(0)
    x = rng.normal(size=400)
    df = pd.DataFrame({"x": x, "y": 2 * x + rng.normal(0, 0.3, 400),
                       "kind": np.where(x < -0.5, "low", np.where(x > 0.5, "high", "mid"))})
    holed = df.copy()
    hide = rng.random(len(df)) < 0.3
    holed.loc[hide, "kind"] = None
    imp = SequentialImputer(max_updates=2, early_stopping=False, learning_rate=1e-12, random_state=0, hidden=16,
                            latent=2).fit(holed)
    assert list(imp.start_entries_) == list(range(imp.layout_.width))  # numbers and the category's 3 entries
    Z, O = imp._to_model(imp._check_X(holed, reset=False)[2])
    start = imp._start_canvas(Z, O)
    idx = torch.as_tensor(imp.start_entries_)
    mean = imp._start.conditional_mean(Z[:, idx], O[:, idx])
    a, b = imp.layout_.groups[0]
    p = mean[:, a:b].clamp(PROB_FLOOR, 1 - PROB_FLOOR)
    torch.testing.assert_close(torch.softmax(start[:, a:b], -1), p / p.sum(1, keepdim=True))
    out = imp.transform(holed)
    most_frequent = (df.loc[hide, "kind"] == df.loc[~hide, "kind"].mode()[0]).mean()
    assert most_frequent < 0.45 and (out.loc[hide, "kind"] == df.loc[hide, "kind"]).mean() > most_frequent + 0.25


def test_the_low_rank_start_is_the_closed_form_of_its_covariance_and_finds_the_table_s_rank():
    from seqimpute.tabular.gaussian import LowRankGaussian

    rng = np.random.default_rng(0)
    W = rng.normal(size=(30, 3))
    X = rng.normal(size=(600, 3)) @ W.T + 0.1 * rng.normal(size=(600, 30)) + rng.normal(size=30)
    visible = rng.random(X.shape) > 0.3
    z = torch.tensor(np.where(visible, X, 0.0))
    v = torch.tensor(visible)
    m = LowRankGaussian.fit(z, v, rank=3)
    cov = m.factor.numpy() @ m.factor.numpy().T + m.noise_var.item() * np.eye(30)
    want, var = closed_form(m.mean.numpy(), cov, z.numpy(), visible, ridge=0.0)  # its noise keeps S_oo regular
    np.testing.assert_allclose(m.conditional_mean(z, v).numpy(), want, atol=1e-8)
    hidden = ~visible
    np.testing.assert_allclose(m.missing_variance(z, v).numpy(), (var * hidden).sum(0) / hidden.sum(0), rtol=1e-8)
    true_cov = W @ W.T + 0.01 * np.eye(30)
    assert np.abs(cov - true_cov).max() < 0.1 * np.abs(true_cov).max()  # EM recovers the covariance
    assert m.noise_var.item() == pytest.approx(0.01, rel=0.2)
