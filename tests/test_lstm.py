"""LSTM-add / LSTM-jump and the peephole LSTM cell: the cell's equations and fused paths, the rollout's shapes and
KL rows, gradients, the guide's isolation in unguided rollouts, jump's reading of the writer's cell state, the
authors' init-KL bug flag, the registry, and exact resume through the shared trainer."""

import importlib.util
import math
from pathlib import Path

import pytest
import torch

from seqimpute import load_dataset
from seqimpute.evaluate import evaluate
from seqimpute.models.lstm import LSTMImputer
from seqimpute.models.policy import composite
from seqimpute.models.objectives import training_loss
from seqimpute.models.registry import build_model, model_from_config, spec
from seqimpute.nn.dist import gaussian_kl, gaussian_log_prob
from seqimpute.nn.lstm import PeepholeLSTMCell, gate_function, peephole_gates
from seqimpute.runs import load_checkpoint, load_run_model
from seqimpute.train import TrainConfig, train

_SPEC = importlib.util.spec_from_file_location(
    "lstm_cell_speed", Path(__file__).resolve().parents[1] / "benchmarks" / "lstm_cell_speed.py")
_BENCH = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(_BENCH)
TextbookLSTM = _BENCH.TextbookLSTM  # the readers and writer as textbook cells (PeepholeLSTMCell.forward)

D = 16
SMALL = {"hidden": 6, "write": 5, "z": 3, "mix": 2, "steps": 3}


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one thread avoids OpenMP contention when the machine is busy (values are unaffected)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny(step_type="add", perturb=0.3, **kw):
    """A tiny model; ``perturb`` adds N(0, perturb^2) to every parameter so the dynamics are far from the
    near-zero initialisation and differences are visible."""
    torch.manual_seed(0)
    m = LSTMImputer(D, **{**SMALL, **kw}, step_type=step_type)
    if perturb:
        with torch.no_grad():
            for p in m.parameters():
                p.add_(perturb * torch.randn_like(p))
    return m


def batch(b=5, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, D, generator=g), torch.rand(b, D, generator=g) > 0.5


def gen(seed=7):
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------------------------------- the cell


def test_cell_initialisation_and_fixed_gate_biases():
    torch.manual_seed(0)
    cell = PeepholeLSTMCell(200, 100)
    names = {n for n, _ in cell.named_parameters()}
    assert names == {"inp.weight", "inp.bias", "weight_hh", "p_i", "p_f", "p_o"}  # the +2 biases are not trained
    assert cell.inp.weight.shape == (400, 200) and cell.weight_hh.shape == (400, 100)
    assert torch.equal(cell.inp.bias, torch.zeros(400))
    for w in (cell.inp.weight, cell.weight_hh):
        assert abs(w.std().item() - 0.01) < 0.001 and abs(w.mean().item()) < 0.001


def test_cell_follows_the_peephole_equations():
    torch.manual_seed(0)
    cell = PeepholeLSTMCell(7, 4)
    with torch.no_grad():
        for p in cell.parameters():
            p.normal_(0, 0.5)
    u, h, c = torch.randn(3, 7), torch.randn(3, 4), torch.randn(3, 4)
    a = u @ cell.inp.weight.T + cell.inp.bias + h @ cell.weight_hh.T
    ai, af, ag, ao = a[:, :4], a[:, 4:8], a[:, 8:12], a[:, 12:]
    i = torch.sigmoid(ai + cell.p_i * c + 2)
    f = torch.sigmoid(af + cell.p_f * c + 2)
    c_new = f * c + i * torch.tanh(ag)
    o = torch.sigmoid(ao + cell.p_o * c_new)  # the output peephole reads the new cell state
    h_new = o * torch.tanh(c_new)
    h1, c1 = cell(u, (h, c))
    torch.testing.assert_close(h1, h_new)
    torch.testing.assert_close(c1, c_new)
    w, b = cell.stacked()  # the one-GEMM form over [u, h]
    h2, c2 = cell.gates(torch.cat([u, h], 1) @ w.T + b, c)
    torch.testing.assert_close(h2, h1)
    torch.testing.assert_close(c2, c1)


