"""GPSI-add/jump and the shared rollout: gradients, shapes, guide isolation, add vs jump, bound vs IW."""


import pytest
import torch
import torch.nn.functional as F

from seqimpute.models.gpsi import GPSI
from seqimpute.models.policy import latent_step
from seqimpute.models.objectives import bound, missing_nll, training_loss
from seqimpute.nn.dist import bernoulli_nll, gaussian_kl
from seqimpute.nn.layers import FancyLinear
from seqimpute.optim import paper_gpsi, paper_lstm


def tiny(step_type="add", steps=3, dim=16):
    torch.manual_seed(0)
    return GPSI(dim, hidden=24, z=5, steps=steps, step_type=step_type)


def batch(n=8, dim=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, dim, generator=g)
    observed = torch.rand(n, dim, generator=g) > 0.5
    return x, observed


def test_fancy_linear_fold_equals_explicit_form():
    torch.manual_seed(0)
    layer = FancyLinear(7, 5)
    with torch.no_grad():
        layer.in_scale.normal_()
        layer.in_shift.normal_()
        layer.bias.normal_()
    u = torch.randn(4, 7)
    explicit = F.linear(F.softplus(layer.in_scale) * (u + layer.in_shift), layer.weight, layer.bias)
    torch.testing.assert_close(layer(u), explicit)


def test_initialisation_follows_the_authors():
    m = tiny()
    torch.testing.assert_close(F.softplus(m.p.fc1.in_scale), torch.ones(16), atol=1e-5, rtol=0)
    assert torch.all(m.p.logvar.weight == 0) and torch.all(m.c0 == 0)
    assert abs(float(m.p.fc1.bias.detach().mean()) - 0.2) < 0.02  # hidden biases 0.2 + 0.01 N(0,1)
    w = m.p.fc2.weight
    torch.testing.assert_close(w @ w.T, torch.eye(24), atol=1e-4, rtol=0)  # orthogonal


@pytest.mark.parametrize("step_type", ["add", "jump"])
def test_gradients_reach_primary_guide_writer_and_c0(step_type):
    m = tiny(step_type)
    x, observed = batch()
    r = m.rollout(x, observed, guided=True, generator=torch.Generator().manual_seed(0))
    loss, _ = training_loss(m, r, x, observed)
    loss.backward()
    for name in ("p.fc1.weight", "p.mean.weight", "q.fc1.weight", "q.logvar.weight", "writer.out.weight",
                 "writer.fc1.in_scale"):
        grad = dict(m.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name
    if step_type == "add":  # jump overwrites the canvas: c0 reaches the loss only through the first composite
        assert m.c0.grad.abs().sum() > 0


def test_rollout_shapes_guided_and_unguided():
    m = tiny(steps=4)
    x, observed = batch()
    g = m.rollout(x, observed, guided=True)
    assert len(g.canvases) == 5 and all(c.shape == x.shape for c in g.canvases)
    assert g.kl_qp.shape == (4, 8) and g.kl_pq.shape == (4, 8) and g.log_ratio.shape == (8,)
    u = m.rollout(x, observed, guided=False, steps=2)
    assert len(u.canvases) == 3 and u.kl_qp is None and not u.guided


def test_unguided_rollout_never_uses_the_guide_nor_the_missing_values():
    m = tiny()
    x, observed = batch()
    ref = m.rollout(x, observed, guided=False, generator=torch.Generator().manual_seed(3)).final
    with torch.no_grad():
        for p in m.q.parameters():
            p.fill_(float("nan"))
    x2 = torch.where(observed, x, torch.rand_like(x))  # change only the values the primary must not see
    out = m.rollout(x2, observed, guided=False, generator=torch.Generator().manual_seed(3)).final
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, ref)


def test_guided_rollout_does_see_the_missing_values():
    m = tiny()
    x, observed = batch()
    a = m.rollout(x, observed, guided=True, generator=torch.Generator().manual_seed(3)).final
    x2 = torch.where(observed, x, 1 - x)
    b = m.rollout(x2, observed, guided=True, generator=torch.Generator().manual_seed(3)).final
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("step_type", ["add", "jump"])
def test_add_accumulates_and_jump_replaces(step_type):
    m = tiny(step_type, steps=3)
    deltas = []
    m.writer.register_forward_hook(lambda mod, inp, out: deltas.append(out.detach()))
    x, observed = batch()
    r = m.rollout(x, observed, guided=True)
    assert len(deltas) == 3
    if step_type == "add":
        torch.testing.assert_close(r.final, m.c0.detach() + sum(deltas), atol=1e-5, rtol=1e-5)
    else:
        torch.testing.assert_close(r.final, deltas[-1])


def test_latent_step_terms_match_closed_forms():
    g = torch.Generator().manual_seed(0)
    mu_p, lv_p, mu_q, lv_q = (torch.randn(6, 4, generator=g) for _ in range(4))
    z, kqp, kpq, log_ratio = latent_step(mu_p, lv_p, mu_q, lv_q, True, torch.Generator().manual_seed(1))
    torch.testing.assert_close(kqp, gaussian_kl(mu_q, lv_q, mu_p, lv_p).sum(-1))
    torch.testing.assert_close(kpq, gaussian_kl(mu_p, lv_p, mu_q, lv_q).sum(-1))
    p = torch.distributions.Normal(mu_p, torch.exp(0.5 * lv_p))
    q = torch.distributions.Normal(mu_q, torch.exp(0.5 * lv_q))
    torch.testing.assert_close(log_ratio, (p.log_prob(z) - q.log_prob(z)).sum(-1), atol=1e-4, rtol=1e-4)


def test_bound_is_nll_of_final_canvas_plus_kl():
    m = tiny()
    x, observed = batch()
    r = m.rollout(x, observed, guided=True)
    direct = (bernoulli_nll(x, torch.sigmoid(r.final)) * (~observed)).sum(-1) + r.kl_qp.sum(0)
    torch.testing.assert_close(bound(r, x, observed), direct)
    # the training form (logits, no epsilon) agrees with the reported form for moderate logits
    torch.testing.assert_close(missing_nll(x, r.final, observed, paper=False), missing_nll(x, r.final, observed),
                               atol=1e-2, rtol=1e-4)


def test_bad_input_shape_is_a_clear_error():
    from seqimpute import SeqImputeError

    m = tiny()
    with pytest.raises(SeqImputeError, match="built for 16 values"):
        m.rollout(torch.rand(2, 9), torch.ones(2, 9, dtype=torch.bool))
    with pytest.raises(SeqImputeError, match="bool"):
        m.rollout(torch.rand(2, 16), torch.ones(2, 16))


def test_paper_schedules():
    lr, b1 = paper_gpsi(0, 0)
    assert lr == pytest.approx(2e-4 / 5000) and b1 == pytest.approx(0.5 / 5000)
    assert paper_gpsi(4999, 0) == pytest.approx((2e-4, 0.5))
    assert paper_gpsi(14999, 0) == pytest.approx((2e-4 * 0.92, 0.9))
    assert paper_lstm(9999, 0) == pytest.approx((2e-4, 0.5))
    assert paper_lstm(10000, 0) == pytest.approx((2e-4 * 0.95, 0.9))
