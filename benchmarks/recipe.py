"""GPSI-add recipes on MNIST MCAR-80 at a fixed wall-clock budget: which settings learn the most per second.

Each recipe trains a fresh run with `seqimpute train` (the real loop, `clock=wall`, validation included in the
budget) for ``--minutes`` wall-minutes with ``--threads`` torch threads at ``--precision``, one recipe after the
other on an otherwise idle machine. The score is the guided bound on MCAR-80 validation holes (the first 500
validation images, one guide sample, as training validates); the test split is not read. Writes
``<out>/<precision>.json``: per recipe its settings, updates, the curve of validation bound against wall seconds
and the best bound, with the CPU and thread count.

    python benchmarks/recipe.py --precision fp32 --minutes 5 --threads 2
    python benchmarks/recipe.py --precision bf16 --minutes 5 --threads 2 \
        --recipes h500-T6-b250-lr1e-3,h500-T2-b250-lr2e-3
    python benchmarks/recipe.py --report      # docs/figures/recipe-<precision>.png
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch

from seqimpute.files import atomic_write
from seqimpute.precision import cpu_name
from seqimpute.runs import read_metrics
from seqimpute.train import TrainConfig, train

# name -> (model options, training options); every recipe is GPSI-add, z 100, trained on MCAR-80 holes; the first is
# the earlier demo's, the paper's T=6 at hidden 500
RECIPES = {
    "h500-T6-b250-lr1e-3": ({"hidden": 500, "steps": 6}, {"lr": 1e-3, "batch": 250}),
    "h500-T6-b250-lr2e-3": ({"hidden": 500, "steps": 6}, {"lr": 2e-3, "batch": 250}),
    "h500-T3-b250-lr2e-3": ({"hidden": 500, "steps": 3}, {"lr": 2e-3, "batch": 250}),
    "h500-T6-b100-lr2e-3": ({"hidden": 500, "steps": 6}, {"lr": 2e-3, "batch": 100}),
    "h500-T3-b100-lr2e-3": ({"hidden": 500, "steps": 3}, {"lr": 2e-3, "batch": 100}),
    "h500-T2-b250-lr2e-3": ({"hidden": 500, "steps": 2}, {"lr": 2e-3, "batch": 250}),
    "h250-T3-b250-lr2e-3": ({"hidden": 250, "steps": 3}, {"lr": 2e-3, "batch": 250}),
    "h500-T3-b250-lr3e-3": ({"hidden": 500, "steps": 3}, {"lr": 3e-3, "batch": 250}),
    "h250-T2-b100-lr2e-3": ({"hidden": 250, "steps": 2}, {"lr": 2e-3, "batch": 100}),
    "h250-T2-b250-lr2e-3": ({"hidden": 250, "steps": 2}, {"lr": 2e-3, "batch": 250}),
    "h500-T2-b100-lr2e-3": ({"hidden": 500, "steps": 2}, {"lr": 2e-3, "batch": 100}),
}
MASK = "mcar:0.8"
VALID_SIZE = 500


def run_recipe(name: str, folder: Path, precision: str, minutes: float, valid_every: int) -> dict:
    model_options, options = RECIPES[name]
    if folder.exists():
        shutil.rmtree(folder)
    cfg = TrainConfig(model="gpsi-add", data="mnist", mask=MASK, model_options=dict(model_options), minutes=minutes,
                      clock="wall", precision=precision, valid_every=valid_every, valid_size=VALID_SIZE,
                      ckpt_every=10**9, **options)
    t0 = time.perf_counter()
    summary = train(folder, cfg, progress_bar=False, quiet=True)
    wall = time.perf_counter() - t0
    curve = [(m["elapsed_s"], m["step"], m["valid_bound_paper_units"]) for m in read_metrics(folder)
             if "valid_bound_paper_units" in m]
    return {"model_options": model_options, "train_options": options, "updates": summary["step"],
            "images_per_s": summary["images_per_s"], "wall_s": wall,
            "best_valid_bound_paper_units": min(v for _, _, v in curve),
            "final_valid_bound_paper_units": curve[-1][2],
            "curve": [{"elapsed_s": t, "step": s, "valid_bound_paper_units": v} for t, s, v in curve]}


def report(out: Path, figures: Path) -> list[Path]:
    """The curves of every recipe at each measured precision: docs/figures/recipe-<precision>.png. (The tables of
    docs/RESULTS.md: benchmarks/results_tables.py recipe-fp32 / recipe-bf16.)"""
    from seqimpute.plots import training_curves

    written = []
    for prec in ("fp32", "bf16"):
        path = out / f"{prec}.json"
        if path.exists():
            res = json.loads(path.read_text())
            best = sorted(res["recipes"].items(), key=lambda kv: kv[1]["best_valid_bound_paper_units"])
            curves = {name: r["curve"] for name, r in best}
            written.append(training_curves(curves, figures / f"recipe-{prec}.png", x="elapsed_s",
                                           title=f"GPSI-add, MNIST MCAR-80 validation holes: {prec}, "
                                                 f"{res['threads']} threads\n{res['cpu']}"))
    return written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--report", action="store_true", help="render the figures and the table from --out and stop")
    ap.add_argument("--figures", default="docs/figures")
    ap.add_argument("--precision", choices=["fp32", "bf16"])
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--recipes", default=",".join(RECIPES), help="comma-separated names (default: all)")
    ap.add_argument("--valid-every", type=int, default=200)
    ap.add_argument("--runs", default="runs/recipe")
    ap.add_argument("--out", default="results/recipe")
    args = ap.parse_args()
    if args.report:
        print("\n".join(map(str, report(Path(args.out), Path(args.figures)))))
        return
    if args.precision is None:
        ap.error("--precision is required to train")
    torch.set_num_threads(args.threads)
    out = Path(args.out) / f"{args.precision}.json"
    res = json.loads(out.read_text()) if out.exists() else {}
    command = "python benchmarks/recipe.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k not in ("runs", "out", "report", "figures"))
    res.update({"cpu": cpu_name(), "threads": torch.get_num_threads(), "precision": args.precision,
                "minutes": args.minutes,
        "clock": "wall", "mask": MASK, "valid_size": VALID_SIZE, "torch": torch.__version__})
    res.setdefault("recipes", {})
    for name in args.recipes.split(","):
        r = run_recipe(name, Path(args.runs) / args.precision / name, args.precision, args.minutes, args.valid_every)
        res["recipes"][name] = {"command": command, **r}
        print(f"{name}: {r['updates']} updates, best valid bound {r['best_valid_bound_paper_units']:.2f}, "
              f"final {r['final_valid_bound_paper_units']:.2f}", flush=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(out, json.dumps(res, indent=2).encode())


if __name__ == "__main__":
    main()
