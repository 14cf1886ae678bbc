"""The command line: `seqimpute data|train|eval|impute|sample|finetune|curve|fit-transform|demo|bench ...`.
Mistakes exit with code 2 and one line."""

from __future__ import annotations

import argparse
import json
import math
import sys

from .errors import SeqImputeError


def _add_precision_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"],  # precision.PRECISIONS
                   help="of the matrix products: auto (default: bf16 where the device runs it fast), bf16, fp32")


def _add_data_args(p: argparse.ArgumentParser, data_required: bool = True) -> None:
    p.add_argument("--data", required=data_required, help="dataset name (seqimpute data list) or a path to your own "
                   ".npz/.npy/.csv file or image folder")
    _add_data_options(p)


def _add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", help="download cache (default $SEQIMPUTE_DATA or ~/.cache/seqimpute)")
    p.add_argument("--data-path", help="your copy of a source's files (IDX/.amat/SVHN .mat folder, TFD file)")
    p.add_argument("--size", help="resize images to HxW (image folders, orl-faces) or declare the HxW of flat rows")
    p.add_argument("--scale", choices=["none", "minmax"], help="minmax: scale each image into [0,1]")
    p.add_argument("--data-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="a source-specific option, e.g. --data-opt extra=200000 (svhn) or fold=1 (tfd)")


def data_options(args) -> dict:
    opts = {"path": getattr(args, "data_path", None), "size": getattr(args, "size", None),
            "scale": getattr(args, "scale", None)}
    for item in getattr(args, "data_opt", None) or []:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise SeqImputeError(f"--data-opt takes KEY=VALUE, got {item!r}.")
        opts[key.strip()] = value.strip()
    return opts


# ---------------------------------------------------------------------------------------------------- data


def cmd_data(args) -> int:
    from .data import sources

    if args.action == "list":
        for name, src in sources.REGISTRY.items():
            print(f"{name:16s} {src.description}")
            for opt, desc in src.options.items():
                flag = {"path": "--data-path", "size": "--size"}.get(opt, f"--data-opt {opt}=")
                print(f"{'':18s}{flag}: {desc}")
        print(f"{'PATH':16s} your own data: .npz (key 'x'), .npy, .csv (NaN = missing), or a folder of images")
        return 0
    if args.name is None:
        raise SeqImputeError(f"`seqimpute data {args.action}` needs a dataset name, e.g. mnist.")
    if args.action == "get":
        if args.name in sources.REGISTRY:
            path = sources.get_dataset(args.name, args.data_root)
            print(f"{args.name}: {'cached at ' + str(path) if path else 'nothing to download'}")
        sources.load_splits(args.name, args.data_root, **data_options(args))  # check it loads
        print(f"{args.name}: ready")
        return 0
    # info
    info = data_info(args.name, args.data_root, **data_options(args))
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"dataset   {info['name']}")
    print(f"shape     {info['shape']}  ({info['dim']} values per example)")
    print("splits    " + "  ".join(f"{s} {n}" for s, n in info["sizes"].items()))
    lo, hi = ("-" if v is None else f"{v:.4g}" for v in (info["min"], info["max"]))
    print(f"range     {lo} .. {hi}   missing (NaN) {info['nan_fraction']:.3g}")
    print(f"values    {info['likelihood']} likelihood")
    print(f"source    {info['note']}")
    print(f"location  {info['location']}")
    return 0


def data_info(name, data_root=None, **options) -> dict:
    import numpy as np

    from .data import sources

    splits, canon = sources.load_splits(name, data_root, **options)
    arrays = splits.arrays
    allv = np.concatenate([a.ravel() for a in arrays.values()])
    finite = allv[np.isfinite(allv)]
    d = arrays["train"].shape[1]
    shape = f"{splits.image_shape[0]}x{splits.image_shape[1]}" if splits.image_shape else f"table of {d} columns"
    ds = sources.load_dataset(name, "train", data_root, **options)
    return {"name": canon, "sizes": {s: int(len(a)) for s, a in arrays.items()}, "shape": shape, "dim": int(d),
            "image_shape": list(splits.image_shape) if splits.image_shape else None,
            "min": float(finite.min()) if finite.size else None,  # None, not NaN: the JSON stays valid
            "max": float(finite.max()) if finite.size else None,
            "nan_fraction": float(1 - finite.size / max(allv.size, 1)), "likelihood": ds.likelihood,
            "note": splits.note, "location": splits.location}


