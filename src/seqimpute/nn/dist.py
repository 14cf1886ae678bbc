"""Likelihoods and KL divergences. Per-element functions; callers sum over the axes they mean."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

PAPER_EPS = 1e-6  # the authors' epsilon inside log(p + eps); it bounds the cost of a confident mistake (~13.8 nats)
LOG_2PI = math.log(2 * math.pi)


def bernoulli_nll(x: torch.Tensor, p: torch.Tensor, eps: float = PAPER_EPS) -> torch.Tensor:
    """The paper's score, elementwise: -[x log(p+eps) + (1-x) log(1-p+eps)], with grey-level targets x in [0,1]."""
    return -(x * torch.log(p + eps) + (1 - x) * torch.log(1 - p + eps))


def bernoulli_nll_logits(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """The same cross-entropy from logits (stable, no epsilon), elementwise: for training."""
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none")


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(x; mean, exp(logvar)), elementwise."""
    return -0.5 * (LOG_2PI + logvar + (x - mean).pow(2) * torch.exp(-logvar))


def gaussian_kl(mu1: torch.Tensor, lv1: torch.Tensor, mu2: torch.Tensor, lv2: torch.Tensor) -> torch.Tensor:
    """KL(N(mu1, e^lv1) || N(mu2, e^lv2)), elementwise (diagonal Gaussians)."""
    return 0.5 * (lv2 - lv1 + torch.exp(lv1 - lv2) + (mu1 - mu2).pow(2) * torch.exp(-lv2) - 1)
