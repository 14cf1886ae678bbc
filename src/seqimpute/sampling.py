"""Sampling a trained model: imputations of a user's images (`impute`, seqimpute.impute; `seqimpute impute`
draws their refinement steps) and, for the generative models, samples from the prior (`seqimpute sample`, the
paper's Fig 1)."""

from __future__ import annotations

import numpy as np
import torch

from .data import formats
from .errors import SeqImputeError
from .models.policy import Policy, composite
from .precision import matmul_precision, resolve


ROLLOUT_ROWS = 2048  # rows (images x samples) per unguided rollout: memory stays bounded for any number of images


@torch.inference_mode()
def sample_trajectories(model: Policy, x: torch.Tensor, observed: torch.Tensor, samples: int = 1,
                        steps: int | None = None, seed: int = 0, precision: str = "auto",
                        final: bool = False) -> torch.Tensor:
    """Unguided (primary-policy) rollouts. Returns (samples, N, T+1, D): the composite (known values kept,
    missing values = sigmoid(c_t)) after each step t = 0..T; with ``final``, only the model's output canvas,
    (samples, N, D). NaN in x at missing entries is allowed. Rows go in chunks of about ROLLOUT_ROWS rollouts, on
    one noise stream. ``precision``: of the matrix products (seqimpute.precision)."""
    from .evaluate import check_counts

    check_counts(samples=samples, steps=steps, seed=seed)
    model.eval()
    device = next(model.parameters(), torch.empty(0)).device
    x = torch.nan_to_num(x.to(device), nan=0.0)  # missing entries are never read by the primary policy
    observed = observed.to(device)
    gen = torch.Generator(device=device).manual_seed(seed)
    K = samples if model.stochastic else 1
    chunk, parts = max(1, ROLLOUT_ROWS // K), []
    with matmul_precision(resolve(precision, device)):
        for s in range(0, len(x), chunk):
            xs, os_ = x[s : s + chunk].repeat(K, 1), observed[s : s + chunk].repeat(K, 1)
            r = model.rollout(xs, os_, guided=False, steps=steps, generator=gen)
            canvases = [r.final] if final else r.canvases
            out = torch.stack([composite(xs, os_, torch.sigmoid(c)) for c in canvases], dim=1)  # (K*n, steps, D)
            parts.append(out.view(K, len(xs) // K, len(canvases), -1))
    out = torch.cat(parts, dim=1)
    if final:
        out = out[:, :, 0]
    return out.expand(samples, *out.shape[1:]) if K < samples else out


def image_inputs(images, observed, image_shape, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """A trained model's inputs from a user's ``images`` (formats.image_rows: (N, H, W), (N, D) or one (H, W) image;
    floats in [0, 1] or integer grey levels): float32 rows x (N, D), NaN kept, and the bool mask (N, D) of the known
    values: ``observed`` (True = known, the shape of ``images``) without the NaN entries; None: every value but NaN."""
    x = formats.image_rows(images, image_shape, "images")
    if image_shape is None and x.shape[1] != dim:
        raise SeqImputeError(f"images: rows of {x.shape[1]} values, but the model was trained on rows of {dim}; "
                             f"give an array (N, {dim}).")
    known = ~np.isnan(x)
    if observed is None:
        return x, known
    observed = np.asarray(observed)
    if observed.dtype != np.bool_ or observed.shape != np.shape(images):
        raise SeqImputeError(f"observed must be a bool array of the images' shape {np.shape(images)} (True = known, "
                             f"False = to impute), got {observed.dtype} {observed.shape}; or None to impute the NaN "
                             f"entries.")
    return x, observed.reshape(x.shape) & known


def impute(run, images, observed=None, samples: int = 1, seed: int = 0, checkpoint: str = "best",
           mean: bool = False, steps: int | None = None, device: str = "cpu", precision: str = "auto") -> np.ndarray:
    """Fill in ``images`` with the trained model of the run folder ``run`` (what `seqimpute train` wrote), or of
    the shipped pretrained model of that name (`seqimpute pretrained list`).

    ``images``: (N, H, W) or (N, H*W) (or one (H, W) image) of the run's image size, floats in [0, 1] or integer
    grey levels (uint8 0..255, scaled as the data loaders scale them). ``observed``: bool, the shape of ``images``,
    True = known; None: the NaN entries of ``images`` are missing (NaN is missing either way). Each missing value
    comes from the policy's unguided rollout (sigmoid of its final canvas); observed values are returned exactly
    (float input keeps its dtype; other input comes back as float32 in [0, 1]).

    Returns an array of the shape of ``images`` for ``samples=1``; ``samples`` > 1 gives a stack of imputations
    (samples, *images.shape), or with ``mean`` their average (the shape of ``images``). ``seed`` fixes the
    rollouts' noise, ``steps`` the refinement steps T (default: the trained number), ``checkpoint`` "best" or
    "last", ``precision`` the matrix products' ("auto", "bf16", "fp32"; seqimpute.precision)."""
    from .evaluate import check_counts
    from .pretrained import load_model

    check_counts(samples=samples, steps=steps, seed=seed)
    model, cfg, _ = load_model(run, checkpoint, device=device)
    shape = tuple(cfg["data"].get("image_shape") or []) or None
    x, known = image_inputs(images, observed, shape, model.dim)
    values = np.repeat(x[None], samples, axis=0)
    if not known.all():
        values = sample_trajectories(model, torch.from_numpy(x), torch.from_numpy(known), samples, steps=steps,
                                     seed=seed, precision=precision, final=True).cpu().numpy()
    given = np.asarray(images)
    exact = given.reshape(x.shape) if np.issubdtype(given.dtype, np.floating) else x  # observed values, as given
    if mean:
        values = values.mean(0, keepdims=True)
    out = np.where(known, exact, values.astype(exact.dtype)).reshape(len(values), *given.shape)
    return out[0] if mean or samples == 1 else out


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
