"""Optimiser settings: the paper's exact schedules as named presets, and the default that fits a run's budget.

All use Adam with per-tensor gradient-norm clipping at 10 (docs/PAPER.md §3.6 (optimiser)) and the model's L2
penalty as weight decay 2*l2 (the gradient of l2*||theta||^2).
"""

from __future__ import annotations

import math

import torch

from .errors import SeqImputeError

CLIP_NORM = 10.0
FUSED_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def paper_gpsi(i: int, progress: float) -> tuple[float, float]:
    """docs/PAPER.md §4.2 (GPSI training): 5000-update linear warm-up of lr and beta1; lr 2e-4 x 0.92 every 15k;
    beta1 0.5 -> 0.9."""
    scale = min(1.0, (i + 1) / 5000)
    return scale * 2e-4 * 0.92 ** ((i + 1) // 15000), scale * (0.5 if i <= 10000 else 0.9)


def paper_lstm(i: int, progress: float) -> tuple[float, float]:
    """docs/PAPER.md §5.1 (LSTM training): lr 2e-4 x 0.95 every 10k updates, beta1 0.5 for 10k updates then 0.9,
    no warm-up."""
    return 2e-4 * 0.95 ** (i // 10000), 0.5 if i < 10000 else 0.9


def budget(lr: float = 1e-3, warmup: int = 500, final: float = 0.05):
    """The default: Adam at ``lr`` after a linear warm-up, then a cosine decay to ``final * lr`` at the end of the
    run's budget (updates or minutes), so any budget ends on a low learning rate."""

    def schedule(i: int, progress: float) -> tuple[float, float]:
        warm = min(1.0, max((i + 1) / max(warmup, 1), progress / 0.05))  # short budgets warm up in 5% of it
        cos = final + (1 - final) * 0.5 * (1 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))
        return lr * warm * cos, 0.9

    return schedule


def paper_finetune(i: int, progress: float) -> tuple[float, float]:
    """The authors' fine-tuning of the guide (docs/PAPER.md §6): lr 1e-4 x 0.95 every 2000 updates, beta1 0.9."""
    return 1e-4 * 0.95 ** (i // 2000), 0.9


PAPER = {"gpsi": (paper_gpsi, 0.98, 1e-5), "lstm": (paper_lstm, 0.99, 1e-6), "vae": (paper_gpsi, 0.99, 1e-4),
         "finetune": (paper_finetune, 0.99, 1e-6)}  # fine-tuning: the "lstm" family's Adam quirks


class Optimizer:
    """Adam plus the schedule, clipping and weight decay. ``step(i, progress)`` applies one update."""

    def __init__(self, params, kind: str = "budget", family: str = "gpsi", l2: float = 0.0, lr: float = 1e-3,
                 warmup: int = 500, clip: float = CLIP_NORM, fused: bool = True):
        self.params = [p for p in params if p.requires_grad]
        if kind == "paper":
            if family not in PAPER:
                raise SeqImputeError(f"no paper optimiser settings for {family!r}.")
            self.schedule, beta2, eps = PAPER[family]
        elif kind == "budget":
            self.schedule, beta2, eps = budget(lr, warmup), 0.999, 1e-8
        else:
            raise SeqImputeError(f"unknown optimizer {kind!r}; use budget (default) or paper.")
        self.clip = clip
        self.lr_scale = 1.0  # lowered by the trainer after repeated numerical faults (kept in checkpoints)
        self.skipped = False  # whether the last step() skipped its update (a non-finite gradient)
        # The fused kernel does Adam's elementwise chain in one pass per tensor (CPU and CUDA, float parameters).
        fused = fused and bool(self.params) and all(p.device.type in ("cpu", "cuda") and p.dtype in FUSED_DTYPES
                                                     for p in self.params)
        try:
            self.adam = torch.optim.Adam(self.params, lr=lr, betas=(0.9, beta2), eps=eps, weight_decay=2 * l2,
                                         **({"fused": True} if fused else {}))
        except ValueError as e:  # a negative learning rate or L2 penalty
            raise SeqImputeError(f"bad optimiser setting ({e}); give lr > 0 and l2 >= 0.") from None

    def step(self, i: int, progress: float) -> float:
        """Apply update ``i``; returns the learning rate. A NaN/inf gradient skips the update (``self.skipped``):
        the per-tensor norms the clipping computes anyway are checked with one device sync."""
        lr, beta1 = self.schedule(i, progress)
        lr *= self.lr_scale
        for g in self.adam.param_groups:
            g["lr"], g["betas"] = lr, (beta1, g["betas"][1])
        grads = [p.grad for p in self.params if p.grad is not None]
        if not grads:
            self.skipped = False
            return lr
        norms = torch.stack(torch._foreach_norm(grads))
        if self.clip:  # per-tensor clipping, as the authors' Adam does (clip_grad_norm_'s formula, one tensor each)
            factors = (self.clip / (norms + 1e-6)).clamp_(max=1.0)
            torch._foreach_mul_(grads, list(factors.unbind()))
        self.skipped = not bool(torch.isfinite(norms).all())
        if not self.skipped:
            self.adam.step()
        return lr

    def zero_grad(self):
        self.adam.zero_grad(set_to_none=True)

    def state_dict(self):
        return self.adam.state_dict()

    def load_state_dict(self, state):
        self.adam.load_state_dict(state)
