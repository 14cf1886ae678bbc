"""The paper's baselines (issue 6): template matching, mean, kNN, VAE-imp; GEMM forms against direct loops, the
honest/oracle contract, and CLI round trips."""

from __future__ import annotations

import json

import pytest
import torch

from seqimpute.cli import main
from seqimpute.data.sources import Dataset
from seqimpute.evaluate import evaluate
from seqimpute.models.baselines import KNNImputer, MeanImputer, prob_to_logits
from seqimpute.models.policy import composite
from seqimpute.models.objectives import missing_nll
from seqimpute.models.registry import build_model
from seqimpute.models.template import TemplateMatcher
from seqimpute.models.vae import VAEImputer
from seqimpute.nn.dist import PAPER_EPS, bernoulli_nll

EPS = PAPER_EPS


def grey_data(n, d=36, seed=0, split="train"):
    """Images with exact 0s and 1s and grey levels, like min-max scaled digits."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, d, generator=g)
    x = torch.where(x < 0.3, 0.0, torch.where(x > 0.8, 1.0, x))
    return Dataset(x, (6, 6), "synthetic", split)


def masks(n, d, rate=0.6, seed=1):
    return torch.rand(n, d, generator=torch.Generator().manual_seed(seed)) >= rate


def direct_ll(x, t, sel):
    """LL_sel(t) of one image under one template, float64, as the paper writes it."""
    x, t = x.double(), t.double()
    return float((sel * (x * torch.log(t + EPS) + (1 - x) * torch.log(1 - t + EPS))).sum())


# ---------------------------------------------------------------------------------------------- template matching


@pytest.mark.parametrize("oracle", [False, True])
def test_template_gemm_equals_direct_loop(oracle):
    bank, q = grey_data(60), grey_data(20, seed=5).x
    obs = masks(20, 36)
    tm = TemplateMatcher(36, oracle=oracle).fit(bank)
    chosen = tm.choose(q, obs)
    for i in range(len(q)):
        sel = ~obs[i] if oracle else obs[i]
        lls = [direct_ll(q[i], t, sel) for t in bank.x]
        best = max(range(len(lls)), key=lambda j: lls[j])
        assert int(chosen[i]) == best
        # the score: the evaluator's NLL of the canvas on the missing values = -LL_missing(chosen)
        canvas = tm.rollout(q[i : i + 1], obs[i : i + 1], guided=False).final
        score = float(missing_nll(q[i : i + 1], canvas, obs[i : i + 1]))
        assert score == pytest.approx(-direct_ll(q[i], bank.x[best], ~obs[i]), abs=1e-4)
    # all log-likelihoods at once (GEMM, float32) against the loop
    sel = ~obs if oracle else obs
    ll = tm.log_likelihoods(torch.where(sel, q, 0.0), sel)
    ref = torch.tensor([[direct_ll(q[i], t, sel[i]) for t in bank.x] for i in range(3)], dtype=torch.float64)
    assert torch.allclose(ll[:3].double(), ref, atol=1e-2, rtol=1e-5)


def test_honest_never_looks_at_missing_values():
    bank, q = grey_data(80), grey_data(30, seed=7).x
    obs = masks(30, 36, rate=0.7)
    tm = TemplateMatcher(36).fit(bank)
    before = tm.choose(q, obs)
    for fill in (torch.zeros_like(q), torch.ones_like(q), torch.rand(q.shape), torch.full_like(q, float("nan"))):
        assert torch.equal(tm.choose(torch.where(obs, q, fill), obs), before)
    # the oracle does look at them: the same change moves its choice
    orc = TemplateMatcher(36, oracle=True).fit(bank)
    assert not torch.equal(orc.choose(torch.where(obs, q, 1 - q), obs), orc.choose(q, obs))


def test_oracle_score_le_honest_score():
    bank, q = grey_data(100), grey_data(40, seed=9)
    obs = masks(40, 36)
    scores = {}
    for oracle in (False, True):
        tm = TemplateMatcher(36, oracle=oracle).fit(bank)
        scores[oracle] = missing_nll(q.x, tm.rollout(q.x, obs, guided=False).final, obs)
    assert (scores[True] <= scores[False] + 1e-9).all()
    assert scores[True].mean() < scores[False].mean()


# ---------------------------------------------------------------------------------------------- canvases as logits


def test_probability_canvas_scores_as_the_probabilities():
    p = torch.tensor([[0.0, 1.0, 0.5, 1e-7, 1 - 1e-7, 0.99998, 2e-5, 1 - 1 / 12750, 0.3]])
    for x in (torch.zeros_like(p), torch.ones_like(p), torch.full_like(p, 0.37)):
        obs = torch.zeros_like(p, dtype=torch.bool)
        per_value = bernoulli_nll(x, prob_to_logits(p).sigmoid()) - bernoulli_nll(x.double(), p.double())
        assert per_value.abs().max() < 1e-4
        direct = bernoulli_nll(x.double(), p.double()).sum()
        assert float(missing_nll(x, prob_to_logits(p), obs)) == pytest.approx(float(direct), abs=1e-4)


# ---------------------------------------------------------------------------------------------- mean and kNN


def test_mean_imputer():
    bank, q = grey_data(50), grey_data(10, seed=3).x
    obs = masks(10, 36)
    m = MeanImputer(36).fit(bank)
    out = composite(q, obs, torch.sigmoid(m.rollout(q, obs, guided=False).final))
    assert torch.allclose(out, torch.where(obs, q.double(), bank.x.mean(0).double()), atol=1e-9)


def test_knn_gemm_equals_brute_force_and_picks_k_from_grid():
    bank, q = grey_data(70), grey_data(15, seed=11).x
    obs = masks(15, 36, rate=0.5)
    knn = KNNImputer(36, k_grid=[1, 3, 7]).fit(bank)
    for k in (1, 3, 7):
        got = knn.impute(q, obs, k)
        for i in range(len(q)):
            d = torch.tensor([float(((q[i] - t)[obs[i]] ** 2).sum()) for t in bank.x], dtype=torch.float64)
            nn_idx = torch.argsort(d)[:k]
            assert torch.equal(knn.neighbours(q[i : i + 1], obs[i : i + 1], k)[0], nn_idx)
            assert torch.allclose(got[i], bank.x[nn_idx].mean(0), atol=1e-6)
    valid = grey_data(40, seed=13, split="valid")
    chosen = knn.tune(valid, "mcar:0.6", evaluate)
    assert chosen["k"] in (1, 3, 7) and knn.k == chosen["k"]
    assert chosen["valid_nll"][[1, 3, 7].index(knn.k)] == min(chosen["valid_nll"])
    assert knn.config()["k"] == knn.k  # recorded, so a reloaded model keeps it


# ---------------------------------------------------------------------------------------------- VAE-imp


def test_vae_imp_keeps_known_values_fixed():
    torch.manual_seed(0)
    vae = VAEImputer(36, hidden=16, z=4, steps=5)
    q = grey_data(8, seed=2).x
    obs = masks(8, 36)
    seen = []
    encode = vae.encode
    vae.encode = lambda u, w=None: (seen.append(u.clone()), encode(u, w))[1]
    r = vae.rollout(q, obs, guided=False, generator=torch.Generator().manual_seed(0))
    assert len(r.canvases) == 6 and len(seen) == 5
    for u in seen:
        assert torch.equal(u[obs], q[obs])  # every composite keeps the known values
    assert torch.all(seen[0][~obs] == 0.5)  # the missing values start at 0.5
    assert torch.equal(composite(q, obs, torch.sigmoid(r.final))[obs], q[obs])
    # the guided rollout is one VAE step: KL(q(z|x) || N(0, I)) on a 'full' mask, the ELBO's terms
    g = vae.rollout(q, torch.zeros_like(obs), guided=True, generator=torch.Generator().manual_seed(0))
    mu, lv = encode(q)
    assert len(g.canvases) == 2 and g.kl_qp.shape == (1, 8)
    assert torch.allclose(g.kl_qp[0], 0.5 * (mu.pow(2) + lv.exp() - 1 - lv).sum(-1), atol=1e-5)


def test_vae_tuned_step_is_the_scored_canvas():
    torch.manual_seed(0)
    vae = VAEImputer(36, hidden=16, z=4, steps=4)
    valid, test = grey_data(30, seed=4, split="valid"), grey_data(30, seed=6, split="test")
    vae.tune(valid, "mcar:0.6", evaluate)
    assert 1 <= vae.impute_step <= 4 and len(vae.step_valid_nll) == 5
    res = evaluate(vae, test, "mcar:0.6", samples=2)
    assert res["score_paper_units"] == pytest.approx(res["per_step_unguided_nll_paper_units"][vae.impute_step])
    assert res["oracle_best_step_nll_paper_units"] == min(res["per_step_unguided_nll_paper_units"][1:])


# ---------------------------------------------------------------------------------------------- CLI round trips


@pytest.mark.parametrize("name", ["mean", "knn", "tm-hon", "tm-orc", "vae-imp"])
def test_cli_round_trip(name, tmp_path):
    run, out = tmp_path / "run", tmp_path / "eval.json"
    extra = ["--updates", "30", "--set", "hidden=16", "--set", "z=4", "--set", "steps=3", "--set", "valid_every=30",
             "--batch", "100"] if name == "vae-imp" else []
    assert main(["train", "--model", name, "--data", "sklearn-digits", "--mask", "mcar:0.8", "--run", str(run),
                 "--quiet", *extra]) == 0
    assert main(["eval", str(run), "--quiet", "--json", str(out), "--n", "60"]) == 0
    res = json.loads(out.read_text())
    assert res["model"] == name and res["score_kind"] == "NLL of the imputation"
    assert 0 < res["score_paper_units"] < 64 * 13.9
    assert res["samples"] == (10 if name == "vae-imp" else 1)  # deterministic baselines are evaluated once
    model = build_model(name, 64)
    assert model.trainable == (name == "vae-imp")
    cfg = (run / "config.toml").read_text()
    if name == "knn":
        assert "k = " in cfg and "valid_nll" in cfg
    if name == "vae-imp":
        assert "impute_step = " in cfg and "oracle_best_step_nll_paper_units" in res
