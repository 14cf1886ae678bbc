"""Before/after of SharedLinear (nn/shared.py): each model's whole update with the per-step weights' gradients
accumulated inside the GEMM (one pass over the steps) and with plain F.linear (autograd adds T per-step gradients),
interleaved in one process between two matmul-peak measurements, at the paper's MNIST sizes.

    python benchmarks/shared_linear_ab.py --threads 1 --rounds 5 --updates 2 --models gpsi-add lstm-add draw-ext-add
"""

from __future__ import annotations

import argparse

import torch

from draw_reference import compare_steps
from seqimpute.data.masks import mask_sampler
from seqimpute.models.policy import training_loss
from seqimpute.models.registry import build_model, spec
from seqimpute.nn import shared
from seqimpute.optim import Optimizer


def update(name, batch):
    torch.manual_seed(0)
    model = build_model(name, 784, "mnist")
    opt = Optimizer(model.parameters(), "budget", spec(name).family, model.l2)
    x = torch.rand(batch, 784)
    observed = mask_sampler(model.train_mask or "mcar:0.8").sample(batch, (28, 28), dim=784)
    gen = torch.Generator().manual_seed(0)

    def make(defer):
        def step(i):
            shared.DEFER["on"] = defer
            try:
                r = model.rollout(x, observed, guided=True, generator=gen)
                loss, _ = training_loss(model, r, x, observed)
                opt.zero_grad()
                loss.backward()
                opt.step(i, 0.5)
            finally:
                shared.DEFER["on"] = True
        return step

    return make(True), make(False)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=250)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--updates", type=int, default=2, help="timed updates per variant per round")
    ap.add_argument("--models", nargs="+", default=["gpsi-add", "lstm-add", "draw-ext-add"])
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    steps = {}
    for name in args.models:
        after, before = update(name, args.batch)
        steps[f"{name} SharedLinear"] = after
        steps[f"{name} plain F.linear"] = before
    compare_steps(steps, args, {"batch": args.batch}, f"batch {args.batch}, paper MNIST sizes")


if __name__ == "__main__":
    main()