# ---------------------------------------------------------------------------------------------------- train / eval


def _set_values(items: list[str]) -> dict:
    """--set KEY=VALUE items as {key: value}, the value read as JSON when it parses (numbers, true, lists), else
    kept as a string; dashes in keys become underscores."""
    out = {}
    for item in items or []:
        key, eq, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not eq or not key:
            raise SeqImputeError(f"--set takes KEY=VALUE, got {item!r}.")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value.strip()
    return out


def _parse_sets(items: list[str], model_keys: set[str]) -> tuple[dict, dict]:
    """--set key=value: model options (hidden, z, steps, ...) or training options (lr, warmup, optimizer, ...)."""
    from .train import TrainConfig

    train_keys = TrainConfig.fields() - {"model", "data", "mask", "data_options", "model_options", "sizes",
                                         "updates", "minutes", "batch", "seed", "device"}
    model_opts, train_opts = {}, {}
    for key, parsed in _set_values(items).items():
        if key in model_keys:
            model_opts[key] = parsed
        elif key in train_keys:
            train_opts[key] = parsed
        else:
            raise SeqImputeError(f"unknown option {key!r} for --set; model options: {', '.join(sorted(model_keys))}; "
                                 f"training options: {', '.join(sorted(train_keys))}.")
    return model_opts, train_opts


def cmd_train(args) -> int:
    from pathlib import Path

    from .models.registry import spec
    from .train import RUNTIME_KEYS, TrainConfig, train

    run = Path(args.run)
    if (run / "last.pt").exists():  # resume: the stored config rules; new totals and runtime settings apply
        cfg = None
        if args.updates is not None or args.minutes is not None or args.device is not None or args.set:
            stored = TrainConfig.stored(run)
            model_opts, train_opts = _parse_sets(args.set, spec(stored.model).option_names())
            # the command that started the run may be given again; a runtime setting may change (precision=fp32)
            changed = [k for k, v in model_opts.items() if stored.model_options.get(k) != v] + \
                      [k for k, v in train_opts.items() if k not in RUNTIME_KEYS and getattr(stored, k) != v]
            if changed:
                allowed = ", ".join(k for k in RUNTIME_KEYS if k not in ("updates", "minutes", "device"))
                raise SeqImputeError(f"{run} keeps the settings it started with ({', '.join(changed)} differ); on "
                                     f"resume --set may change only {allowed}; start a new run folder to change "
                                     f"the others.")
            for key, value in train_opts.items():
                setattr(stored, key, value)
            if args.model and args.model != stored.model:
                raise SeqImputeError(f"{run} holds a {stored.model} run, not {args.model}; choose another --run folder.")
            stored.updates = args.updates if args.updates is not None else stored.updates
            stored.minutes = args.minutes if args.minutes is not None else stored.minutes
            stored.device = args.device or stored.device
            cfg = stored
        print(f"resuming {run}")
        summary = train(run, cfg, progress_bar=not args.quiet)
    else:
        missing = [f for f in ("model", "data", "mask") if not getattr(args, f)]
        if missing:
            raise SeqImputeError(f"a new run needs --{', --'.join(missing)} (or --run pointing at an existing run).")
        model_opts, train_opts = _parse_sets(args.set, spec(args.model).option_names())
        cfg = TrainConfig(model=args.model, data=args.data, mask=args.mask, data_options=data_options(args),
                          sizes=args.sizes, model_options=model_opts, updates=args.updates, minutes=args.minutes,
                          batch=args.batch, seed=args.seed, device=args.device or "cpu", **train_opts)
        summary = train(run, cfg, progress_bar=not args.quiet)
    speed = f" at {summary['images_per_s']:.0f} images/s ({summary['precision']} products)" \
        if math.isfinite(summary.get("images_per_s", math.nan)) else ""
    print(f"trained {summary['step']} updates in {summary['elapsed_s'] / 60:.1f} min{speed}; best validation bound "
          f"{summary['best_valid_bound_paper_units']:.2f} (paper units); run folder {summary['run']}")
    return 0


