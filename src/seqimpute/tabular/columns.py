"""The column layout of a table for SequentialImputer: each input column's kind and its entries on the canvas.

Kinds, each with its own likelihood:

    numeric      one entry: a Gaussian mean on the standardised value (the observed mean and standard deviation)
    integer      as numeric; imputations are rounded to whole numbers and clipped to the observed min..max
    binary       one entry holding a logit: Bernoulli likelihood; codes 0 and 1 stand for False and True
    categorical  a one-hot group of entries holding logits: categorical likelihood, -log softmax over the group at
                 the true category; imputations are always categories seen in fitting

Two spaces. The *table* (N, C): one float per input column, a number or a category's code (0..K-1), NaN = missing.
The *canvas* (N, W): the policy's entries, numbers, 0/1 and one-hot groups; a missing category leaves its whole
group unobserved. ``ColumnLayout`` maps a DataFrame or array to the table, the table to the canvas, and rollouts'
canvases back to the table and to the input's own type (values, dtypes, index).
"""

from __future__ import annotations

import math
import re
import sys
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import SeqImputeError

KINDS = ("numeric", "integer", "binary", "categorical")
GAUSSIAN = ("numeric", "integer")  # the kinds whose canvas entry is a Gaussian mean
PROB_FLOOR = 0.01  # a probability from a linear model's mean (the Gaussian start) is kept in [0.01, 0.99]
_NUMBERS = {"integer", "floating", "mixed-integer-float", "decimal", "empty"}  # pandas' infer_dtype of number columns
_DATES = {"datetime", "datetime64", "date", "time", "timedelta", "timedelta64", "period"}
_JSON_SCALARS = (str, int, float, bool)


def _pandas():
    """pandas if it is imported (a DataFrame given implies it is): pandas stays an optional dependency."""
    return sys.modules.get("pandas")


def is_frame(X) -> bool:
    pd = _pandas()
    return pd is not None and isinstance(X, pd.DataFrame)


# ------------------------------------------------------------------------------------------ kinds


def check_categorical_features(value) -> None:
    """The parameter's form, before any data: "from_dtype", None, or a list of column indices, of column names, or
    a boolean mask."""
    if value is None or (isinstance(value, str) and value == "from_dtype"):
        return
    items = list(value) if isinstance(value, (list, tuple, np.ndarray)) else None
    if items is None or not (all(isinstance(v, (bool, np.bool_)) for v in items)
                             or all(isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))
                                    for v in items)
                             or all(isinstance(v, str) for v in items)):
        raise SeqImputeError(f"categorical_features={value!r}; give 'from_dtype' (pandas dtypes decide), None (no "
                             f"categorical column), or a list of column indices, of column names, or a boolean mask.")


def _named(value, n: int, names) -> set[int]:
    """The column indices that categorical_features names (a list or mask; checked against the data)."""
    items = list(value)
    if items and all(isinstance(v, (bool, np.bool_)) for v in items):
        if len(items) != n:
            raise SeqImputeError(f"categorical_features is a boolean mask of {len(items)} values but X has {n} "
                                 f"columns; give one value per column.")
        return {j for j, v in enumerate(items) if v}
    if items and isinstance(items[0], str):
        if names is None:
            raise SeqImputeError("categorical_features names columns, but X has no column names; give column "
                                 "indices for an array, or a DataFrame.")
        unknown = [v for v in items if v not in names]
        if unknown:
            raise SeqImputeError(f"categorical_features names {unknown} not among X's columns {list(names)[:20]}; "
                                 f"give column names of X (or indices).")
        return {names.index(v) for v in items}
    bad = [int(v) for v in items if not 0 <= int(v) < n]
    if bad:
        raise SeqImputeError(f"categorical_features holds column indices {bad} out of range for X's {n} columns; "
                             f"give indices in 0..{n - 1}.")
    return {int(v) for v in items}


