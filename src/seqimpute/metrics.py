"""Scores in the units people compare: the paper's (x D/|U|), nats and bits per imputed value, MSE and PSNR."""

from __future__ import annotations

import math

import torch


def nats_per_value(total_nats: float, n_imputed: float) -> float:
    """Total nats over all imputed values / their number."""
    return float(total_nats) / max(float(n_imputed), 1.0)


def paper_units(mean_score_per_image: float, dim: int, mean_imputed_per_image: float) -> float:
    """The paper's normalisation (docs/PAPER.md §10 (paper units)): a per-image score times D/|U|. Over a set of
    images we use
    D * (total nats) / (total imputed values), which is the same for fixed-size holes and, for MCAR, divides by
    the realised missing fraction."""
    return float(mean_score_per_image) * dim / max(float(mean_imputed_per_image), 1e-12)


def bits(nats: float) -> float:
    return float(nats) / math.log(2)


def mse(x: torch.Tensor, imputed: torch.Tensor, missing: torch.Tensor) -> float:
    """Mean squared error over the missing entries only."""
    m = missing.to(x.dtype)
    return float(((imputed - x).pow(2) * m).sum() / m.sum().clamp_min(1))


def psnr(mse_value: float, peak: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB for data in [0, peak]."""
    return float("inf") if mse_value <= 0 else 10 * math.log10(peak * peak / mse_value)