def cmd_eval(args) -> int:
    from .data.sources import load_dataset
    from .evaluate import evaluate, format_table
    from .runs import load_run_model

    model, cfg, _ = load_run_model(args.run, args.checkpoint, device=args.device or "cpu")
    dopts = {**cfg["train"].get("data_options", {}), **{k: v for k, v in data_options(args).items() if v}}
    data = load_dataset(args.data or cfg["train"]["data"], args.split, **dopts)
    res = evaluate(model, data, args.mask or cfg["train"]["mask"], samples=args.samples, steps=args.steps,
                   n=args.n, seed=args.seed, progress=not args.quiet, unguided_samples=args.unguided_samples,
                   precision=args.precision)
    res["run"] = str(args.run)
    print(format_table(res))
    if args.json:
        from pathlib import Path

        Path(args.json).write_text(json.dumps(res, indent=2))
        print(f"wrote {args.json}")
    return 0


def cmd_impute(args) -> int:
    import numpy as np
    import torch

    from .data.masks import mask_sampler
    from .imputation import read_images, sample_trajectories
    from .plots import trajectory_grid
    from .runs import load_run_model

    for name in ("columns", "max_images"):
        if getattr(args, name) < 1:
            raise SeqImputeError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}.")
    model, cfg, _ = load_run_model(args.run, args.checkpoint, device=args.device or "cpu")
    shape = tuple(cfg["data"].get("image_shape") or []) or None
    x = read_images(args.input, shape)
    if shape is None:
        raise SeqImputeError("`seqimpute impute` draws image grids; for tables use seqimpute.SequentialImputer.")
    if len(x) > args.max_images:
        x = x[: args.max_images]
    observed = mask_sampler(args.mask).sample(len(x), shape, generator=torch.Generator().manual_seed(args.seed),
                                              x=x if args.mask == "nan" else None, dim=x.shape[1])
    observed &= ~torch.isnan(x)
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


def cmd_curve(args) -> int:
    from pathlib import Path

    from . import runs
    from .plots import training_curves

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


def cmd_bench(args) -> int:
    from .bench import format_table, run_bench, run_sweep
    from .models.registry import MODELS, spec

    overrides = _set_values(args.set)
    compile_, precision = bool(overrides.pop("compile", False)), overrides.pop("precision", "auto")
    device = args.device or "cpu"
    if torch_device_is_cuda(device):
        import torch

        if not torch.cuda.is_available():
            raise SeqImputeError("--device cuda was asked for but no CUDA GPU is available; use --device cpu.")
    if args.sweep:
        model = (args.model or ["gpsi-add"])[0]
        if not spec(model).presets:
            raise SeqImputeError(f"{model} is not trained; --sweep takes a trainable model, e.g. gpsi-add.")
        values = [int(v) for v in args.values.split(",")] if args.values else None
        res = run_sweep(args.sweep, model, args.sizes, args.batch, device, args.steps, values, overrides or None,
                        compile_, precision, warmup=args.warmup)
    else:
        models = list(MODELS) if args.all else args.model
        if not models:
            raise SeqImputeError("give --model NAME (repeatable), --all or --sweep T|D|batch.")
        res = run_bench(models, args.sizes, args.batch, device, args.steps, overrides or None, compile_, precision,
                        warmup=args.warmup)
    print(format_table(res))
    if args.json:
        from pathlib import Path

        one = res["models"][0] if len(res["models"]) == 1 else {}
        payload = {**{k: v for k, v in res.items()}, **{k: one[k] for k in
                   ("train_images_per_s", "step_gflops", "peak_share", "impute_images_per_s") if k in one}}
        Path(args.json).write_text(json.dumps(payload, indent=2))
        print(f"wrote {args.json}")
    return 0


def torch_device_is_cuda(device: str) -> bool:
    return str(device).split(":")[0] == "cuda"


