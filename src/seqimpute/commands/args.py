"""The arguments several commands share, each added by one helper so that it reads the same everywhere, and how
the repeatable KEY=VALUE arguments are read."""

from __future__ import annotations

import argparse
import json

from ..errors import SeqImputeError


def add_data_args(p: argparse.ArgumentParser, data_required: bool = True) -> None:
    p.add_argument("--data", required=data_required, help="dataset name (seqimpute data list) or a path to your own "
                   ".npz/.npy/.csv file or image folder")
    add_data_options(p)


def add_data_root(p: argparse.ArgumentParser) -> None:
    """On every command that reads a dataset (a baseline's run refits from its training data when loaded)."""
    p.add_argument("--data-root", help="download cache (default $SEQIMPUTE_DATA or ~/.cache/seqimpute)")


def add_data_options(p: argparse.ArgumentParser) -> None:
    add_data_root(p)
    p.add_argument("--data-path", help="your copy of a source's files (IDX/.amat/SVHN .mat folder, TFD file)")
    p.add_argument("--size", help="resize images to HxW (image folders, orl-faces) or declare the HxW of flat rows")
    p.add_argument("--scale", choices=["none", "minmax"], help="minmax: scale each image into [0,1]")
    p.add_argument("--data-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="a source-specific option, e.g. --data-opt extra=200000 (svhn) or fold=1 (tfd)")


def add_run(p: argparse.ArgumentParser, help: str, default: str | None = None) -> None:
    """The run folder, as ``--run DIR`` or ``--out DIR`` (one destination; giving both is an error): torchrun reads
    ``--run`` as an abbreviation of its own ``--run-path``, so under torchrun the folder is given as ``--out``."""
    g = p.add_mutually_exclusive_group(required=default is None)
    g.add_argument("--run", dest="run", default=default, metavar="DIR", help=help)
    g.add_argument("--out", dest="run", default=default, metavar="DIR",
                   help="the same as --run (use --out under torchrun, which takes --run for its own --run-path)")


def add_device(p: argparse.ArgumentParser, help: str | None = None) -> None:
    p.add_argument("--device", help=help)  # None in the namespace means cpu (each command's `args.device or "cpu"`)


def add_precision(p: argparse.ArgumentParser, default: str | None = "auto", help: str | None = None) -> None:
    """The products' precision: one spelling on every command (and ``precision=`` on SequentialImputer)."""
    p.add_argument("--precision", default=default, choices=["auto", "bf16", "fp32"],  # precision.PRECISIONS
                   help=help or "of the matrix products: auto (default: bf16 where the device runs it fast), bf16, fp32")


def add_clock(p: argparse.ArgumentParser, default: str | None = "wall", help: str | None = None) -> None:
    """What a --minutes budget counts: one spelling on every command that takes one."""
    p.add_argument("--clock", default=default, choices=["wall", "cpu"],
                   help=help or "what --minutes counts: wall time (default) or this process's CPU time")


# Settings with a flag of their own: --set must not be a second spelling of them.
OWN_FLAGS = {"precision": "--precision", "clock": "--clock"}


def refuse_own_flags(values: dict) -> None:
    for key, flag in OWN_FLAGS.items():
        if key in values:
            raise SeqImputeError(f"{key} has a flag of its own: give {flag} {values[key]} instead of --set {key}=...")


def add_threads(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, help="torch threads for the matrix products (default: OMP_NUM_THREADS when "
                   "set, else every core this process may use)")


def add_set(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=help)


def add_seed(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0)


def add_checkpoint(p: argparse.ArgumentParser, choices: list[str], help: str | None = None) -> None:
    p.add_argument("--checkpoint", default="best", choices=choices, help=help)


def add_quiet(p: argparse.ArgumentParser, help: str | None = None) -> None:
    p.add_argument("--quiet", action="store_true", help=help)


def data_options(args) -> dict:
    opts = {"path": getattr(args, "data_path", None), "size": getattr(args, "size", None),
            "scale": getattr(args, "scale", None)}
    for item in getattr(args, "data_opt", None) or []:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise SeqImputeError(f"--data-opt takes KEY=VALUE, got {item!r}.")
        opts[key.strip()] = value.strip()
    return opts


def set_values(items: list[str]) -> dict:
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

