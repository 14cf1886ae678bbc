"""Data sources and file formats, each read from small files made here (no network, no real datasets)."""

from __future__ import annotations

import gzip
import os
import pickle
import struct

import numpy as np
import pytest
import torch

from seqimpute import SeqImputeError
from seqimpute.data import formats, load_dataset, load_splits, sources


def minmax(a):
    a = a.reshape(len(a), -1).astype(np.float64)
    a = a - a.min(1, keepdims=True)
    mx = a.max(1, keepdims=True)
    return np.divide(a, mx, out=np.zeros_like(a), where=mx > 0)


def write_idx(path, arr: np.ndarray, gz=False):
    codes = {np.dtype(np.uint8): 0x08, np.dtype(">i2"): 0x0B, np.dtype(">f4"): 0x0D}
    header = struct.pack(">HBB", 0, codes[arr.dtype], arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    data = header + arr.tobytes()
    if gz:
        with gzip.open(path, "wb", compresslevel=1) as f:
            f.write(data)
    else:
        path.write_bytes(data)


def check_images(splits, shape):
    for s in ("train", "valid", "test"):
        a = splits.arrays[s]
        assert a.dtype == np.float32 and a.ndim == 2 and a.shape[1] == shape[0] * shape[1]
        assert np.isfinite(a).all() and a.min() >= 0 and a.max() <= 1
    assert splits.image_shape == shape


def assert_rowwise_minmax(a):
    """Every non-constant row spans exactly [0, 1]."""
    span = a.max(1) - a.min(1)
    rows = span > 0
    assert np.allclose(a[rows].min(1), 0) and np.allclose(a[rows].max(1), 1)


# ---------------------------------------------------------------------------------------------------- helpers


def test_minmax_per_image():
    x = np.array([[2, 4, 6], [5, 5, 5], [-1, 0, 1], [np.nan, 1, 3]], dtype=np.float32)
    out = sources.minmax_per_image(x)
    assert out.dtype == np.float32
    assert np.allclose(out[0], [0, 0.5, 1]) and np.allclose(out[1], 0) and np.allclose(out[2], [0, 0.5, 1])
    assert np.isnan(out[3, 0]) and np.allclose(out[3, 1:], [0, 1])  # NaN (missing) stays missing, rest scaled


def test_seeded_split_is_fixed_80_10_10():
    a, b = sources.seeded_split(1000), sources.seeded_split(1000)
    assert [len(a[s]) for s in ("train", "valid", "test")] == [800, 100, 100]
    for s in a:
        assert np.array_equal(a[s], b[s])
    assert np.array_equal(np.sort(np.concatenate(list(a.values()))), np.arange(1000))


@pytest.mark.parametrize("n", range(3, 40))
def test_seeded_split_never_empty(n):
    parts = sources.seeded_split(n)
    assert all(len(v) >= 1 for v in parts.values())
    assert sum(len(v) for v in parts.values()) == n


# ---------------------------------------------------------------------------------------------------- MNIST IDX


def test_mnist_from_idx_files(tmp_path):
    rng = np.random.default_rng(0)
    train = rng.integers(0, 8, size=(10005, 28, 28), dtype=np.uint8)
    train[:, 0, 0] = 0
    train[:, 0, 1] = 7  # every image has range 0..7
    test = rng.integers(0, 256, size=(7, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", train, gz=True)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", test)
    splits, canon = load_splits("mnist", tmp_path / "cache", path=str(tmp_path))
    assert canon == "mnist"
    check_images(splits, (28, 28))
    assert [len(splits.arrays[s]) for s in ("train", "valid", "test")] == [5, 10000, 7]
    assert np.allclose(splits.arrays["train"], minmax(train[:5]), atol=1e-6)
    assert np.allclose(splits.arrays["valid"][-1], minmax(train[-1:])[0], atol=1e-6)
    assert np.allclose(splits.arrays["test"], minmax(test), atol=1e-6)
    assert_rowwise_minmax(splits.arrays["test"])
    ds = load_dataset("mnist", "test", path=str(tmp_path))
    assert isinstance(ds.x, torch.Tensor) and ds.x.dtype == torch.float32 and ds.x.shape == (7, 784)
    assert ds.image_shape == (28, 28) and ds.likelihood == "bernoulli" and ds.dim == 784 and len(ds) == 7


def test_read_idx_other_types(tmp_path):
    a = (np.arange(24).reshape(2, 3, 4) - 5).astype(">i2")
    write_idx(tmp_path / "a.idx", a)
    out = formats.read_idx(tmp_path / "a.idx")
    assert out.shape == (2, 3, 4) and np.array_equal(out, a.astype(np.int16))
    f = np.linspace(0, 1, 6, dtype=">f4").reshape(6)
    write_idx(tmp_path / "f.idx.gz", f, gz=True)
    assert np.allclose(formats.read_idx(tmp_path / "f.idx.gz"), f)


def test_bad_idx_files(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04" + b"\x00" * 20)
    with pytest.raises(SeqImputeError, match="not a valid IDX"):
        formats.read_idx(tmp_path / "bad")
    short = tmp_path / "short"
    write_idx(short, np.zeros((3, 28, 28), np.uint8))
    short.write_bytes(short.read_bytes()[:-5])
    with pytest.raises(SeqImputeError, match="not a valid IDX"):
        formats.read_idx(short)
    # too few training images for the 10k validation split
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((100, 28, 28), np.uint8))
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((10, 28, 28), np.uint8))
    with pytest.raises(SeqImputeError, match="more than 10000"):
        load_splits("mnist", path=str(tmp_path))
    with pytest.raises(SeqImputeError, match="does not exist"):
        load_splits("mnist", path=str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SeqImputeError, match="train-images-idx3-ubyte"):
        load_splits("mnist", path=str(tmp_path / "empty"))


# ---------------------------------------------------------------------------------------------------- binarized


def test_binarized_mnist_amat(tmp_path):
    rng = np.random.default_rng(1)
    sizes = {"train": 6, "valid": 3, "test": 4}
    data = {}
    for s, n in sizes.items():
        data[s] = rng.integers(0, 2, size=(n, 784))
        np.savetxt(tmp_path / f"binarized_mnist_{s}.amat", data[s], fmt="%d")
    splits, _ = load_splits("binarized-mnist", path=str(tmp_path))
    check_images(splits, (28, 28))
    for s in sizes:
        assert np.array_equal(splits.arrays[s], data[s].astype(np.float32))
    np.savetxt(tmp_path / "binarized_mnist_test.amat", np.full((2, 784), 2), fmt="%d")
    sources._CACHE.clear()
    with pytest.raises(SeqImputeError, match="only 0 and 1"):
        load_splits("binarized-mnist", path=str(tmp_path))
    np.savetxt(tmp_path / "binarized_mnist_test.amat", np.zeros((2, 10)), fmt="%d")
    with pytest.raises(SeqImputeError, match="784"):
        load_splits("binarized-mnist", path=str(tmp_path))


# ---------------------------------------------------------------------------------------------------- SVHN


def svhn_mat(path, n, seed):
    from scipy.io import savemat

    X = np.random.default_rng(seed).integers(0, 256, size=(32, 32, 3, n), dtype=np.uint8)
    savemat(path, {"X": X, "y": np.ones((n, 1), np.uint8)})
    return X


def test_svhn_mat(tmp_path):
    Xtr = svhn_mat(tmp_path / "train_32x32.mat", 40, 0)
    Xte = svhn_mat(tmp_path / "test_32x32.mat", 10, 1)
    splits, _ = load_splits("svhn", path=str(tmp_path))
    check_images(splits, (32, 32))
    assert [len(splits.arrays[s]) for s in ("train", "valid", "test")] == [38, 2, 10]
    grey = np.transpose(Xte, (3, 0, 1, 2)).astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    assert np.allclose(splits.arrays["test"], minmax(grey), atol=1e-5)
    assert_rowwise_minmax(splits.arrays["train"])
    # train + valid are the training images, in a fixed order
    grey_tr = minmax(np.transpose(Xtr, (3, 0, 1, 2)).astype(np.float64) @ np.array([0.299, 0.587, 0.114]))
    both = np.concatenate([splits.arrays["train"], splits.arrays["valid"]])
    assert np.allclose(np.sort(both.sum(1)), np.sort(grey_tr.sum(1)), atol=1e-3)
    sources._CACHE.clear()
    again, _ = load_splits("svhn", path=str(tmp_path))
    assert np.array_equal(again.arrays["valid"], splits.arrays["valid"])


def test_svhn_extra_and_errors(tmp_path):
    svhn_mat(tmp_path / "train_32x32.mat", 20, 0)
    svhn_mat(tmp_path / "test_32x32.mat", 5, 1)
    svhn_mat(tmp_path / "extra_32x32.mat", 30, 2)
    splits, _ = load_splits("svhn", path=str(tmp_path), extra="25")
    assert len(splits.arrays["train"]) + len(splits.arrays["valid"]) == 45
    with pytest.raises(SeqImputeError, match="whole number"):
        load_splits("svhn", path=str(tmp_path), extra="lots")
    with pytest.raises(SeqImputeError, match="--data-path"):
        load_splits("svhn")
    (tmp_path / "test_32x32.mat").write_bytes(b"not a mat file at all")
    sources._CACHE.clear()
    with pytest.raises(SeqImputeError, match="SVHN"):
        load_splits("svhn", path=str(tmp_path))


# ---------------------------------------------------------------------------------------------------- TFD


def tfd_data(n=30, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(1, 256, size=(n, 48, 48), dtype=np.uint8)
    images[0] = 0  # an empty image: dropped
    folds = rng.integers(0, 4, size=(n, 5))
    folds[:4, 0] = [0, 1, 2, 3]
    return images, folds


@pytest.mark.parametrize("fmt", ["mat", "pkl"])
def test_tfd(tmp_path, fmt):
    images, folds = tfd_data()
    if fmt == "mat":
        from scipy.io import savemat

        path = tmp_path / "TFD_48x48.mat"
        savemat(path, {"images": images, "folds": folds})
    else:
        path = tmp_path / "tfd_data_48x48.pkl"
        path.write_bytes(pickle.dumps({"images": images, "folds": folds, "labels": np.zeros(len(images))}))
    for fold in (0, 3):
        sources._CACHE.clear()
        splits, _ = load_splits("tfd", path=str(path), fold=str(fold))
        check_images(splits, (48, 48))
        keep = images.reshape(len(images), -1).sum(1) > 0
        f = folds[:, fold]
        for s, role in {"train": (f == 0) | (f == 1), "valid": f == 2, "test": f == 3}.items():
            assert np.allclose(splits.arrays[s], minmax(images[keep & role]), atol=1e-6), s
    with pytest.raises(SeqImputeError, match="out of range"):
        load_splits("tfd", path=str(path), fold="7")


def test_tfd_bad_file(tmp_path):
    path = tmp_path / "tfd.pkl"
    path.write_bytes(pickle.dumps({"images": np.zeros((3, 48, 48), np.uint8)}))
    with pytest.raises(SeqImputeError, match="'images' and 'folds'"):
        load_splits("tfd", path=str(path))
    path.write_bytes(pickle.dumps({"images": np.zeros((3, 40, 40), np.uint8), "folds": np.zeros((3, 5))}))
    with pytest.raises(SeqImputeError, match="48x48"):
        load_splits("tfd", path=str(path))


# ---------------------------------------------------------------------------------------------------- pickles


class Evil:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused(tmp_path):
    evil = Evil()
    evil.marker = tmp_path / "pwned"
    path = tmp_path / "data.pkl.gz"
    with gzip.open(path, "wb") as f:
        pickle.dump(((np.zeros(3), evil), None), f)
    with pytest.raises(SeqImputeError, match="refusing to load"):
        formats.load_numpy_pickle(path)
    assert not (tmp_path / "pwned").exists()
    # also as a TFD file
    (tmp_path / "tfd.pkl").write_bytes(pickle.dumps({"images": evil, "folds": np.zeros((1, 5))}))
    with pytest.raises(SeqImputeError, match="refusing"):
        load_splits("tfd", path=str(tmp_path / "tfd.pkl"))
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_numpy_pickles_of_every_protocol_load(tmp_path, protocol):
    x = np.arange(12, dtype=np.float32).reshape(3, 4) / 16
    y = np.arange(3, dtype=np.int64)
    path = tmp_path / "d.pkl"
    path.write_bytes(pickle.dumps(((x, y), (x[:1], y[:1]), {"k": [x, 1.5, "s"]}), protocol=protocol))
    out = formats.load_numpy_pickle(path)
    assert np.array_equal(out[0][0], x) and np.array_equal(out[0][1], y) and np.array_equal(out[2]["k"][0], x)


def test_corrupt_pickle(tmp_path):
    path = tmp_path / "d.pkl.gz"
    path.write_bytes(b"definitely not gzip")
    with pytest.raises(SeqImputeError, match="data pickle"):
        formats.load_numpy_pickle(path)
    path = tmp_path / "d.pkl"
    path.write_bytes(pickle.dumps(np.zeros(100))[:50])
    with pytest.raises(SeqImputeError, match="data pickle"):
        formats.load_numpy_pickle(path)


# ---------------------------------------------------------------------------------------------------- own data


def test_npz_key_x_images(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, size=(50, 6, 5), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", x=x, labels=np.arange(50))
    splits, canon = load_splits(str(tmp_path / "d.npz"))
    check_images(splits, (6, 5))
    assert canon == str(tmp_path / "d.npz")
    assert [len(splits.arrays[s]) for s in ("train", "valid", "test")] == [40, 5, 5]
    idx = sources.seeded_split(50)
    for s in ("train", "valid", "test"):  # integer images scale by their type's maximum, no min-max
        assert np.allclose(splits.arrays[s], x[idx[s]].reshape(-1, 30) / 255)
    ds = load_dataset(str(tmp_path / "d.npz"), "valid")
    assert ds.image_shape == (6, 5) and ds.likelihood == "bernoulli" and ds.x.shape == (5, 30)


def test_npz_only_array_and_npy(tmp_path):
    x = np.random.default_rng(1).random((20, 4, 4)).astype(np.float32)
    np.savez(tmp_path / "only.npz", x)  # stored as arr_0
    np.save(tmp_path / "a.npy", x)
    a, _ = load_splits(str(tmp_path / "only.npz"))
    b, _ = load_splits(str(tmp_path / "a.npy"))
    check_images(a, (4, 4))
    for s in ("train", "valid", "test"):
        assert np.array_equal(a.arrays[s], b.arrays[s])
    assert np.array_equal(a.arrays["test"], x[sources.seeded_split(20)["test"]].reshape(-1, 16))
    np.savez(tmp_path / "two.npz", a=x, b=x)
    with pytest.raises(SeqImputeError, match="'x'"):
        load_splits(str(tmp_path / "two.npz"))


def test_npz_with_given_splits(tmp_path):
    rng = np.random.default_rng(2)
    tr, va, te = (rng.integers(0, 256, (n, 3, 3), dtype=np.uint8) for n in (7, 2, 3))
    np.savez(tmp_path / "s.npz", train=tr, valid=va, test=te)
    splits, _ = load_splits(str(tmp_path / "s.npz"))
    check_images(splits, (3, 3))
    assert np.allclose(splits.arrays["valid"], va.reshape(2, 9) / 255)
    np.savez(tmp_path / "e.npz", train=tr, valid=va[:0], test=te)
    with pytest.raises(SeqImputeError, match="valid split .* is empty"):
        load_splits(str(tmp_path / "e.npz"))
    np.savez(tmp_path / "m.npz", train=tr, valid=rng.integers(0, 9, (2, 4, 4), dtype=np.uint8), test=te)
    with pytest.raises(SeqImputeError, match="same shape"):
        load_splits(str(tmp_path / "m.npz"))


def test_float_images_outside_unit_range(tmp_path):
    x = np.random.default_rng(3).random((10, 4, 4)).astype(np.float32) * 255
    np.save(tmp_path / "f.npy", x)
    with pytest.raises(SeqImputeError, match="--scale minmax"):
        load_splits(str(tmp_path / "f.npy"))
    splits, _ = load_splits(str(tmp_path / "f.npy"), scale="minmax")
    check_images(splits, (4, 4))
    assert_rowwise_minmax(np.concatenate(list(splits.arrays.values())))
    np.save(tmp_path / "s.npy", (x - 128).astype(np.int16))
    with pytest.raises(SeqImputeError, match="--scale minmax"):
        load_splits(str(tmp_path / "s.npy"))


@pytest.mark.parametrize("dtype, top, levels", [(np.int64, 255, 255), (np.int32, 255, 255), (np.uint16, 255, 255),
                                                (np.int64, 1, 1), (np.uint8, 1, 1), (np.int64, 4095, 65535),
                                                (np.uint16, 65535, 65535)])
def test_integer_images_scale_by_their_grey_levels_not_their_dtype(tmp_path, dtype, top, levels):
    """An int64 array of 0-255 grey levels is 8-bit (x/255), 0/1 arrays are binary, 12-bit data is 16-bit."""
    x = np.random.default_rng(5).integers(0, top + 1, (20, 3, 4)).astype(dtype)
    x[0, 0, 0] = top  # the largest level occurs
    np.save(tmp_path / "i.npy", x)
    idx = sources.seeded_split(20)
    for s in ("train", "valid", "test"):
        got = load_dataset(str(tmp_path / "i.npy"), s).x.numpy()
        assert np.allclose(got, x[idx[s]].reshape(-1, 12).astype(np.float64) / levels, rtol=0, atol=1e-7)


def test_integer_images_out_of_grey_level_range_are_refused(tmp_path):
    np.save(tmp_path / "neg.npy", np.full((5, 2, 2), -3, np.int64))
    with pytest.raises(SeqImputeError, match=r"found values -3\.\.0; pass --scale minmax"):
        load_splits(str(tmp_path / "neg.npy"))
    np.save(tmp_path / "big.npy", np.full((5, 2, 2), 70000, np.int64))
    with pytest.raises(SeqImputeError, match=r"0\.\.65535 \(16-bit\), found values 0\.\.70000"):
        load_splits(str(tmp_path / "big.npy"))
    splits, _ = load_splits(str(tmp_path / "big.npy"), scale="minmax")  # the fix the message names works
    check_images(splits, (2, 2))


def test_integer_splits_share_one_scale(tmp_path):
    """A dim split (values 0/1) of 8-bit data is scaled by 255 like the others, not read as binary."""
    tr = np.full((4, 2, 2), 200, np.int64)
    va, te = np.ones((2, 2, 2), np.int64), np.zeros((2, 2, 2), np.int64)
    np.savez(tmp_path / "s.npz", train=tr, valid=va, test=te)
    splits, _ = load_splits(str(tmp_path / "s.npz"))
    assert np.allclose(splits.arrays["train"], 200 / 255) and np.allclose(splits.arrays["valid"], 1 / 255)


def test_impute_input_integer_images_scale_by_grey_levels(tmp_path):
    from seqimpute.data.formats import read_images

    x = np.arange(2 * 4 * 4, dtype=np.int64).reshape(2, 4, 4) * 8  # 0..248
    np.save(tmp_path / "x.npy", x)
    assert np.allclose(read_images(tmp_path / "x.npy", (4, 4)), x.reshape(2, 16) / 255)
    np.save(tmp_path / "n.npy", -x)
    with pytest.raises(SeqImputeError, match="grey levels 0..255"):
        read_images(tmp_path / "n.npy", (4, 4))


def test_colour_images_become_grey(tmp_path):
    x = np.zeros((10, 2, 2, 3), np.uint8)
    x[..., 0] = 255  # pure red
    np.save(tmp_path / "rgb.npy", x)
    splits, _ = load_splits(str(tmp_path / "rgb.npy"))
    assert splits.image_shape == (2, 2)
    assert np.allclose(splits.arrays["train"], round(0.299 * 255) / 255)


def test_flat_rows_with_size(tmp_path):
    x = np.random.default_rng(4).integers(0, 256, (10, 12), dtype=np.uint8)
    np.save(tmp_path / "flat.npy", x)
    splits, _ = load_splits(str(tmp_path / "flat.npy"), size="3x4")
    assert splits.image_shape == (3, 4)
    with pytest.raises(SeqImputeError, match="do not fit"):
        load_splits(str(tmp_path / "flat.npy"), size="5x5")
    with pytest.raises(SeqImputeError, match="HxW"):
        load_splits(str(tmp_path / "flat.npy"), size="big")


def test_image_folder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(5)
    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    imgs = rng.integers(0, 256, (12, 8, 6), dtype=np.uint8)
    for i, im in enumerate(imgs):
        Image.fromarray(im).save(folder / ("sub" if i % 2 else "") / f"{i:02d}.png")
    (folder / "notes.txt").write_text("not an image")
    splits, canon = load_splits(str(folder))
    check_images(splits, (8, 6))
    assert sum(len(a) for a in splits.arrays.values()) == 12
    all_rows = {tuple(np.round(r * 255).astype(int)) for a in splits.arrays.values() for r in a}
    assert all_rows == {tuple(im.reshape(-1).astype(int)) for im in imgs}
    sources._CACHE.clear()
    sized, _ = load_splits(str(folder), size="4x3")
    check_images(sized, (4, 3))
    # a differently sized image needs --size (it is not silently resized)
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(folder / "zz.png")
    sources._CACHE.clear()
    with pytest.raises(SeqImputeError, match="--size"):
        load_splits(str(folder))
    resized, _ = load_splits(str(folder), size="8x6")
    check_images(resized, (8, 6))
    assert sum(len(a) for a in resized.arrays.values()) == 13
    (tmp_path / "none").mkdir()
    with pytest.raises(SeqImputeError, match="holds no images"):
        load_splits(str(tmp_path / "none"))
    (folder / "broken.png").write_bytes(b"garbage")
    with pytest.raises(SeqImputeError, match="not a readable image"):
        load_splits(str(folder), size="4x4")


def test_csv_table_with_header_and_missing(tmp_path):
    rows = ["a,b,c"] + [f"{i},{'' if i % 3 == 0 else i * 2.5},{'NaN' if i % 4 == 0 else -i}" for i in range(20)]
    path = tmp_path / "t.csv"
    path.write_text("\n".join(rows) + "\n")
    splits, canon = load_splits(str(path))
    assert splits.image_shape is None
    allrows = np.concatenate([splits.arrays[s] for s in ("train", "valid", "test")])
    assert allrows.shape == (20, 3) and allrows.dtype == np.float32
    order = np.argsort(allrows[:, 0])
    ref = np.array([[i, np.nan if i % 3 == 0 else i * 2.5, np.nan if i % 4 == 0 else -i] for i in range(20)], np.float32)
    assert np.array_equal(allrows[order], ref, equal_nan=True)
    assert [len(splits.arrays[s]) for s in ("train", "valid", "test")] == [16, 2, 2]
    for s in ("train", "valid", "test"):
        ds = load_dataset(str(path), s)
        assert ds.likelihood == "gaussian" and ds.image_shape is None and ds.dim == 3
    # without a header, in [0, 1]: Bernoulli
    (tmp_path / "u.csv").write_text("\n".join(f"{i / 10},{1 - i / 10}" for i in range(10)))
    ds = load_dataset(str(tmp_path / "u.csv"))
    assert ds.likelihood == "bernoulli" and len(ds) == 8


MISSING_SPELLINGS = ["", "NA", "na", "N/A", "n/a", "NaN", "nan", "NAN", "null", "NULL", "None", "none", "?", " NA "]


@pytest.mark.parametrize("token", MISSING_SPELLINGS)
def test_every_missing_token_reads_as_nan_in_both_csv_readers(tmp_path, token):
    """The data sources (float32 splits) and the CLI's tables (float64) read one CSV the same way."""
    path = tmp_path / "t.csv"
    path.write_text(f"a,b\n0.1,{token}\n{token},2.5\n3,-4\n")
    expected = [[0.1, np.nan], [np.nan, 2.5], [3.0, -4.0]]
    table, header, shape = formats.read_table(path)
    assert header == ["a", "b"] and shape == (3, 2) and table.dtype == np.float64
    assert np.array_equal(table, np.array(expected), equal_nan=True)  # 0.1 kept to the last float64 bit
    splits, _ = load_splits(str(path))
    rows = np.concatenate([splits.arrays[k] for k in ("train", "valid", "test")])
    assert rows.dtype == np.float32
    order = np.argsort(np.nan_to_num(rows[:, 0], nan=-1.0))
    assert np.array_equal(rows[order], np.array([expected[1], expected[0], expected[2]], np.float32), equal_nan=True)


def test_csv_rows_header_and_text_cells(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("\ufeffx, y \n1,2\n\n,\n5,6\n")  # a byte-order mark, a blank line, a row of separators
    table, header, _ = formats.read_table(path)
    assert header == ["x", "y"]  # the mark is not part of the first name; names are stripped
    assert np.array_equal(table, [[1, 2], [np.nan, np.nan], [5, 6]], equal_nan=True)  # the blank line is no row
    (tmp_path / "text.csv").write_text("1,2\n3,missing\n")
    with pytest.raises(SeqImputeError, match="line 2, column 2: 'missing' is not a number"):
        formats.read_table(tmp_path / "text.csv")
    (tmp_path / "head.csv").write_text("a,b\n")
    with pytest.raises(SeqImputeError, match="holds no values"):
        formats.read_table(tmp_path / "head.csv")


def test_numpy_files_hold_their_data_under_x_or_alone(tmp_path):
    x = np.arange(6.0).reshape(2, 3)
    np.savez(tmp_path / "one.npz", data=x)
    np.savez(tmp_path / "named.npz", x=x, y=x + 1)
    np.savez(tmp_path / "two.npz", a=x, b=x)
    assert np.array_equal(formats.read_table(tmp_path / "one.npz")[0], x)
    assert np.array_equal(formats.read_table(tmp_path / "named.npz")[0], x)
    for read in (formats.read_table, lambda p: formats.read_images(p, None), lambda p: load_splits(str(p))):
        with pytest.raises(SeqImputeError, match=r"holds arrays \['a', 'b'\]; store the data under the key 'x'"):
            read(tmp_path / "two.npz")


def test_likelihood_is_one_per_source(tmp_path):
    x = np.random.default_rng(6).random((30, 4)).astype(np.float32)
    x[sources.seeded_split(30)["test"][0], 0] = 5.0  # only the test split leaves [0, 1]
    np.save(tmp_path / "t.npy", x)
    kinds = {load_dataset(str(tmp_path / "t.npy"), s).likelihood for s in ("train", "valid", "test")}
    assert kinds == {"gaussian"}


def test_bad_csv(tmp_path):
    (tmp_path / "text.csv").write_text("a,b\n1,2\n3,hello\n4,5\n")
    with pytest.raises(SeqImputeError, match="line 3, column 2.*not a number"):
        load_splits(str(tmp_path / "text.csv"))
    (tmp_path / "ragged.csv").write_text("1,2\n3\n4,5\n6,7\n")
    with pytest.raises(SeqImputeError, match="columns"):
        load_splits(str(tmp_path / "ragged.csv"))
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(SeqImputeError, match="empty"):
        load_splits(str(tmp_path / "empty.csv"))
    (tmp_path / "inf.csv").write_text("1,2\n3,inf\n4,5\n6,7\n")
    with pytest.raises(SeqImputeError, match="infinite"):
        load_splits(str(tmp_path / "inf.csv"))


def test_too_few_rows_and_small_sets(tmp_path):
    np.save(tmp_path / "two.npy", np.zeros((2, 3), np.float32))
    with pytest.raises(SeqImputeError, match="at least 3"):
        load_splits(str(tmp_path / "two.npy"))
    np.save(tmp_path / "none.npy", np.zeros((0, 3), np.float32))
    with pytest.raises(SeqImputeError, match="at least 3"):
        load_splits(str(tmp_path / "none.npy"))
    np.save(tmp_path / "five.npy", np.zeros((5, 3), np.float32))
    splits, _ = load_splits(str(tmp_path / "five.npy"))  # 3 / 1 / 1, never an empty split
    assert [len(splits.arrays[s]) for s in ("train", "valid", "test")] == [3, 1, 1]


def test_bad_names_paths_and_options(tmp_path):
    with pytest.raises(SeqImputeError, match="unknown dataset 'nope'.*sklearn-digits"):
        load_dataset("nope")
    with pytest.raises(SeqImputeError, match="does not exist"):
        load_dataset(str(tmp_path / "missing.npz"))
    with pytest.raises(SeqImputeError, match="unsupported"):
        (tmp_path / "d.txt").write_text("1 2 3")
        load_dataset(str(tmp_path / "d.txt"))
    with pytest.raises(SeqImputeError, match="unknown split"):
        load_dataset("sklearn-digits", "validation")
    with pytest.raises(SeqImputeError, match="does not take --data-opt folds="):
        load_dataset("tfd", folds="1", path=str(tmp_path))
    with pytest.raises(SeqImputeError, match="sklearn-digits does not take --size"):
        load_dataset("sklearn-digits", size="4x4")
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 this is no zip")
    with pytest.raises(SeqImputeError, match="NumPy file"):
        load_dataset(str(tmp_path / "bad.npz"))


# ---------------------------------------------------------------------------------------------------- shipped


def test_sklearn_digits():
    splits, canon = load_splits("sklearn-digits", scale="none", size=None)
    check_images(splits, (8, 8))
    assert [len(splits.arrays[s]) for s in ("train", "valid", "test")] == [1438, 180, 179]
    assert splits.arrays["train"].max() == 1.0
    ds = load_dataset("sklearn-digits", "test")
    assert ds.x.shape == (179, 64) and ds.likelihood == "bernoulli" and ds.name == "sklearn-digits"
    from sklearn.datasets import load_digits

    ref = load_digits().data.astype(np.float32) / 16
    assert np.array_equal(ds.x.numpy(), ref[sources.seeded_split(len(ref))["test"]])


def test_in_process_cache():
    a = load_splits("sklearn-digits")[0]
    assert load_splits("sklearn-digits")[0] is a
    sources._CACHE.clear()
    assert load_splits("sklearn-digits")[0] is not a


# ---------------------------------------------------------------------------------------------------- cache files


def fake_mnist_cache(root, n=(6, 3, 4)):
    rng = np.random.default_rng(7)
    arrays = {s: rng.integers(0, 256, (k, 784), dtype=np.uint8) for s, k in zip(("train", "valid", "test"), n)}
    sources._write_cache(root / "mnist" / "mnist.npz", **arrays)
    return arrays


def test_mnist_from_cached_npz(tmp_path):
    arrays = fake_mnist_cache(tmp_path)
    splits, _ = load_splits("mnist", tmp_path)
    check_images(splits, (28, 28))
    for s, a in arrays.items():
        assert np.allclose(splits.arrays[s], minmax(a / 256), atol=1e-6)
    assert sources.get_dataset("mnist", tmp_path) == tmp_path / "mnist" / "mnist.npz"


def test_corrupt_cache_names_the_fix(tmp_path):
    fake_mnist_cache(tmp_path)
    path = tmp_path / "mnist" / "mnist.npz"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(SeqImputeError, match="delete it and run `seqimpute data get`"):
        load_splits("mnist", tmp_path)
    # without the checksum beside it, the broken zip is still reported, not a raw BadZipFile
    path.with_suffix(".sha256").unlink()
    with pytest.raises(SeqImputeError, match="corrupt.*seqimpute data get"):
        load_splits("mnist", tmp_path)
    path.write_bytes(b"PK" + bytes(100))
    with pytest.raises(SeqImputeError, match="corrupt.*seqimpute data get"):
        load_splits("mnist", tmp_path)


def test_data_root(tmp_path, monkeypatch):
    assert sources.data_root(tmp_path / "x") == tmp_path / "x"
    monkeypatch.setenv("SEQIMPUTE_DATA", str(tmp_path / "env"))
    assert sources.data_root() == tmp_path / "env"
    monkeypatch.delenv("SEQIMPUTE_DATA")
    assert sources.data_root().name == "seqimpute"
