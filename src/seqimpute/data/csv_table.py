"""A user's CSV table as `seqimpute fit-transform` and `transform` read and write it.

Reading finds what a CSV's writer left implicit, and says what it found (``CsvTable.notes``): the separator (comma,
semicolon, tab or bar: the one that splits every line into the same number of cells, most of them numbers), the
header row (any text in the first row, or pandas' default integer column names), a row-label column (pandas'
unnamed index, or a first column holding a distinct whole number or text in every row) that is carried through
unchanged and never used as a feature, and each column's kind: numbers, whole numbers, or text (categories).
Anything it cannot read without guessing is refused with one error that names the fix: a column of numbers with a
few text cells, dates, a text column with a different value in every row, duplicate column names.

Writing keeps every present cell exactly as it was read (its text) and fills the missing ones: whole numbers as
whole numbers, other numbers to their last bit, categories as their text; lines end in ``\\n``.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import SeqImputeError
from .formats import cell_kind, is_data_row

SEPARATORS = (",", ";", "\t", "|")
SNIFF_LINES = 200  # lines read to choose the separator
ID_MIN_ROWS = 10  # a first column is taken for row labels (distinct in every row) only in tables at least this long
_DATE = re.compile(r"\d{4}-\d{1,2}-\d{1,2}([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)?|\d{1,2}[/.]\d{1,2}[/.]\d{2,4}")
_SEP_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "bar"}


@dataclass
class CsvTable:
    """A CSV table's feature columns as text cells, with what reading recognised."""

    sep: str
    header: list[str] | None  # the feature columns' names (None: the file had no header row)
    cells: list[list[str]]  # rows x feature columns, each cell's text as read
    kinds: list[str]  # per feature column: "numeric", "integer" or "text"
    missing: np.ndarray  # bool (rows, feature columns)
    decimal: str = "."
    label_pos: int | None = None  # the row-label column's position in the file
    label_name: str | None = None
    labels: list[str] = field(default_factory=list)  # its cells, written back as read
    notes: list[str] = field(default_factory=list)

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.cells), len(self.kinds)

    def number(self, cell: str) -> float:
        return float(cell.strip().replace(self.decimal, ".")) if self.decimal != "." else float(cell)

    def values(self, kinds: list[str] | None = None):
        """The table for SequentialImputer: a float64 array when every column is numeric, else a pandas DataFrame
        (whole-number columns Int64, text columns object). ``kinds`` (a fitted imputer's reading) overrides the
        columns' kinds as read: "text" or a number kind per column."""
        kinds = kinds or self.kinds
        cols = list(zip(*self.cells)) if self.cells else [()] * len(kinds)
        if all(k == "numeric" for k in kinds):
            return np.stack([self._floats(col, j) for j, col in enumerate(cols)], axis=1) if cols else \
                np.empty((len(self.cells), 0))
        import pandas as pd

        frame = {}
        for j, (k, col) in enumerate(zip(kinds, cols)):
            miss = self.missing[:, j]
            if k == "text":
                frame[j] = pd.Series([None if m else c.strip() for c, m in zip(col, miss)], dtype=object)
            else:
                v = self._floats(col, j)
                whole = k == "integer" and np.all(np.isnan(v) | (v == np.round(v)))
                frame[j] = pd.Series(v).astype("Int64") if whole else pd.Series(v)
        out = pd.DataFrame(frame)
        out.columns = self.header if self.header else [f"c{j}" for j in range(len(kinds))]
        return out

    def _floats(self, col, j: int) -> np.ndarray:
        """Column j's cells as float64, NaN where missing."""
        return np.array([np.nan if m else self.number(c) for c, m in zip(col, self.missing[:, j])], dtype=np.float64)


