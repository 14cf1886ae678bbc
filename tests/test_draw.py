"""DRAW (no attention) and the extended model of Sec 2.5: the rollout against a plain re-statement of the equations,
N(0,I) priors for DRAW and state-conditioned priors for the extended model, sampling without the encoder, the
importance weights, mask 'full' only, fine-tuning of q alone, the evaluator's bounded batches, and a CLI round trip
(train -> eval -> sample -> finetune) on sklearn-digits."""

import hashlib
import json

import numpy as np
import pytest
import torch

from seqimpute import SeqImputeError, load_dataset
from seqimpute.cli import main
from seqimpute.evaluate import ROWS_BUDGET, evaluate
from seqimpute.finetune import finetune
from seqimpute.models.draw import ExtendedDRAW
from seqimpute.sampling import sample_prior
from seqimpute.models.objectives import training_loss
from seqimpute.models.registry import build_model, model_from_config, spec
from seqimpute.nn.dist import gaussian_kl
from seqimpute.runs import load_checkpoint, load_run_model
from seqimpute.train import TrainConfig, train

D = 16
SMALL = {"enc": 7, "dec": 6, "write": 5, "z": 3, "steps": 3}
EXT = {**SMALL, "mix": 2}
KINDS = ["draw", "draw-ext-add", "draw-ext-jump"]


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny(kind="draw-ext-add", perturb=0.3, **kw):
    """A tiny model with every parameter perturbed by N(0, perturb^2), far from the near-zero initialisation."""
    torch.manual_seed(0)
    m = build_model(kind, D, None, {**(SMALL if kind == "draw" else EXT), **kw})
    if perturb:
        with torch.no_grad():
            for p in m.parameters():
                p.add_(perturb * torch.randn_like(p))
    return m


def batch(B=5, seed=1):
    x = (torch.rand(B, D, generator=torch.Generator().manual_seed(seed)) < 0.4).float()
    return x, torch.zeros_like(x, dtype=torch.bool)


def reference_rollout(m, x, gen):
    """The guided rollout written plainly from docs/PAPER.md §13.3 (extended DRAW spec) / Eq. 10-12 with the
    modules' own forwards."""
    B = len(x)
    ext, jump = isinstance(m, ExtendedDRAW), getattr(m, "step_type", "add") == "jump"
    kl = []
    if ext:
        mu0, lv0 = m.mix_q(x)
        z0 = mu0 + torch.exp(0.5 * lv0) * torch.randn(B, m.mix, generator=gen)
        kl.append(gaussian_kl(mu0, lv0, m.zm_mean.expand(B, -1), m.zm_logvar.expand(B, -1)).sum(-1))
        cG, hG, cE, hE = m.mix_dec(z0).split([m.dec, m.dec, m.enc, m.enc], 1)
        c = m.write_out(cG) if jump else m.c0.expand(B, -1)
    else:
        hG, cG = m.h_dec0.expand(B, -1), m.c_dec0.expand(B, -1)
        hE, cE = m.h_enc0.expand(B, -1), m.c_enc0.expand(B, -1)
        c = m.c0.expand(B, -1)
    canvases = [c]
    for _ in range(m.steps):
        hE, cE = m.encoder(torch.cat([x, x - torch.sigmoid(c), hG], 1), (hE, cE))
        mu_q, lv_q = m.head_q(hE)
        mu_p, lv_p = m.head_p(hG) if ext else (torch.zeros_like(mu_q), torch.zeros_like(lv_q))
        z = mu_q + torch.exp(0.5 * lv_q) * torch.randn(mu_q.shape, generator=gen)
        kl.append(gaussian_kl(mu_q, lv_q, mu_p, lv_p).sum(-1))
        hG, cG = m.decoder(z, (hG, cG))
        c = m.write_out(cG) if jump else c + m.write_out(hG)
        canvases.append(c)
    return canvases, torch.stack(kl)


