"""SIGKILL a training run at random moments, resume it after each kill, and compare the end with an uninterrupted
run of the same command: the final parameters (last and best checkpoints) must be bit-for-bit equal and the
metrics must tell one history. Writes results/reliability/kill-resume.json.

    python benchmarks/kill_resume.py [--kills 20] [--updates 400] [--seed 0]

Each kill lands at a random update (uniform over what is left of the run, so in training, validation, logging or a
checkpoint write: wherever the process happens to be), plus a random 0-60 ms. Checkpoints come every 10 updates.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from seqimpute.precision import cpu_name  # noqa: E402
from seqimpute.runs import load_checkpoint, load_run_model, read_metrics  # noqa: E402

WALL_CLOCK = ("elapsed_s", "images_per_s")


def argv(updates: int, seed: int) -> list[str]:
    return ["train", "--model", "gpsi-add", "--data", "sklearn-digits", "--mask", "mcar:0.7", "--updates",
            str(updates), "--batch", "32", "--seed", str(seed), "--quiet", "--threads", "1", "--set", "hidden=64",
            "--set", "z=8", "--set", "steps=3", "--set", "ckpt_every=10", "--set", "log_every=1",
            "--set", "valid_every=50", "--set", "valid_size=100"]


def launch(args: list[str], run: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "seqimpute", *args, "--run", str(run)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def logged_step(run: Path) -> int:
    steps = [r["step"] for r in read_metrics(run) if "loss" in r]
    return steps[-1] if steps else 0


def kill_at(proc: subprocess.Popen, run: Path, update: int, delay: float) -> int | None:
    """SIGKILL ``proc`` ``delay`` seconds after it logged ``update``; the update it had logged, or None when the
    run ended first."""
    hit = None
    while proc.poll() is None:
        if hit is None and logged_step(run) >= update:
            hit = time.monotonic()
        if hit is not None and time.monotonic() - hit >= delay:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return logged_step(run)
        time.sleep(0.002)
    return None


def params(run: Path, which: str) -> dict:
    return load_run_model(run, which)[0].state_dict()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--updates", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "results" / "reliability" / "kill-resume.json"))
    a = ap.parse_args()
    os.environ["OMP_NUM_THREADS"] = "1"
    rng, args = random.Random(a.seed), argv(a.updates, a.seed)
    with tempfile.TemporaryDirectory() as tmp:
        ref, run = Path(tmp) / "uninterrupted", Path(tmp) / "killed"
        subprocess.run([sys.executable, "-m", "seqimpute", *args, "--run", str(ref)], check=True,
                       stdout=subprocess.DEVNULL)
        targets = sorted(rng.sample(range(1, a.updates), a.kills))  # distinct updates, in the order the run meets them
        kills = []
        for target in targets:
            at = kill_at(launch(args, run), run, target, rng.uniform(0, 0.06))
            if at is None:
                raise SystemExit(f"the run ended before the kill at update {target}")
            partial = sorted(p.name for p in run.glob(".*.part"))
            kills.append({"after_update": target, "logged_update": at, "mid_write": bool(partial),
                          "checkpoint_update": int(load_checkpoint(run / "last.pt")["step"])})
            print(f"kill {len(kills)}: logged update {at}, last checkpoint {kills[-1]['checkpoint_update']}"
                  f"{' (inside a checkpoint write)' if partial else ''}", flush=True)
        proc = launch(args, run)
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(err.decode()[-2000:])
        equal = {w: all(torch.equal(p, q) for p, q in zip(params(ref, w).values(), params(run, w).values()))
                 for w in ("last", "best")}
        timeless = lambda rs: [{k: v for k, v in r.items() if k not in WALL_CLOCK} for r in rs]
        same_history = timeless(read_metrics(ref)) == timeless(read_metrics(run))
    out = {"kills": len(kills), "updates": a.updates, "mid_write_kills": sum(k["mid_write"] for k in kills),
           "final_last_equal": equal["last"], "final_best_equal": equal["best"], "metrics_equal": same_history,
           "cpu": cpu_name(), "torch": torch.__version__, "command": "python benchmarks/kill_resume.py "
           f"--kills {a.kills} --updates {a.updates} --seed {a.seed}", "kill_log": kills}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"{len(kills)} kills, final parameters equal to the uninterrupted run's: last {equal['last']}, "
          f"best {equal['best']}; metrics one history: {same_history}; wrote {a.out}")


if __name__ == "__main__":
    main()
