"""`seqimpute train`'s rate at the default precision (auto) against --set precision=fp32, interleaved in one process.

Each round trains every model once at each precision (a fresh run folder, the real training loop; the rate is the
median of its logged ``images_per_s`` windows, the first dropped as warm-up), alternating fp32 and the default, and
times the float32 and bfloat16 matmul peaks (2048^3). Reports per model the median over rounds of the per-round
ratio default/fp32, and the default step's share of the in-run bf16 peak (the step's matrix-product FLOPs, recorded
at dispatch, times its rate). Writes results/speed/<stamp>-precision/precision.json.

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
from seqimpute.models.policy import training_loss
from seqimpute.models.registry import build_model
from seqimpute.numerics import flush_subnormals
from seqimpute.precision import matmul_precision, resolve
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


def train_rate(name: str, mask: str, updates: int, precision: str | None, log_every: int = 4) -> float:
    tmp = Path(tempfile.mkdtemp())
    try:
        cfg = TrainConfig(model=name, data="mnist", mask=mask, updates=updates, log_every=log_every,
                          valid_every=10**9, ckpt_every=10**9, valid_size=50, precision=precision)
        train(tmp / "run", cfg, progress_bar=False, quiet=True)
        rates = [m["images_per_s"] for m in read_metrics(tmp / "run") if "images_per_s" in m][1:]
        return statistics.median(rates)
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
    peaks = {"fp32": [], "bf16": []}
    rates = {m: {"fp32": [], "default": []} for m in a.models}
    for rnd in range(a.rounds):
        peaks["fp32"] += matmul_peak_gflops("cpu", repeats=3)[1]
        peaks["bf16"] += matmul_peak_gflops("cpu", repeats=3, dtype=torch.bfloat16)[1]
        for m in a.models:
            mask, updates = MODELS[m]
            for p in ("fp32", "default"):
                rates[m][p].append(train_rate(m, mask, updates, "fp32" if p == "fp32" else None))
            print(f"round {rnd} {m:9s} fp32 {rates[m]['fp32'][-1]:7.1f}  default ({default}) "
                  f"{rates[m]['default'][-1]:7.1f} img/s", flush=True)
    peak32, peak16 = statistics.median(peaks["fp32"]), statistics.median(peaks["bf16"])
    out = {"threads": torch.get_num_threads(), "torch": torch.__version__, "default_precision": default,
           "rounds": a.rounds, "peak_fp32_gflops": peak32, "peak_bf16_gflops": peak16, "peak_samples": peaks,
           "models": {}}
    print(f"\nmatmul peaks (medians): float32 {peak32:.1f}, bfloat16 {peak16:.1f} GFLOP/s; "
          f"{torch.get_num_threads()} thread(s)")
    for m in a.models:
        r = rates[m]
        ratio = statistics.median(d / f for d, f in zip(r["default"], r["fp32"]))
        gf = step_gflop(m, MODELS[m][0], default)
        share = statistics.median(r["default"]) / 250 * gf / (peak16 if default == "bf16" else peak32)
        out["models"][m] = {"mask": MODELS[m][0], "images_per_s": r, "ratio_default_over_fp32": ratio,
                            "step_gflop": gf, "default_step_share_of_its_peak": share}
        print(f"{m:9s} fp32 {statistics.median(r['fp32']):7.1f}  default {statistics.median(r['default']):7.1f} "
              f"img/s  ratio (median of rounds) {ratio:.2f}  default step: {share:.2f} of the {default} peak")
    folder = Path(a.out) / f"{stamp}-precision"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "precision.json").write_text(json.dumps(out, indent=2))
    print(f"wrote {folder / 'precision.json'}")


if __name__ == "__main__":
    main()