def cmd_demo(args) -> int:
    from .demo import run_demo

    return run_demo(args)


# ---------------------------------------------------------------------------------------------------- fit-transform


def cmd_fit_transform(args) -> int:
    import numpy as np

    from .imputer import SequentialImputer, check_output, read_table, write_table

    check_output(args.output)
    X, header, shape = read_table(args.input)
    imp = SequentialImputer(model=args.model, likelihood=args.likelihood, max_updates=args.updates,
                            max_minutes=args.minutes, n_rollouts=args.rollouts, device=args.device or "cpu",
                            random_state=args.seed, verbose=not args.quiet)
    filled = imp.fit_transform(X)
    samples = imp.sample(X, args.samples) if args.samples else None
    written = write_table(args.output, filled, header, shape if len(shape) > 2 else None, samples)
    n_missing = int(np.isnan(X).sum())
    print(f"imputed {n_missing} missing value(s) of {X.shape[0]}x{X.shape[1]} with {args.model} "
          f"({imp.likelihood_} likelihood, {imp.n_updates_} updates in {imp.training_seconds_:.1f} s); wrote "
          + ", ".join(str(p) for p in written))
    return 0


# ---------------------------------------------------------------------------------------------------- generators


def cmd_finetune(args) -> int:
    from .finetune import finetune

    res = finetune(args.run, updates=args.updates, minutes=args.minutes, checkpoint=args.checkpoint,
                   batch=args.batch, eval_n=args.n, eval_samples=args.samples, seed=args.seed,
                   device=args.device or "cpu", progress_bar=not args.quiet, clock=args.clock)
    raw, tuned = res["raw"], res["finetuned"]
    print(f"fine-tuned q of {res['model']} ({args.checkpoint}) for {res['updates']} updates "
          f"({res['minutes']:.1f} min) on {res['split']}; p unchanged")
    print(f"test bound, nats per image ({res['eval_images']} images, K={res['eval_samples']}): "
          f"raw {raw['bound_nats_per_image']:.2f}, fine-tuned {tuned['bound_nats_per_image']:.2f}")
    if res["eval_samples"] > 1:
        print(f"importance-weighted NLL, nats per image: raw {raw['iw_nats_per_image']:.2f}, "
              f"fine-tuned {tuned['iw_nats_per_image']:.2f}")
    print(f"wrote {args.run}/finetuned.pt and {args.run}/finetune.json (best.pt and last.pt untouched)")
    return 0


def _step_list(text: str | None, T: int) -> list[int]:
    if not text:  # the paper's Fig 1 steps {1, 3, 5, 9, 16}, within 0..T, and always T
        return sorted({t for t in (1, 3, 5, 9) if t <= T} | {T})
    try:
        steps = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise SeqImputeError(f"--steps takes comma-separated step numbers, e.g. 0,2,4,8,{T}; got {text!r}.") from None
    bad = [t for t in steps if not 0 <= t <= T]
    if not steps or bad:
        raise SeqImputeError(f"--steps must name steps in 0..{T} (the model's T), got {text!r}.")
    return steps


def cmd_sample(args) -> int:
    import numpy as np
    import torch

    from .plots import sample_grid
    from .runs import load_run_model

    if args.n < 1:
        raise SeqImputeError(f"--n must be positive, got {args.n}.")
    model, cfg, _ = load_run_model(args.run, args.checkpoint, device=args.device or "cpu")
    shape = tuple(cfg["data"].get("image_shape") or []) or None
    if shape is None:
        raise SeqImputeError("`seqimpute sample` draws images; this run's data are a table, not images.")
    if not model.trainable:
        raise SeqImputeError(f"{cfg['model']['name']} is not a generative policy; sample from a trained model "
                             f"such as draw-ext-add.")
    T = getattr(model, "steps", 0)
    steps = _step_list(args.steps, T)
    device = next(model.parameters()).device
    model.eval()
    gen = torch.Generator(device=device).manual_seed(args.seed)
    x = torch.zeros(args.n, model.dim, device=device)
    with torch.inference_mode():  # sampling from the primary: everything missing, no guide
        r = model.rollout(x, torch.zeros_like(x, dtype=torch.bool), guided=False, generator=gen)
        frames = np.stack([torch.sigmoid(r.canvases[t]).cpu().numpy() for t in steps])
    out = sample_grid(frames, shape, args.out, steps,
                      f"{cfg['model']['name']}: sigmoid(c_t) of {args.n} samples from the prior")
    print(f"wrote {out}")
    return 0


