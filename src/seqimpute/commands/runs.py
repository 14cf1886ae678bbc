"""The commands that make and score run folders: `seqimpute train`, `eval` and `finetune`."""

from __future__ import annotations

import json
import math

from ..errors import SeqImputeError
from .args import (
    add_checkpoint, add_data_args, add_data_root, add_device, add_precision, add_quiet, add_run, add_seed, add_set,
    add_clock, add_threads, data_options, refuse_own_flags, set_values,
)


def add_train(sub) -> None:
    p = sub.add_parser("train", help="train (or resume) a model in a run folder")
    p.add_argument("--model", help="gpsi-add, gpsi-jump, ...")
    add_data_args(p, data_required=False)
    p.add_argument("--mask", help="mask spec, e.g. mcar:0.8, MAR-14, square:12-18")
    add_run(p, "run folder (resumed when it exists)")
    p.add_argument("--init", help="start a new run from these weights: a run folder (its best checkpoint) or a "
                   "pretrained model's name (same model and sizes); the optimiser and schedule start fresh")
    p.add_argument("--updates", type=int, help="total updates of the run (training stops at whichever budget it "
                   "reaches first; on resume, the budgets given replace the stored ones)")
    p.add_argument("--minutes", type=float, help="total training budget in minutes (default 30 when no "
                   "--updates): wall clock, or the process's CPU time with --clock cpu")
    add_clock(p, None, "what --minutes counts: wall time (default) or this process's CPU time (the same work on a "
              "busy machine)")
    p.add_argument("--batch", type=int, default=250)
    add_seed(p)
    add_device(p, "cpu (default), cuda, cuda:1, ...")
    add_precision(p, None, "of the matrix products: auto (default: bf16 where the device runs it fast), bf16, fp32; "
                  "on resume, the new setting applies from there on (logged)")
    p.add_argument("--sizes", help="size preset: mnist, tfd, svhn (default: by the data's size)")
    add_set(p, "override a model or training option, e.g. --set hidden=200 --set optimizer=paper")
    add_threads(p)
    add_quiet(p, "no progress bar")
    p.set_defaults(func=cmd_train)


def _parse_sets(items: list[str], model_keys: set[str]) -> tuple[dict, dict]:
    """--set key=value: model options (hidden, z, steps, ...) or training options (lr, warmup, optimizer, ...)."""
    from ..train import TrainConfig

    train_keys = TrainConfig.fields() - {"model", "data", "mask", "data_options", "model_options", "sizes",
                                         "updates", "minutes", "batch", "seed", "device", "init"}
    model_opts, train_opts = {}, {}
    values = set_values(items)
    refuse_own_flags(values)
    for key, parsed in values.items():
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

    from .. import threads
    from ..models.registry import spec
    from ..train import RUNTIME_KEYS, TrainConfig, train

    threads.use(args.threads)
    run = Path(args.run)
    if (run / "last.pt").exists():  # resume: the stored config rules; new totals and runtime settings apply
        cfg = None
        if args.updates is not None or args.minutes is not None or args.device is not None or args.set or \
                args.precision is not None or args.clock is not None or args.init is not None:
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
            if args.init is not None and args.init != stored.init:
                raise SeqImputeError(f"{run} already started (from {stored.init or 'fresh weights'}); --init applies "
                                     f"to a new run only: choose another --run folder.")
            if args.model and args.model != stored.model:
                raise SeqImputeError(f"{run} holds a {stored.model} run, not {args.model}; choose another --run folder.")
            stored.updates, stored.minutes = args.updates, args.minutes  # neither given: train keeps the stored ones
            stored.device = args.device or stored.device
            stored.precision = args.precision or stored.precision
            if args.clock is not None and args.clock != stored.clock:
                raise SeqImputeError(f"{run} counts its --minutes on the {stored.clock} clock; it cannot change on "
                                     f"resume: start a new run folder for --clock {args.clock}.")
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
                          batch=args.batch, seed=args.seed, device=args.device or "cpu", init=args.init, **train_opts,
                          **{k: v for k, v in (("precision", args.precision), ("clock", args.clock)) if v is not None})
        summary = train(run, cfg, progress_bar=not args.quiet)
    stopped = _stopped_line(summary)
    if stopped:
        print(stopped)
    speed = f" at {summary['images_per_s']:.0f} images/s ({summary['precision']} products)" \
        if math.isfinite(summary.get("images_per_s", math.nan)) else ""
    print(f"trained {summary['step']} updates in {summary['elapsed_s'] / 60:.1f} min{speed}; best validation bound "
          f"{summary['best_valid_bound_paper_units']:.2f} (paper units); run folder {summary['run']}")
    return 0


