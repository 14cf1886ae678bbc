"""Building blocks shared by the models: the authors' FancyLinear and the MLPs of GPSI and the VAE."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..precision import linear
from .shared import SharedLinear

SOFTPLUS_ONE = 0.541325  # softplus(0.541325) = 1.000: the input scale starts at the identity


class FancyLinear(nn.Module):
    """Linear(softplus(s) * (u + b_in)) with a learnable per-input scale s and shift b_in (docs/PAPER.md §3.1
    (layers)).

    The input affine map is folded into the weights, W' = W * softplus(s) and b' = b + W' b_in, so a forward pass
    is a single GEMM on the raw input; the cost of the fold is that of one (out x in) elementwise product per
    call, independent of the batch size.
    """

    def __init__(self, n_in: int, n_out: int, gain: float = 1.0):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_out, n_in))
        self.bias = nn.Parameter(torch.zeros(n_out))
        self.in_scale = nn.Parameter(torch.full((n_in,), SOFTPLUS_ONE))
        self.in_shift = nn.Parameter(torch.zeros(n_in))
        if gain > 0:
            nn.init.orthogonal_(self.weight, gain=gain)
        else:
            nn.init.zeros_(self.weight)

    def effective(self) -> tuple[torch.Tensor, torch.Tensor]:
        w = self.weight * F.softplus(self.in_scale)
        return w, self.bias + w @ self.in_shift

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return linear(u, *self.effective())


def init_hidden_bias(layer: FancyLinear, generator: torch.Generator | None = None) -> None:
    """The authors' init_biases(0.2): hidden (shared) layers start at 0.2 + 0.01 N(0, 1)."""
    with torch.no_grad():
        layer.bias.copy_(0.2 + 0.01 * torch.randn(layer.bias.shape, generator=generator))


class GaussMLP(nn.Module):
    """The authors' InfNet: two ReLU FancyLinear layers, then linear heads for the mean and the log-variance of a
    diagonal Gaussian. The log-variance head starts at zero weights, so every initial variance is 1."""

    def __init__(self, n_in: int, hidden: int, n_z: int):
        super().__init__()
        self.fc1 = FancyLinear(n_in, hidden)
        self.fc2 = FancyLinear(hidden, hidden)
        self.mean = FancyLinear(hidden, n_z)
        self.logvar = FancyLinear(hidden, n_z, gain=0.0)
        init_hidden_bias(self.fc1)
        init_hidden_bias(self.fc2)

    def heads(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Both heads as one (2z x H) GEMM."""
        (wm, bm), (wv, bv) = self.mean.effective(), self.logvar.effective()
        return torch.cat([wm, wv]), torch.cat([bm, bv])

    def step_layers(self) -> tuple[SharedLinear, SharedLinear]:
        """fc2 and the heads with their effective weights formed once, for a net applied at every step."""
        return SharedLinear(*self.fc2.effective()), SharedLinear(*self.heads())

    def from_hidden(self, h1: torch.Tensor, fc2=None, heads=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Finish the net from the first layer's output. ``fc2``/``heads``: from ``step_layers()``."""
        if fc2 is None:
            fc2, heads = self.step_layers()
        return heads(F.relu(fc2(h1))).chunk(2, dim=-1)

    def forward(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.from_hidden(F.relu(self.fc1(u)))


class DecMLP(nn.Module):
    """The authors' HydraNet as used: two ReLU FancyLinear layers and a linear output (z -> H -> H -> D). The
    original's first output head received only the L2 gradient; it is left out."""

    def __init__(self, n_z: int, hidden: int, n_out: int):
        super().__init__()
        self.fc1 = FancyLinear(n_z, hidden)
        self.fc2 = FancyLinear(hidden, hidden)
        self.out = FancyLinear(hidden, n_out)
        init_hidden_bias(self.fc1)
        init_hidden_bias(self.fc2)

    def forward(self, z: torch.Tensor, layers=None) -> torch.Tensor:
        l1, l2, l3 = layers or self.step_layers()
        return l3(F.relu(l2(F.relu(l1(z)))))

    def step_layers(self) -> tuple[SharedLinear, SharedLinear, SharedLinear]:
        """The three layers with their effective weights formed once, for a net applied at every step."""
        return tuple(SharedLinear(*layer.effective()) for layer in (self.fc1, self.fc2, self.out))
