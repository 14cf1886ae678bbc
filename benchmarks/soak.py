"""Soak test (issue 10): train a tiny GPSI-add on sklearn-digits for 20k updates on one thread, sampling the
process's resident memory (RSS) and the training throughput every 1000 updates, and assert that memory stays flat
and throughput does not decay.

    nice -n 15 env OMP_NUM_THREADS=1 python benchmarks/soak.py [--updates 20000] [--json results/soak.json]

Throughput is judged in updates per CPU-second of this process over each 1000-update window (wall-clock rates on a
shared machine follow the other jobs; the trainer's own images_per_s, validation excluded, is printed beside it). RSS is read from /proc/self/status (VmRSS; ru_maxrss elsewhere) by a watcher thread the
moment the trainer logs each 1000th update. The first window is warm-up; "flat" means the RSS of the last window
is within --rss-tolerance-mb of the window at 2000 updates, and "no decay" means the median rate of the last
quarter of the windows is at least --rate-floor times that of the first quarter (after warm-up). A shared machine
makes rates noisy: the floor is loose on purpose, a leak or a slowdown that grows with the run fails it anyway.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch


def rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # peak, Linux KiB (a fallback)


def main(argv=None) -> int:
    from seqimpute.runs import read_metrics
    from seqimpute.train import TrainConfig, train

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--updates", type=int, default=20000)
    ap.add_argument("--every", type=int, default=1000)
    ap.add_argument("--rss-tolerance-mb", type=float, default=20.0)
    ap.add_argument("--rate-floor", type=float, default=0.7)
    ap.add_argument("--json", help="write the samples and the verdict here")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory(prefix="seqimpute-soak-") as tmp:
        run = Path(tmp) / "run"
        cfg = TrainConfig(model="gpsi-add", data="sklearn-digits", mask="mcar:0.7",
                          model_options={"hidden": 16, "z": 4, "steps": 2}, updates=args.updates, batch=32,
                          log_every=args.every, ckpt_every=args.every, valid_every=5 * args.every, valid_size=100,
                          lr=1e-3, warmup=100)
        rss_at: dict[int, float] = {}
        cpu_at: dict[int, float] = {}  # process CPU seconds: a rate that other jobs on the machine barely move
        stop = threading.Event()

        def watch():  # RSS at the moment each window's metrics line appears
            seen = 0
            while not stop.is_set():
                path = run / "metrics.jsonl"
                if path.exists():
                    size = path.stat().st_size
                    if size != seen:
                        seen = size
                        r, c = rss_mb(), time.process_time()
                        for rec in read_metrics(run):
                            if "loss" in rec and rec["step"] not in rss_at:
                                rss_at[rec["step"]], cpu_at[rec["step"]] = r, c
                time.sleep(0.05)

        watcher = threading.Thread(target=watch, daemon=True)
        cpu_at[0] = time.process_time()
        watcher.start()
        t0 = time.perf_counter()
        summary = train(run, cfg, progress_bar=False)
        wall = time.perf_counter() - t0
        time.sleep(0.2)
        stop.set()
        watcher.join()
        recs = [r for r in read_metrics(run) if "loss" in r]

    rows, prev = [], 0
    for r in recs:
        cpu = None
        if r["step"] in cpu_at and prev in cpu_at:
            cpu = 1000 * (cpu_at[r["step"]] - cpu_at[prev]) / (r["step"] - prev)
        rows.append({"step": r["step"], "images_per_s": r["images_per_s"], "cpu_ms_per_update": cpu,
                     "rss_mb": rss_at.get(r["step"]), "loss": r["loss"], "skipped": r["skipped"]})
        prev = r["step"]
    print(f"{'step':>7s} {'img/s':>9s} {'CPU ms/upd':>11s} {'RSS MB':>8s} {'loss':>8s}")
    for r in rows:
        rss = "-" if r["rss_mb"] is None else f"{r['rss_mb']:.1f}"
        cpu = "-" if r["cpu_ms_per_update"] is None else f"{r['cpu_ms_per_update']:.2f}"
        print(f"{r['step']:7d} {r['images_per_s']:9.0f} {cpu:>11s} {rss:>8s} {r['loss']:8.3f}")
    body = rows[1:]  # the first window is warm-up
    q = max(1, len(body) // 4)
    # throughput = updates per CPU-second of this process (wall-clock rates on a shared machine follow the other
    # jobs; both are reported, the verdict uses CPU time, which a leak or a growing per-update cost still moves)
    rate = lambda r: 1000 / r["cpu_ms_per_update"] if r["cpu_ms_per_update"] else r["images_per_s"]
    first_rate = statistics.median(rate(r) for r in body[:q])
    last_rate = statistics.median(rate(r) for r in body[-q:])
    wall_first = statistics.median(r["images_per_s"] for r in body[:q])
    wall_last = statistics.median(r["images_per_s"] for r in body[-q:])
    with_rss = [r for r in body if r["rss_mb"] is not None]
    rss_start, rss_end = with_rss[0]["rss_mb"], with_rss[-1]["rss_mb"]
    rss_max = max(r["rss_mb"] for r in with_rss)
    ok_mem = rss_end - rss_start <= args.rss_tolerance_mb
    ok_rate = last_rate >= args.rate_floor * first_rate
    verdict = {"updates": summary["step"], "wall_s": wall, "rss_start_mb": rss_start, "rss_end_mb": rss_end,
               "rss_max_mb": rss_max, "rss_growth_mb": rss_end - rss_start, "rate_first_quarter": first_rate,
               "rate_last_quarter": last_rate, "rate_ratio": last_rate / first_rate, "rate_unit": "updates per CPU s",
               "wall_images_per_s_first_quarter": wall_first, "wall_images_per_s_last_quarter": wall_last,
               "memory_flat": ok_mem,
               "throughput_steady": ok_rate, "threads": torch.get_num_threads(), "torch": torch.__version__}
    print(f"{summary['step']} updates in {wall:.0f} s; RSS {rss_start:.1f} -> {rss_end:.1f} MB (max {rss_max:.1f}); "
          f"throughput median first quarter {first_rate:.0f}, last quarter {last_rate:.0f} updates per CPU-second "
          f"(ratio {last_rate / first_rate:.2f}; wall clock {wall_first:.0f} -> {wall_last:.0f} img/s); "
          f"memory flat: {ok_mem}; throughput steady: {ok_rate}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"samples": rows, "verdict": verdict}, indent=2))
    assert ok_mem, f"RSS grew by {rss_end - rss_start:.1f} MB over the run"
    assert ok_rate, f"throughput decayed: {first_rate:.0f} -> {last_rate:.0f} updates per CPU-second"
    return 0


if __name__ == "__main__":
    sys.exit(main())