# ---------------------------------------------------------------------------------------------------- reproduce


def cmd_reproduce(args) -> int:
    import shlex

    from .experiments.reproduce import reproduce

    argv = ["seqimpute", "reproduce", args.experiment, "--preset", args.preset, "--runs", args.runs, "--out", args.out]
    for flag, value in (("--data-root", args.data_root), ("--data", args.data), ("--tfd-path", args.tfd_path),
                        ("--svhn-path", args.svhn_path), ("--binarized-path", args.binarized_path),
                        ("--device", args.device)):
        if value:
            argv += [flag, value]
    if args.smoke:
        argv += ["--smoke", "--smoke-updates", str(args.smoke_updates)]
    argv += ["--report-only"] if args.report_only else []
    argv += ["--jobs", str(args.jobs)] if args.jobs != 1 else []
    res = reproduce(args.experiment, args.preset, runs=args.runs, out=args.out, smoke=args.smoke, jobs=args.jobs,
                    smoke_updates=args.smoke_updates, data=args.data, tfd_path=args.tfd_path,
                    svhn_path=args.svhn_path, binarized_path=args.binarized_path, device=args.device or "cpu",
                    quiet=args.quiet, report_only=args.report_only, command=shlex.join(argv))
    print(f"wrote {res['out']}: " + ", ".join(f for files in res["files"].values() for f in files))
    print(f"runs in {res['runs']}; status in {res['status']}")
    return 0


