"""Weights shared by every step of a rollout, with their gradients accumulated inside the GEMM.

Plain autograd forms the gradient of a weight used at every step of a T-step rollout as T products, then adds them
one by one (T-1 passes over a weight-sized tensor). `SharedLinear` accumulates each step's product into one buffer
with ``addmm_`` (the add rides on the GEMM) and hands the sum to autograd once. Same products, same values (tests
hold them equal to the plain path). Forming the gradient as one GEMM over all T*batch rows was measured too and
bought nothing: the 250-row products already run near the peak (benchmarks/RESULTS.md, section H).

How: one `_Gather` node per weight takes the weight (and bias) and returns an empty "token"; each step's `_Step`
takes the token as an input, computes y = x W^T + b (+ an optional per-call addend), and in backward adds its
dW = dy^T x (and db) into the shared buffer, returns the input gradient and an empty gradient for the token.
Autograd runs `_Gather.backward` only after every step that used the token; it returns the buffer as the weight's
(and bias's) gradient. The nodes hold only the buffer (`_Sums`), never the SharedLinear: it holds the token, whose
node would then hold it back, a reference cycle per rollout that only Python's cyclic collector frees, late (a
training process's memory grew by about 1 MB per 1000 updates).

Under bfloat16 products (seqimpute.precision) the steps run on a bf16 copy of the weight made once per rollout, and
the weight's gradient is still summed in float32: CPUs have no bf16 product with a float32 output, and summing
per-step bf16 products in a bf16 buffer rounds the running sum at every step, so the steps' (x, dy) pairs are kept
and the gradient is formed at the end as ONE product over all T*batch rows, whose float32 accumulation inside the
GEMM covers the whole sum (one rounding; measured as fast as per-step ``addmm_`` at these shapes).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..precision import for_product

DEFER = {"on": True}  # off: every SharedLinear is plain F.linear (the reference path; tests and benchmarks A/B it)


def _affine(x, weight, bias, add):
    """x W^T + b, plus ``add`` (a per-call term fused into the GEMM) when given."""
    if add is None:
        return F.linear(x, weight, bias)
    return torch.addmm(add if bias is None else add + bias, x, weight.t())


class _Gather(torch.autograd.Function):
    @staticmethod
    def forward(ctx, sums, weight, bias):
        ctx.sums = sums
        ctx.has_bias = bias is not None
        return weight.new_empty(0)

    @staticmethod
    def backward(ctx, _token_grad):
        gw, gb = ctx.sums.take()
        return None, gw if ctx.needs_input_grad[1] else None, gb if ctx.has_bias and ctx.needs_input_grad[2] else None


class _Step(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, add, token, sums):
        ctx.save_for_backward(x, weight)
        ctx.sums = sums
        ctx.add_shape = None if add is None else add.shape
        return _affine(x, weight, bias, add)

    @staticmethod
    def backward(ctx, gy):
        x, weight = ctx.saved_tensors
        ctx.sums.accumulate(x, gy)
        gx = gy.mm(weight) if ctx.needs_input_grad[0] else None
        gadd = gy.sum_to_size(ctx.add_shape) if ctx.needs_input_grad[3] else None
        return gx, None, None, gadd, gy.new_zeros(0), None


class _Sums:
    """The running sums of one shared weight's (and bias's) per-step gradients, in the weight's dtype. Steps whose
    products ran in a lower precision are kept and summed in `take` as one product (float32 accumulation)."""

    def __init__(self, grad_dtype: torch.dtype, has_bias: bool):
        self.grad_dtype, self.has_bias = grad_dtype, has_bias
        self._gw: torch.Tensor | None = None
        self._gb: torch.Tensor | None = None
        self._parts: list[tuple[torch.Tensor, torch.Tensor]] = []  # (x, dy) of each lower-precision step

    def accumulate(self, x: torch.Tensor, gy: torch.Tensor) -> None:
        """Add one step's dW = gy^T x (and db) into the running sums; the first step allocates them."""
        if x.dtype != self.grad_dtype:
            self._parts.append((x, gy))
        elif self._gw is None:
            self._gw = gy.t().mm(x)
            self._gb = gy.sum(0) if self.has_bias else None
        else:
            self._gw.addmm_(gy.t(), x)
            if self._gb is not None:
                self._gb.add_(gy.sum(0))

    def take(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self._parts:  # one product over all steps' rows: float32 accumulation inside the GEMM
            xs, gys = zip(*self._parts)
            gy = torch.cat(gys)
            self._gw = gy.t().mm(torch.cat(xs)).to(self.grad_dtype)
            self._gb = gy.sum(0, dtype=self.grad_dtype) if self.has_bias else None
            self._parts = []
        gw, gb = self._gw, self._gb
        self._gw = self._gb = None
        return gw, gb


class SharedLinear:
    """``F.linear(x, weight, bias)`` for a weight applied at every step of one rollout; build one per rollout.

    Accumulating (the weight's gradient summed inside the GEMMs) when gradients are being recorded for the weight
    or bias and the input is a matrix; otherwise, under autocast (whose casts autograd must see) and inside a
    torch.compile graph (which fuses the sum itself), plain ``F.linear``."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None):
        self.deferred = (DEFER["on"] and torch.is_grad_enabled() and not torch.compiler.is_compiling()
                         and not torch.is_autocast_enabled(weight.device.type)
                         and (weight.requires_grad or (bias is not None and bias.requires_grad)))
        self.sums = _Sums(weight.dtype, bias is not None)
        if self.deferred:
            self.token = _Gather.apply(self.sums, weight, bias)
            weight, bias = weight.detach(), None if bias is None else bias.detach()
        # the product's operands, cast once per rollout (a no-op in float32)
        self.weight, self.bias = for_product(weight), for_product(bias)

    def __call__(self, x: torch.Tensor, add: torch.Tensor | None = None) -> torch.Tensor:
        """x W^T + b, plus ``add`` (a per-call term, e.g. a (B, N) matrix, fused into the GEMM) when given."""
        x, add = for_product(x), for_product(add)
        if not self.deferred or x.dim() != 2:
            return _affine(x, self.weight, self.bias, add)
        return _Step.apply(x, self.weight, self.bias, add, self.token, self.sums)