@pytest.mark.parametrize("kind", KINDS)
def test_rollout_equals_the_plain_equations(kind):
    m = tiny(kind)
    x, obs = batch()
    with torch.no_grad():
        r = m.rollout(x, obs, guided=True, generator=torch.Generator().manual_seed(3))
        ref_c, ref_kl = reference_rollout(m, x, torch.Generator().manual_seed(3))
    assert len(r.canvases) == len(ref_c) == m.steps + 1
    for a, b in zip(r.canvases, ref_c):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(r.kl_qp, ref_kl, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_shapes_and_kl_rows(kind):
    m = tiny(kind)
    x, obs = batch(B=4)
    r = m.rollout(x, obs, guided=True, generator=torch.Generator().manual_seed(0))
    rows = m.steps + (0 if kind == "draw" else 1)  # the extended model's initial step comes first
    assert r.kl_qp.shape == r.kl_pq.shape == (rows, 4) and r.log_ratio.shape == (4,)
    assert all(c.shape == (4, D) for c in r.canvases) and len(r.canvases) == m.steps + 1
    assert (r.kl_qp >= 0).all() and (r.kl_pq >= 0).all()
    loss, _ = training_loss(m, r, x, obs)
    loss.backward()
    assert all(p.grad is not None for p in m.parameters())
    u = m.rollout(x, obs, guided=False, generator=torch.Generator().manual_seed(0))
    assert u.kl_qp is None and u.log_ratio is None and len(u.canvases) == m.steps + 1
    prior = sample_prior(m, 6, list(range(m.steps + 1)))
    assert prior.shape == (m.steps + 1, 6, D) and ((prior >= 0) & (prior <= 1)).all()


def test_draw_step_priors_are_standard_normal():
    m = tiny("draw")
    x, obs = batch()
    qs = []
    m.head_q.register_forward_hook(lambda mod, inp, out: qs.append(out))
    r = m.rollout(x, obs, guided=True, generator=torch.Generator().manual_seed(0))
    assert len(qs) == m.steps
    for t, (mu, lv) in enumerate(qs):  # KL(q || N(0, I)) and KL(N(0, I) || q), whatever the state
        torch.testing.assert_close(r.kl_qp[t], gaussian_kl(mu, lv, torch.zeros_like(mu), torch.zeros_like(lv)).sum(-1))
        torch.testing.assert_close(r.kl_pq[t], gaussian_kl(torch.zeros_like(mu), torch.zeros_like(lv), mu, lv).sum(-1))
    for h in (torch.zeros(3, m.dec), 5 * torch.randn(3, m.dec)):
        mu, lv = m.prior(h)
        assert torch.equal(mu, torch.zeros(3, m.z)) and torch.equal(lv, torch.zeros(3, m.z))


@pytest.mark.parametrize("kind", ["draw-ext-add", "draw-ext-jump"])
def test_extended_prior_depends_on_the_previous_generator_state(kind):
    m = tiny(kind)
    h1, h2 = torch.zeros(2, m.dec), 0.5 * torch.ones(2, m.dec)
    assert not torch.allclose(m.prior(h1)[0], m.prior(h2)[0]) and not torch.allclose(m.prior(h1)[1], m.prior(h2)[1])
    # in a rollout, the prior at step t reads the generator's output after step t-1: identical images with
    # different z0 give different generator states, hence different priors, already at step 1
    inputs = []
    m.head_p.register_forward_hook(lambda mod, inp, out: inputs.append((inp[0].detach(), out[0].detach())))
    x = batch(B=1)[0].repeat(3, 1)
    with torch.no_grad():
        m.rollout(x, torch.zeros_like(x, dtype=torch.bool), guided=True, generator=torch.Generator().manual_seed(0))
    assert len(inputs) == m.steps
    h_first, mu_first = inputs[0]
    assert not torch.allclose(mu_first[0], mu_first[1])
    # ...and that state is the generator part of the mixture decoder's output (changing it changes the prior)
    with torch.no_grad():
        m.mix_dec.fc2.bias[m.dec : 2 * m.dec] += 1.0
        inputs.clear()
        m.rollout(x, torch.zeros_like(x, dtype=torch.bool), guided=True, generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(inputs[0][1], mu_first)


def _poison_guide(m):
    with torch.no_grad():
        for p in m.guide_parameters():
            p.fill_(float("nan"))
        if isinstance(m, ExtendedDRAW):  # the rows of the mixture decoder that give the encoder's initial state
            m.mix_dec.fc2.weight[2 * m.dec :] = float("nan")
            m.mix_dec.fc2.bias[2 * m.dec :] = float("nan")
    fired = []
    mods = [m.encoder, m.head_q] + ([m.mix_q] if isinstance(m, ExtendedDRAW) else [])
    for mod in mods:
        for sub in mod.modules():
            sub.register_forward_hook(lambda *a: fired.append(1))
    return fired


@pytest.mark.parametrize("kind", KINDS)
def test_sampling_never_touches_the_encoder(kind):
    m = tiny(kind)
    fired = _poison_guide(m)
    frames = sample_prior(m, 5, list(range(m.steps + 1)), seed=0)
    assert not fired
    assert np.isfinite(frames).all()
    x, obs = batch()
    guided = m.rollout(x, obs, guided=True, generator=torch.Generator().manual_seed(0))
    assert fired and torch.isnan(guided.final).any()  # the poison does reach a guided rollout


@pytest.mark.parametrize("kind", ["draw", "draw-ext-add"])
def test_log_ratio_is_minus_the_kl_in_expectation(kind):
    """E_q[log p(z) - log q(z)] = -sum KL(q||p): the importance weights match the bound's KL rows (init included)."""
    m = tiny(kind, perturb=0.2)
    x, obs = batch(B=1)
    xk = x.repeat(4000, 1)
    with torch.no_grad():
        r = m.rollout(xk, obs.repeat(4000, 1), guided=True, generator=torch.Generator().manual_seed(0))
    kl = r.kl_qp.sum(0)
    err = (r.log_ratio + kl).std() / 4000 ** 0.5
    assert abs(float((r.log_ratio + kl).mean())) < 4 * float(err) + 1e-4


def test_importance_weighted_estimate_sits_below_the_bound():
    """The evaluator's K-sample estimate against its bound (analytic KL): at K=1 they agree in expectation (the
    sampled log-ratios average to minus the closed-form KL), and at K=20 the estimate lies below. Its convergence to
    an exact marginal likelihood is checked by quadrature in tests/test_formulas.py."""
    torch.manual_seed(0)
    m = build_model("draw-ext-add", 64, None, {**EXT, "steps": 2})
    with torch.no_grad():  # away from the initialisation, where q and p nearly agree and every estimate is the bound
        for p in m.parameters():
            p.add_(0.1 * torch.randn_like(p))
    test = load_dataset("sklearn-digits", "test")
    one = [evaluate(m, test, "full", samples=1, n=300, seed=s) for s in range(3)]
    twenty = [evaluate(m, test, "full", samples=20, n=300, seed=s) for s in range(3)]
    assert all(r["paper_unit_factor"] == 1.0 and r["bound_paper_units"] == pytest.approx(r["bound_nats_per_image"])
               for r in one + twenty)
    mean = lambda rs, k: sum(r[k] for r in rs) / len(rs)  # noqa: E731
    bound = mean(one, "bound_nats_per_image")
    assert abs(mean(one, "iw_nats_per_image") - bound) < 0.01 * bound
    assert mean(twenty, "iw_nats_per_image") < mean(one, "iw_nats_per_image") - 0.2
    assert mean(twenty, "iw_nats_per_image") < mean(twenty, "bound_nats_per_image") - 0.2


def test_evaluation_batches_stay_bounded_for_large_k(monkeypatch):
    torch.manual_seed(0)
    m = build_model("draw", 64, None, SMALL)
    rows = []
    orig = m.rollout
    monkeypatch.setattr(m, "rollout", lambda x, *a, **k: (rows.append(len(x)), orig(x, *a, **k))[1])
    res = evaluate(m, load_dataset("sklearn-digits", "test"), "full", samples=100, n=60)
    assert max(rows) <= ROWS_BUDGET and res["n_images"] == 60 and res["samples"] == 100


def test_only_mask_full_is_accepted(tmp_path, capsys):
    m = tiny("draw-ext-add")
    x, obs = batch()
    obs[0, 0] = True
    with pytest.raises(SeqImputeError, match="--mask full"):
        m.rollout(x, obs)
    with pytest.raises(SeqImputeError, match="--mask full"):
        evaluate(build_model("draw", 64, None, SMALL), load_dataset("sklearn-digits", "test"), "mcar:0.5", n=5)
    for kind in KINDS:
        rc = main(["train", "--model", kind, "--data", "sklearn-digits", "--mask", "MCAR-50", "--run",
                   str(tmp_path / kind), "--updates", "1", "--quiet"])
        assert rc == 2 and "--mask full" in capsys.readouterr().err
        assert not (tmp_path / kind / "last.pt").exists()


def test_registry_presets_guide_parameters_and_config_round_trip():
    assert spec("draw").presets["gregor"] == {"enc": 256, "dec": 256, "write": 0, "z": 100, "steps": 64}
    assert spec("draw-ext-add").presets["mnist"] == {"enc": 250, "dec": 250, "write": 200, "z": 100, "mix": 20,
                                                     "steps": 16}
    assert spec("draw").family == spec("draw-ext-jump").family == "lstm"
    for kind in KINDS:
        m = tiny(kind)
        assert m.l2 == 1e-5 and (m.kl_q_weight, m.kl_p_weight) == (0.9, 0.1) and m.allowed_masks == ("full",)
        m2 = model_from_config(kind, m.config())
        m2.load_state_dict(m.state_dict())
        assert m2.name == kind
        guide = {id(p) for p in m.guide_parameters()}
        names = {n for n, p in m.named_parameters() if id(p) in guide}
        assert {n.split(".")[0] for n in names} == ({"encoder", "head_q", "h_enc0", "c_enc0"} if kind == "draw"
                                                     else {"mix_q", "encoder", "head_q"})
    g = build_model("draw", 784, "gregor")
    assert g.steps == 64 and not hasattr(g.write_out, "fc1")  # a plain linear write


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_finetuning_changes_only_the_guide(tmp_path):
    cfg = TrainConfig(model="draw-ext-add", data="sklearn-digits", mask="full", model_options=EXT, updates=4,
                      batch=32, valid_every=4, valid_size=20, ckpt_every=4, log_every=2)
    train(tmp_path / "r", cfg, progress_bar=False)
    before = {w: _digest(tmp_path / "r" / f"{w}.pt") for w in ("best", "last")}
    res = finetune(tmp_path / "r", updates=5, batch=32, eval_n=20, progress_bar=False)
    assert res["updates"] == 5 and {"raw", "finetuned"} <= set(res)
    assert res["images"] == 5 * 32 and res["cpu_s"] > 0  # the fine-tuning's own; below, the training's before it
    assert res["training"]["updates"] == 4 and res["training"]["images_seen"] == 4 * 32
    assert {w: _digest(tmp_path / "r" / f"{w}.pt") for w in ("best", "last")} == before
    raw, _, _ = load_run_model(tmp_path / "r", "best")
    tuned, _, ck = load_run_model(tmp_path / "r", "finetuned")
    assert json.loads(ck["finetune"])["updates"] == 5
    guide = {n for n, p in raw.named_parameters() if id(p) in {id(q) for q in raw.guide_parameters()}}
    a, b = raw.state_dict(), tuned.state_dict()
    changed = {k for k in a if not torch.equal(a[k], b[k])}
    assert changed and changed <= guide
    assert any(k.startswith("encoder") for k in changed) and any(k.startswith("mix_q") for k in changed)
    # trained as `seqimpute train` trains: the same precision for the updates and the scores, metrics logged per
    # step; a second call starts again from the checkpoint and its log replaces the first's
    assert res["precision"] in ("fp32", "bf16")
    again = finetune(tmp_path / "r", updates=4, batch=32, eval_n=20, progress_bar=False, log_every=2, precision="fp32")
    assert again["precision"] == "fp32"
    steps = [json.loads(line)["step"] for line in (tmp_path / "r" / "finetune.jsonl").read_text().splitlines()]
    assert steps == [2, 4]


def test_cli_round_trip_train_eval_sample_finetune(tmp_path, capsys):
    run = str(tmp_path / "run")
    sets = [a for kv in ("enc=8", "dec=8", "write=6", "z=3", "mix=2", "steps=3", "valid_size=20", "valid_every=3")
            for a in ("--set", kv)]
    assert main(["train", "--model", "draw-ext-jump", "--data", "sklearn-digits", "--mask", "full", "--run", run,
                 "--updates", "3", "--batch", "16", "--quiet", *sets]) == 0
    assert main(["eval", run, "--n", "20", "--samples", "4", "--json", str(tmp_path / "e.json"), "--quiet"]) == 0
    res = json.loads((tmp_path / "e.json").read_text())
    assert res["mask"] == "full" and res["paper_unit_factor"] == 1.0
    assert res["iw_nats_per_image"] <= res["bound_nats_per_image"] + 0.05  # the bound's KL is analytic: MC noise
    assert main(["sample", run, "--n", "9", "--out", str(tmp_path / "s.png"), "--steps", "0,1,3"]) == 0
    assert (tmp_path / "s.png").stat().st_size > 0
    assert main(["sample", run, "--n", "4", "--out", str(tmp_path / "t.png"), "--steps", "0,7"]) == 2
    assert main(["finetune", run, "--updates", "2", "--batch", "16", "--n", "20", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "raw" in out and "fine-tuned" in out
    assert load_checkpoint(tmp_path / "run" / "finetuned.pt")["model_name"] == "draw-ext-jump"
    assert main(["eval", run, "--checkpoint", "finetuned", "--n", "10", "--samples", "1", "--quiet"]) == 0
    assert main(["finetune", run]) == 2  # no budget
    assert main(["finetune", run, "--minutes", "0.001", "--clock", "cpu", "--batch", "16", "--n", "10",
                 "--quiet"]) == 0  # a budget of CPU time
    assert json.loads((tmp_path / "run" / "finetune.json").read_text())["clock"] == "cpu"
    # sampling from the trained model uses no encoder
    model, _, _ = load_run_model(run, "last")
    fired = _poison_guide(model)
    assert np.isfinite(sample_prior(model, 4, [model.steps])).all() and not fired
