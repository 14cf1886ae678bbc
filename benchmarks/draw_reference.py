"""Our DRAW against a plain public-style PyTorch DRAW without attention, at the same sizes, in the same run.

The reference is the textbook implementation (nn.LSTMCell encoder and decoder, h=256, z=100, T=16, batch 250,
D=784): the encoder reads [x, x - sigmoid(c), h_dec] through nn.LSTMCell (K = 2D + H plus the recurrent H), z from
linear mean/log-variance heads, a linear write, Bernoulli NLL (logits) + KL(q || N(0,I)), torch.optim.Adam.
Ours is `seqimpute`'s `draw` at the same sizes (enc = dec = 256, write = 0: one linear write, z 100, T 16), with
the authors' peephole cells (fixed +2 gate biases), the folded encoder GEMM (K = D + 2H), the shared training loss
(NLL + 0.9 KL(q||p) + 0.1 KL(p||q)) and the trainer's optimiser (Adam, per-tensor clipping, weight decay).

Both train on the same random binary batch. Whole updates (forward, loss, backward, optimiser step) are timed in
interleaved rounds, medians reported, with the float32 matmul peak (seqimpute.bench.matmul_peak_gflops) measured
before and after. FLOPs per update: every matrix product, recorded at dispatch (seqimpute.bench.GemmRecorder).

    OMP_NUM_THREADS=1 python benchmarks/draw_reference.py --threads 1 --rounds 3 --updates 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from seqimpute.bench import GemmRecorder, gemm_flops, matmul_peak_gflops
from seqimpute.models.draw import DRAW
from seqimpute.models.objectives import training_loss
from seqimpute.optim import Optimizer


class ReferenceDRAW(nn.Module):
    """DRAW without attention as public PyTorch implementations write it (nn.LSTMCell, linear read/write)."""

    def __init__(self, dim=784, hidden=256, z=100, steps=16):
        super().__init__()
        self.dim, self.hidden, self.z, self.steps = dim, hidden, z, steps
        self.encoder = nn.LSTMCell(2 * dim + hidden, hidden)
        self.decoder = nn.LSTMCell(z, hidden)
        self.mu, self.logvar = nn.Linear(hidden, z), nn.Linear(hidden, z)
        self.write = nn.Linear(hidden, dim)

    def loss(self, x):
        B = x.shape[0]
        h_enc = c_enc = h_dec = c_dec = x.new_zeros(B, self.hidden)
        c = x.new_zeros(B, self.dim)
        kl = 0.0
        for _ in range(self.steps):
            x_hat = x - torch.sigmoid(c)
            h_enc, c_enc = self.encoder(torch.cat([x, x_hat, h_dec], 1), (h_enc, c_enc))
            mu, lv = self.mu(h_enc), self.logvar(h_enc)
            z = mu + torch.exp(0.5 * lv) * torch.randn_like(mu)
            kl = kl + 0.5 * (mu.pow(2) + lv.exp() - lv - 1).sum(1)
            h_dec, c_dec = self.decoder(z, (h_dec, c_dec))
            c = c + self.write(h_dec)
        nll = F.binary_cross_entropy_with_logits(c, x, reduction="none").sum(1)
        return (nll + kl).mean()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=250)
    ap.add_argument("--steps", type=int, default=16, help="T")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--updates", type=int, default=3, help="timed updates per model per round")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    D, H, Z, B, T = 784, 256, 100, args.batch, args.steps
    torch.manual_seed(0)
    x = (torch.rand(B, D) < 0.13).float()
    observed = torch.zeros(B, D, dtype=torch.bool)

    ref = ReferenceDRAW(D, H, Z, T)
    ours = DRAW(D, enc=H, dec=H, write=0, z=Z, steps=T)
    step_ref, step_ours = make_steps(lambda: ref.loss(x), ref, ours, "lstm", x, observed)
    steps = {"reference nn.LSTMCell DRAW": step_ref, "seqimpute draw (peephole, folded)": step_ours}
    compare_steps(steps, args, {"batch": B, "T": T, "hidden": H, "z": Z},
                  f"batch {B}, T={T}, h={H}, z={Z}")


def make_steps(ref_loss, ref: nn.Module, ours, family: str, x, observed):
    """One whole update of the reference (its ``ref_loss()``, torch.optim.Adam) and of ours (rollout, the shared
    training loss, the trainer's optimiser), as functions of the update index."""
    ref_opt = torch.optim.Adam(ref.parameters(), lr=1e-4)
    ours_opt = Optimizer(ours.parameters(), "budget", family, ours.l2, lr=1e-4)
    gen = torch.Generator().manual_seed(0)

    def step_ref(i):
        loss = ref_loss()
        ref_opt.zero_grad()
        loss.backward()
        ref_opt.step()

    def step_ours(i):
        r = ours.rollout(x, observed, guided=True, generator=gen)
        loss, _ = training_loss(ours, r, x, observed)
        ours_opt.zero_grad()
        loss.backward()
        ours_opt.step(i, 0.5)

    return step_ref, step_ours


def compare_steps(steps: dict, args, meta: dict, setting: str, flops: dict | None = None) -> dict:
    """Time whole updates of each step function in interleaved rounds (medians) between two matmul-peak
    measurements; print and optionally write (args.json) GFLOP per update, images/s and the share of the peak.
    ``flops``: FLOPs per update of steps that cannot be recorded at dispatch (a compiled graph); others are."""
    flops = dict(flops or {})
    for name, fn in steps.items():
        if name not in flops:
            with GemmRecorder() as rec:
                fn(0)
            flops[name] = gemm_flops(rec.calls)
        fn(1)  # warm-up
    peak_before, s_before = matmul_peak_gflops()
    times = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, fn in steps.items():
            t = time.perf_counter()
            for i in range(args.updates):
                fn(i)
            times[name].append((time.perf_counter() - t) / args.updates)
    peak_after, s_after = matmul_peak_gflops()
    peak = statistics.median(s_before + s_after)
    B = meta["batch"]
    out = {"threads": args.threads, "torch": torch.__version__, **meta,
           "peak_gflops": peak, "peak_before": peak_before, "peak_after": peak_after, "models": {}}
    print(f"float32 matmul peak {peak:.1f} GFLOP/s (before {peak_before:.1f}, after {peak_after:.1f}); "
          f"{args.threads} thread(s); {setting}")
    print(f"{'model':36s}{'GFLOP/upd':>10s}{'s/update':>10s}{'images/s':>10s}{'peak share':>12s}")
    for name in steps:
        dt = statistics.median(times[name])
        rate = flops[name] / dt / 1e9
        out["models"][name] = {"gflop_per_update": flops[name] / 1e9, "seconds_per_update": dt,
                               "images_per_s": B / dt, "peak_share": rate / peak, "round_times": times[name]}
        print(f"{name:36s}{flops[name] / 1e9:10.1f}{dt:10.3f}{B / dt:10.1f}{rate / peak:12.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return out


if __name__ == "__main__":
    main()
