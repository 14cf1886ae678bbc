"""Readers (and the one table writer) for the file formats of the data sources, the CLI's inputs and outputs.
Each reader returns NumPy arrays; scaling to [0, 1] lives in sources.py (but for the CLI's images, read_images)."""

from __future__ import annotations

import csv
import gzip
import io
import math
import pickle
import re
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

from ..errors import SeqImputeError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".pgm", ".ppm", ".tif", ".tiff", ".webp"}
TABLE_SUFFIXES = (".csv", ".npy", ".npz")
# What a CSV cell may say for "missing" (case and surrounding spaces ignored); NaN itself parses as a float.
MISSING_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "none", "?"})
INTEGER_LEVELS = (1, 255, 65535)  # binary, 8-bit and 16-bit grey levels
NUMPY_ERRORS = (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile, zlib.error)


def _open(path: Path):
    return gzip.open(path, "rb") if str(path).endswith(".gz") else open(path, "rb")


def read_idx(path: Path) -> np.ndarray:
    """The classic MNIST IDX format (optionally gzipped): magic, dims as big-endian int32, then the data."""
    dtypes = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    try:
        with _open(path) as f:
            raw = f.read()
        zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
        if zero != 0 or dtype_code not in dtypes:
            raise ValueError("bad magic number")
        shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
        arr = np.frombuffer(raw, dtype=dtypes[dtype_code], offset=4 + 4 * ndim)
        return arr.reshape(shape).astype(arr.dtype.newbyteorder("="), copy=False)
    except (ValueError, struct.error, OSError, EOFError) as e:
        raise SeqImputeError(f"{path} is not a valid IDX file ({e}); download it again.") from None


def read_amat(path: Path) -> np.ndarray:
    """Larochelle's binarized-MNIST .amat: one image per line, 784 space-separated 0/1 values."""
    try:
        arr = np.loadtxt(path, dtype=np.float32, ndmin=2)
    except (ValueError, OSError) as e:
        raise SeqImputeError(f"{path} is not a valid .amat file ({e}).") from None
    if not np.isin(arr, (0.0, 1.0)).all():
        raise SeqImputeError(f"{path}: an .amat file for binarized MNIST must hold only 0 and 1.")
    return arr


def rgb_to_grey(x: np.ndarray, channel_axis: int = -1) -> np.ndarray:
    """ITU-R 601 luminance, the usual RGB->grey conversion (docs/PAPER.md §8 (data) and §14 (open questions))."""
    w = np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return np.tensordot(np.moveaxis(x.astype(np.float32), channel_axis, -1), w, axes=([-1], [0]))