def _stopped_line(summary: dict) -> str | None:
    """Which budget ended training (train's ``stopped_by``), in the command line's terms; None for a baseline."""
    by, budget = summary.get("stopped_by"), summary.get("budget", {})
    if by == "updates":
        return f"stopped: reached {budget['updates']} updates (the --updates budget)"
    if by == "minutes":
        unit = "CPU-minutes" if budget["clock"] == "cpu" else "wall-clock minutes"
        return f"stopped: {budget['minutes']:g} {unit} spent (the --minutes budget)"
    return None


def add_eval(sub) -> None:
    p = sub.add_parser("eval", help="score a trained run on fixed test masks")
    p.add_argument("run", help="run folder, or a pretrained model's name (seqimpute pretrained list)")
    p.add_argument("--mask", help="mask spec (default: the training mask)")
    p.add_argument("--samples", type=int, default=10, help="K rollouts per image (default 10, as the paper)")
    p.add_argument("--unguided-samples", type=int, help="unguided rollouts per image for the unguided NLL and MSE "
                   "(default min(K, 10) for a policy, K otherwise)")
    p.add_argument("--steps", type=int, help="roll out for T steps instead of the trained number")
    p.add_argument("--split", default="test", choices=["train", "valid", "test"])
    p.add_argument("--n", type=int, help="only the first N images")
    add_checkpoint(p, ["best", "last", "finetuned"])
    add_seed(p)
    add_device(p)
    p.add_argument("--json", help="write the scores to this JSON file")
    add_quiet(p)
    add_precision(p)
    add_data_args(p, data_required=False)
    p.set_defaults(func=cmd_eval)


def cmd_eval(args) -> int:
    from ..data.sources import load_dataset
    from ..evaluate import evaluate, format_table
    from ..pretrained import load_model
    from ..runs import training_record

    model, cfg, ck = load_model(args.run, args.checkpoint, device=args.device or "cpu")
    dopts = {**cfg["train"].get("data_options", {}), **{k: v for k, v in data_options(args).items() if v}}
    data = load_dataset(args.data or cfg["train"]["data"], args.split, **dopts)
    res = evaluate(model, data, args.mask or cfg["train"]["mask"], samples=args.samples, steps=args.steps,
                   n=args.n, seed=args.seed, progress=not args.quiet, unguided_samples=args.unguided_samples,
                   precision=args.precision)
    res["run"] = str(args.run)
    res["training"] = training_record(args.run, cfg, ck)  # what the scores rest on: updates, images, time
    print(format_table(res))
    if args.json:
        from pathlib import Path

        Path(args.json).write_text(json.dumps(res, indent=2))
        print(f"wrote {args.json}")
    return 0


def add_finetune(sub) -> None:
    p = sub.add_parser("finetune", help="fine-tune the guide q alone on the test set (generative models)")
    p.add_argument("run")
    p.add_argument("--updates", type=int, help="fine-tuning updates (the paper: 50000)")
    p.add_argument("--minutes", type=float, help="time budget (whichever of --updates/--minutes ends first)")
    add_clock(p)
    add_checkpoint(p, ["best", "last"], "start from (default best)")
    p.add_argument("--batch", type=int, default=250)
    p.add_argument("--n", type=int, help="score the bounds on the first N test images only (default all)")
    p.add_argument("--samples", type=int, default=1, help="rollouts per image for the bounds (default 1)")
    add_seed(p)
    add_device(p)
    add_precision(p)
    add_quiet(p, "no progress bar")
    add_data_root(p)
    p.set_defaults(func=cmd_finetune)


def cmd_finetune(args) -> int:
    from ..finetune import finetune

    res = finetune(args.run, updates=args.updates, minutes=args.minutes, checkpoint=args.checkpoint,
                   batch=args.batch, eval_n=args.n, eval_samples=args.samples, seed=args.seed,
                   device=args.device or "cpu", progress_bar=not args.quiet, clock=args.clock,
                   precision=args.precision)
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
