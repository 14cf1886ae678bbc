"""Issue 8: interleaved before/after timings of the training-step variants, in one process.

Each round runs every (model, variant) once (a fresh model, ``--warmup`` untimed steps, ``--steps`` timed steps)
and a matmul-peak measurement; the table gives medians over rounds, so a load change on the shared machine hits
every variant alike. Variants: ``plain`` (the float32 eager reference), ``compile`` (the whole training loss as one
torch.compile graph: train.py's --set compile=true), ``bf16`` (bfloat16 autocast: --set amp=bf16), ``compile+bf16``.

    nice -n 15 env OMP_NUM_THREADS=1 python benchmarks/speed_suite.py --models gpsi-add lstm-add draw \
        --variants plain compile bf16 --rounds 3 --steps 2 --out /tmp/speed.json
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch

from seqimpute.bench import bench_model, matmul_peak_gflops

VARIANTS = {"plain": (False, None), "compile": (True, None), "bf16": (False, "bf16"), "compile+bf16": (True, "bf16")}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=["gpsi-add", "lstm-add", "draw"])
    ap.add_argument("--variants", nargs="+", default=["plain", "compile"], choices=list(VARIANTS))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--batch", type=int, default=250)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out")
    a = ap.parse_args()
    rates, rows = [], {}
    for rnd in range(a.rounds):
        rates += matmul_peak_gflops(a.device, repeats=3)[1]
        for m in a.models:
            for v in a.variants:
                comp, amp = VARIANTS[v]
                r = bench_model(m, "mnist", a.batch, a.device, a.steps, warmup=a.warmup if rnd else a.warmup + 1,
                                compile=comp, amp=amp, impute=(v == "plain"))
                rows.setdefault((m, v), []).append(r)
                print(f"round {rnd} {m:12s} {v:13s} {r['train_images_per_s']:8.1f} img/s", flush=True)
    rates += matmul_peak_gflops(a.device, repeats=3)[1]
    peak = statistics.median(rates)
    print(f"\nmatmul peak {peak:.1f} GFLOP/s (median of {len(rates)}: {min(rates):.0f}..{max(rates):.0f}), "
          f"{torch.get_num_threads()} threads, {a.rounds} rounds x {a.steps} steps")
    print(f"{'model':12s}{'variant':>14s}{'GFLOP/step':>11s}{'img/s':>9s}{'share':>8s}{'vs plain':>9s}{'peak MB':>9s}")
    out = {"peak_gflops": peak, "peak_samples": rates, "rows": []}
    for m in a.models:
        base = statistics.median(r["train_images_per_s"] for r in rows[(m, a.variants[0])])
        for v in a.variants:
            rs = rows[(m, v)]
            ips = statistics.median(r["train_images_per_s"] for r in rs)
            gf = rs[0]["step_gflop"]
            share = ips / a.batch * gf / peak
            mem = statistics.median(r["peak_mem_mb"] for r in rs)
            print(f"{m:12s}{v:>14s}{gf:11.2f}{ips:9.1f}{share:8.3f}{ips / base:9.3f}{mem:9.0f}")
            out["rows"].append({"model": m, "variant": v, "train_images_per_s": ips, "peak_share": share,
                                "step_gflop": gf, "peak_mem_mb": mem,
                                "rounds": [r["train_images_per_s"] for r in rs]})
    if a.out:
        with open(a.out, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
