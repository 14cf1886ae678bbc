"""The command line: `seqimpute data|train|eval|impute|demo|bench ...`. Mistakes exit with code 2 and one line."""

from __future__ import annotations

import argparse
import json
import sys

from .errors import SeqImputeError


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
    print(f"splits    " + "  ".join(f"{s} {n}" for s, n in info["sizes"].items()))
    print(f"range     {info['min']:.4g} .. {info['max']:.4g}   missing (NaN) {info['nan_fraction']:.3g}")
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
            "min": float(finite.min()) if finite.size else float("nan"),
            "max": float(finite.max()) if finite.size else float("nan"),
            "nan_fraction": float(1 - finite.size / max(allv.size, 1)), "likelihood": ds.likelihood,
            "note": splits.note, "location": splits.location}


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
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse already printed its one-line usage error
        return int(e.code or 0)
    try:
        return int(args.func(args) or 0)
    except SeqImputeError as e:
        print(f"seqimpute: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("seqimpute: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
