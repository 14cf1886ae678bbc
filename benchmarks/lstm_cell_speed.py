"""LSTM-add training speed at the paper's MNIST sizes: the textbook reader cell against the folded one the package
runs, and the cell's elementwise (fused) paths.

For each variant, times whole training updates (guided rollout, loss, backward, optimiser step) at batch 250, T=16,
D=784, H=300, write 300, z 100, mix 20, and reports images/s and the share of the float32 matmul peak measured in
the same run (median of several timings of a large torch.mm, interleaved with the variants so both see the same
machine load). FLOPs: every matrix product of one forward+backward (seqimpute.bench.GemmRecorder).

    python benchmarks/lstm_cell_speed.py                       # split and fold, plain cell; fold compiled
    python benchmarks/lstm_cell_speed.py --threads 1 --repeats 5
    python benchmarks/lstm_cell_speed.py --variants fold:none fold:compile

Variants are LAYOUT:FUSED with FUSED in {none, compile} (nn/lstm.py) and LAYOUT one of
  fold   the package's LSTMImputer: one GEMM per reader step over [x~, g, hW, h], the residual folded away and the
         guide's x-part computed once per rollout (models/lstm.py);
  split  `TextbookLSTM` below: each reader the textbook cell, an input GEMM over the concatenated [x~, x~ - g, hW]
         plus a recurrent GEMM (PeepholeLSTMCell.forward). The same function (tests/test_lstm.py checks it).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from seqimpute.models.lstm import PRESETS, LSTMImputer
from seqimpute.models.objectives import training_loss
from seqimpute.optim import Optimizer

DEFAULT_VARIANTS = ["split:none", "fold:none", "fold:compile"]


class TextbookLSTM(LSTMImputer):
    """LSTM-add/-jump with the textbook reader and writer cells: the "before" of the fold."""

    def _step_cells(self, x, guided):
        rp, rq, wr = self.reader_p, self.reader_q, self.writer

        def reader_p(pieces, state):
            xt, g, hW = pieces
            return rp(torch.cat([xt, xt - g, hW], 1), state)

        def reader_q(pieces, state):
            g, hW = pieces
            return rq(torch.cat([x, x - g, hW], 1), state)

        return reader_p, reader_q if guided else None, lambda pieces, state: wr(pieces[0], state)


def matmul_peak(n: int = 2048, reps: int = 5) -> float:
    """Median float32 FLOP/s of an n x n x n torch.mm."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - t)
    return 2 * n**3 / statistics.median(times)


def make(layout: str, fused: str, dim: int, sizes: dict, seed: int = 0) -> LSTMImputer:
    cls = {"fold": LSTMImputer, "split": TextbookLSTM}.get(layout)
    if cls is None:
        raise SystemExit(f"layout {layout!r}: choose fold or split")
    torch.manual_seed(seed)
    return cls(dim, **sizes, step_type="add", fused=fused)


def flops(model: LSTMImputer, x, observed) -> int:
    from seqimpute.bench import GemmRecorder, gemm_flops

    with GemmRecorder() as rec:
        r = model.rollout(x, observed, guided=True, generator=torch.Generator().manual_seed(0))
        training_loss(model, r, x, observed)[0].backward()
    model.zero_grad(set_to_none=True)
    return gemm_flops(rec.calls)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS)
    ap.add_argument("--batch", type=int, default=250)
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--sizes", default="mnist", choices=sorted(PRESETS))
    ap.add_argument("--dim", type=int, default=784)
    ap.add_argument("--updates", type=int, default=2, help="timed updates per variant per repeat")
    ap.add_argument("--repeats", type=int, default=3, help="rounds over all variants (interleaved); medians reported")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = {**PRESETS[args.sizes], "steps": args.steps}
    g = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch, args.dim, generator=g)
    observed = torch.rand(args.batch, args.dim, generator=g) >= 0.8  # MCAR-80

    models, opts, counts = {}, {}, {}
    for v in args.variants:
        layout, _, fused = v.partition(":")
        m = make(layout, fused or "none", args.dim, sizes)
        counts[v] = flops(m, x, observed)
        models[v], opts[v] = m, Optimizer(m.parameters(), "paper", "lstm", m.l2)
        t = time.perf_counter()
        for i in range(2):  # warm-up (compiles the fused paths)
            step(m, opts[v], x, observed, i)
        print(f"{v:18s} warm-up {time.perf_counter() - t:6.1f} s, {counts[v] / 1e9:6.1f} GFLOP per update", flush=True)

    rates = {v: [] for v in args.variants}
    peaks = []
    for rep in range(args.repeats):
        peaks.append(matmul_peak())
        for v in args.variants:
            t = time.perf_counter()
            for i in range(args.updates):
                step(models[v], opts[v], x, observed, i)
            rates[v].append(args.updates / (time.perf_counter() - t))
    peaks.append(matmul_peak())
    peak = statistics.median(peaks)
    res = {"threads": torch.get_num_threads(), "batch": args.batch, "steps": args.steps, "sizes": sizes,
           "matmul_peak_gflops": peak / 1e9, "variants": {}}
    print(f"\nthreads {res['threads']}, batch {args.batch}, T={args.steps}, in-run float32 matmul peak "
          f"{peak / 1e9:.1f} GFLOP/s (median of {len(peaks)}, range {min(peaks) / 1e9:.0f}-{max(peaks) / 1e9:.0f})")
    print("| variant (layout:fused) | GFLOP/update | updates/s | images/s | GFLOP/s | share of peak |")
    print("|---|---:|---:|---:|---:|---:|")
    for v in args.variants:
        ups = statistics.median(rates[v])
        gf = counts[v] * ups / 1e9
        res["variants"][v] = {"gflop_per_update": counts[v] / 1e9, "updates_per_s": ups,
                              "images_per_s": ups * args.batch, "gflops": gf, "share_of_peak": gf * 1e9 / peak,
                              "images_per_s_all": [r * args.batch for r in rates[v]]}
        print(f"| {v} | {counts[v] / 1e9:.1f} | {ups:.3f} | {ups * args.batch:.1f} | {gf:.1f} | "
              f"{gf * 1e9 / peak:.2f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    return res


def step(model, opt, x, observed, i):
    r = model.rollout(x, observed, guided=True, generator=torch.Generator().manual_seed(i))
    loss, _ = training_loss(model, r, x, observed)
    opt.zero_grad()
    loss.backward()
    opt.step(i, 0.0)


if __name__ == "__main__":
    main()