def _frame_kind(name, s) -> str:
    """A DataFrame column's kind from its dtype: category, text -> categorical; bool -> binary; integer -> integer;
    float (and numbers in an object column) -> numeric. Dates are refused."""
    pd = _pandas()
    t, api = s.dtype, pd.api.types
    if isinstance(t, pd.CategoricalDtype):
        return "categorical"
    if api.is_bool_dtype(t):
        return "binary"
    inferred = api.infer_dtype(s, skipna=True) if (api.is_object_dtype(t) or api.is_string_dtype(t)) else None
    if (api.is_datetime64_any_dtype(t) or api.is_timedelta64_dtype(t) or isinstance(t, pd.PeriodDtype)
            or inferred in _DATES):
        raise SeqImputeError(f"column {name!r} of X ({t}) holds dates or times, which SequentialImputer does not "
                             f"fill; convert it to numbers first (e.g. days since a date), or leave it out with a "
                             f"ColumnTransformer.")
    if api.is_integer_dtype(t):
        return "integer"
    if api.is_float_dtype(t):
        return "numeric"
    if inferred is not None:
        if inferred in _NUMBERS:
            return "numeric"
        if inferred == "boolean":
            return "binary"
        check_not_stray_text(name, s)
        return "categorical"
    raise SeqImputeError(f"column {name!r} of X has dtype {t}, which SequentialImputer does not fill; convert it to "
                         f"numbers, bool or category first.")


def check_not_stray_text(name, s) -> None:
    """Refuse a column of numbers with a few text cells ("abc", a decimal comma "1,5"): read as categories it would
    have one category per distinct number. Numbers are at least half of its present cells (strings that parse as
    numbers count as numbers)."""
    pd = _pandas()
    present = s.dropna()
    numbers = pd.to_numeric(present.astype(str).str.strip(), errors="coerce").notna().to_numpy()
    if present.empty or numbers.all() or numbers.mean() < 0.5:
        return
    bad = [str(v) for v in present[~numbers].unique()[:3]]
    comma = any(re.fullmatch(r"[+-]?\d+,\d+", b.strip()) for b in bad)
    raise SeqImputeError(f"column {name!r} holds numbers but also {int((~numbers).sum())} cell(s) that are not "
                         f"numbers, e.g. {', '.join(repr(b) for b in bad)}"
                         + (" (a decimal comma? write decimals with a point)" if comma else "")
                         + "; fix those cells, or mark them missing (empty or NaN).")


def column_kinds(X, categorical_features, n: int) -> list[str]:
    """Each of the n columns' kind. A DataFrame's dtypes decide (``_frame_kind``), an array's columns are numeric;
    a list or mask in ``categorical_features`` makes those columns categorical (an array's then hold numeric codes),
    and then (as with None) no other column may be text or category."""
    frame = is_frame(X)
    names = list(X.columns) if frame else None
    kinds = [_frame_kind(c, X.iloc[:, j]) for j, c in enumerate(X.columns)] if frame else ["numeric"] * n
    if isinstance(categorical_features, str):  # "from_dtype"
        return kinds
    listed = set() if categorical_features is None else _named(categorical_features, n, names)
    unnamed = [names[j] for j, k in enumerate(kinds) if k == "categorical" and j not in listed] if frame else []
    if unnamed:
        raise SeqImputeError(f"column(s) {unnamed} of X hold text or categories, but categorical_features="
                             f"{categorical_features!r} does not name them; add them, or use the default "
                             f"categorical_features='from_dtype'.")
    return ["categorical" if j in listed else k for j, k in enumerate(kinds)]


# ------------------------------------------------------------------------------------------ columns


def _plain(v):
    """A NumPy scalar as the Python value it holds (categories are compared, stored in JSON and written back)."""
    return v.item() if isinstance(v, np.generic) else v


