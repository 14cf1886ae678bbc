"""Readers for the file formats the data sources use. Each returns NumPy arrays; scaling lives in sources.py."""

from __future__ import annotations

import gzip
import math
import io
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np

from ..errors import SeqImputeError

FLOAT32_MAX = float(np.finfo(np.float32).max)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".pgm", ".ppm", ".tif", ".tiff", ".webp"}


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


def read_csv(path: Path) -> np.ndarray:
    """A numeric CSV table; empty cells, NA and NaN are missing. A non-numeric first row is taken as a header.
    Any other non-numeric cell is an error (it is not silently turned into a missing value)."""
    import csv

    missing = {"", "na", "nan", "n/a", "null"}

    def cell(c: str, line: int, col: int) -> float:
        c = c.strip()
        try:
            v = float(c)
        except ValueError:
            v = None
        if v is not None:
            if math.isfinite(v) and abs(v) > FLOAT32_MAX:
                raise SeqImputeError(f"{path}, line {line}, column {col + 1}: {c} is beyond float32's range; "
                                     f"rescale the column.")
            return v
        else:
            if c.lower() in missing:
                return np.nan
            raise SeqImputeError(f"{path}, line {line}, column {col + 1}: {c!r} is not a number; a CSV table must "
                                 f"be numeric (leave a cell empty or write NaN for a missing value).") from None

    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            rows = [(reader.line_num, r) for r in reader if r and any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise SeqImputeError(f"{path} could not be read as a CSV table ({e}).") from None
    if not rows:
        raise SeqImputeError(f"{path} is empty; give a CSV table with one example per row.")

    def is_number(c):
        try:
            float(c)
            return True
        except ValueError:
            return c.strip().lower() in missing

    start = 0 if all(is_number(c) for c in rows[0][1]) else 1  # a header
    width = len(rows[0][1])
    out = np.empty((len(rows) - start, width), dtype=np.float32)
    for i, (line, r) in enumerate(rows[start:]):
        if len(r) != width:
            raise SeqImputeError(f"{path}, line {line}: {len(r)} cells, but the table has {width} columns.")
        out[i] = [cell(c, line, j) for j, c in enumerate(r)]
    return out
