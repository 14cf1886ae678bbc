"""`seqimpute data` (list, download, describe datasets), `seqimpute fit-transform` (fill your own table, optionally
saving the fitted imputer) and `seqimpute transform` (fill new rows with a saved imputer)."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import SeqImputeError
from .args import add_data_options, add_device, add_quiet, add_seed, data_options


def add_data(sub) -> None:
    p = sub.add_parser("data", help="list, download and describe datasets")
    p.add_argument("action", choices=["list", "get", "info"])
    p.add_argument("name", nargs="?")
    p.add_argument("--json", action="store_true", help="info as JSON")
    add_data_options(p)
    p.set_defaults(func=cmd_data)


def cmd_data(args) -> int:
    from ..data import sources

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

    from ..data import sources

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


def add_fit_transform(sub) -> None:
    p = sub.add_parser("fit-transform", help="fill the missing values (NaN) of your own table or array file")
    p.add_argument("input", metavar="IN", help=".csv (empty/NaN/NA = missing; a header row is kept; a column with "
                   "text is imputed as categories and written back as text), .npy or .npz")
    p.add_argument("output", metavar="OUT", help="where to write the filled array: .csv, .npy or .npz")
    p.add_argument("--model", default="gpsi-add", help="policy to train on the data (default gpsi-add; lstm-add "
                   "for values in [0,1])")
    p.add_argument("--likelihood", default="auto", choices=["auto", "bernoulli", "gaussian"],
                   help="auto (default): Bernoulli when every value lies in [0,1], else Gaussian on standardised "
                   "columns (a CSV with text columns: those categorical, the others Gaussian)")
    p.add_argument("--updates", type=int, help="the most training updates (default: 100 passes over the rows, "
                   "1000 to 2000 updates); early stopping on held-out values may end training sooner")
    p.add_argument("--minutes", type=float, help="a wall-clock cap on training (default: none); with --updates, "
                   "whichever ends first")
    p.add_argument("--rollouts", type=int, default=20, help="rollouts averaged for the filled values (default 20)")
    add_samples(p)
    p.add_argument("--save", metavar="DIR", help="also save the fitted imputer to the folder DIR (safetensors and "
                   "JSON), to fill new rows later with `seqimpute transform DIR NEW OUT`")
    add_csv_options(p)
    add_seed(p)
    add_device(p, "cpu (default), cuda, ...")
    add_quiet(p, "no progress bar")
    p.set_defaults(func=cmd_fit_transform)


def add_transform(sub) -> None:
    p = sub.add_parser("transform", help="fill the missing values of new rows with an imputer saved by "
                       "`fit-transform --save`")
    p.add_argument("imputer", metavar="DIR", help="the folder `seqimpute fit-transform ... --save DIR` wrote")
    p.add_argument("input", metavar="IN", help=".csv, .npy or .npz with the columns the imputer was fitted on")
    p.add_argument("output", metavar="OUT", help="where to write the filled array: .csv, .npy or .npz")
    add_samples(p)
    add_csv_options(p)
    add_device(p, "the saved imputer's device (default), cpu, cuda, ...")
    p.set_defaults(func=cmd_transform)


def add_csv_options(p) -> None:
    g = p.add_argument_group("reading a CSV (each is found from the file when not given; what was found is printed)")
    g.add_argument("--sep", help="the cell separator, e.g. ';' or '\\t' (default: found from the file)")
    g.add_argument("--decimal", choices=[".", ","], default=None, help="the decimal mark (default '.'; ',' is found "
                   "in semicolon-separated files)")
    g.add_argument("--no-header", action="store_true", help="the first row is data, not column names")
    g.add_argument("--index-col", default="auto", metavar="NAME|N|none", help="the column of row labels, carried "
                   "through unchanged and not used as a feature (default: pandas' unnamed index column or a first "
                   "column that is distinct in every row, like ids; none: every column is a feature)")
    g.add_argument("--bad-cells", choices=["error", "missing"], default="error", help="text cells in a column of "
                   "numbers: error (default) or read them as missing values")
    p.add_argument("--overwrite", action="store_true", help="allow OUT to replace IN, and --save to replace an "
                   "imputer saved in DIR")


def add_samples(p) -> None:
    p.add_argument("--samples", type=int, default=0, help="also write N multiple imputations: OUT.sample1.csv .. "
                   "(.csv), OUT.samples.npy (.npy), or key 'samples' in OUT (.npz)")


def cmd_fit_transform(args) -> int:
    import warnings

    import numpy as np
    from sklearn.exceptions import ConvergenceWarning

    from ..tabular.imputer import SequentialImputer
    from ..tabular.saved import META, check_folder

    table, X, header, shape = _read_input(args)
    if args.save:
        check_folder(args.save)
        if (Path(args.save) / META).exists() and not args.overwrite:
            raise SeqImputeError(f"{args.save} already holds a saved imputer; give --overwrite to replace it, or "
                                 f"another --save folder.")
    budget = {}  # neither flag: the estimator's default budget (auto, early stopping, no wall-clock cap)
    if args.updates is not None:
        budget.update(max_updates=args.updates)
    if args.minutes is not None:
        budget.update(max_minutes=args.minutes)
    imp = SequentialImputer(model=args.model, likelihood=args.likelihood, n_rollouts=args.rollouts,
                            device=args.device or "cpu", random_state=args.seed, verbose=not args.quiet, **budget)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # said below, in the summary line
        filled = imp.fit_transform(X)
    written = _write_filled(args, imp, X, filled, header, shape, table)
    if args.save:
        if header:  # the CSV's column names: `transform` checks a new table's header against them
            imp.feature_names_in_ = np.asarray(header, dtype=object)
        imp.save(args.save)
        written.append(args.save)
    texts = [str(c) for c, col in zip(getattr(X, "columns", ()), imp.layout_.columns) if col.kind == "categorical"]
    print(f"imputed {_missing(X)} missing value(s) of {X.shape[0]}x{X.shape[1]} with {args.model} "
          f"({imp.likelihood_} likelihood"
          + (f", text column(s) {', '.join(texts)} as categories" if texts else "")
          + f", {imp.n_updates_} updates in {imp.training_seconds_:.1f} s"
          + (f", stopped early, best at update {imp.best_iteration_}" if imp.stopped_by_ == "early_stopping" else "")
          + "); wrote "
          + ", ".join(str(p) for p in written))
    if imp.stopped_by_ == "minutes" and imp.max_updates is not None:
        print(f"training stopped at the {imp.max_minutes:g}-minute wall-clock cap after {imp.n_updates_} of "
              f"{imp.max_updates} updates; raise --minutes, or give --updates N alone to make all N.")
    return 0


def _read_input(args, kinds=None) -> tuple:
    """IN as (CsvTable or None, the imputer's input, column names or None, the array's shape), after refusing an
    OUT that would replace IN (without --overwrite). A CSV is read by data.csv_table (``kinds``: a fitted imputer's
    reading of its columns); its notes are printed."""
    from ..data.csv_table import read_csv_table
    from ..data.formats import check_output, check_text_output, read_table

    check_output(args.output)
    src, out = Path(args.input), Path(args.output)
    if out.exists() and src.exists() and out.resolve() == src.resolve() and not args.overwrite:
        raise SeqImputeError(f"OUT {out} is the input file; give another OUT, or --overwrite to replace the input.")
    if src.suffix.lower() != ".csv":
        X, header, shape = read_table(src)
        return None, X, header, shape
    if not src.exists():
        raise SeqImputeError(f"{src} does not exist.")
    sep = args.sep.replace("\\t", "\t") if args.sep else None
    table = read_csv_table(src, sep=sep, header="no" if args.no_header else "auto", index_col=args.index_col,
                           decimal=args.decimal or ".", bad_cells=args.bad_cells)
    for note in table.notes:
        print(f"{src}: {note}")
    if "text" in (kinds or table.kinds):
        check_text_output(out)
    return table, table.values(kinds), table.header, table.shape


def _check_text(X, output) -> None:
    """A table read with text columns (a DataFrame) goes to a .csv only: fail before training."""
    import numpy as np

    from ..data.formats import check_text_output

    if not isinstance(X, np.ndarray):
        check_text_output(output)


def _missing(X) -> int:
    """The missing values of an array or DataFrame."""
    import numpy as np

    return int(X.isna().to_numpy().sum()) if hasattr(X, "isna") else int(np.isnan(X).sum())


def _write_filled(args, imp, X, filled, header, shape, table=None, kinds=None) -> list:
    """OUT (and its ``--samples`` multiple imputations) in the input's layout; returns the files written. A CSV
    read as ``table`` to a .csv OUT keeps its separator, row labels and present cells as they were read."""
    import numpy as np

    from ..data.csv_table import write_csv_table
    from ..data.formats import write_table

    samples = imp.sample(X, args.samples) if args.samples else None
    out = Path(args.output)
    if table is None or out.suffix.lower() != ".csv":
        if not isinstance(filled, np.ndarray) and table is not None and "text" not in table.kinds:
            filled = filled.to_numpy(dtype=np.float64, na_value=np.nan)  # whole-number columns, to an array file
            samples = None if samples is None else np.stack([s.to_numpy(dtype=np.float64) for s in samples])
        return write_table(out, filled, header, shape if len(shape) > 2 else None, samples)
    write_csv_table(out, table, filled, kinds)
    written = [out]
    for k, s in enumerate(samples if samples is not None else []):
        p = out.with_name(f"{out.stem}.sample{k + 1}{out.suffix}")
        write_csv_table(p, table, s, kinds)
        written.append(p)
    return written


def cmd_transform(args) -> int:
    import warnings

    import numpy as np

    from ..tabular.imputer import SequentialImputer

    imp = SequentialImputer.load(args.imputer, device=args.device)
    # each column read as the imputer was fitted on it: its categories as text, whole numbers as whole numbers
    kinds = ["text" if c.kind == "categorical" else "integer" if c.kind == "integer" else "numeric"
             for c in imp.layout_.columns]
    table, X, header, shape = _read_input(args, kinds if Path(args.input).suffix.lower() == ".csv" else None)
    names = getattr(imp, "feature_names_in_", None)
    if X.shape[1] != imp.n_features_in_:
        raise SeqImputeError(f"{args.input} has {X.shape[1]} column(s) but the imputer in {args.imputer} was fitted "
                             f"on {imp.n_features_in_}; give a table with the columns it was fitted on.")
    if header and names is not None and header != list(names):
        raise SeqImputeError(f"{args.input}'s columns {header} are not those the imputer in {args.imputer} was "
                             f"fitted on, {list(names)}; give a table with the same columns in the same order.")
    if table is not None and not isinstance(X, np.ndarray) and names is not None:
        X.columns = list(names)  # a headerless CSV: the fitted names
    with warnings.catch_warnings():  # the names were checked above; a bare array carries none
        warnings.filterwarnings("ignore", message="X does not have valid feature names")
        filled = imp.transform(X)
        filled = filled if hasattr(X, "isna") else np.asarray(filled)
        written = _write_filled(args, imp, X, filled, header or (None if names is None else list(names)), shape,
                                table, kinds)
    print(f"imputed {_missing(X)} missing value(s) of {X.shape[0]}x{X.shape[1]} with the "
          f"{imp.model} imputer saved in {args.imputer}; wrote " + ", ".join(str(p) for p in written))
    return 0
