"""The authors' peephole LSTM cell (Blocks ``BiasedLSTM``; docs/PAPER.md §3.4 (LSTM cell) and §13.0 (common modules)).

Pre-activation a = Linear_in(u) + W_h h (Linear_in has a bias, W_h has none), split in the gate order [i, f, g, o]:

    i  = sigmoid(a_i + p_i * c + 2)          # the +2 input/forget biases are fixed constants, not parameters
    f  = sigmoid(a_f + p_f * c + 2)
    c' = f * c + i * tanh(a_g)
    o  = sigmoid(a_o + p_o * c')             # the output peephole reads the NEW cell state
    h' = o * tanh(c')

All weights (Linear_in, W_h, the peepholes) start N(0, 0.01^2); the bias of Linear_in starts at 0.

Speed. The matrix work of a step is one GEMM: ``stacked()`` returns [W_in | W_h] and the bias, so a caller that
concatenates [u, h] computes all four gates of both inputs at once (see models/lstm.py, which also folds inputs
that are sums of pieces). The elementwise gate work is ``gates(a, c)``; ``fused`` picks how it runs:

* ``"none"``    plain eager PyTorch (the reference, and the default);
* ``"compile"`` the same function through ``torch.compile`` (Inductor emits one fused loop for the forward and one
  for the backward; the first call per input shape compiles, which takes seconds to tens of seconds).

On the CPU at the paper's MNIST sizes the GEMMs take about 77% of a training update and fusing the gates gave no
measurable gain (benchmarks/RESULTS.md, "LSTM models"), so the default is the plain path; ``torch.jit.script`` was
measured too (slightly slower, and deprecated) and is not offered. tests/test_lstm.py holds the fused path equal
to the plain one (values and gradients).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..errors import SeqImputeError
from ..precision import linear

GATE_BIAS = 2.0  # the authors' ig_bias = fg_bias = 2 (og_bias = 0); fixed, not trained
INIT_STD = 0.01  # Blocks IsotropicGaussian(0.01) for every weight
FUSED_PATHS = ("none", "compile")


def peephole_gates(a: torch.Tensor, c: torch.Tensor, p_i: torch.Tensor, p_f: torch.Tensor, p_o: torch.Tensor,
                   gate_bias: float = GATE_BIAS):
    """The elementwise part of a step. a: (B, 4H) pre-activations in the order [i, f, g, o]; c: (B, H) the previous
    cell state; p_i, p_f, p_o: (H,) the peepholes. Returns (h', c')."""
    ai, af, ag, ao = a.chunk(4, 1)
    i = torch.sigmoid(ai + p_i * c + gate_bias)
    f = torch.sigmoid(af + p_f * c + gate_bias)
    c_new = f * c + i * torch.tanh(ag)
    o = torch.sigmoid(ao + p_o * c_new)
    return o * torch.tanh(c_new), c_new


_FUSED: dict[str, object] = {}


def gate_function(fused: str = "none"):
    """The gate function for a path name (compiled once per process, on first use)."""
    if fused not in FUSED_PATHS:
        raise SeqImputeError(f"fused must be one of {', '.join(FUSED_PATHS)}, not {fused!r}.")
    if fused == "none":
        return peephole_gates
    if fused not in _FUSED:
        _FUSED[fused] = torch.compile(peephole_gates)
    return _FUSED[fused]


class PeepholeLSTMCell(nn.Module):
    """Peephole LSTM cell with fixed +2 input/forget gate biases. State is (h, c), each (B, hidden).

    ``forward(u, (h, c))`` is the plain two-GEMM reference step; fast callers build their own pre-activations from
    ``stacked()`` and call ``gates(a, c)``."""

    def __init__(self, n_in: int, hidden: int, fused: str = "none", gate_bias: float = GATE_BIAS):
        super().__init__()
        self.n_in, self.hidden, self.gate_bias = int(n_in), int(hidden), float(gate_bias)
        self.inp = nn.Linear(n_in, 4 * hidden)  # Linear_in, with bias
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden, hidden))  # W_h, no bias
        # The peepholes are three tensors, as in the original (the optimiser clips gradients per tensor).
        self.p_i = nn.Parameter(torch.empty(hidden))
        self.p_f = nn.Parameter(torch.empty(hidden))
        self.p_o = nn.Parameter(torch.empty(hidden))
        self.fused = fused
        gate_function(fused)  # validate the name early
        with torch.no_grad():
            for w in (self.inp.weight, self.weight_hh, self.p_i, self.p_f, self.p_o):
                w.normal_(0.0, INIT_STD)
            self.inp.bias.zero_()

    def gates(self, a: torch.Tensor, c: torch.Tensor):
        """(h', c') from the pre-activations a (B, 4H) and the previous cell state c (B, H)."""
        return gate_function(self.fused)(a, c, self.p_i, self.p_f, self.p_o, self.gate_bias)

    def stacked(self) -> tuple[torch.Tensor, torch.Tensor]:
        """([W_in | W_h], b): one (4H x (n_in + H)) weight for a GEMM over the concatenation [u, h]."""
        return torch.cat([self.inp.weight, self.weight_hh], 1), self.inp.bias

    def forward(self, u: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]):
        h, c = state
        return self.gates(linear(u, self.inp.weight, self.inp.bias) + linear(h, self.weight_hh), c)