def _column(X, j: int, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Column j as (values, missing): floats for the Gaussian kinds, Python objects for the others."""
    if not is_frame(X):
        v = np.asarray(X[:, j], dtype=np.float64)
        return v, np.isnan(v)
    s = X.iloc[:, j]
    missing = s.isna().to_numpy()
    if kind in GAUSSIAN:
        v = s.to_numpy(dtype=np.float64, na_value=np.nan)
        if np.isinf(v).any():
            raise SeqImputeError(f"column {X.columns[j]!r} of X holds infinite values; mark missing values with "
                                 f"NaN instead.")
        return v, missing
    return s.to_numpy(dtype=object), missing


@dataclass
class Column:
    kind: str
    categories: list = field(default_factory=list)  # binary/categorical: the values codes 0..K-1 stand for
    low: int | None = None  # integer: the observed range the imputations are clipped to
    high: int | None = None

    @property
    def width(self) -> int:
        return len(self.categories) if self.kind == "categorical" else 1

    @classmethod
    def fit(cls, X, j: int, kind: str) -> "Column":
        if kind in ("numeric", "binary"):  # nothing to learn from the values (wide numeric arrays: no column copies)
            return cls(kind, categories=[False, True] if kind == "binary" else [])
        values, missing = _column(X, j, kind)
        seen = values[~missing]
        if kind == "integer":
            lo, hi = (int(seen.min()), int(seen.max())) if seen.size else (None, None)
            return cls(kind, low=lo, high=hi)
        return cls(kind, categories=_categories(X, j, seen))

    def codes(self, values: np.ndarray, missing: np.ndarray, name) -> np.ndarray:
        """Each value's code (float, NaN where missing); a value never seen in fitting is one clear error."""
        index = {v: k for k, v in enumerate(self.categories)}
        out = np.full(len(values), np.nan)
        for i in np.flatnonzero(~missing):
            out[i] = index.get(_plain(values[i]), -1)
        unknown = out == -1
        if unknown.any():
            new = sorted({repr(_plain(v)) for v in values[unknown]})[:5]
            raise SeqImputeError(f"column {name!r} holds {', '.join(new)}, not among the categories seen in "
                                 f"fitting ({', '.join(map(repr, self.categories[:10]))}); set such values missing "
                                 f"(NaN) to have them imputed, or fit again on data that holds them.")
        return out

    def values(self, t: np.ndarray) -> np.ndarray:
        """Table entries (numbers, codes) as this column's values: integers as int64, categories as objects."""
        if self.kind == "integer":
            return t.astype(np.int64)
        if self.kind in ("binary", "categorical"):
            cats = np.empty(len(self.categories), dtype=object)
            cats[:] = self.categories
            return cats[t.astype(np.int64)]
        return t


def _categories(X, j: int, seen: np.ndarray) -> list:
    """The observed categories: in a category dtype's order, else sorted (first-seen order when not sortable)."""
    if is_frame(X) and isinstance(X.iloc[:, j].dtype, _pandas().CategoricalDtype):
        present = {_plain(v) for v in seen}
        return [_plain(c) for c in X.iloc[:, j].cat.categories if _plain(c) in present]
    unique = list(dict.fromkeys(_plain(v) for v in seen))
    try:
        return sorted(unique)
    except TypeError:  # mixed types (3 and "a")
        return unique


# ------------------------------------------------------------------------------------------ the layout


class ColumnLayout:
    """Per input column its kind and its canvas entries [start, start + width)."""

    def __init__(self, columns: list[Column]):
        self.columns = columns
        widths = np.array([c.width for c in columns], dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(widths)[:-1]]).astype(np.int64)
        self.width = int(widths.sum())  # W, the canvas entries
        self.column_of = np.repeat(np.arange(len(columns)), widths)  # canvas entry -> input column
        kinds = np.array([c.kind for c in columns])[self.column_of]
        self.gaussian = np.isin(kinds, GAUSSIAN)  # entries with a Gaussian likelihood
        self.binary = kinds == "binary"
        self.groups = [(int(s), int(s) + c.width) for s, c in zip(self.starts, columns) if c.kind == "categorical"]
        self.mixed = any(c.kind != "numeric" for c in columns)  # else the imputer's one-likelihood path
        self._masks: dict = {}

    @classmethod
    def numeric(cls, n: int) -> "ColumnLayout":
        return cls([Column("numeric") for _ in range(n)])

    @classmethod
    def fit(cls, X, kinds: list[str]) -> "ColumnLayout":
        return cls([Column.fit(X, j, k) for j, k in enumerate(kinds)])

    # -------------------------------------------------------------------------------------- spaces

    def table(self, X) -> np.ndarray:
        """X (a DataFrame, or a float array) as the table (N, C): numbers and codes, NaN = missing. An all-numeric
        float array is returned as it is."""
        if not self.mixed and not is_frame(X):
            return X
        names = list(X.columns) if is_frame(X) else range(len(self.columns))
        T = np.empty((len(X), len(self.columns)))
        for j, (col, name) in enumerate(zip(self.columns, names)):
            values, missing = _column(X, j, col.kind)
            T[:, j] = values if col.kind in GAUSSIAN else col.codes(values, missing, name)
        return T

    def canvas(self, T: np.ndarray) -> np.ndarray:
        """The table as canvas values (N, W): numbers and 0/1 codes in place, categories one-hot, NaN = missing
        (a missing category: its whole group)."""
        if not self.groups:
            return T
        out = np.empty((len(T), self.width))
        for j, col in enumerate(self.columns):
            s, t = self.starts[j], T[:, j]
            if col.kind != "categorical":
                out[:, s] = t
                continue
            seen = ~np.isnan(t)
            block = np.zeros((len(T), col.width))
            block[seen, t[seen].astype(np.int64)] = 1.0
            block[~seen] = np.nan
            out[:, s:s + col.width] = block
        return out

    def decode(self, V: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """Canvas values in the data's units (N, W: numbers, probabilities) -> table entries (N, C). Without
        ``rng`` the most likely value: integers rounded and clipped, binary p > 0.5, the category of largest
        probability; with ``rng`` binary and categorical values are drawn from their probabilities."""
        if not self.mixed:
            return V
        T = V[:, self.starts].copy()
        for j, col in enumerate(self.columns):
            s = self.starts[j]
            if col.kind == "integer":
                T[:, j] = np.clip(np.rint(T[:, j]), col.low, col.high)
            elif col.kind == "binary":
                T[:, j] = (rng.random(len(V)) < T[:, j]) if rng is not None else T[:, j] > 0.5
            elif col.kind == "categorical":
                T[:, j] = _draw(V[:, s:s + col.width], rng) if rng is not None else V[:, s:s + col.width].argmax(1)
        return T

    def errors(self, V: np.ndarray, T: np.ndarray, scale: np.ndarray) -> np.ndarray:
        """Per table entry (N, C), the error of the canvas values V against the true table T: a number's
        standardised error; a binary or categorical value's 1 - p(true value) (a binary's p - t has that size)."""
        err = (V[:, self.starts] - T) / scale[self.starts]
        rows = np.arange(len(V))
        for j, col in enumerate(self.columns):
            if col.kind == "categorical":
                code = np.nan_to_num(T[:, j]).astype(np.int64)
                err[:, j] = np.where(np.isnan(T[:, j]), np.nan, 1.0 - V[rows, self.starts[j] + code])
        return err

    # -------------------------------------------------------------------------------------- outputs

    def to_array(self, T: np.ndarray) -> np.ndarray:
        """Table entries as an array's values: a categorical column's code -> its category (the array's own
        numeric code)."""
        if not self.mixed:
            return T
        out = np.array(T, dtype=np.float64, copy=True)
        for j, col in enumerate(self.columns):
            if col.kind in ("binary", "categorical"):
                ok = ~np.isnan(T[:, j])
                out[ok, j] = np.asarray(col.values(T[ok, j]), dtype=np.float64)
        return out

    def fill_frame(self, X, rows: np.ndarray, filled: np.ndarray, missing: np.ndarray):
        """A copy of the DataFrame X, its ``missing`` entries of ``rows`` set from the table entries ``filled``
        (one row per entry of ``rows``); columns, index and dtypes kept."""
        out = X.copy()
        for j, col in enumerate(self.columns):
            m = missing[rows, j]
            if m.any():
                out.isetitem(j, _set(X.iloc[:, j], rows[m], col.values(filled[m, j])))
        return out

    # -------------------------------------------------------------------------------------- likelihoods (torch)

    def _on(self, device) -> dict:
        key = str(device)
        if key not in self._masks:
            with torch.inference_mode(False):  # first asked for inside a rollout under inference mode, reused in training
                self._masks[key] = {k: torch.as_tensor(getattr(self, k), device=device) for k in ("gaussian", "binary")}
                self._masks[key]["column_of"] = torch.as_tensor(self.column_of, device=device)
        return self._masks[key]

    def expand(self, per_column: torch.Tensor) -> torch.Tensor:
        """A (B, C) mask over input columns as a (B, W) mask over canvas entries (a group as a whole)."""
        if not self.groups:
            return per_column
        return per_column[:, self._on(per_column.device)["column_of"]]

    def canvas_of_means(self, m: torch.Tensor) -> torch.Tensor:
        """A canvas whose values (``link``) are the means ``m`` of the standardised targets: ``m`` at Gaussian entries,
        its logit at binary ones, its log at a category's (whose softmax renormalises them); a mean outside (0, 1),
        which a linear model can give, is clipped to PROB_FLOOR from either end first."""
        g = self._on(m.device)
        p = m.clamp(PROB_FLOOR, 1 - PROB_FLOOR)
        return torch.where(g["gaussian"], m, torch.where(g["binary"], torch.logit(p), p.log()))

    def _log_softmax(self, c: torch.Tensor) -> torch.Tensor:
        """log softmax within each categorical group, 0 elsewhere."""
        out = torch.zeros_like(c)
        for a, b in self.groups:
            out[:, a:b] = torch.log_softmax(c[:, a:b], dim=-1)
        return out

    def link(self, c: torch.Tensor) -> torch.Tensor:
        """The canvas as values: means, sigmoid(logit) for binary entries, the group's softmax for categories."""
        m = self._on(c.device)
        return torch.where(m["gaussian"], c, torch.where(m["binary"], torch.sigmoid(c), self._log_softmax(c).exp()))

    def nll(self, z: torch.Tensor, c: torch.Tensor, gaussian: torch.Tensor, binary: torch.Tensor) -> torch.Tensor:
        """Elementwise NLL: the Gaussian and Bernoulli NLLs given at their entries, -z log softmax at a
        category's entries (non-zero only at the true category of a one-hot target z, so sums count it once)."""
        m = self._on(c.device)
        return torch.where(m["gaussian"], gaussian, torch.where(m["binary"], binary, -z * self._log_softmax(c)))

    # -------------------------------------------------------------------------------------- saving

    def to_json(self, names) -> list[dict]:
        """The columns as JSON values; a category JSON cannot hold is one clear error."""
        out = []
        for j, col in enumerate(self.columns):
            bad = [v for v in col.categories if not isinstance(v, _JSON_SCALARS)
                   or (isinstance(v, float) and not math.isfinite(v))]
            if bad:
                raise SeqImputeError(f"column {names[j] if names is not None else j!r} has the category {bad[0]!r} "
                                     f"({type(bad[0]).__name__}), which imputer.json cannot hold (strings, numbers "
                                     f"and booleans only); convert that column's values to strings before fitting.")
            entry = {"kind": col.kind}
            if col.kind in ("binary", "categorical"):
                entry["categories"] = list(col.categories)
            if col.kind == "integer":
                entry.update(low=col.low, high=col.high)
            out.append(entry)
        return out

    @classmethod
    def from_json(cls, data) -> "ColumnLayout":
        """The layout to_json wrote; anything else raises ValueError saying what is wrong."""
        if not isinstance(data, list) or not data:
            raise ValueError("the column layout is not a list of columns")
        columns = []
        for j, e in enumerate(data):
            kind = e.get("kind") if isinstance(e, dict) else None
            cats = e.get("categories", []) if isinstance(e, dict) else None
            ok = kind in KINDS and isinstance(cats, list) and all(isinstance(v, _JSON_SCALARS) for v in cats)
            ok = ok and (kind != "categorical" or len(cats) >= 1) and (kind != "binary" or cats == [False, True])
            if ok and kind == "integer":
                ok = all(isinstance(e.get(k), int) and not isinstance(e.get(k), bool) for k in ("low", "high")) \
                    and e["low"] <= e["high"]
            if not ok:
                raise ValueError(f"column {j} of the layout is not a valid column ({e!r:.200})")
            columns.append(Column(kind, cats, e.get("low"), e.get("high")))
        return cls(columns)


def _draw(P: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One category per row drawn from the rows' probabilities P (N, K)."""
    cum = np.cumsum(P, axis=1)
    u = rng.random((len(P), 1)) * cum[:, -1:]
    return np.minimum((cum < u).sum(1), P.shape[1] - 1)


def _set(s, positions: np.ndarray, values: np.ndarray):
    """Series s with the entries at ``positions`` set to ``values``, in s's dtype where it can hold them (a
    category dtype gains a fitted category it lacks; other columns that cannot hold them become object)."""
    pd = _pandas()
    s = s.copy()
    if isinstance(s.dtype, pd.CategoricalDtype):
        new = [v for v in dict.fromkeys(values) if v not in set(s.cat.categories)]
        if new:
            s = s.cat.add_categories(new)
    elif isinstance(s.dtype, np.dtype) and s.dtype.kind == "f":
        values = values.astype(s.dtype)  # float32 stays float32
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", FutureWarning)  # pandas 2 warns where pandas 3 refuses an upcast
            s.iloc[positions] = values
    except (TypeError, ValueError, FutureWarning):
        s = s.astype(object)
        s.iloc[positions] = values
    return s
