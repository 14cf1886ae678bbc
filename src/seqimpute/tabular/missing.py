"""scikit-learn's imputer conventions around SequentialImputer's policy, as SimpleImputer and IterativeImputer define
them: ``missing_values`` (the marker of a missing entry), ``keep_empty_features`` (columns without any observed value
in fit: dropped from the output, or kept and filled with 0) and ``add_indicator`` (a 0/1 column per feature that had
missing values in fit, appended to the output, as MissingIndicator(features="missing-only") gives); and
``check_input``, the estimator's reading of X (scikit-learn's validation, the markers, the column layout)."""

from __future__ import annotations

import warnings

import numpy as np

from ..errors import SeqImputeError
from .columns import ColumnLayout, column_kinds, is_frame

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _validate_data
except ImportError:  # scikit-learn 1.4-1.5 (tested by .ci/run's lowest-versions stage): the option had its old name
    def _validate_data(est, X, reset=True, ensure_all_finite=True, skip_check_array=False, **kw):
        if skip_check_array:
            return est._validate_data(X, reset=reset, cast_to_ndarray=False)
        return est._validate_data(X, reset=reset, force_all_finite=ensure_all_finite, **kw)

_FLOATS = (np.float64, np.float32)


def is_nan_marker(missing_values) -> bool:
    """NaN, None and pandas.NA all mean "the entries the data already hold as missing"."""
    if missing_values is None:
        return True
    if isinstance(missing_values, float) and np.isnan(missing_values):
        return True
    return type(missing_values).__name__ == "NAType"


def check_missing_values(missing_values) -> None:
    number = isinstance(missing_values, (int, float, np.number)) and not isinstance(missing_values, (bool, np.bool_))
    if is_nan_marker(missing_values) or number or isinstance(missing_values, str):
        return
    raise SeqImputeError(f"missing_values must be a number, a string, np.nan, None or pandas.NA, got "
                         f"{missing_values!r}.")


def mark_missing(X, missing_values):
    """X with its ``missing_values`` entries as NaN (None in text columns); X itself for a NaN marker. An array
    holding NaN beside another marker is refused, as scikit-learn's imputers refuse it."""
    if is_nan_marker(missing_values):
        return X
    if is_frame(X):
        out = X.copy()
        for j in range(X.shape[1]):
            s = X.iloc[:, j]
            hit = (s == missing_values).fillna(False).to_numpy(dtype=bool) if s.dtype != "category" else \
                (s.astype(object) == missing_values).to_numpy(dtype=bool)
            if hit.any():
                if s.dtype == "category":
                    s = s.cat.remove_categories([missing_values])
                elif s.dtype.kind in "iu":
                    s = s.astype("Int64")  # integers keep their kind, with the markers as NA
                out.isetitem(j, s.mask(hit))
        return out
    if isinstance(missing_values, str):
        raise SeqImputeError(f"missing_values={missing_values!r} is text, but X is an array of numbers; give a "
                             f"number, or a DataFrame whose text columns hold the marker.")
    arr = np.asarray(X)
    if arr.dtype.kind in "fc" and np.isnan(arr).any():
        raise SeqImputeError(f"X holds NaN, but missing_values={missing_values!r}; mark the missing entries one "
                             f"way (replace the NaN by {missing_values!r}, or use missing_values=np.nan).")
    arr = arr if arr.dtype.kind == "f" else arr.astype(np.float64)
    return np.where(arr == missing_values, np.nan, arr)


def missing_mask(X) -> np.ndarray:
    """bool (N, D): the entries X lacks."""
    return X.isna().to_numpy(dtype=bool) if is_frame(X) else np.isnan(np.asarray(X, dtype=np.float64))


def empty_features(X, keep_empty_features: bool) -> np.ndarray:
    """The columns without any observed value (indices), with scikit-learn's warning when they will be dropped."""
    empty = np.flatnonzero(missing_mask(X).all(axis=0))
    if len(empty) and not keep_empty_features:
        names = list(X.columns[empty]) if is_frame(X) else empty.tolist()
        warnings.warn(f"Skipping features without any observed values: {names}. At least one non-missing value is "
                      f"needed for imputation; they are left out of the output (keep_empty_features=True keeps "
                      f"them, filled with 0).", UserWarning, stacklevel=4)
    return empty


