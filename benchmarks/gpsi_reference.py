"""Our GPSI-add step against the same network written as plain PyTorch (nn.Linear, torch.optim.Adam), in one run.

The reference has GPSI-add's matrix products at the MNIST sizes (D=784, H=1000, z=100, T=6, batch 250): the
primary MLP 784-1000-1000-(2x100), the guide 1568-1000-1000-(2x100), the writer 100-1000-1000-784, ReLUs, z by
reparameterisation, the Gaussian KLs, the Bernoulli NLL of the final canvas, and the default torch.optim.Adam. It
leaves out what the paper's model adds around them: FancyLinear's learnable input scale and shift, per-tensor
gradient clipping, weight decay and the 0.1 KL(p||q) term. It calibrates what "plain eager PyTorch" reaches for this
step on the machine at hand, the yardstick of issue 3's speed target.

    python benchmarks/gpsi_reference.py --threads 2 --rounds 5 --updates 3
"""

from __future__ import annotations

import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F

from draw_reference import compare_steps, make_steps
from seqimpute.data.masks import mask_sampler
from seqimpute.models.gpsi import GPSI


def mlp(*sizes):
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


class ReferenceGPSI(nn.Module):
    def __init__(self, dim=784, hidden=1000, z=100, steps=6):
        super().__init__()
        self.steps = steps
        self.c0 = nn.Parameter(torch.zeros(dim))
        self.p = mlp(dim, hidden, hidden, 2 * z)
        self.q = mlp(2 * dim, hidden, hidden, 2 * z)
        self.writer = mlp(z, hidden, hidden, dim)

    def loss(self, x, observed):
        c = self.c0.expand_as(x)
        kl = 0.0
        for _ in range(self.steps):
            xt = torch.where(observed, x, torch.sigmoid(c))
            mu_p, lv_p = self.p(xt).chunk(2, -1)
            mu_q, lv_q = self.q(torch.cat([xt, x], -1)).chunk(2, -1)
            z = mu_q + torch.exp(0.5 * lv_q) * torch.randn_like(mu_q)
            kl = kl + 0.5 * (lv_p - lv_q + (lv_q.exp() + (mu_q - mu_p) ** 2) / lv_p.exp() - 1).sum(-1)
            c = c + self.writer(z)
        nll = (F.binary_cross_entropy_with_logits(c, x, reduction="none") * ~observed).sum(-1)
        return (nll + kl).mean()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=250)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--updates", type=int, default=3, help="timed updates per model per round")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    D, H, Z, T, B = 784, 1000, 100, 6, args.batch
    torch.manual_seed(0)
    x = torch.rand(B, D)
    observed = mask_sampler("mcar:0.8").sample(B, (28, 28), dim=D)
    ref = ReferenceGPSI(D, H, Z, T)
    ours = GPSI(D, H, Z, T)
    step_ref, step_ours = make_steps(lambda: ref.loss(x, observed), ref, ours, "gpsi", x, observed)
    steps = {"reference plain nn.Linear GPSI": step_ref, "seqimpute gpsi-add": step_ours}
    compare_steps(steps, args, {"batch": B, "T": T, "hidden": H, "z": Z}, f"batch {B}, T={T}, H={H}, z={Z}")


if __name__ == "__main__":
    main()