# ---------------------------------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seqimpute", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("data", help="list, download and describe datasets")
    p.add_argument("action", choices=["list", "get", "info"])
    p.add_argument("name", nargs="?")
    p.add_argument("--json", action="store_true", help="info as JSON")
    _add_data_options(p)
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("train", help="train (or resume) a model in a run folder")
    p.add_argument("--model", help="gpsi-add, gpsi-jump, ...")
    _add_data_args(p, data_required=False)
    p.add_argument("--mask", help="mask spec, e.g. mcar:0.8, MAR-14, square:12-18")
    p.add_argument("--run", required=True, help="run folder (resumed when it exists)")
    p.add_argument("--updates", type=int, help="total updates of the run")
    p.add_argument("--minutes", type=float, help="total training budget in minutes (default 30 when no "
                   "--updates): wall clock, or the process's CPU time with --set clock=cpu")
    p.add_argument("--batch", type=int, default=250)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", help="cpu (default), cuda, cuda:1, ...")
    p.add_argument("--sizes", help="size preset: mnist, tfd, svhn (default: by the data's size)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a model or training option, e.g. --set hidden=200 --set optimizer=paper")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="score a trained run on fixed test masks")
    p.add_argument("run")
    p.add_argument("--mask", help="mask spec (default: the training mask)")
    p.add_argument("--samples", type=int, default=10, help="K rollouts per image (default 10, as the paper)")
    p.add_argument("--unguided-samples", type=int, help="unguided rollouts per image for the unguided NLL and MSE "
                   "(default min(K, 10) for a policy, K otherwise)")
    p.add_argument("--steps", type=int, help="roll out for T steps instead of the trained number")
    p.add_argument("--split", default="test", choices=["train", "valid", "test"])
    p.add_argument("--n", type=int, help="only the first N images")
    p.add_argument("--checkpoint", default="best", choices=["best", "last", "finetuned"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device")
    p.add_argument("--json", help="write the scores to this JSON file")
    p.add_argument("--quiet", action="store_true")
    _add_precision_arg(p)
    _add_data_args(p, data_required=False)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("impute", help="fill in images with a trained run and draw the refinement trajectories")
    p.add_argument("run")
    p.add_argument("--input", required=True, help=".png/.jpg image, or .npy/.npz images (N,H,W or N,D; NaN = missing)")
    p.add_argument("--mask", default="nan", help="mask spec to apply (default nan: impute the NaN values)")
    p.add_argument("--samples", type=int, default=3, help="imputations per image")
    p.add_argument("--out", required=True, help="PNG grid to write")
    p.add_argument("--save", help="also save the final imputations as .npy (samples x images x values)")
    p.add_argument("--steps", type=int, help="roll out for T steps instead of the trained number")
    p.add_argument("--columns", type=int, default=8, help="steps shown per row")
    p.add_argument("--max-images", type=int, default=16)
    p.add_argument("--checkpoint", default="best", choices=["best", "last"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device")
    _add_precision_arg(p)
    p.set_defaults(func=cmd_impute)

    p = sub.add_parser("curve", help="plot validation bound against images seen for one or more runs")
    p.add_argument("runs", nargs="+")
    p.add_argument("--out", required=True, help="PNG to write")
    p.add_argument("--reference", action="append", default=[], metavar="NAME=VALUE", help="a dashed line, e.g. paper=80.5")
    p.add_argument("--title")
    p.set_defaults(func=cmd_curve)

    p = sub.add_parser("bench", help="training/imputation speed against the machine's matmul peak")
    p.add_argument("--model", action="append", default=[], help="model name (repeatable)")
    p.add_argument("--all", action="store_true", help="every registered model")
    p.add_argument("--sizes", default="mnist", choices=["mnist", "tfd", "svhn"])
    p.add_argument("--batch", type=int, default=250)
    p.add_argument("--steps", type=int, default=10, help="timed training steps per model (or per sweep point)")
    p.add_argument("--warmup", type=int, default=3, help="untimed training steps first (compile happens here)")
    p.add_argument("--sweep", choices=["T", "D", "batch"],
                   help="cost of one model (--model, default gpsi-add) as T (1..32), D (784, 1024, 2304) or the batch grows")
    p.add_argument("--values", help="comma-separated sweep points instead of the defaults, e.g. 1,2,4,8")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a model option for every model, or compile=true / precision=auto|bf16|fp32 (as the trainer's)")
    p.add_argument("--device")
    p.add_argument("--json", help="write the figures to this JSON file")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("demo", help="the main job: get MNIST, train GPSI-add on MCAR-80 briefly, evaluate, draw")
    p.add_argument("--run", default="runs/demo", help="run folder (default runs/demo; resumed when it exists)")
    p.add_argument("--minutes", type=float, default=6.0, help="training budget (default 6)")
    p.add_argument("--n", type=int, default=2000, help="test images to score (default 2000)")
    p.add_argument("--device")
    p.add_argument("--data-root", help="download cache (default $SEQIMPUTE_DATA or ~/.cache/seqimpute)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("fit-transform", help="fill the missing values (NaN) of your own table or array file")
    p.add_argument("input", metavar="IN", help=".csv (empty/NaN/NA = missing; a header row is kept), .npy or .npz")
    p.add_argument("output", metavar="OUT", help="where to write the filled array: .csv, .npy or .npz")
    p.add_argument("--model", default="gpsi-add", help="policy to train on the data (default gpsi-add; lstm-add "
                   "for values in [0,1])")
    p.add_argument("--likelihood", default="auto", choices=["auto", "bernoulli", "gaussian"],
                   help="auto (default): Bernoulli when every value lies in [0,1], else Gaussian on standardised columns")
    p.add_argument("--updates", type=int, default=1000, help="training updates (default 1000)")
    p.add_argument("--minutes", type=float, default=1.0, help="wall-clock cap on training (default 1)")
    p.add_argument("--rollouts", type=int, default=20, help="rollouts averaged for the filled values (default 20)")
    p.add_argument("--samples", type=int, default=0, help="also write N multiple imputations: OUT.sample1.csv .. "
                   "(.csv), OUT.samples.npy (.npy), or key 'samples' in OUT (.npz)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", help="cpu (default), cuda, ...")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_fit_transform)

    p = sub.add_parser("finetune", help="fine-tune the guide q alone on the test set (generative models)")
    p.add_argument("run")
    p.add_argument("--updates", type=int, help="fine-tuning updates (the paper: 50000)")
    p.add_argument("--minutes", type=float, help="time budget (whichever of --updates/--minutes ends first)")
    p.add_argument("--clock", default="wall", choices=["wall", "cpu"],
                   help="what --minutes counts: wall time (default) or this process's CPU time")
    p.add_argument("--checkpoint", default="best", choices=["best", "last"], help="start from (default best)")
    p.add_argument("--batch", type=int, default=250)
    p.add_argument("--n", type=int, help="score the bounds on the first N test images only (default all)")
    p.add_argument("--samples", type=int, default=1, help="rollouts per image for the bounds (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_finetune)

    p = sub.add_parser("sample", help="draw samples of a generative model, sigmoid(c_t) at chosen steps (Fig 1)")
    p.add_argument("run")
    p.add_argument("--n", type=int, default=64, help="samples (default 64)")
    p.add_argument("--out", required=True, help="PNG to write")
    p.add_argument("--steps", help="comma-separated steps to show, e.g. 0,2,4,8,16 (default 1,3,5,9,T)")
    p.add_argument("--checkpoint", default="best", choices=["best", "last", "finetuned"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("reproduce", help="train, score and tabulate an experiment of the paper beside its numbers")
    p.add_argument("experiment", choices=["table1", "fig1", "fig2", "fig2c", "fig3", "all", "sweep"],
                   help="an experiment of the paper, all of them, or sweep (how the preset's settings were chosen)")
    p.add_argument("--preset", default="cpu", help="paper (the paper's sizes and updates, for a GPU) or cpu "
                   "(at most 15 min per model on a 2-core CPU; default), or a path to a preset .toml")
    p.add_argument("--runs", default="runs/reproduce", help="where the runs live (default runs/reproduce; "
                   "<runs>/<preset>/...): finished runs are skipped, unfinished ones resume")
    p.add_argument("--out", default="results", help="results root (default results): writes <out>/<preset>/")
    p.add_argument("--data-root", help="download cache (default $SEQIMPUTE_DATA or ~/.cache/seqimpute)")
    p.add_argument("--tfd-path", help="your TFD file: the TFD rows run on it (else on the orl-faces stand-in)")
    p.add_argument("--svhn-path", help="folder with the SVHN .mat files: the SVHN rows run (else 'not run')")
    p.add_argument("--binarized-path", help="folder with binarized_mnist_*.amat for Fig 1 (else a seeded binarization)")
    p.add_argument("--data", help="run every dataset on this one instead (e.g. sklearn-digits for a quick check); "
                   "the outputs go to <preset>-<data> and say so")
    p.add_argument("--smoke", action="store_true", help="a few updates per model and 50 test images: checks the "
                   "whole pipeline in about a minute (outputs to <preset>-smoke)")
    p.add_argument("--smoke-updates", type=int, default=3, help="updates per model with --smoke (default 3)")
    p.add_argument("--report-only", action="store_true", help="train nothing: score and tabulate the runs as they are")
    p.add_argument("--jobs", type=int, default=1, help="train this many runs at once, each in its own process with "
                   "cores/jobs threads (default 1; on a small CPU, --jobs 2 with one thread each is the fastest)")
    p.add_argument("--device", help="cpu (default), cuda, ...")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_reproduce)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse already printed its one-line usage error
        return int(e.code or 0)
    from .numerics import flush_subnormals

    flush_subnormals()  # before any command runs, so that torch's thread pool inherits it (seqimpute.numerics)
    if getattr(args, "data_root", None):  # --data-root works on every command, for every load below
        import os

        os.environ["SEQIMPUTE_DATA"] = args.data_root
    try:
        return int(args.func(args) or 0)
    except SeqImputeError as e:
        print(f"seqimpute: error: {' '.join(str(e).split())}", file=sys.stderr)  # always one line
        return 2
    except BrokenPipeError:  # output piped into `head` and friends
        return 0
    except KeyboardInterrupt:
        print("seqimpute: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
