"""Issue 8: `seqimpute train`'s logged rate against the bench rate of the same step, interleaved in one process.

bench (fixed batch) -> train (the real loop: batch gathers, fresh masks, logging; rate from its metrics log, the
first window dropped as warm-up) -> bench -> train ... ; medians of each.

    nice -n 15 env OMP_NUM_THREADS=1 python benchmarks/train_vs_bench.py --model gpsi-add --rounds 2 --updates 12
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
from pathlib import Path

from seqimpute.bench import bench_model
from seqimpute.train import TrainConfig, train


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="gpsi-add")
    ap.add_argument("--data", default="mnist")
    ap.add_argument("--mask", default="mcar:0.8")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--updates", type=int, default=12)
    ap.add_argument("--log-every", type=int, default=4)
    ap.add_argument("--json", help="write the figures here")
    a = ap.parse_args()
    bench, trained = [], []
    for rnd in range(a.rounds):
        r = bench_model(a.model, "mnist", 250, "cpu", steps=a.log_every, warmup=1, mask=a.mask, impute=False)
        bench.append(r["train_images_per_s"])
        tmp = Path(tempfile.mkdtemp())
        try:
            cfg = TrainConfig(model=a.model, data=a.data, mask=a.mask, updates=a.updates, log_every=a.log_every,
                              valid_every=10**9, ckpt_every=10**9, valid_size=100)
            train(tmp / "run", cfg, progress_bar=False, quiet=True)
            recs = [json.loads(l) for l in (tmp / "run" / "metrics.jsonl").read_text().splitlines()]
            rates = [x["images_per_s"] for x in recs if "images_per_s" in x][1:]  # first window: warm-up
            trained.append(statistics.median(rates))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        print(f"round {rnd}: bench {bench[-1]:.1f} img/s, train {trained[-1]:.1f} img/s", flush=True)
    b, t = statistics.median(bench), statistics.median(trained)
    print(f"{a.model}: bench {b:.1f} img/s, train {t:.1f} img/s, train/bench {t / b:.3f}")
    if a.json:
        import torch

        Path(a.json).write_text(json.dumps({"model": a.model, "mask": a.mask, "threads": torch.get_num_threads(),
                                            "bench_images_per_s": bench, "train_images_per_s": trained,
                                            "train_over_bench": t / b}, indent=2))


if __name__ == "__main__":
    main()
