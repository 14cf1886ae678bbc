"""SharedLinear (nn/shared.py): a weight used at every step gets the gradient plain autograd gives it, formed in one
pass over the steps; and it steps aside (plain F.linear) where deferring would be wrong."""

import pytest
import torch
import torch.nn.functional as F

from seqimpute.models.objectives import training_loss
from seqimpute.models.registry import build_model
from seqimpute.nn import shared
from seqimpute.nn.shared import SharedLinear


def _unrolled(lin, x0, v, steps=4):
    h = x0
    for _ in range(steps):
        h = torch.tanh(lin(h)) @ v
    return h.pow(2).sum()


def _params(dtype=torch.float64):
    g = torch.Generator().manual_seed(0)
    w = torch.randn(5, 4, generator=g, dtype=dtype, requires_grad=True)
    b = torch.randn(5, generator=g, dtype=dtype, requires_grad=True)
    v = torch.randn(5, 4, generator=g, dtype=dtype)
    x0 = torch.randn(3, 4, generator=g, dtype=dtype, requires_grad=True)
    return w, b, v, x0


def test_gradients_equal_plain_autograd_over_steps():
    w, b, v, x0 = _params()
    plain = torch.autograd.grad(_unrolled(lambda h: F.linear(h, w, b), x0, v), [w, b, x0])
    lin = SharedLinear(w, b)
    assert lin.deferred
    ours = torch.autograd.grad(_unrolled(lin, x0, v), [w, b, x0])
    for a, c in zip(plain, ours):
        torch.testing.assert_close(c, a)


def test_gradcheck_and_a_second_backward_starts_afresh():
    w, b, v, x0 = _params()
    assert torch.autograd.gradcheck(lambda w, b, x: _unrolled(SharedLinear(w, b), x, v, steps=2), (w, b, x0))
    lin = SharedLinear(w, b)
    loss = _unrolled(lin, x0, v)
    g1 = torch.autograd.grad(loss, [w], retain_graph=True)[0]
    g2 = torch.autograd.grad(loss, [w])[0]  # the accumulator was handed over and cleared, not doubled
    torch.testing.assert_close(g2, g1)


def test_plain_where_deferring_would_be_wrong():
    w, b, _, x0 = _params(torch.float32)
    with torch.no_grad():
        assert not SharedLinear(w, b).deferred
    assert not SharedLinear(w.detach(), b.detach()).deferred  # frozen layer (fine-tuning q alone)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not SharedLinear(w, b).deferred  # autocast's casts must be in the graph
    lin = SharedLinear(w, b)
    torch.testing.assert_close(lin(x0[None]), F.linear(x0[None], w, b))  # a 3-d input takes the plain path


SMALL = {
    "gpsi-add": {"hidden": 12, "z": 3, "steps": 4},
    "gpsi-jump": {"hidden": 12, "z": 3, "steps": 4},
    "lstm-add": {"hidden": 8, "write": 6, "z": 3, "mix": 3, "steps": 4},
    "lstm-jump": {"hidden": 8, "write": 6, "z": 3, "mix": 3, "steps": 4},
    "draw": {"enc": 8, "dec": 8, "write": 0, "z": 3, "steps": 4},
    "draw-ext-add": {"enc": 8, "dec": 8, "write": 6, "z": 3, "mix": 3, "steps": 4},
    "draw-ext-jump": {"enc": 8, "dec": 8, "write": 6, "z": 3, "mix": 3, "steps": 4},
}


@pytest.mark.parametrize("name", list(SMALL))
def test_model_gradients_equal_the_plain_path(name, monkeypatch):
    def grads():
        torch.manual_seed(0)
        model = build_model(name, 16, "mnist", SMALL[name])
        g = torch.Generator().manual_seed(1)
        x = torch.rand(7, 16, generator=g)
        observed = torch.rand(7, 16, generator=g) > 0.5
        if model.train_mask == "full":
            observed = torch.zeros_like(observed)
        loss, _ = training_loss(model, model.rollout(x, observed, guided=True, generator=g), x, observed)
        loss.backward()
        return {k: p.grad for k, p in model.named_parameters()}

    ours = grads()
    monkeypatch.setitem(shared.DEFER, "on", False)
    plain = grads()
    for k in plain:
        torch.testing.assert_close(ours[k], plain[k], rtol=1e-5, atol=1e-6, msg=k)


def test_a_finished_rollout_frees_its_shared_linear():
    """Reference counting alone frees a SharedLinear once its rollout is done: no reference cycle through the autograd
    graph (its token's node holding it back) that waits for the cyclic collector. Such cycles, one set per rollout,
    made a training process's memory grow by about 1 MB per 1000 updates (benchmarks/soak.py)."""
    import gc
    import weakref

    w, b, v, x0 = _params()
    gc.disable()  # the collector would hide a cycle
    try:
        lin = SharedLinear(w, b)
        _unrolled(lin, x0, v).backward()
        gone = weakref.ref(lin)
        del lin
        assert gone() is None
    finally:
        gc.enable()
    assert w.grad is not None and b.grad is not None
