"""Updates per wall-second of `seqimpute train` (GPSI-add, MNIST MCAR-80, the demo's recipe) at 1 and 2 threads
(or --threads), at float32 and bf16, on an otherwise idle machine.

Each trial trains a fresh run folder for ``--updates`` updates with the real loop; its rate is the trainer's
``images_per_s`` (validation not charged) over the batch. Rounds alternate the settings so a drift of the machine
touches all alike; the median over rounds is reported. bf16 is skipped on a CPU without bf16 matrix instructions
(emulated products are many times slower). Writes results/speed/threads.json.

    python benchmarks/threads.py --rounds 3
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
from pathlib import Path

import torch

from seqimpute.demo import RECIPE, TRAIN_MASK
from seqimpute.files import atomic_write
from seqimpute.precision import cpu_name, fast_bf16
from seqimpute.threads import usable_cores
from seqimpute.train import TrainConfig, train


def rate(precision: str, threads: int, updates: int) -> float:
    torch.set_num_threads(threads)
    folder = Path(tempfile.mkdtemp(prefix="seqimpute-threads-"))
    try:
        cfg = TrainConfig(model="gpsi-add", data="mnist", mask=TRAIN_MASK, model_options=dict(RECIPE["model"]),
                          updates=updates, precision=precision, valid_every=10**9, ckpt_every=10**9, log_every=10,
                          **RECIPE["train"])
        summary = train(folder / "run", cfg, progress_bar=False, quiet=True)
        return summary["images_per_s"] / cfg.batch
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--updates", type=int, default=60)
    ap.add_argument("--threads", default=f"1,{usable_cores()}", help="thread counts to compare (default 1 and all)")
    ap.add_argument("--out", default="results/speed/threads.json")
    args = ap.parse_args()
    counts = sorted({int(t) for t in args.threads.split(",")})
    precisions = ["fp32", "bf16"] if fast_bf16("cpu") else ["fp32"]
    samples = {f"{p}/{t}": [] for p in precisions for t in counts}
    for r in range(args.rounds):
        for key in samples:
            p, t = key.split("/")
            samples[key].append(rate(p, int(t), args.updates))
            print(f"round {r + 1}: {key} threads {samples[key][-1]:.2f} updates/s", flush=True)
    med = {k: statistics.median(v) for k, v in samples.items()}
    res = {"command": f"python benchmarks/threads.py --rounds {args.rounds} --updates {args.updates} "
                      f"--threads {args.threads}",
           "cpu": cpu_name(), "usable_cores": usable_cores(), "torch": torch.__version__,
           "model": "gpsi-add", "recipe": RECIPE, "mask": TRAIN_MASK,
           "updates_per_s": med, "samples": samples,
           "speedup_vs_1_thread": {k: med[k] / med[f"{k.split('/')[0]}/1"] for k in med if k.split('/')[1] != "1"},
           "bf16_vs_fp32": {t: med[f"bf16/{t}"] / med[f"fp32/{t}"] for t in counts} if "bf16" in precisions else None}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(Path(args.out), json.dumps(res, indent=2).encode())
    print(json.dumps({k: res[k] for k in ("cpu", "updates_per_s", "speedup_vs_1_thread", "bf16_vs_fp32")}, indent=2))


if __name__ == "__main__":
    main()
