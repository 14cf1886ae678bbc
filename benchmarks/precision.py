"""`seqimpute train`'s rate at the default precision (auto) against --precision fp32, interleaved in one process.

Each round trains every model once at each precision (a fresh run folder, the real training loop), alternating fp32
and the default, and times the float32 and bfloat16 matmul peaks (2048^3, per wall and per CPU second). Two rates per
trial, each the median of
the logged windows with the first dropped as warm-up: the trainer's ``images_per_s`` (wall clock), and images per
CPU-second of the process (``clock=cpu``: its ``elapsed_s`` counts the process's CPU time), which a busy shared
machine disturbs far less. Reports per model the median over rounds of the per-round ratio default/fp32 of both,
and the default step's share of the in-run bf16 peak (the step's matrix-product FLOPs, recorded at dispatch, times
its rate). Writes results/speed/<stamp>-precision/precision.json.

    OMP_NUM_THREADS=1 python benchmarks/precision.py --rounds 3
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from seqimpute.bench import GemmRecorder, gemm_flops, matmul_peak_gflops
from seqimpute.models.objectives import training_loss
from seqimpute.models.registry import build_model
from seqimpute.numerics import flush_subnormals
from seqimpute.precision import cpu_name, matmul_precision, resolve
from seqimpute.runs import read_metrics
from seqimpute.train import TrainConfig, train

# model -> (mask, updates per trial): the three models at their MNIST presets, batch 250
MODELS = {"gpsi-add": ("mcar:0.8", 16), "lstm-add": ("square:14", 8), "draw": ("full", 16)}


def step_gflop(name: str, mask: str, precision: str) -> float:
    """Matrix-product GFLOP of one training step (forward and backward) at the MNIST preset, batch 250."""
    from seqimpute.data.masks import mask_sampler

    torch.manual_seed(0)
    model = build_model(name, 784, "mnist")
    g = torch.Generator().manual_seed(0)
    x = torch.rand(250, 784, generator=g)
    observed = mask_sampler(mask).sample(250, (28, 28), generator=g, dim=784)
    with GemmRecorder() as rec:
        with matmul_precision(precision):
            loss, _ = training_loss(model, model.rollout(x, observed, generator=g), x, observed)
        loss.backward()
    return gemm_flops(rec.calls) / 1e9


def train_rate(name: str, mask: str, updates: int, precision: str | None, log_every: int = 4) -> tuple[float, float]:
    """(images per wall-clock second, images per CPU-second) of `train`, medians of the logged windows."""
    tmp = Path(tempfile.mkdtemp())
    try:
        cfg = TrainConfig(model=name, data="mnist", mask=mask, updates=updates, log_every=log_every, clock="cpu",
                          valid_every=10**9, ckpt_every=10**9, valid_size=50, precision=precision)
        train(tmp / "run", cfg, progress_bar=False, quiet=True)
        logs = [m for m in read_metrics(tmp / "run") if "images_per_s" in m]
        wall = [m["images_per_s"] for m in logs][1:]
        cpu = [log_every * cfg.batch / (b["elapsed_s"] - a["elapsed_s"]) for a, b in zip(logs, logs[1:])]
        return statistics.median(wall), statistics.median(cpu)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default="results/speed")
    a = ap.parse_args()
    flush_subnormals()  # as the CLI does, before torch starts its threads
    default = resolve("auto", "cpu")
    stamp = time.strftime("%Y%m%dT%H%MZ", time.gmtime())
    peaks = {(p, c): [] for p in ("fp32", "bf16") for c in ("wall", "cpu")}
    rates = {m: {"fp32": [], "default": []} for m in a.models}  # (wall, cpu) images/s per round
    for rnd in range(a.rounds):
        for (p, c), samples in peaks.items():
            samples += matmul_peak_gflops("cpu", repeats=3, dtype=torch.float32 if p == "fp32" else torch.bfloat16,
                                          clock=time.perf_counter if c == "wall" else time.process_time)[1]
        for m in a.models:
            mask, updates = MODELS[m]
            for p in ("fp32", "default"):
                rates[m][p].append(train_rate(m, mask, updates, "fp32" if p == "fp32" else None))
            (w32, c32), (w16, c16) = rates[m]["fp32"][-1], rates[m]["default"][-1]
            print(f"round {rnd} {m:9s} images/s wall: fp32 {w32:6.1f} default ({default}) {w16:6.1f} | per "
                  f"CPU-s: fp32 {c32:6.1f} default {c16:6.1f}", flush=True)
    peak = {k: statistics.median(v) for k, v in peaks.items()}
    out = {"cpu": cpu_name(), "threads": torch.get_num_threads(), "torch": torch.__version__,
           "default_precision": default, "rounds": a.rounds,
           "peak_gflops": {f"{p}_{c}": v for (p, c), v in peak.items()},
           "peak_samples": {f"{p}_{c}": v for (p, c), v in peaks.items()}, "models": {}}
    print(f"\nmatmul peaks (medians), GFLOP per wall / CPU second: float32 {peak['fp32', 'wall']:.1f} / "
          f"{peak['fp32', 'cpu']:.1f}, bfloat16 {peak['bf16', 'wall']:.1f} / {peak['bf16', 'cpu']:.1f}; "
          f"{torch.get_num_threads()} thread(s)")
    for m in a.models:
        r = rates[m]
        row = {"mask": MODELS[m][0], "step_gflop": step_gflop(m, MODELS[m][0], default)}
        for i, clock in enumerate(("wall", "cpu")):
            f32, dflt = [v[i] for v in r["fp32"]], [v[i] for v in r["default"]]
            row[clock] = {"fp32": f32, "default": dflt,
                          "ratio_default_over_fp32": statistics.median(d / f for d, f in zip(dflt, f32)),
                          "default_step_share_of_its_peak": statistics.median(dflt) / 250 * row["step_gflop"]
                          / peak[default, clock]}
        out["models"][m] = row
        w, c = row["wall"], row["cpu"]
        print(f"{m:9s} ratio default/fp32 (median of rounds): wall {w['ratio_default_over_fp32']:.2f}, per CPU-s "
              f"{c['ratio_default_over_fp32']:.2f}; default step {w['default_step_share_of_its_peak']:.2f} (wall) / "
              f"{c['default_step_share_of_its_peak']:.2f} (CPU) of the {default} peak")
    folder = Path(a.out) / f"{stamp}-precision"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "precision.json").write_text(json.dumps(out, indent=2))
    print(f"wrote {folder / 'precision.json'}")


if __name__ == "__main__":
    main()
