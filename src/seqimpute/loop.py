"""The one training step and the one loop around it.

`seqimpute train`, `SequentialImputer.fit` and `seqimpute finetune` all train with `train_loop`; they differ only
in what they pass: an optimiser over the parameters to train, a batch source, the objective, a `Budget`, and
callbacks for faults and for what follows an update (logging, validation, checkpoints). The step is `train_step`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from .nn.noise import NoiseRecorder, NoiseTape, normal_noise
from .optim import Optimizer

# What a minutes budget counts. "cpu": the process's CPU time over all its threads, so on a shared machine a
# budget buys the same work however busy the other cores are (with one thread it is the single core's time).
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


class BatchOrder:
    """Epoch-wise shuffles derived from (seed, epoch) alone, so batch i is the same whether or not the run resumed."""

    def __init__(self, n: int, batch: int, seed: int):
        self.n, self.batch, self.seed = n, min(batch, n), seed
        self.per_epoch = max(n // self.batch, 1)
        self._epoch, self._perm = -1, None

    def indices(self, step: int) -> torch.Tensor:
        epoch, pos = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._epoch, self._perm = epoch, torch.randperm(self.n, generator=g)
        return self._perm[pos * self.batch : (pos + 1) * self.batch]


@dataclass
class Budget:
    """When training stops (``updates`` in all, ``minutes`` of ``clock``, or ``session`` updates in this call), and
    how far along it is: the learning-rate schedule's progress."""

    updates: int | None = None
    minutes: float | None = None
    clock: Callable[[], float] = time.perf_counter
    session: int | None = None  # stop this call after this many updates (a resumed run continues as if never cut)
    by_updates: bool = False  # progress: the updates' share alone when there is an updates budget (repeatable fits)
    elapsed: float = 0.0  # seconds counted, a resumed run's earlier sessions included
    agree: Callable[[float], float] = lambda t: t  # several processes: rank 0's count of the seconds, on every rank
    halted: str | None = None  # set by a callback to end training now, naming why (e.g. "early_stopping")
    t0: float = field(default=0.0, repr=False)  # the clock at start()
    _from: tuple = field(default=(0, 0.0), repr=False)  # the step and the seconds counted at start()

    def start(self, step: int) -> None:
        self._from, self.t0 = (step, self.elapsed), self.clock()

    def tick(self) -> None:
        """Count the time up to now (one clock read per update)."""
        self.elapsed = self.agree(self._from[1] + self.clock() - self.t0)

    def stopped_by(self, step: int) -> str | None:
        if self.halted is not None:
            return self.halted
        if self.updates is not None and step >= self.updates:
            return "updates"
        if self.minutes is not None and self.elapsed >= self.minutes * 60:
            return "minutes"
        if self.session is not None and step - self._from[0] >= self.session:
            return "session"
        return None

    def done(self, step: int) -> bool:
        return self.stopped_by(step) is not None

    def progress(self, step: int) -> float:
        if self.by_updates and self.updates is not None:
            return step / self.updates
        p = 0.0
        if self.updates:
            p = max(p, step / self.updates)
        if self.minutes:
            p = max(p, self.elapsed / (self.minutes * 60))
        return p


@dataclass
class StepResult:
    loss: torch.Tensor  # detached
    stats: dict  # the objective's other terms
    lr: float | None  # the rate the optimiser was given (None: the loss was not finite, no step was tried)
    fault: str | None  # None, or what was not finite ("loss" or "gradient"): the update was skipped

    @property
    def ok(self) -> bool:
        return self.fault is None


def train_step(objective: Callable, opt: Optimizer, batch: tuple, i: int, progress: float,
               world: int = 1) -> StepResult:
    """Update ``i``: the loss ``objective(*batch)``, its gradients, and the optimiser's step, which clips each
    tensor's gradient (docs/PAPER.md §3.6 (optimiser)) and skips a non-finite one. A numerical fault skips the
    update rather than poison the parameters."""
    loss, stats = objective(*batch)
    opt.zero_grad()
    fault = None if bool(torch.isfinite(loss)) else "loss"
    if fault is None or world > 1:  # every rank must join the gradient all-reduce, whatever its loss
        loss.backward()
    if world > 1:  # a fault on any rank reaches every rank's averaged gradients: all skip the update
        finite = all(bool(torch.isfinite(p.grad).all()) for p in opt.params if p.grad is not None)
        fault = None if finite else "loss"
    lr = None
    if fault is None:
        lr = opt.step(i, progress)
        fault = "gradient" if opt.skipped else None
    return StepResult(loss.detach(), stats, lr, fault)


def train_loop(opt: Optimizer, batches: Callable[[int], tuple], objective: Callable, budget: Budget, step: int = 0,
               world: int = 1, on_fault: Callable | None = None, after: Callable | None = None, bar=None) -> int:
    """Updates from ``step`` until ``budget`` stops them; returns the step reached. ``batches(i)`` draws update i's
    batch (before the objective draws its noise). ``on_fault(i, result)`` may return a step to go back to (a
    restore); otherwise a skipped update counts as an update. ``after(step, result)`` follows every update."""
    budget.start(step)
    while not budget.done(step):
        res = train_step(objective, opt, batches(step), step, budget.progress(step), world)
        if not res.ok and on_fault is not None:
            back = on_fault(step, res)
            if back is not None:
                step = back
                continue
        step += 1
        budget.tick()
        if bar is not None:
            bar.update(1)
        if after is not None:
            after(step, res)
    return step


class WholeStep:
    """``objective(x, observed, generator, *rest)`` (the guided loss; ``rest``: e.g. the trainer's ``known`` mask)
    run as one torch.compile graph (the trainer's ``--set compile=true``). A graph cannot hold a torch.Generator, so
    the first call per input shape runs eagerly and records the noise the rollout draws; later calls draw that noise
    eagerly from the caller's generator, in the same order, and hand it to the graph on a `NoiseTape`: the random
    stream, and hence the results, are those of the plain path (to float rounding). The first compiled call takes tens of seconds (once per process)."""

    def __init__(self, objective):
        self.objective = objective
        self.compiled = torch.compile(objective, dynamic=False)
        self.draws: dict = {}  # input shape -> the (shape, device, dtype) of every draw of one step

    def __call__(self, x, observed, generator, *rest):
        key = tuple(x.shape)
        if key not in self.draws:
            rec = NoiseRecorder(generator)
            out = self.objective(x, observed, rec, *rest)
            self.draws[key] = rec.draws
            return out
        tape = NoiseTape([normal_noise(s, generator, d, t) for s, d, t in self.draws[key]])
        return self.compiled(x, observed, tape, *rest)
