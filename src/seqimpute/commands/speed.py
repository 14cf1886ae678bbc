"""`seqimpute bench`: training and imputation speed against the machine's matmul peak."""

from __future__ import annotations

import json

from ..errors import SeqImputeError
from .args import add_device, add_precision, add_set, refuse_own_flags, set_values


def add_bench(sub) -> None:
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
    add_set(p, "a model option for every model, or compile=true (as the trainer's)")
    add_precision(p)
    add_device(p)
    p.add_argument("--json", help="write the figures to this JSON file")
    p.set_defaults(func=cmd_bench)


def cmd_bench(args) -> int:
    from ..bench import format_table, run_bench, run_sweep
    from ..models.registry import MODELS, spec

    overrides = set_values(args.set)
    refuse_own_flags(overrides)
    compile_, precision = bool(overrides.pop("compile", False)), args.precision
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