def _read_lines(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise SeqImputeError(f"{path} could not be read as a CSV table ({e}).") from None


def _rows(text: str, sep: str, limit: int | None = None) -> list[list[str]]:
    reader = csv.reader(io.StringIO(text), delimiter=sep)
    rows = []
    for r in reader:
        if is_data_row(r):
            rows.append(r)
            if limit and len(rows) >= limit:
                break
    return rows


def choose_separator(text: str) -> str:
    """The separator that splits the first lines into one width above one, with the largest share of number or
    missing cells (a decimal comma counts where the separator is not a comma); a comma when none does."""
    best, best_share = ",", -1.0
    for sep in SEPARATORS:
        try:
            rows = _rows(text, sep, SNIFF_LINES)
        except csv.Error:
            continue
        widths = {len(r) for r in rows}
        if len(widths) != 1 or widths == {1}:
            continue
        decimal = "," if sep != "," else "."
        cells = [c for r in rows for c in r]
        share = sum(cell_kind(c, decimal) != "text" for c in cells) / max(len(cells), 1)
        if share > best_share:
            best, best_share = sep, share
    return best


def _is_default_header(first: list[str]) -> bool:
    """pandas' to_csv of integer column names: 0, 1, ... (after an empty index cell)."""
    names = first[1:] if first and first[0].strip() == "" else first
    return len(names) > 0 and [c.strip() for c in names] == [str(i) for i in range(len(names))]


def read_csv_table(path, sep: str | None = None, header: str = "auto", index_col: str = "auto",
                   decimal: str = ".", bad_cells: str = "error") -> CsvTable:
    """Read ``path``. ``sep``: None finds it; ``header``: "auto", "yes" or "no"; ``index_col``: "auto", "none", or
    the row-label column's name or 0-based position; ``decimal``: "." or ","; ``bad_cells``: "error" (a few text
    cells among numbers are refused) or "missing" (they are read as missing values)."""
    path = Path(path)
    text = _read_lines(path)
    notes = []
    if sep is None:
        sep = choose_separator(text)
        if sep != ",":
            notes.append(f"read as {_SEP_NAMES[sep]}-separated (--sep to say otherwise)")
        if sep == ";" and decimal == "." and any(re.search(r"\d,\d", line) for line in text.splitlines()[:50]):
            decimal = ","
            notes.append("read ',' as the decimal mark (--decimal . to say otherwise)")
    try:
        rows = _rows(text, sep)
    except csv.Error as e:
        raise SeqImputeError(f"{path} could not be read as a CSV table ({e}).") from None
    if not rows:
        raise SeqImputeError(f"{path} is empty; give a CSV table with one example per row.")
    width = len(rows[0])
    for i, r in enumerate(rows):
        if len(r) != width:
            raise SeqImputeError(f"{path}, data row {i + 1}: {len(r)} cells, but the table has {width} columns"
                                 + (" (give --sep if the separator is not a comma)" if sep == "," else "") + ".")
    names = None
    if header == "yes" or (header == "auto" and (any(cell_kind(c, decimal) == "text" for c in rows[0])
                                                or _is_default_header(rows[0]))):
        names, rows = [c.strip() for c in rows[0]], rows[1:]
        if header == "auto" and _is_default_header(names):
            notes.append("read the first row (0, 1, ...) as column names, as pandas writes them (--no-header if it "
                         "is data)")
    if not rows:
        raise SeqImputeError(f"{path} holds no values.")
    label = _label_column(path, names, rows, index_col, decimal, notes)
    if names is not None:
        seen = [n for n in names if n != "" and names.count(n) > 1]
        if seen:
            raise SeqImputeError(f"{path}: column name(s) {sorted(set(seen))} appear more than once; give each "
                                 f"column its own name.")
    keep = [j for j in range(width) if j != label]
    labels = [r[label] for r in rows] if label is not None else []
    cells = [[r[j] for j in keep] for r in rows]
    feature_names = [names[j] for j in keep] if names is not None else None
    if not keep:
        raise SeqImputeError(f"{path} has no column to impute besides its row labels.")
    kinds, missing = _kinds(path, feature_names, cells, decimal, bad_cells, notes)
    return CsvTable(sep, feature_names, cells, kinds, missing, decimal, label,
                    names[label] if names is not None and label is not None else None, labels, notes)


def _label_column(path, names, rows, index_col, decimal, notes) -> int | None:
    """The row-label column's position (None: every column is a feature)."""
    if index_col == "none":
        return None
    if index_col != "auto":
        if names is not None and index_col in names:
            return names.index(index_col)
        if re.fullmatch(r"\d+", index_col) and int(index_col) < len(rows[0]):
            return int(index_col)
        raise SeqImputeError(f"{path} has no column {index_col!r} for --index-col; give one of its column names "
                             f"{names or []} or a position 0..{len(rows[0]) - 1}.")
    if len(rows[0]) < 2:
        return None
    if names is not None and names[0] in ("", "Unnamed: 0"):
        notes.append("the first column (no name) holds row labels, as pandas writes its index: carried through "
                     "unchanged, not used as a feature (--index-col none to use it)")
        return 0
    first = [r[0].strip() for r in rows]
    kinds = {cell_kind(c, decimal) for c in first}
    distinct = len(set(first)) == len(first) >= ID_MIN_ROWS
    if distinct and (kinds == {"integer"} or kinds == {"text"}):
        what = "a distinct whole number" if kinds == {"integer"} else "a distinct text"
        notes.append(f"the first column{f' ({names[0]!r})' if names else ''} holds {what} in every row, like ids: "
                     f"carried through unchanged, not used as a feature (--index-col none to use it)")
        return 0
    return None


def _kinds(path, names, cells, decimal, bad_cells, notes) -> tuple[list[str], np.ndarray]:
    kinds, n = [], len(cells)
    missing = np.zeros((n, len(cells[0])), dtype=bool)
    for j, col in enumerate(zip(*cells)):
        name = repr(names[j]) if names else f"{j + 1}"
        ks = [cell_kind(c, decimal) for c in col]
        missing[:, j] = [k == "missing" for k in ks]
        text = [i for i, k in enumerate(ks) if k == "text"]
        present = n - int(missing[:, j].sum())
        if text and len(text) <= present / 2:  # numbers with a few text cells
            if bad_cells == "missing":
                missing[text, j] = True
                notes.append(f"column {name}: {len(text)} cell(s) that are not numbers read as missing")
                text = []
            else:
                shown = ", ".join(f"row {i + 1}: {col[i].strip()!r}" for i in text[:3])
                comma = any(re.fullmatch(r"[+-]?\d+,\d+", col[i].strip()) for i in text)
                raise SeqImputeError(
                    f"{path}: column {name} holds numbers but {len(text)} cell(s) are not numbers ({shown})"
                    + (" - a decimal comma? give --decimal ," if comma else "")
                    + "; fix them, or give --bad-cells missing to read them as missing values.")
        if text:
            values = [col[i].strip() for i in range(n) if not missing[i, j]]
            if all(_DATE.fullmatch(v) for v in values):
                raise SeqImputeError(f"{path}: column {name} holds dates, which seqimpute does not fill; convert it to "
                                     f"numbers first (e.g. days since a date), or leave it out.")
            if len(set(values)) == len(values) >= ID_MIN_ROWS:
                label = names[j] if names else j
                raise SeqImputeError(f"{path}: column {name} holds a different text in every row (names or ids?), "
                                     f"which cannot be imputed as a category; give --index-col {label} to carry it "
                                     f"through as row labels, or leave it out.")
            kinds.append("text")
        elif all(k in ("integer", "missing") for k in ks) and present:
            kinds.append("integer")
        else:
            kinds.append("numeric")
    return kinds, missing


def _format(v, kind: str) -> str:
    if kind == "text":
        return str(v)
    v = float(v)
    return str(int(round(v))) if kind == "integer" else repr(v)


def write_csv_table(path, table: CsvTable, filled, kinds: list[str] | None = None) -> None:
    """``filled`` (the imputer's output for ``table.values()``: an array or a DataFrame) into ``path`` in the
    table's layout: the same separator, header and row labels; present cells as read, missing ones filled."""
    kinds = kinds or table.kinds
    vals = filled.to_numpy(dtype=object) if hasattr(filled, "to_numpy") else np.asarray(filled, dtype=object)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, delimiter=table.sep, lineterminator="\n")
        if table.header is not None:
            head = list(table.header)
            if table.label_pos is not None:
                head.insert(table.label_pos, table.label_name or "")
            w.writerow(head)
        for i, row in enumerate(table.cells):
            out = [row[j] if not table.missing[i, j] else _format(vals[i, j], kinds[j]) for j in range(len(row))]
            if table.label_pos is not None:
                out.insert(table.label_pos, table.labels[i])
            w.writerow(out)
