"""Likelihoods, KL divergences (docs/PAPER.md §3.5 (likelihood and KL)) and the paper's units (§10)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from seqimpute import metrics
from seqimpute.nn import dist


def test_bernoulli_nll_by_hand():
    x = torch.tensor([0.0, 1.0, 0.25, 1.0, 0.0], dtype=torch.float64)
    p = torch.tensor([0.1, 0.9, 0.6, 0.0, 1.0], dtype=torch.float64)
    eps = 1e-6
    expected = [-(xi * math.log(pi + eps) + (1 - xi) * math.log(1 - pi + eps)) for xi, pi in zip(x.tolist(), p.tolist())]
    got = dist.bernoulli_nll(x, p)
    assert torch.allclose(got, torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-12)
    # the epsilon bounds a confident mistake: -log(1e-6) = 13.8155...
    assert got[3].item() == pytest.approx(-math.log(1e-6), abs=1e-9)
    assert got[4].item() == pytest.approx(-math.log(1e-6), abs=1e-9)
    assert dist.PAPER_EPS == 1e-6


def test_predicting_one_half_costs_ln2_for_any_target():
    x = torch.linspace(0, 1, 101, dtype=torch.float64)
    got = dist.bernoulli_nll(x, torch.full_like(x, 0.5))
    assert torch.allclose(got, torch.full_like(x, -math.log(0.5 + 1e-6)), atol=1e-12)
    assert torch.allclose(got, torch.full_like(x, math.log(2)), atol=3e-6)


def test_bernoulli_nll_custom_eps():
    x, p = torch.tensor([1.0]), torch.tensor([0.0])
    assert dist.bernoulli_nll(x, p, eps=1e-8).item() == pytest.approx(-math.log(1e-8), rel=1e-5)


def test_bernoulli_logits_agrees_with_probability_form():
    torch.manual_seed(0)
    logits = torch.empty(1000, dtype=torch.float64).uniform_(-6, 6)
    x = torch.rand(1000, dtype=torch.float64)
    a = dist.bernoulli_nll_logits(x, logits)
    b = dist.bernoulli_nll(x, torch.sigmoid(logits))
    assert torch.allclose(a, b, atol=1e-3)  # they differ only by the epsilon
    # and exactly so without it
    assert torch.allclose(a, dist.bernoulli_nll(x, torch.sigmoid(logits), eps=0.0), atol=1e-9)
    # the logits form is stable where the probability form saturates
    big = dist.bernoulli_nll_logits(torch.tensor([0.0]), torch.tensor([200.0]))
    assert torch.isfinite(big).all() and big.item() == pytest.approx(200.0)


def test_gaussian_kl_closed_form_and_torch():
    torch.manual_seed(1)
    mu1, mu2 = torch.randn(50, dtype=torch.float64), torch.randn(50, dtype=torch.float64)
    lv1, lv2 = torch.randn(50, dtype=torch.float64), torch.randn(50, dtype=torch.float64)
    got = dist.gaussian_kl(mu1, lv1, mu2, lv2)
    closed = 0.5 * (lv2 - lv1 + lv1.exp() / lv2.exp() + (mu1 - mu2) ** 2 / lv2.exp() - 1)
    ref = kl_divergence(Normal(mu1, (0.5 * lv1).exp()), Normal(mu2, (0.5 * lv2).exp()))
    assert torch.allclose(got, closed, atol=1e-12)
    assert torch.allclose(got, ref, atol=1e-10)
    assert (got >= 0).all()
    # one value by hand: KL(N(1, 1) || N(0, e^2)) = 0.5 * (2 - 0 + e^-2 + e^-2 - 1)
    one = dist.gaussian_kl(torch.tensor(1.0), torch.tensor(0.0), torch.tensor(0.0), torch.tensor(2.0))
    assert one.item() == pytest.approx(0.5 * (1 + 2 * math.exp(-2)), rel=1e-6)


def test_gaussian_kl_zero_for_identical():
    mu, lv = torch.randn(20), torch.randn(20)
    assert torch.allclose(dist.gaussian_kl(mu, lv, mu, lv), torch.zeros(20), atol=1e-6)


def test_gaussian_kl_broadcasts():
    mu1, lv1 = torch.randn(4, 3), torch.randn(4, 3)
    out = dist.gaussian_kl(mu1, lv1, torch.zeros(()), torch.zeros(()))
    assert out.shape == (4, 3)


def test_gaussian_log_prob_matches_torch():
    torch.manual_seed(2)
    x, mean, lv = (torch.randn(100, dtype=torch.float64) for _ in range(3))
    got = dist.gaussian_log_prob(x, mean, lv)
    ref = Normal(mean, (0.5 * lv).exp()).log_prob(x)
    assert torch.allclose(got, ref, atol=1e-12)


# ---------------------------------------------------------------------------------------------------- units


def test_paper_units_table1_factors():
    # The paper's factors D/|U| (per-image mean and mean |U|; the evaluator passes totals, tests/test_formulas.py).
    # MNIST MAR-14: 784 / 196 = 4.0, raw 42.5 -> 170 (docs/PAPER.md §10 (paper units))
    assert metrics.paper_units(42.5, 784, 14 * 14) == pytest.approx(170.0)
    assert metrics.paper_units(1.0, 784, 16 * 16) == pytest.approx(3.0625)
    assert metrics.paper_units(54.5, 784, 256) == pytest.approx(166.9, abs=0.05)
    assert round(metrics.paper_units(1.0, 48 * 48, 25 * 25), 3) == 3.686
    assert round(metrics.paper_units(1.0, 32 * 32, 17 * 17), 3) == 3.543
    assert metrics.paper_units(373.5, 2304, 625) == pytest.approx(1377, abs=0.5)
    assert metrics.paper_units(160.0, 1024, 289) == pytest.approx(568, abs=1.5)  # §10 rounds raw to 160
    # MCAR-d divides by d/100: MCAR-90 multiplies by 1/0.9, MCAR-80 by 1.25
    assert metrics.paper_units(90.0, 784, 0.9 * 784) == pytest.approx(100.0)
    assert metrics.paper_units(10.0, 1024, 0.8 * 1024) == pytest.approx(12.5)
    # degenerate: no imputed values does not divide by zero
    assert math.isfinite(metrics.paper_units(0.0, 784, 0.0))


def test_bits():
    assert metrics.bits(math.log(2)) == pytest.approx(1.0)
    assert metrics.bits(3.0) == pytest.approx(3.0 / math.log(2))


def test_psnr():
    assert metrics.psnr(0.01) == pytest.approx(20.0)
    assert metrics.psnr(1e-4) == pytest.approx(40.0)
    assert metrics.psnr(0.01, peak=255.0) == pytest.approx(20.0 + 20 * math.log10(255))
    assert metrics.psnr(0.0) == float("inf")
