"""The command line: `seqimpute COMMAND ...`; mistakes exit with code 2 and one line.

Commands: data, train, eval, impute, curve, bench, demo, fit-transform, transform, finetune, sample, reproduce,
pretrained. They live in seqimpute/commands/, grouped by what they do: data.py (data, fit-transform, transform),
runs.py (train, eval, finetune), figures.py (impute, sample, curve), speed.py (bench), paper.py (demo, reproduce),
pretrained.py (pretrained). Each command is a parser builder `add_<command>(sub)` next to its `cmd_<command>(args)`;
the arguments several commands share are added by the helpers of commands/args.py."""

from __future__ import annotations

import argparse
import sys

from .commands.data import add_data, add_fit_transform, add_transform
from .commands.figures import add_curve, add_impute, add_sample
from .commands.paper import add_demo, add_reproduce
from .commands.pretrained import add_pretrained
from .commands.runs import add_eval, add_finetune, add_train
from .commands.speed import add_bench
from .errors import SeqImputeError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seqimpute", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (add_data, add_train, add_eval, add_impute, add_curve, add_bench, add_demo, add_fit_transform,
                add_transform, add_finetune, add_sample, add_reproduce, add_pretrained):  # the order of `seqimpute --help`
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse already printed its one-line usage error
        return int(e.code or 0)
    from .numerics import flush_subnormals

    flush_subnormals()  # before any command runs, so that torch's thread pool inherits it (seqimpute.numerics)
    if getattr(args, "data_root", None):  # --data-root: for every load below, wherever it happens
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
