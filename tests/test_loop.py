"""The shared training step and loop (seqimpute.loop): one clipped Adam update by hand, faults skipped, budgets,
and a restore's replay, each against values worked out directly."""

import itertools

import pytest
import torch

from seqimpute.loop import Budget, train_loop, train_step
from seqimpute.optim import Optimizer


def one_parameter(value=1.0):
    p = torch.nn.Parameter(torch.tensor([value]))
    return p, Optimizer([p], "budget", lr=1e-3, warmup=1)


def test_a_step_is_one_clipped_adam_update():
    """Gradient 50 is clipped to norm 10; Adam's first step is then lr * g / (|g| + eps) with lr 1e-3 (warm-up of
    one update, the cosine at progress 0)."""
    p, opt = one_parameter()
    res = train_step(lambda x: ((p * x).sum(), {}), opt, (torch.tensor([50.0]),), 0, 0.0)
    assert res.ok and res.fault is None and res.lr == pytest.approx(1e-3, rel=1e-12)
    assert float(res.loss) == 50.0 and not res.loss.requires_grad
    assert float(p.detach()) == pytest.approx(1.0 - 1e-3 * 10 / (10 + 1e-8), rel=1e-7)


def test_a_non_finite_loss_skips_the_update_without_a_backward_pass():
    p, opt = one_parameter()
    res = train_step(lambda: (p.sum() * float("nan"), {}), opt, (), 0, 0.0)
    assert res.fault == "loss" and not res.ok and res.lr is None
    assert p.grad is None and float(p.detach()) == 1.0


def test_a_non_finite_gradient_skips_the_update():
    """d sqrt(u)/du at u = 0 is inf, times du/dp = 0: a finite loss with a NaN gradient."""
    p, opt = one_parameter()
    res = train_step(lambda: (p.sum() + torch.sqrt(0.0 * p.sum()), {}), opt, (), 0, 0.0)
    assert res.fault == "gradient" and res.lr is not None and float(p.detach()) == 1.0


def test_budget_stops_and_progress():
    b = Budget(updates=10)
    b.start(0)
    assert b.progress(3) == 0.3 and b.stopped_by(9) is None and b.stopped_by(10) == "updates"
    ticks = itertools.count(0.0, 30.0)  # each read of the clock: 30 s later
    b = Budget(updates=100, minutes=2.0, clock=lambda: next(ticks))
    b.start(0)
    b.tick()
    assert b.elapsed == 30.0 and b.progress(1) == 0.25  # the larger share: 30 s of 120 against 1 of 100 updates
    b.by_updates = True
    assert b.progress(1) == 0.01  # the updates' share alone
    b.tick(), b.tick(), b.tick()
    assert b.elapsed == 120.0 and b.stopped_by(4) == "minutes"
    b = Budget(updates=100, session=2, elapsed=50.0, clock=lambda: 7.0)
    b.start(5)
    b.tick()
    assert b.elapsed == 50.0 and b.stopped_by(6) is None and b.stopped_by(7) == "session"


def test_the_loop_replays_from_the_step_a_fault_handler_returns():
    """Call 2 (update 3) faults and the handler goes back to step 1: updates 2 and 3 run again, 6 calls for 4."""
    p, opt = one_parameter()
    calls, after, faults = [], [], []

    def objective(i):
        calls.append(i)
        loss = p.sum()
        return (loss * float("nan") if len(calls) == 3 else loss), {}

    def on_fault(step, res):
        faults.append((step, res.fault))
        return 1

    end = train_loop(opt, lambda step: (step,), objective, Budget(updates=4), on_fault=on_fault,
                     after=lambda step, res: after.append(step))
    assert end == 4 and calls == [0, 1, 2, 1, 2, 3] and faults == [(2, "loss")] and after == [1, 2, 2, 3, 4]
