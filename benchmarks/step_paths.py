"""Before/after of the training step's fast paths, each model's whole update interleaved in one process between
two matmul-peak measurements, at the paper's MNIST sizes:

* ``plain``: per-step F.linear (autograd adds the T per-step weight gradients);
* ``shared``: SharedLinear (nn/shared.py), the default: each weight's gradient accumulated inside its GEMM;
* ``graph``: the whole loss as one torch.compile graph (loop.WholeStep, the trainer's compile=true);
  its compile time is reported separately and not in the update times.

    python benchmarks/step_paths.py --threads 1 --variants plain shared --models gpsi-add lstm-add draw-ext-add
"""

from __future__ import annotations

import argparse
import time

import torch

from draw_reference import compare_steps
from seqimpute.bench import GemmRecorder, gemm_flops
from seqimpute.data.masks import mask_sampler
from seqimpute.distributed import GuidedLoss
from seqimpute.loop import WholeStep
from seqimpute.models.registry import build_model, spec
from seqimpute.nn import shared
from seqimpute.optim import Optimizer

VARIANTS = ("plain", "shared", "graph")


def updates(name, batch, variants):
    torch.manual_seed(0)
    model = build_model(name, 784, "mnist")
    opt = Optimizer(model.parameters(), "budget", spec(name).family, model.l2)
    x = torch.rand(batch, 784)
    observed = mask_sampler(model.train_mask or "mcar:0.8").sample(batch, (28, 28), dim=784)
    gen = torch.Generator().manual_seed(0)
    eager = GuidedLoss(model)
    objectives = {"plain": eager, "shared": eager, "graph": WholeStep(eager)}

    def make(variant):
        def step(i):
            shared.DEFER["on"] = variant != "plain"
            try:
                loss, _ = objectives[variant](x, observed, gen)
                opt.zero_grad()
                loss.backward()
                opt.step(i, 0.5)
            finally:
                shared.DEFER["on"] = True
        return step

    steps = {v: make(v) for v in variants}
    if "graph" in steps:  # the first call records the noise, the second compiles
        t = time.perf_counter()
        steps["graph"](0)
        steps["graph"](1)
        print(f"{name}: compile {time.perf_counter() - t:.0f} s", flush=True)
    return steps


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=250)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--updates", type=int, default=2, help="timed updates per variant per round")
    ap.add_argument("--models", nargs="+", default=["gpsi-add", "lstm-add", "draw-ext-add"])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    steps, flops = {}, {}
    for name in args.models:
        fns = updates(name, args.batch, args.variants)
        for variant, fn in fns.items():
            steps[f"{name} {variant}"] = fn
        if "graph" in fns:  # the graph's products are the eager step's: count them there
            with GemmRecorder() as rec:
                updates(name, args.batch, ["plain"])["plain"](0)
            flops[f"{name} graph"] = gemm_flops(rec.calls)
    compare_steps(steps, args, {"batch": args.batch}, f"batch {args.batch}, paper MNIST sizes", flops)


if __name__ == "__main__":
    main()