def test_fused_gates_equal_the_plain_gates():
    torch.manual_seed(0)
    B, H = 4, 5
    leaves = [torch.randn(B, 4 * H), torch.randn(B, H), torch.randn(H), torch.randn(H), torch.randn(H)]
    w_h, w_c = torch.randn(B, H), torch.randn(B, H)
    outs, grads = [], []
    for fn in (peephole_gates, gate_function("compile")):
        xs = [t.clone().requires_grad_() for t in leaves]
        h, c = fn(*xs, 2.0)
        ((h * w_h).sum() + (c * w_c).sum()).backward()
        outs.append((h.detach(), c.detach()))
        grads.append([t.grad for t in xs])
    for a, b in zip(outs[0], outs[1]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    for a, b in zip(grads[0], grads[1]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_unknown_fused_path_or_layout_is_a_clear_error():
    from seqimpute import SeqImputeError

    with pytest.raises(SeqImputeError, match="fused"):
        LSTMImputer(D, **SMALL, fused="fast")
    with pytest.raises(SeqImputeError, match="layout"):
        LSTMImputer(D, **SMALL, layout="best")


# ---------------------------------------------------------------------------------------------------- the rollout


@pytest.mark.parametrize("step_type", ["add", "jump"])
def test_the_folded_rollout_computes_the_textbook_cells_rollout(step_type):
    m = tiny(step_type)
    x, obs = batch()
    ref = None
    for cls in (TextbookLSTM, LSTMImputer):  # the same parameters, read by the textbook cells, then folded
        m.__class__ = cls
        r = m.rollout(x, obs, guided=True, generator=gen())
        loss, _ = training_loss(m, r, x, obs)
        m.zero_grad()
        loss.backward()
        out = [r.final.detach(), r.kl_qp.detach(), r.kl_pq.detach(), r.log_ratio.detach()]
        out += [p.grad.clone() for p in m.parameters()]
        u = m.rollout(x, obs, guided=False, generator=gen()).final.detach()
        if ref is None:
            ref = out + [u]
            continue
        for a, b in zip(out + [u], ref):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_rollout_shapes_guided_and_unguided():
    m = tiny()
    x, obs = batch(b=5)
    r = m.rollout(x, obs, guided=True, generator=gen())
    T = SMALL["steps"]
    assert r.guided and len(r.canvases) == T + 1 and all(c.shape == (5, D) for c in r.canvases)
    assert r.kl_qp.shape == (T + 1, 5) and r.kl_pq.shape == (T + 1, 5)  # the mixture init is row 0
    assert r.log_ratio.shape == (5,)
    assert (r.kl_qp >= 0).all() and (r.kl_pq >= 0).all()
    u = m.rollout(x, obs, guided=False, generator=gen())
    assert not u.guided and len(u.canvases) == T + 1 and u.kl_qp is None and u.kl_pq is None and u.log_ratio is None
    r5 = m.rollout(x, obs, guided=True, steps=5, generator=gen())
    assert len(r5.canvases) == 6 and r5.kl_qp.shape == (6, 5)
    assert torch.equal(r.canvases[0], m.c0.expand(5, D))


def test_rollouts_are_repeatable_from_the_generator():
    m = tiny()
    x, obs = batch()
    a = m.rollout(x, obs, guided=True, generator=gen(3))
    b = m.rollout(x, obs, guided=True, generator=gen(3))
    c = m.rollout(x, obs, guided=True, generator=gen(4))
    assert torch.equal(a.final, b.final) and not torch.equal(a.final, c.final)


@pytest.mark.parametrize("step_type", ["add", "jump"])
def test_gradients_reach_all_three_lstms_the_mixture_nets_and_c0(step_type):
    m = tiny(step_type, perturb=0.0)  # the authors' initialisation
    x, obs = batch()
    r = m.rollout(x, obs, guided=True, generator=gen())
    loss, _ = training_loss(m, r, x, obs)
    loss.backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    for part in ("reader_p", "reader_q", "writer", "mix_q", "mix_p", "mix_dec", "head_p", "head_q", "write_out"):
        assert any(n.startswith(part + ".") for n, _ in m.named_parameters()), part
    assert m.c0.grad.abs().sum() > 0


def test_unguided_rollouts_never_run_the_guide():
    m = tiny()
    x, obs = batch()
    clean = m.rollout(x, obs, guided=False, generator=gen()).canvases
    calls = []
    hooks = [mod.register_forward_hook(lambda *a: calls.append(1)) for mod in (m.reader_q, m.head_q, m.mix_q)]
    with torch.no_grad():  # poison the guide: its reader, head, q(z0|x) and the guide's rows of the state decoder
        for mod in (m.reader_q, m.head_q, m.mix_q):
            for p in mod.parameters():
                p.fill_(float("nan"))
        m.mix_dec.fc2.weight[4 * m.hidden :] = float("nan")
        m.mix_dec.fc2.bias[4 * m.hidden :] = float("nan")
    for cls in (TextbookLSTM, LSTMImputer):
        m.__class__ = cls
        u = m.rollout(x, obs, guided=False, generator=gen())
        for a, b in zip(u.canvases, clean):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert not calls
    g = m.rollout(x, obs, guided=True, generator=gen())
    assert torch.isnan(g.final).all()  # the poison is live for a guided rollout
    for h in hooks:
        h.remove()


def test_unguided_rollouts_do_not_see_the_missing_values():
    m = tiny()
    x, obs = batch()
    x2 = torch.where(obs, x, 1 - x)
    a = m.rollout(x, obs, guided=False, generator=gen()).final
    b = m.rollout(x2, obs, guided=False, generator=gen()).final
    assert torch.equal(a, b)
    assert not torch.equal(m.rollout(x, obs, generator=gen()).final, m.rollout(x2, obs, generator=gen()).final)


def _perturb_writer_output_gate(m):
    H = m.hidden
    with torch.no_grad():
        m.writer.inp.weight[3 * H :] += 1.0
        m.writer.inp.bias[3 * H :] -= 1.0
        m.writer.weight_hh[3 * H :] += 1.0
        m.writer.p_o += 1.0


@pytest.mark.parametrize("guided", [True, False])
def test_jump_writes_from_the_writers_cell_state_and_add_from_its_output(guided):
    x, obs = batch()
    for step_type in ("add", "jump"):
        m = tiny(step_type)
        before = m.rollout(x, obs, guided=guided, steps=1, generator=gen()).canvases[1]
        _perturb_writer_output_gate(m)
        after = m.rollout(x, obs, guided=guided, steps=1, generator=gen()).canvases[1]
        if step_type == "jump":
            assert torch.equal(before, after)  # c_1 = Wout(cW_1): the output gate plays no part
        else:
            assert not torch.allclose(before, after)  # c_1 = c_0 + Wout(o * tanh(cW_1))


def test_jumps_first_guess_comes_from_the_writers_initial_cell_not_from_c0():
    """Guided, z0 ~ q(z0|x) does not read c0, and jump's step-1 guess is sigmoid(Wout(cW_0)), so c_1 is
    independent of c0 (which still enters p(z0|x~0) and hence the KL); add's c_1 = c0 + ... is not."""
    x, obs = batch()
    for step_type in ("add", "jump"):
        m = tiny(step_type)
        a = m.rollout(x, obs, steps=1, generator=gen())
        with torch.no_grad():
            m.c0 += 1.0
        b = m.rollout(x, obs, steps=1, generator=gen())
        assert not torch.equal(a.kl_qp[0], b.kl_qp[0])
        assert torch.equal(a.canvases[1], b.canvases[1]) == (step_type == "jump")


@pytest.mark.parametrize("step_type", ["add", "jump"])
def test_init_step_kl_terms_and_the_authors_zero_kl_pq_bug_flag(step_type):
    x, obs = batch()
    right = tiny(step_type)
    bugged = tiny(step_type, authors_zero_init_kl_pq=True)
    r, rb = right.rollout(x, obs, generator=gen()), bugged.rollout(x, obs, generator=gen())
    with torch.no_grad():
        mu_p, lv_p = right.mix_p(composite(x, obs, torch.sigmoid(right.c0).expand_as(x)))
        mu_q, lv_q = right.mix_q(x)
    torch.testing.assert_close(r.kl_qp[0], gaussian_kl(mu_q, lv_q, mu_p, lv_p).sum(-1))
    torch.testing.assert_close(r.kl_pq[0], gaussian_kl(mu_p, lv_p, mu_q, lv_q).sum(-1))
    assert (r.kl_pq[0] > 0).all()
    assert torch.equal(rb.kl_pq[0], torch.zeros(len(x)))  # KL(p0 || p0)
    assert torch.equal(rb.kl_pq[1:], r.kl_pq[1:]) and torch.equal(rb.kl_qp, r.kl_qp)
    assert torch.equal(rb.final, r.final)
    assert bugged.config()["authors_zero_init_kl_pq"] is True and right.config()["authors_zero_init_kl_pq"] is False


def test_log_ratio_includes_the_mixture_init_step():
    m = tiny()
    x, obs = batch()
    r = m.rollout(x, obs, steps=0, generator=gen())
    assert len(r.canvases) == 1 and r.kl_qp.shape == (1, len(x))
    with torch.no_grad():
        mu_p, lv_p = m.mix_p(composite(x, obs, torch.sigmoid(m.c0).expand_as(x)))
        mu_q, lv_q = m.mix_q(x)
    z0 = mu_q + torch.exp(0.5 * lv_q) * torch.randn(mu_q.shape, generator=gen())
    expect = (gaussian_log_prob(z0, mu_p, lv_p) - gaussian_log_prob(z0, mu_q, lv_q)).sum(-1)
    torch.testing.assert_close(r.log_ratio, expect, rtol=1e-4, atol=1e-4)
    full = m.rollout(x, obs, generator=gen())
    assert not torch.allclose(full.log_ratio, r.log_ratio)  # the steps add their own terms


# --------------------------------------------------------------------------------------------- registry, training


def test_registry_presets_and_config_round_trip():
    for name, step_type in (("lstm-add", "add"), ("lstm-jump", "jump")):
        assert spec(name).family == "lstm"
        assert {"hidden", "write", "z", "mix", "steps", "authors_zero_init_kl_pq"} <= spec(name).option_names()
        m = build_model(name, 784, "mnist")
        assert (m.hidden, m.write, m.z, m.mix, m.steps, m.step_type) == (300, 300, 100, 20, 16, step_type)
        assert (m.kl_q_weight, m.kl_p_weight, m.l2) == (0.9, 0.1, 1e-5)
        assert m.reader_p.n_in == 2 * 784 + 300 and m.writer.n_in == 100 and m.mix_dec.fc2.out_features == 6 * 300
        m2 = model_from_config(name, m.config())
        m2.load_state_dict(m.state_dict())
    t = build_model("lstm-jump", 48 * 48, "tfd", {"steps": 4})
    assert (t.hidden, t.write, t.z, t.mix, t.steps) == (600, 600, 200, 20, 4)


def test_resume_gives_the_same_parameters_and_eval_has_t_plus_1_steps(tmp_path):
    def cfg():
        return TrainConfig(model="lstm-add", data="sklearn-digits", mask="mcar:0.7", model_options=SMALL,
                           updates=8, batch=32, valid_every=5, valid_size=40, ckpt_every=3, log_every=4)

    train(tmp_path / "a", cfg(), progress_bar=False, quiet=True)
    train(tmp_path / "b", cfg(), progress_bar=False, quiet=True, session_updates=4)  # stopped after 4 updates
    assert load_checkpoint(tmp_path / "b" / "last.pt")["step"] == 4
    train(tmp_path / "b", None, progress_bar=False, quiet=True)  # resumed from the folder alone
    (ma, _, _), (mb, _, _) = load_run_model(tmp_path / "a", "last"), load_run_model(tmp_path / "b", "last")
    pa, pb = ma.state_dict(), mb.state_dict()
    assert pa.keys() == pb.keys()
    for k in pa:
        assert torch.equal(pa[k], pb[k]), k
    res = evaluate(ma, load_dataset("sklearn-digits", "valid"), "mcar:0.7", samples=2, n=20)
    T = SMALL["steps"]
    assert len(res["per_step_guided_nll_paper_units"]) == T + 1
    assert len(res["per_step_unguided_nll_paper_units"]) == T + 1


def test_closed_loop_mcar100_trains_scores_and_finetunes_only_q(tmp_path):
    """The paper's closed-loop case: an LSTM imputer with every value missing (mask full) is a generative model;
    its bound is in nats per image (D/|U| = 1), and fine-tuning moves q's parameters alone."""
    from seqimpute.finetune import finetune

    cfg = TrainConfig(model="lstm-add", data="sklearn-digits", mask="full", model_options=SMALL, updates=4, batch=32,
                      valid_every=4, valid_size=20, ckpt_every=4, log_every=2)
    train(tmp_path / "r", cfg, progress_bar=False)
    model, _, _ = load_run_model(tmp_path / "r", "best")
    res = evaluate(model, load_dataset("sklearn-digits", "test"), "full", samples=4, n=20)
    assert res["paper_unit_factor"] == 1.0 and res["bound_paper_units"] == pytest.approx(res["bound_nats_per_image"])
    assert math.isfinite(res["iw_nats_per_image"])
    finetune(tmp_path / "r", updates=3, batch=16, eval_n=10, progress_bar=False)
    tuned, _, _ = load_run_model(tmp_path / "r", "finetuned")
    guide = {n for n, p in model.named_parameters() if id(p) in {id(q) for q in model.guide_parameters()}}
    a, b = model.state_dict(), tuned.state_dict()
    changed = {k for k in a if not torch.equal(a[k], b[k])}
    assert changed and changed <= guide and any(k.startswith("reader_q") for k in changed)
