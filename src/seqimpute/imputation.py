"""Many imputations from a trained model: the composite after every refinement step, for every sample."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .errors import SeqImputeError
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


def read_images(path: str | Path, image_shape) -> torch.Tensor:
    """Images from a .png/.jpg (one image), .npy or .npz (N,H,W or N,D) as float32 (N, D) in [0,1] (NaN kept)."""
    path = Path(path)
    if not path.exists():
        raise SeqImputeError(f"{path} does not exist.")
    suffix = path.suffix.lower()
    if suffix in (".npy", ".npz"):
        try:
            if suffix == ".npy":
                arr = np.load(path, allow_pickle=False)
            else:
                with np.load(path, allow_pickle=False) as z:
                    arr = z["x"] if "x" in z.files else z[z.files[0]]
        except (ValueError, OSError, IndexError) as e:
            raise SeqImputeError(f"{path} could not be read ({e}).") from None
    else:
        from .data.formats import read_image

        arr = read_image(path, None)[None]
    if arr.ndim == 2 and image_shape is not None and arr.shape == tuple(image_shape):
        arr = arr[None]
    if arr.ndim not in (2, 3) or arr.size == 0:
        raise SeqImputeError(f"{path}: expected images as an array (N, H, W) or (N, H*W) with N >= 1, got shape "
                             f"{arr.shape}.")
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
            or np.issubdtype(arr.dtype, np.bool_)):
        raise SeqImputeError(f"{path}: images must hold numbers, not {arr.dtype}.")
    if np.issubdtype(arr.dtype, np.floating):  # checked before the float32 cast, which would overflow to inf
        if np.isinf(arr).any():
            raise SeqImputeError(f"{path} holds infinite values; mark missing values with NaN instead.")
        finite = arr[np.isfinite(arr)]
        if finite.size and (finite.min() < 0 or finite.max() > 1):
            raise SeqImputeError(f"{path}: float values must lie in [0, 1] (found {finite.min():g}..{finite.max():g}).")
    if np.issubdtype(arr.dtype, np.integer):
        arr = arr.astype(np.float32) / np.iinfo(arr.dtype).max
    arr = arr.reshape(len(arr), -1).astype(np.float32)
    if image_shape is not None and arr.shape[1] != image_shape[0] * image_shape[1]:
        raise SeqImputeError(f"{path}: images of {arr.shape[1]} values, but the model was trained on "
                             f"{image_shape[0]}x{image_shape[1]} images; resize your input to that size.")
    finite = arr[np.isfinite(arr)]
    if finite.size and (finite.min() < 0 or finite.max() > 1):
        raise SeqImputeError(f"{path}: float values must lie in [0, 1] (found {finite.min():g}..{finite.max():g}).")
    return torch.from_numpy(arr)
