"""Scores in the units people compare: the paper's (x D/|U|), bits per imputed value, PSNR."""

from __future__ import annotations

import math


def paper_units(nats: float, dim: int, n_imputed: float) -> float:
    """The paper's normalisation (docs/PAPER.md §10, paper units): a score in nats times D/|U|, D the values per
    image and |U| the imputed (missing) ones. Over a set of images: D * (total nats) / (total imputed values), which
    is the per-image mean times D / (mean |U|): the paper's factor for fixed-size holes, and for MCAR a division by
    the realised missing fraction. The one conversion every score in paper units goes through."""
    return float(nats) * dim / max(float(n_imputed), 1e-12)


def bits(nats: float) -> float:
    return float(nats) / math.log(2)


def psnr(mse_value: float, peak: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB for data in [0, peak]."""
    return float("inf") if mse_value <= 0 else 10 * math.log10(peak * peak / mse_value)
