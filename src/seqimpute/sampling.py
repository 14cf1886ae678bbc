"""Sampling a trained model: many imputations (the composite after every refinement step, for every sample) and,
for the generative models, samples from the prior (`seqimpute sample`, the paper's Fig 1)."""

from __future__ import annotations

import numpy as np
import torch

from .models.policy import Policy, composite
from .precision import matmul_precision, resolve


@torch.inference_mode()
def sample_trajectories(model: Policy, x: torch.Tensor, observed: torch.Tensor, samples: int = 1,
                        steps: int | None = None, seed: int = 0, precision: str = "auto") -> torch.Tensor:
    """Unguided (primary-policy) rollouts. Returns (samples, N, T+1, D): the composite (known values kept,
    missing values = sigmoid(c_t)) after each step t = 0..T. NaN in x at missing entries is allowed.
    ``precision``: of the matrix products (seqimpute.precision)."""
    from .evaluate import check_counts

    check_counts(samples=samples, steps=steps, seed=seed)
    model.eval()
    device = next(model.parameters(), torch.empty(0)).device
    x = torch.nan_to_num(x.to(device), nan=0.0)  # missing entries are never read by the primary policy
    observed = observed.to(device)
    gen = torch.Generator(device=device).manual_seed(seed)
    K = samples if model.stochastic else 1
    with matmul_precision(resolve(precision, device)):
        r = model.rollout(x.repeat(K, 1), observed.repeat(K, 1), guided=False, steps=steps, generator=gen)
    xs, os_ = x.repeat(K, 1), observed.repeat(K, 1)
    out = torch.stack([composite(xs, os_, torch.sigmoid(c)) for c in r.canvases], dim=1)  # (K*N, T+1, D)
    out = out.view(K, len(x), len(r.canvases), -1)
    return out.expand(samples, *out.shape[1:]) if K < samples else out


FIG1_STEPS = (1, 3, 5, 9)  # with T: the steps the paper's Fig 1 draws (T = 16)


def fig1_steps(T: int) -> list[int]:
    """The paper's Fig 1 steps {1, 3, 5, 9, 16}, within 0..T, and always T."""
    return sorted({t for t in FIG1_STEPS if t <= T} | {T})


@torch.inference_mode()
def sample_prior(model: Policy, n: int, steps: list[int], seed: int = 0) -> np.ndarray:
    """``n`` samples of a generative model: unguided (primary-policy) rollouts with every value missing. Returns
    sigmoid(c_t) at each of ``steps``, shape (len(steps), n, D)."""
    device = next(model.parameters(), torch.empty(0)).device
    model.eval()
    gen = torch.Generator(device=device).manual_seed(seed)
    x = torch.zeros(n, model.dim, device=device)
    r = model.rollout(x, torch.zeros_like(x, dtype=torch.bool), guided=False, generator=gen)
    return np.stack([torch.sigmoid(r.canvases[t]).cpu().numpy() for t in steps])
