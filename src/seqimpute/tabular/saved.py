"""A fitted SequentialImputer as a folder: ``weights.safetensors`` (the policy's parameters and the fitted arrays:
scaling, fill, log-variance) and ``imputer.json`` (the parameters, the other fitted attributes, the column layout of
a table with binary, integer or categorical columns, the versions that wrote it and the weights' SHA-256). No
pickle: loading reads tensors and JSON and runs no stored code, and every value read is checked before use. Both
files are written atomically (files.atomic_write), the JSON last, so a folder always pairs complete files; the hash
catches a pair that does not belong together.

    imp.save("imputer/")                          # or: seqimpute fit-transform IN OUT --save imputer/
    imp = SequentialImputer.load("imputer/")      # transform/sample/score give exactly the saved imputer's values
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import torch

from ..errors import SeqImputeError
from ..files import atomic_write
from ..models.registry import model_from_config
from .columns import ColumnLayout
from .gaussian import from_tensors
from .missing import is_nan_marker
from .state import ARRAYS, FITTED  # ARRAYS: float64 (W,) each, plus "log_var" (float32, Gaussian and mixed only)

FORMAT = "seqimpute-imputer"
# 2: the parameter categorical_features, and a mixed table's column layout ("layout_"); 3: missing_values,
# add_indicator, keep_empty_features and their fitted features (empty_features_, indicator_features_); 4: the
# parameter initial_canvas and the conditional Gaussian of the start (start_entries_, start_mean, start_cov); 5: a
# low-rank start for wide tables (start_mean, start_factor, start_noise), and starts over every kind of entry
FORMAT_VERSION = 5
READS = (1, 2, 3, 4, 5)  # the earlier formats are read too
NEW_IN_3 = {"missing_values": None, "add_indicator": False, "keep_empty_features": False}  # at their defaults
META, WEIGHTS = "imputer.json", "weights.safetensors"


def _bad(folder: Path, what: str) -> SeqImputeError:
    return SeqImputeError(f"{folder} is not a usable saved SequentialImputer: {what}; save the imputer again "
                          f"(imp.save(folder) or `seqimpute fit-transform IN OUT --save {folder}`).")


def _json_default(v):
    if isinstance(v, (np.generic, np.ndarray)):  # NumPy scalars and masks among the parameters (hidden=np.int64(32))
        return v.tolist()
    raise TypeError(type(v).__name__)


def check_folder(folder) -> None:
    """Fail before any work when ``folder`` cannot take a saved imputer (it is a file)."""
    if Path(folder).exists() and not Path(folder).is_dir():
        raise SeqImputeError(f"{folder} is a file; give a folder to save the imputer in.")


def save(imp, folder) -> Path:
    """Write the fitted ``imp`` to ``folder`` (created if needed; an earlier save there is replaced)."""
    from safetensors.torch import save as to_bytes
    from sklearn.utils.validation import check_is_fitted

    import seqimpute

    check_is_fitted(imp, "model_")
    folder = Path(folder)
    check_folder(folder)
    params = imp.get_params()
    if is_nan_marker(params["missing_values"]):
        params["missing_values"] = None  # NaN, None and pandas.NA mark the same entries; JSON has null only
    if params["random_state"] is not None and not isinstance(params["random_state"], (int, np.integer)):
        params["random_state"] = None  # a RandomState instance: only its draw, seed_, matters once fitted
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in imp.model_.state_dict().items()}
    tensors.update({a: torch.from_numpy(np.ascontiguousarray(getattr(imp, a), dtype=np.float64)) for a in ARRAYS})
    if imp._log_var_t is not None:
        tensors["log_var"] = imp._log_var_t.detach().cpu().contiguous()
    if imp._start is not None:
        tensors.update({k: v.detach().cpu().contiguous() for k, v in imp._start.tensors().items()})
    weights = to_bytes(tensors, metadata={"format": FORMAT})
    names = getattr(imp, "feature_names_in_", None)
    fitted = {k: _to_json(kind, getattr(imp, k, None)) for k, kind in FITTED.items()}
    fitted["model_config"] = imp.model_.config()
    if imp.likelihood_ == "mixed":
        fitted["layout_"] = imp.layout_.to_json(names)
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "params": params, "fitted": fitted,
            "output": getattr(imp, "_sklearn_output_config", {}).get("transform"),  # set_output(transform=...)
            "weights_sha256": hashlib.sha256(weights).hexdigest(),
            "versions": {"seqimpute": seqimpute.__version__, "torch": torch.__version__, "numpy": np.__version__,
                         "scikit-learn": _version("scikit-learn"), "safetensors": _version("safetensors")}}
    try:
        text = json.dumps(meta, indent=2, default=_json_default, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise SeqImputeError(f"the imputer's parameters cannot be saved as JSON ({e}); give model_options and the "
                             f"other parameters as plain numbers, strings, lists and dicts.") from None
    atomic_write(folder / WEIGHTS, weights, durable=True)
    atomic_write(folder / META, text.encode(), durable=True)  # last: it vouches for the weights by their hash
    return folder


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def load(cls, folder, device: str | None = None):
    """The SequentialImputer (the class ``cls``) saved in ``folder``; ``device`` replaces the saved one (e.g. "cpu"
    for an imputer fitted on a GPU)."""
    folder = Path(folder)
    meta = _read_meta(folder)
    params, fitted = meta["params"], meta["fitted"]
    if meta["format_version"] == 1:
        params.setdefault("categorical_features", "from_dtype")  # added in format 2, at its default
    if meta["format_version"] < 3:
        for k, v in NEW_IN_3.items():
            params.setdefault(k, v)
        fitted.setdefault("empty_features_", [])
        fitted.setdefault("indicator_features_", None)
    if meta["format_version"] < 4:  # fitted from the mean canvas, before the conditional Gaussian start
        params.setdefault("initial_canvas", "mean")
        fitted.setdefault("start_entries_", None)
    if not isinstance(params, dict) or set(params) != set(cls().get_params()):
        raise _bad(folder, f"{META} does not hold SequentialImputer's parameters")
    if isinstance(params["hide_rate"], list):
        params["hide_rate"] = tuple(params["hide_rate"])  # JSON has no tuples
    if device is not None:
        params["device"] = device
    if params.get("missing_values") is None:
        params["missing_values"] = np.nan  # saved as null (the default, NaN: the same entries)
    imp = cls(**params)
    try:
        imp._check_params()
        _check_plain(params)
    except SeqImputeError as e:
        raise _bad(folder, f"a saved parameter is invalid ({e})") from None
    if torch.device(imp.device).type == "cuda" and not torch.cuda.is_available():
        raise SeqImputeError(f"{folder} holds an imputer for device={imp.device!r} but no CUDA GPU is available; "
                             f"load it with SequentialImputer.load(folder, device='cpu') (CLI: --device cpu).")
    _set_fitted(imp, folder, fitted)
    _set_weights(imp, folder, _read_weights(folder, meta["weights_sha256"]), fitted["model_config"])
    if meta.get("output") not in (None, "default", "pandas", "polars"):
        raise _bad(folder, f"its output setting {meta['output']!r} is not one of set_output's")
    if meta.get("output") is not None:
        imp.set_output(transform=meta["output"])
    return imp


def _read_meta(folder: Path) -> dict:
    path = folder / META
    if not path.is_file():
        what = "does not exist" if not folder.exists() else f"has no {META}"
        raise SeqImputeError(f"{folder} {what}, so it is not a saved SequentialImputer; give the folder that "
                             f"imp.save(folder) or `seqimpute fit-transform IN OUT --save FOLDER` wrote.")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise _bad(folder, f"{META} is not readable JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise SeqImputeError(f"{path} is not a saved SequentialImputer (no format {FORMAT!r}); give the folder "
                             f"that imp.save(folder) or `seqimpute fit-transform IN OUT --save FOLDER` wrote.")
    version = meta.get("format_version")
    if version not in READS:
        wrote = meta["versions"].get("seqimpute") if isinstance(meta.get("versions"), dict) else None
        raise SeqImputeError(f"{folder} holds a SequentialImputer saved in format version {version!r} (by seqimpute "
                             f"{wrote or 'unknown'}), but this seqimpute reads format versions "
                             f"{', '.join(map(str, READS))} only; "
                             f"load it with the seqimpute that saved it, or fit it again and save it with this one.")
    if not all(isinstance(meta.get(k), t) for k, t in (("params", dict), ("fitted", dict), ("weights_sha256", str))):
        raise _bad(folder, f"{META} lacks its params, fitted attributes or weights hash")
    return meta


def _check_plain(params: dict) -> None:
    """The parameters _check_params leaves unchecked: what JSON could have made of them."""
    try:
        torch.device(params["device"])
    except (TypeError, RuntimeError):
        raise SeqImputeError(f"device must name a torch device such as 'cpu', got {params['device']!r}") from None
    if params["random_state"] is not None and (isinstance(params["random_state"], bool)
                                               or not isinstance(params["random_state"], int)):
        raise SeqImputeError(f"random_state must be an integer or None, got {params['random_state']!r}")
    if not isinstance(params["verbose"], bool):
        raise SeqImputeError(f"verbose must be true or false, got {params['verbose']!r}")


def _to_json(kind: str, v):
    """A fitted attribute (state.FITTED) as JSON holds it; None stays None."""
    if v is None:
        return None
    if kind in ("floats", "ints", "names"):
        return [{"floats": float, "ints": int, "names": str}[kind](x) for x in v]
    if kind == "float_or_nan":
        return float(v) if math.isfinite(v) else None  # strict JSON has no NaN
    return v


def _from_json(kind: str, v):
    """The inverse of `_to_json`, for values `_set_fitted` has checked."""
    if kind == "float_or_nan":
        return math.nan if v is None else float(v)
    if v is None:
        return None
    return {"floats": lambda a: np.asarray(a, dtype=np.float64), "ints": lambda a: np.asarray(a, dtype=np.int64),
            "names": lambda a: np.asarray(a, dtype=object), "float": float}.get(kind, lambda a: a)(v)


def _whole(v, lo: int = 0) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= lo


def _set_fitted(imp, folder: Path, fitted: dict) -> None:
    """The fitted attributes of imputer.json, checked."""
    names, config = fitted.get("feature_names_in_"), fitted.get("model_config")
    D, identity = fitted.get("n_features_in_"), fitted.get("likelihood_") in ("gaussian", "mixed")
    curve, at = fitted.get("validation_score_"), fitted.get("validation_updates_")
    empty, flagged = fitted.get("empty_features_"), fitted.get("indicator_features_")
    start = fitted.get("start_entries_")
    features = lambda v: isinstance(v, list) and all(_whole(j) and (not _whole(D) or j < D) for j in v)  # noqa: E731
    layout = _layout(folder, fitted, D - len(empty) if _whole(D) and features(empty) else D)
    checks = {"likelihood_": fitted.get("likelihood_") in ("bernoulli", "gaussian", "mixed")
              and (fitted.get("likelihood_") == "mixed") == layout.mixed,
              "seed_": _whole(fitted.get("seed_")), "n_features_in_": _whole(D, 1),
              "feature_names_in_": names is None or (isinstance(names, list) and len(names) == D
                                                     and all(isinstance(n, str) for n in names)),
              "model_config": isinstance(config, dict) and config.get("dim") == layout.width  # width, output fit
              and (config.get("link", "sigmoid") == "identity") == identity,
              "n_updates_": _whole(fitted.get("n_updates_")),
              "n_skipped_updates_": _whole(fitted.get("n_skipped_updates_")),
              "loss_": fitted.get("loss_") is None or isinstance(fitted.get("loss_"), (int, float)),
              "stopped_by_": fitted.get("stopped_by_") in ("early_stopping", "updates", "minutes"),
              "training_seconds_": isinstance(fitted.get("training_seconds_"), (int, float)),
              "best_iteration_": _whole(fitted.get("best_iteration_")),
              "validation_score_": isinstance(curve, list) and all(isinstance(v, (int, float)) and math.isfinite(v)
                                                                   for v in curve),
              "validation_updates_": isinstance(at, list) and all(_whole(v) for v in at)
              and len(at) == len(curve if isinstance(curve, list) else []),
              "empty_features_": features(empty),
              "indicator_features_": flagged is None or features(flagged),
              "start_entries_": start is None or (isinstance(start, list) and len(set(start)) == len(start) and all(
                  _whole(j) and j < layout.width for j in start))}
    wrong = [k for k, ok in checks.items() if not ok]
    if wrong:
        raise _bad(folder, f"{META} has missing or invalid fitted attribute(s) {', '.join(wrong)}")
    for k, kind in FITTED.items():
        v = _from_json(kind, fitted[k])
        if v is not None or k != "feature_names_in_":  # scikit-learn sets feature names only for named input
            setattr(imp, k, v)
    imp.layout_ = layout


def _layout(folder: Path, fitted: dict, D):
    """The column layout of the D kept features: format 2's "layout_" (checked), else D numeric columns (what
    format 1 implies)."""
    if "layout_" not in fitted:
        return ColumnLayout.numeric(D if _whole(D, 1) else 0)
    try:
        layout = ColumnLayout.from_json(fitted["layout_"])
    except ValueError as e:
        raise _bad(folder, f"{META} has an invalid layout_ ({e})") from None
    if len(layout.columns) != D:
        raise _bad(folder, f"{META}'s layout_ has {len(layout.columns)} columns, but the imputer keeps {D!r} features")
    return layout


def _read_weights(folder: Path, sha256: str) -> dict:
    from safetensors.torch import load as from_bytes

    path = folder / WEIGHTS
    try:
        data = path.read_bytes()
    except OSError as e:
        raise _bad(folder, f"{WEIGHTS} cannot be read ({e.strerror or e})") from None
    if hashlib.sha256(data).hexdigest() != sha256:
        raise _bad(folder, f"{WEIGHTS} is not the one {META} was saved with (its SHA-256 differs)")
    try:
        return from_bytes(data)
    except Exception as e:  # the parser's error types differ across safetensors versions
        raise _bad(folder, f"{WEIGHTS} is not a valid safetensors file ({e})") from None


def _set_weights(imp, folder: Path, tensors: dict, config: dict) -> None:
    """The policy (built from its checked config, its parameters loaded strictly) and the fitted arrays."""
    D, device = imp.layout_.width, torch.device(imp.device)  # the canvas entries
    gaussian = imp.likelihood_ != "bernoulli"  # a log-variance: Gaussian and mixed
    entries = imp.start_entries_
    expected = set(ARRAYS) | ({"log_var"} if gaussian else set())
    arrays = {k: v for k, v in tensors.items() if not k.startswith("model.")}
    start = {k: arrays.pop(k) for k in list(arrays) if k.startswith("start_")}
    if set(arrays) != expected or bool(start) != (entries is not None):
        raise _bad(folder, f"{WEIGHTS} holds arrays {sorted([*arrays, *start])}, expected {sorted(expected)}"
                           + (" and the starting canvas's Gaussian" if entries is not None else ""))
    if start:
        try:
            start = from_tensors({k: v.to(device) for k, v in start.items()}, len(entries))
        except ValueError as e:
            raise _bad(folder, f"the starting canvas's Gaussian in {WEIGHTS} does not fit ({e})") from None
    for k, v in arrays.items():
        want = torch.float32 if k == "log_var" else torch.float64
        if v.dtype != want or tuple(v.shape) != (D,) or not torch.isfinite(v).all():
            raise _bad(folder, f"{k} in {WEIGHTS} is not {D} finite {str(want)[6:]} values")
    if not all(torch.isfinite(v).all() for k, v in tensors.items() if k.startswith("model.") and v.is_floating_point()):
        raise _bad(folder, f"the policy's parameters in {WEIGHTS} are not all finite")
    if not (arrays["scale_"] > 0).all():
        raise _bad(folder, f"scale_ in {WEIGHTS} has values that are not positive")
    try:
        with torch.random.fork_rng(devices=[]):  # the initialisation below is overwritten: keep the caller's RNG
            model = model_from_config(imp.model, dict(config))
        model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
    except (SeqImputeError, TypeError, ValueError, RuntimeError) as e:
        why = " ".join(str(e).split()) or type(e).__name__  # state_dict's reasons follow its first line
        raise _bad(folder, f"its policy does not load ({why[:300]})") from None
    model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    imp.model_ = model
    for k in ARRAYS:
        setattr(imp, k, arrays[k].numpy())
    imp._log_var_t = arrays["log_var"].to(device) if gaussian else None
    imp._start = start if entries is not None else None  # the start checked above (or no start)
    imp.log_var_ = arrays["log_var"].numpy().astype(np.float64) if gaussian else None
