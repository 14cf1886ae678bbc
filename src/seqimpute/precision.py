"""The precision of the matrix products: bfloat16 where the device runs them fast, float32 elsewhere.

``precision`` (``--precision`` on every command, the presets, ``SequentialImputer(precision=...)``):

* ``"fp32"``  every product in float32 (the reference);
* ``"bf16"``  every forward and backward matrix product in bfloat16 (float32 accumulation inside the product);
* ``"auto"``  (default) bf16 where the device does bf16 products fast (x86 CPUs with AMX or AVX512-BF16, CUDA GPUs
  with bf16), fp32 elsewhere.

What stays float32 under bf16: the parameters (master weights), Adam's state and step, the weight gradients (a
weight used at every step of a rollout has its gradient summed in float32 inside one product, nn/shared.py), the
latent sampling, the KL terms, the LSTM cell states, the canvas, the likelihood and the loss. The layers cast their
operands explicitly (`linear`, `SharedLinear`): the effective weights once per rollout, the activations where they
enter a product; outputs of a product are bfloat16 until they meet a float32 tensor. Mixed elementwise ops promote
to float32, so the cell states and the canvas stay float32 without further casts.
"""

from __future__ import annotations

import contextlib
import functools
import warnings

import torch
import torch.nn.functional as F

from .errors import SeqImputeError

PRECISIONS = ("auto", "bf16", "fp32")
_MATMUL = {"dtype": None}  # the products' dtype inside a `matmul_precision("bf16")` block; None: the operands'


@functools.lru_cache(maxsize=None)
def cpu_info(path: str = "/proc/cpuinfo") -> dict:
    """This CPU as /proc/cpuinfo names it: its model name, family and model numbers (one model name can cover
    generations with different bf16 throughput) and its bf16 matrix instructions (AMX tiles, AVX512-BF16). Empty
    values where /proc/cpuinfo is missing."""
    fields = {}
    try:
        with open(path) as f:
            for line in f:
                if not line.strip():
                    break  # the first processor's block is enough
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        pass
    flags = set(fields.get("flags", "").split())
    return {"name": fields.get("model name", ""), "family": fields.get("cpu family", ""),
            "model": fields.get("model", ""), "bf16": [f for f in ("amx_bf16", "avx512_bf16") if f in flags]}


def cpu_name() -> str:
    """One line naming this CPU for benchmark files: "AMD EPYC (family 26, model 2; avx512_bf16)"."""
    c = cpu_info()
    return f"{c['name'] or 'unknown CPU'} (family {c['family'] or '?'}, model {c['model'] or '?'}; " \
           f"{', '.join(c['bf16']) or 'no bf16 matrix instructions'})"


@functools.lru_cache(maxsize=None)
def _cpu_fast_bf16() -> bool:
    """Whether this CPU has bf16 matrix instructions (AMX tiles or AVX512-BF16), from torch's cpuinfo probe, else
    from /proc/cpuinfo."""
    probes = [getattr(torch.cpu, n, None) for n in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    if all(p is not None for p in probes):
        return any(p() for p in probes)
    return bool(cpu_info()["bf16"])


def fast_bf16(device) -> bool:
    """Whether ``device`` runs bfloat16 matrix products faster than float32 ones."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return dev.type == "cpu" and _cpu_fast_bf16()


def resolve(precision: str, device) -> str:
    """The precision a run uses on ``device``: "bf16" or "fp32" (``auto``: bf16 where `fast_bf16`)."""
    if precision not in PRECISIONS:
        raise SeqImputeError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}.")
    if precision == "auto":
        return "bf16" if fast_bf16(device) else "fp32"
    if precision == "bf16" and torch.device(device).type == "cpu" and not fast_bf16(device):
        warn_emulated_bf16()
    return precision


@functools.lru_cache(maxsize=None)
def warn_emulated_bf16() -> None:
    """Once per process: bf16 was forced on a CPU that emulates it (no AMX or AVX512-BF16)."""
    warnings.warn(f"precision bf16 was asked for on a CPU without bf16 matrix instructions ({cpu_name()}): its "
                  f"products are emulated, many times slower than float32; use precision auto or fp32 here.",
                  RuntimeWarning, stacklevel=3)


@contextlib.contextmanager
def matmul_precision(precision: str):
    """Run the block's matrix products in ``precision`` ("bf16" or "fp32", as `resolve` returns)."""
    before = _MATMUL["dtype"]
    _MATMUL["dtype"] = torch.bfloat16 if precision == "bf16" else None
    try:
        yield
    finally:
        _MATMUL["dtype"] = before


def for_product(t: torch.Tensor | None) -> torch.Tensor | None:
    """``t`` as an operand of a matrix product: cast to the compute dtype when one is set (floating tensors)."""
    dt = _MATMUL["dtype"]
    if dt is None or t is None or t.dtype == dt or not t.is_floating_point():
        return t
    return t.to(dt)


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear`` in the compute dtype (for a weight used once per rollout; per-step weights: SharedLinear)."""
    return F.linear(for_product(x), for_product(weight), for_product(bias))