def read_svhn_mat(path: Path) -> np.ndarray:
    """An official SVHN *_32x32.mat file: X of shape (32, 32, 3, N) uint8. Returns grey (N, 32, 32) in [0, 255]."""
    from scipy.io import loadmat

    try:
        X = loadmat(path, variable_names=["X"])["X"]
    except Exception as e:  # scipy raises several types for corrupt files
        raise SeqImputeError(f"{path} is not a valid SVHN .mat file ({e}); download it again.") from None
    if X.ndim != 4 or X.shape[:3] != (32, 32, 3):
        raise SeqImputeError(f"{path}: expected X of shape (32, 32, 3, N), got {X.shape}.")
    return rgb_to_grey(np.transpose(X, (3, 0, 1, 2)))


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain containers and NumPy arrays only, so a data pickle cannot run code."""

    # _reconstruct/ndarray/dtype/scalar: every protocol; _frombuffer: NumPy arrays under protocol 5;
    # _codecs.encode: how Python 3 writes bytes under protocols 0-2. None of them runs user code.
    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("numpy.core.numeric", "_frombuffer"),
               ("numpy._core.numeric", "_frombuffer"), ("_codecs", "encode"), ("builtins", "slice"),
               ("collections", "OrderedDict")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data pickle")


def load_numpy_pickle(path: Path):
    """Load a (possibly gzipped, possibly Python 2) pickle that holds only NumPy arrays and containers."""
    try:
        with _open(path) as f:
            return _NumpyOnlyUnpickler(io.BytesIO(f.read()), encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, OSError, ValueError, TypeError, AttributeError, ImportError,
            KeyError, IndexError, struct.error, zlib.error) as e:
        raise SeqImputeError(f"{path} could not be read as a data pickle ({e}).") from None


def read_tfd(path: Path) -> dict:
    """The Toronto Face Database file, .pkl (the authors' tfd_data_48x48.pkl) or .mat (TFD_48x48.mat).
    Returns a dict with 'images' (N, 48, 48) and 'folds' (N, 5): 0 unlabeled, 1 train, 2 valid, 3 test."""
    path = Path(path)
    if path.suffix == ".mat":
        from scipy.io import loadmat

        try:
            d = loadmat(path, variable_names=["images", "folds"])
        except Exception as e:
            raise SeqImputeError(f"{path} is not a valid TFD .mat file ({e}).") from None
    else:
        d = load_numpy_pickle(path)
    if not isinstance(d, dict) or "images" not in d or "folds" not in d:
        raise SeqImputeError(f"{path}: a TFD file must hold 'images' and 'folds'.")
    images = np.asarray(d["images"])
    folds = np.asarray(d["folds"])
    if images.ndim == 2:
        images = images.reshape(-1, 48, 48)
    if images.shape[1:] != (48, 48) and images.shape[:2] == (48, 48):  # MATLAB layout (48, 48, N)
        images = np.transpose(images, (2, 0, 1))
    if folds.ndim == 1:
        folds = folds.reshape(-1, 1)
    if images.shape[1:] != (48, 48) or folds.ndim != 2 or folds.shape[0] != images.shape[0]:
        raise SeqImputeError(f"{path}: expected 48x48 images with one fold row each, got {images.shape} / {folds.shape}.")
    return {"images": images, "folds": folds}


def read_image(path: Path, size: tuple[int, int] | None) -> np.ndarray:
    """One image file as grey uint8 (H, W), resized to ``size`` (H, W) when given."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("L")
            if size is not None and im.size != (size[1], size[0]):
                im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            return np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as e:
        raise SeqImputeError(f"{path} is not a readable image ({e}).") from None


def read_image_folder(folder: Path, size: tuple[int, int] | None) -> np.ndarray:
    """All images under ``folder`` (recursively, sorted by path) as grey uint8 (N, H, W). Without ``size`` every
    image must have the size of the first one."""
    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise SeqImputeError(f"{folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}).")
    first = read_image(files[0], size)
    out = np.empty((len(files), *first.shape), dtype=np.uint8)
    out[0] = first
    for i, f in enumerate(files[1:], 1):
        img = read_image(f, size)
        if img.shape != first.shape:
            raise SeqImputeError(
                f"{f} is {img.shape[0]}x{img.shape[1]} but {files[0]} is {first.shape[0]}x{first.shape[1]}; "
                f"pass --size HxW to resize every image to one size."
            )
        out[i] = img
    return out


def read_arrays(path: Path, fix: str = "") -> dict[str, np.ndarray]:
    """The arrays of a .npy file (under the key 'x') or of a .npz file (under their names). Objects are never
    unpickled; a file that cannot be read is one SeqImputeError (``fix``: what to do about it, if known)."""
    try:
        if Path(path).suffix.lower() == ".npy":
            return {"x": np.load(path, allow_pickle=False)}
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except NUMPY_ERRORS as e:
        raise SeqImputeError(f"{path} could not be read as a NumPy file ({e}){'; ' + fix if fix else ''}.") from None


def the_array(arrays: dict[str, np.ndarray], path: Path, other_layout: str = "") -> np.ndarray:
    """The data of a NumPy file: its array 'x', else its only array (``other_layout``: what else the caller takes,
    for the error message)."""
    if "x" in arrays:
        return arrays["x"]
    if len(arrays) == 1:
        return next(iter(arrays.values()))
    raise SeqImputeError(f"{path} holds arrays {sorted(arrays)}; store the data under the key 'x'{other_layout}.")


def read_csv(path: Path, dtype=np.float32) -> tuple[np.ndarray, list[str] | None]:
    """A numeric CSV table (N, D) as ``dtype`` and its header (None without one). A cell that is empty or says NA,
    N/A, NaN, null, None or ? (any case) is missing (NaN). A first row holding any other text is the header;
    any other non-numeric cell is an error, never silently a missing value. Lines without text are skipped; a
    line of separators only (",,") is a row whose values are all missing."""
    rows, header = _csv_rows(path)
    return _numbers(rows, path, dtype), header


def _numbers(rows: list, path: Path, dtype) -> np.ndarray:
    out = np.empty((len(rows), len(rows[0][1]) if rows else 0), dtype=dtype)
    for i, (line, r) in enumerate(rows):
        out[i] = [_csv_cell(c, path, line, j, dtype) for j, c in enumerate(r)]
    return out


_INTEGER = re.compile(r"[+-]?\d+")


def cell_kind(c: str, decimal: str = ".") -> str:
    """A CSV cell's kind: "missing" (empty or a MISSING_TOKENS word), "integer", "number" or "text"."""
    c = c.strip()
    if c.lower() in MISSING_TOKENS:
        return "missing"
    if _INTEGER.fullmatch(c):
        return "integer"
    try:
        float(c.replace(decimal, ".") if decimal != "." else c)
        return "number"
    except ValueError:
        return "text"


def is_data_row(cells: list[str]) -> bool:
    """A CSV line that is a row: a line without text is skipped; a line of separators only (",,") is a row whose
    values are all missing."""
    return bool(cells) and (len(cells) > 1 or bool(cells[0].strip()))


def _csv_rows(path: Path) -> tuple[list, list[str] | None]:
    """A CSV file's data rows as (line number, cells), all of one width, and its header (None without one)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            rows = [(reader.line_num, r) for r in reader if is_data_row(r)]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise SeqImputeError(f"{path} could not be read as a CSV table ({e}).") from None
    if not rows:
        raise SeqImputeError(f"{path} is empty; give a CSV table with one example per row.")
    header = None if all(cell_kind(c) != "text" for c in rows[0][1]) else [c.strip() for c in rows[0][1]]
    width = len(rows[0][1])
    for line, r in rows:
        if len(r) != width:
            raise SeqImputeError(f"{path}, line {line}: {len(r)} cells, but the table has {width} columns.")
    return rows[header is not None:], header


def _csv_cell(c: str, path: Path, line: int, col: int, dtype) -> float:
    c = c.strip()
    try:
        v = float(c)
    except ValueError:
        if c.lower() in MISSING_TOKENS:
            return math.nan
        raise SeqImputeError(f"{path}, line {line}, column {col + 1}: {c!r} is not a number; a CSV table must be "
                             f"numeric (leave a cell empty or write NaN for a missing value).") from None
    if math.isfinite(v) and abs(v) > np.finfo(dtype).max:
        raise SeqImputeError(f"{path}, line {line}, column {col + 1}: {c} is beyond {np.dtype(dtype).name}'s range; "
                             f"rescale the column.")
    return v


def integer_levels(arrays, what: str, fix: str = "scale them into [0, 1] as floats") -> int:
    """The full-scale value of integer images, read from their values rather than their dtype (an int64 array of
    0-255 grey levels is 8-bit, not scaled by 2**63 - 1): 1 when every value is 0 or 1 (binary images), 255 when
    they lie in 0..255, 65535 in 0..65535. Negative values or values above 65535 are refused: no grey-level scale
    fits them, and ``fix`` says what to do instead."""
    lo, hi = 0, 0
    for a in arrays:
        if a.size:
            lo, hi = min(lo, int(a.min())), max(hi, int(a.max()))
    if lo < 0 or hi > INTEGER_LEVELS[-1]:
        raise SeqImputeError(f"{what}: integer images must hold grey levels 0..255 (8-bit) or 0..65535 (16-bit), "
                             f"found values {lo}..{hi}; {fix}.")
    return next(v for v in INTEGER_LEVELS if hi <= v)


# ------------------------------------------------------------------------------------- the CLI's files


def read_images(path: str | Path, image_shape) -> np.ndarray:
    """Images to impute from a .png/.jpg (one image), .npy or .npz (N,H,W or N,D) as float32 (N, D) in [0,1]
    (NaN kept), by ``image_rows``."""
    path = Path(path)
    if not path.exists():
        raise SeqImputeError(f"{path} does not exist.")
    if path.suffix.lower() in (".npy", ".npz"):
        arr = the_array(read_arrays(path), path)
    else:
        arr = read_image(path, None)[None]
    return image_rows(arr, image_shape, str(path))


def image_rows(arr: np.ndarray, image_shape, what: str) -> np.ndarray:
    """A model's input images, (N, H, W), (N, H*W) or one (H, W) image, as float32 rows (N, D) in [0, 1], NaN kept
    (the values to impute). Integer images are divided by their grey-level scale (``integer_levels``), as the data
    loaders do; float values must already lie in [0, 1]. ``image_shape``: the (H, W) the model was trained on
    (None: a table, rows of any width)."""
    arr = np.asarray(arr)
    if arr.ndim == 2 and image_shape is not None and arr.shape == tuple(image_shape):
        arr = arr[None]
    if arr.ndim not in (2, 3) or arr.size == 0:
        raise SeqImputeError(f"{what}: expected images as an array (N, H, W) or (N, H*W) with N >= 1, got shape "
                             f"{arr.shape}.")
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
            or np.issubdtype(arr.dtype, np.bool_)):
        raise SeqImputeError(f"{what}: images must hold numbers, not {arr.dtype}.")
    if image_shape is not None:
        h, w = image_shape
        if (arr.shape[1:] != (h, w)) if arr.ndim == 3 else (arr.shape[1] != h * w):
            got = "x".join(map(str, arr.shape[1:])) if arr.ndim == 3 else f"{arr.shape[1]} values"
            raise SeqImputeError(f"{what}: images of {got}, but the model was trained on {h}x{w} images; give "
                                 f"(N, {h}, {w}) or (N, {h * w}) (resize your input to that size).")
    if np.issubdtype(arr.dtype, np.floating):  # checked before the float32 cast, which would overflow to inf
        if np.isinf(arr).any():
            raise SeqImputeError(f"{what} holds infinite values; mark missing values with NaN instead.")
        finite = arr[np.isfinite(arr)]
        if finite.size and (finite.min() < 0 or finite.max() > 1):
            raise SeqImputeError(f"{what}: float values must lie in [0, 1] (found {finite.min():g}..{finite.max():g}); "
                                 f"scale them into [0, 1], or give 8-bit grey levels as integers (uint8).")
    if np.issubdtype(arr.dtype, np.integer):
        arr = arr.astype(np.float32) / integer_levels([arr], what)
    return arr.reshape(len(arr), -1).astype(np.float32)


def read_table(path: str | Path) -> tuple[np.ndarray, list[str] | None, tuple]:
    """An array from .csv (``read_csv``, kept in float64), .npy or .npz (key 'x' or its only array). Returns
    (X (N, D) float, header or None, the array's original shape). (The command line reads its CSV tables, text
    columns and row labels included, with data.csv_table.)"""
    path = Path(path)
    if not path.exists():
        raise SeqImputeError(f"{path} does not exist.")
    suffix = path.suffix.lower()
    header = None
    if suffix == ".csv":
        arr, header = read_csv(path, np.float64)
    elif suffix in (".npy", ".npz"):
        arr = the_array(read_arrays(path), path)
    else:
        raise SeqImputeError(f"{path}: unsupported file type {suffix!r}; use .csv, .npy or .npz.")
    if arr.ndim < 1 or arr.size == 0:
        raise SeqImputeError(f"{path} holds no values.")
    shape = arr.shape
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64)
    arr = arr.reshape(len(arr), -1) if arr.ndim != 2 else arr
    return arr, header, shape


def check_text_output(path: str | Path) -> None:
    """A table with text columns is written to .csv only."""
    if Path(path).suffix.lower() != ".csv":
        raise SeqImputeError(f"{path}: a table with text columns can be written to .csv only; give an OUT ending in "
                             f".csv.")


def _csv_text(v, dtype) -> str:
    """A cell as written: a float to its last bit (float32 values as float32)."""
    return repr(float(v)) if dtype == np.float64 else repr(np.float32(v).item())


def check_output(path: str | Path) -> None:
    """Fail before any work when ``path`` is not a writable .csv/.npy/.npz destination."""
    path = Path(path)
    if path.suffix.lower() not in TABLE_SUFFIXES:
        raise SeqImputeError(f"{path}: unsupported output type {path.suffix!r}; use .csv, .npy or .npz.")
    if not path.parent.exists():
        raise SeqImputeError(f"{path}: the folder {path.parent} does not exist; create it first.")


def write_table(path: str | Path, arr: np.ndarray, header: list[str] | None = None, shape: tuple | None = None,
                samples: np.ndarray | None = None) -> list[Path]:
    """Write ``arr`` (N, D) as .csv (with ``header``; full precision), .npy or .npz (key 'x', plus 'samples').
    For .csv/.npy, ``samples`` (S, N, D) go to OUT.sample1.csv ... / OUT.samples.npy. Returns the files written.
    (A CSV table with text or whole-number columns is written by data.csv_table.)"""
    path = Path(path)
    suffix = path.suffix.lower()
    full = (lambda a: a.reshape(shape)) if shape is not None else (lambda a: a)
    written = [path]
    if suffix == ".csv":
        def dump(p, a):
            with open(p, "w", newline="") as f:
                w = csv.writer(f, lineterminator="\n")
                if header:
                    w.writerow(header)
                for row in a:
                    w.writerow([_csv_text(v, a.dtype) for v in row])

        dump(path, arr)
        for k, s in enumerate(samples if samples is not None else []):
            p = path.with_name(f"{path.stem}.sample{k + 1}{path.suffix}")
            dump(p, s)
            written.append(p)
    elif suffix == ".npy":
        np.save(path, full(arr))
        if samples is not None:
            p = path.with_name(f"{path.stem}.samples.npy")
            np.save(p, samples.reshape((len(samples),) + tuple(shape or arr.shape)))
            written.append(p)
    elif suffix == ".npz":
        extra = {} if samples is None else {"samples": samples.reshape((len(samples),) + tuple(shape or arr.shape))}
        np.savez(path, x=full(arr), **extra)
    else:
        raise SeqImputeError(f"{path}: unsupported output type {suffix!r}; use .csv, .npy or .npz.")
    return written
