"""The paper's jobs: `seqimpute demo` (the main job in minutes) and `seqimpute reproduce` (its tables and
figures)."""

from __future__ import annotations

from .args import add_clock, add_data_root, add_device, add_precision, add_quiet, add_run, add_threads

DEMO_MINUTES = 7.0  # training budget of `seqimpute demo`, in wall-clock minutes: the whole demo in under 9


def add_demo(sub) -> None:
    p = sub.add_parser("demo", help="the main job: get MNIST, train GPSI-add briefly, score it beside kNN and mean "
                       "imputation on the same MCAR-80 test holes, draw")
    add_run(p, "run folder (default runs/demo; resumed when it exists)", default="runs/demo")
    p.add_argument("--minutes", type=float, default=DEMO_MINUTES, help=f"training budget (default {DEMO_MINUTES:g}: "
                   "the whole demo in under 9 minutes on an idle 2-core machine)")
    add_clock(p, "wall", "what --minutes counts: wall (default; an idle machine) or cpu, the training process's CPU "
              "time (a shared machine: the same work however busy the other cores are)")
    p.add_argument("--n", type=int, default=2000, help="test images to score (default 2000)")
    add_threads(p)
    add_precision(p)
    p.add_argument("--data", default="mnist", help="another dataset for a quick check, e.g. sklearn-digits (the "
                   "paper's number stays MNIST's)")
    add_device(p)
    add_data_root(p)
    add_quiet(p)
    p.set_defaults(func=cmd_demo)


def cmd_demo(args) -> int:
    from ..demo import run_demo

    return run_demo(args)


def add_reproduce(sub) -> None:
    p = sub.add_parser("reproduce", help="train, score and tabulate an experiment of the paper beside its numbers")
    p.add_argument("experiment", choices=["table1", "fig1", "fig2", "fig2c", "fig3", "all", "sweep", "claims"],
                   help="an experiment of the paper, all of them, sweep (how the preset's settings were chosen) or "
                   "claims (the paper's findings tested at equal updates over seeds)")
    p.add_argument("--preset", default="cpu", help="paper (the paper's sizes and updates, for a GPU) or cpu "
                   "(at most 15 min per model on a 2-core CPU; default), or a path to a preset .toml")
    p.add_argument("--runs", default="runs/reproduce", help="where the runs live (default runs/reproduce; "
                   "<runs>/<preset>/...): finished runs are skipped, unfinished ones resume")
    p.add_argument("--out", default="results", help="results root (default results): writes <out>/<preset>/")
    add_data_root(p)
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
    add_device(p, "cpu (default), cuda, ...")
    add_quiet(p, "no progress output")
    p.set_defaults(func=cmd_reproduce)


def cmd_reproduce(args) -> int:
    import shlex

    from ..experiments.reproduce import reproduce

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
