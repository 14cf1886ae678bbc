"""What subnormal weights cost on this CPU, and what flushing them (seqimpute.numerics) buys back.

Weights of units that stop receiving gradient decay under L2 into the subnormal range: a GPSI-add run's
checkpoint after 2,750 updates held 19% subnormal values in its writer's output weight (784 x 500). Measured here,
each in a fresh process per flush mode (a thread pool inherits the mode it starts with):

* ``gemm``: one (250 x K) @ (K x 784) product whose weight has a given share of subnormal values;
* ``step``: whole GPSI-add training updates (MNIST preset, batch 250), fresh weights against the same weights with
  that share of the writer's output weight made subnormal (or the weights of a real run with ``--run``).

    python benchmarks/subnormals.py --threads 1 --json results/speed/subnormals.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import torch


def timed(f, n: int) -> float:
    f()
    t = time.perf_counter()
    for _ in range(n):
        f()
    return (time.perf_counter() - t) / n


def gemm(share: float, repeats: int) -> float:
    g = torch.Generator().manual_seed(0)
    a = torch.rand(250, 1000, generator=g)
    w = torch.randn(784, 1000, generator=g) * 0.01
    w[torch.rand(w.shape, generator=g) < share] = 1e-39
    return timed(lambda: a @ w.t(), repeats)


def step(share: float, repeats: int, run: str | None) -> float:
    from seqimpute.data.masks import mask_sampler
    from seqimpute.distributed import GuidedLoss
    from seqimpute.models.registry import build_model, spec
    from seqimpute.optim import Optimizer
    from seqimpute.runs import load_run_model

    torch.manual_seed(0)
    if run:
        model = load_run_model(run, "last")[0]
    else:
        model = build_model("gpsi-add", 784, "mnist")
        w = model.writer.out.weight
        with torch.no_grad():
            w[torch.rand(w.shape) < share] = 1e-39
    opt = Optimizer(model.parameters(), "budget", spec(model.name).family, model.l2)
    x = torch.rand(250, 784)
    observed = mask_sampler("square:12-18").sample(250, (28, 28), dim=784)
    gen = torch.Generator().manual_seed(0)
    loss_fn = GuidedLoss(model)

    def update():
        loss, _ = loss_fn(x, observed, gen)
        opt.zero_grad()
        loss.backward()
        opt.step(100, 0.5)
    return timed(update, repeats)


def child(args) -> None:
    """One measurement in this process: flush mode first, then the thread count, then the work."""
    flushed = torch.set_flush_denormal(args.flush == "on") and args.flush == "on"
    torch.set_num_threads(args.threads)
    s = gemm(args.share, args.repeats) if args.what == "gemm" else step(args.share, args.repeats, args.run)
    print(json.dumps({"what": args.what, "share": args.share, "flush": args.flush, "flush_supported": flushed
                      if args.flush == "on" else None, "threads": args.threads, "seconds": s}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", help="write the measurements here")
    ap.add_argument("--run", help="a run folder: time its last.pt's weights instead of the synthetic ones")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--what", choices=["gemm", "step"], help=argparse.SUPPRESS)
    ap.add_argument("--share", type=float, default=0.0, help=argparse.SUPPRESS)
    ap.add_argument("--flush", choices=["on", "off"], help=argparse.SUPPRESS)
    ap.add_argument("--repeats", type=int, default=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    plan = [("gemm", s, f, 20) for s in (0.0, 0.01, 0.19) for f in ("off", "on")]
    plan += [("step", s, f, 3) for s in ((0.0, 0.19) if not args.run else (0.0,)) for f in ("off", "on")]
    rows = []
    for what, share, flush, repeats in plan:
        cmd = [sys.executable, __file__, "--child", "--what", what, "--share", str(share), "--flush", flush,
               "--threads", str(args.threads), "--repeats", str(repeats)] + (["--run", args.run] if args.run else [])
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        r = rows[-1]
        label = f"{what} {'run weights' if args.run and what == 'step' else f'{share:.0%} subnormal'}"
        print(f"{label:28s} flush {flush:3s}: {r['seconds'] * 1e3:9.1f} ms", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"command": " ".join(sys.argv), "torch": torch.__version__, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