def kept(X, empty: np.ndarray):
    """X without the ``empty`` columns."""
    if not len(empty):
        return X
    keep = np.setdiff1d(np.arange(X.shape[1]), empty)
    return X.iloc[:, keep] if is_frame(X) else X[:, keep]


def assemble(X, completed, empty: np.ndarray, keep_empty_features: bool, indicator: np.ndarray | None):
    """The output for input X: ``completed`` (the kept columns, imputed), with the empty columns back in place
    (their missing entries 0) when ``keep_empty_features``, and the indicator columns of ``indicator`` (feature
    indices) appended."""
    out = completed
    if len(empty) and keep_empty_features:
        if is_frame(X):
            out = completed.copy()  # never the caller's frame
            for j in empty:  # in place, in X's order
                col = X.iloc[:, j]
                out.insert(int(j), X.columns[j], col.fillna(0) if col.dtype != object else col.where(col.notna(), 0))
        else:
            full = np.array(X, dtype=completed.dtype, copy=True)
            keep = np.setdiff1d(np.arange(X.shape[1]), empty)
            full[:, keep] = completed
            full[:, empty] = np.nan_to_num(full[:, empty], nan=0.0)
            out = full
    if indicator is None or not len(indicator):
        return out
    flags = missing_mask(X)[:, indicator]
    if is_frame(out):
        out = out.copy()
        for j, f in zip(indicator, flags.T):
            out[f"missingindicator_{X.columns[j]}"] = f
        return out
    return np.hstack([out, flags.astype(out.dtype)])


def feature_names_out(names: np.ndarray, empty, keep_empty_features: bool, indicator) -> np.ndarray:
    """The output's column names for input names ``names``."""
    keep = names if keep_empty_features or empty is None or not len(empty) else np.delete(names, empty)
    extra = [f"missingindicator_{names[j]}" for j in (indicator if indicator is not None else [])]
    return np.asarray(list(keep) + extra, dtype=object)


def check_input(imp, X, reset: bool) -> tuple:
    """(X, Xk, T): X as given with its ``missing_values`` marked (a DataFrame of a mixed layout) or as a float
    array; Xk, X without the features that had no observed value in fit; and Xk's table T (N, C) of numbers and
    category codes, NaN = missing (Xk itself for numbers only). ``reset`` (fit): the empty features, the
    indicator's features and the layout are fitted on X."""
    X = mark_missing(X, imp.missing_values)
    frame = is_frame(X)
    if reset:
        kinds = column_kinds(X, imp.categorical_features, X.shape[1]) if frame else None
        empty = empty_features(X, imp.keep_empty_features) if frame else None
        mixed = kinds is not None and any(k != "numeric" for j, k in enumerate(kinds) if j not in empty)
    else:
        mixed = imp.layout_.mixed
    try:
        if frame and mixed:  # names and width checked; the columns keep their dtypes
            _validate_data(imp, X, reset=reset, skip_check_array=True)
            if len(X) == 0:
                raise SeqImputeError("X has no rows; give at least one row.")
        else:
            X = _validate_data(imp, X, reset=reset, dtype=_FLOATS, ensure_all_finite="allow-nan", copy=False)
    except SeqImputeError:
        raise
    except ValueError as e:  # scikit-learn's validation: one line, as a SeqImputeError (still a ValueError)
        raise SeqImputeError(" ".join(str(e).split())) from None
    if reset:
        if empty is None:
            kinds = column_kinds(X, imp.categorical_features, X.shape[1])
            empty = empty_features(X, imp.keep_empty_features)
        imp.empty_features_ = empty
        imp.indicator_features_ = (np.flatnonzero(missing_mask(X).any(axis=0)) if imp.add_indicator
                                    else None)
    Xk = kept(X, imp.empty_features_)
    if reset:
        imp.layout_ = ColumnLayout.fit(Xk, [k for j, k in enumerate(kinds) if j not in empty])
    return X, Xk, imp.layout_.table(Xk)
