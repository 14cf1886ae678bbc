"""The commands that draw: `seqimpute impute` (refinement trajectories), `sample` (Fig 1) and `curve`."""

from __future__ import annotations

from ..errors import SeqImputeError
from .args import add_checkpoint, add_data_root, add_device, add_precision, add_seed


def add_impute(sub) -> None:
    p = sub.add_parser("impute", help="fill in images with a trained run and draw the refinement trajectories")
    p.add_argument("run", help="run folder, or a pretrained model's name (seqimpute pretrained list)")
    p.add_argument("--input", required=True, help=".png/.jpg image, or .npy/.npz images (N,H,W or N,D; NaN = missing)")
    p.add_argument("--mask", default="nan", help="mask spec to apply (default nan: impute the NaN values)")
    p.add_argument("--samples", type=int, default=3, help="imputations per image")
    p.add_argument("--out", required=True, help="PNG grid to write")
    p.add_argument("--save", help="also save the final imputations as .npy (samples x images x values)")
    p.add_argument("--steps", type=int, help="roll out for T steps instead of the trained number")
    p.add_argument("--columns", type=int, default=8, help="steps shown per row")
    p.add_argument("--max-images", type=int, default=16)
    add_checkpoint(p, ["best", "last"])
    add_seed(p)
    add_device(p)
    add_precision(p)
    add_data_root(p)
    p.set_defaults(func=cmd_impute)


def cmd_impute(args) -> int:
    import numpy as np
    import torch

    from ..data.masks import mask_sampler
    from ..data.formats import read_images
    from ..sampling import image_inputs, sample_trajectories
    from ..plots import trajectory_grid
    from ..pretrained import load_model

    for name in ("columns", "max_images"):
        if getattr(args, name) < 1:
            raise SeqImputeError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}.")
    model, cfg, _ = load_model(args.run, args.checkpoint, device=args.device or "cpu")
    shape = tuple(cfg["data"].get("image_shape") or []) or None
    if shape is None:
        raise SeqImputeError("`seqimpute impute` draws image grids; for tables use seqimpute.SequentialImputer.")
    x = read_images(args.input, shape)[: args.max_images]
    mask = mask_sampler(args.mask).sample(len(x), shape, generator=torch.Generator().manual_seed(args.seed),
                                          x=torch.from_numpy(x) if args.mask == "nan" else None, dim=x.shape[1])
    x, observed = (torch.from_numpy(a) for a in image_inputs(x, mask.numpy(), shape, model.dim))
    if not (~observed).any():
        raise SeqImputeError(f"mask {args.mask!r} leaves nothing missing in {args.input}; choose another mask.")
    traj = sample_trajectories(model, x, observed, args.samples, steps=args.steps, seed=args.seed,
                               precision=args.precision)
    T = traj.shape[2] - 1
    keep = sorted(set(np.linspace(1, T, min(T, args.columns)).round().astype(int).tolist())) if T else [0]
    rows = []
    for i in range(len(x)):
        complete = not torch.isnan(x[i]).any()
        for k in range(traj.shape[0]):
            rows.append({"x": x[i].numpy(), "observed": observed[i].numpy(),
                         "steps": [traj[k, i, t].numpy() for t in keep],
                         "truth": x[i].numpy() if complete else None})
    out = trajectory_grid(rows, shape, args.out, [f"t={t}" for t in keep],
                          f"{cfg['model']['name']}: {args.samples} sample(s) per image, mask {args.mask}")
    print(f"wrote {out}")
    if args.save:
        np.save(args.save, traj[:, :, -1].numpy())
        print(f"wrote {args.save} (samples x images x values)")
    return 0


def add_sample(sub) -> None:
    p = sub.add_parser("sample", help="draw samples of a generative model, sigmoid(c_t) at chosen steps (Fig 1)")
    p.add_argument("run", help="run folder, or a pretrained model's name (seqimpute pretrained list)")
    p.add_argument("--n", type=int, default=64, help="samples (default 64)")
    p.add_argument("--out", required=True, help="PNG to write")
    p.add_argument("--steps", help="comma-separated steps to show, e.g. 0,2,4,8,16 (default 1,3,5,9,T)")
    add_checkpoint(p, ["best", "last", "finetuned"])
    add_seed(p)
    add_device(p)
    add_data_root(p)
    p.set_defaults(func=cmd_sample)


def _step_list(text: str | None, T: int) -> list[int]:
    if not text:
        from ..sampling import fig1_steps

        return fig1_steps(T)
    try:
        steps = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise SeqImputeError(f"--steps takes comma-separated step numbers, e.g. 0,2,4,8,{T}; got {text!r}.") from None
    bad = [t for t in steps if not 0 <= t <= T]
    if not steps or bad:
        raise SeqImputeError(f"--steps must name steps in 0..{T} (the model's T), got {text!r}.")
    return steps


def cmd_sample(args) -> int:
    from ..sampling import sample_prior
    from ..plots import sample_grid
    from ..pretrained import load_model

    if args.n < 1:
        raise SeqImputeError(f"--n must be positive, got {args.n}.")
    model, cfg, _ = load_model(args.run, args.checkpoint, device=args.device or "cpu")
    shape = tuple(cfg["data"].get("image_shape") or []) or None
    if shape is None:
        raise SeqImputeError("`seqimpute sample` draws images; this run's data are a table, not images.")
    if not model.trainable:
        raise SeqImputeError(f"{cfg['model']['name']} is not a generative policy; sample from a trained model "
                             f"such as draw-ext-add.")
    steps = _step_list(args.steps, model.steps)
    frames = sample_prior(model, args.n, steps, seed=args.seed)
    out = sample_grid(frames, shape, args.out, steps,
                      f"{cfg['model']['name']}: sigmoid(c_t) of {args.n} samples from the prior")
    print(f"wrote {out}")
    return 0


def add_curve(sub) -> None:
    p = sub.add_parser("curve", help="plot validation bound against images seen for one or more runs")
    p.add_argument("runs", nargs="+")
    p.add_argument("--out", required=True, help="PNG to write")
    p.add_argument("--reference", action="append", default=[], metavar="NAME=VALUE", help="a dashed line, e.g. paper=80.5")
    p.add_argument("--title")
    p.set_defaults(func=cmd_curve)


def cmd_curve(args) -> int:
    from pathlib import Path

    from .. import runs
    from ..plots import training_curves

    curves = {}
    for run in args.runs:
        runs.read_config(run)  # a clear error for a folder that is not a run
        curves[Path(run).name] = runs.read_metrics(run)
    refs = {}
    for item in args.reference:
        name, eq, value = item.rpartition("=")
        try:
            refs[name or "reference"] = float(value)
        except ValueError:
            raise SeqImputeError(f"--reference takes NAME=VALUE, e.g. paper=80.5; got {item!r}.") from None
    print(f"wrote {training_curves(curves, args.out, args.title or '', refs)}")
    return 0
