"""The declared dependency floors are the versions CI tests: .ci/lowest.txt pins each floor of pyproject.toml (the
required dependencies and the optional pandas extra), and torch's floor is the torch .ci/run installs."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.version import Version  # pytest's own dependency

ROOT = Path(__file__).resolve().parents[1]


OPTIONAL = ("pandas",)  # extras whose packages the lowest-versions stage also tests


def floors() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"] + [d for e in OPTIONAL for d in project["optional-dependencies"][e]]
    out = {}
    for d in deps:
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)>=([0-9.]+)", d.replace(" ", ""))
        assert m, f"{d!r}: declare each dependency as NAME>=FLOOR, so that CI can test the floor"
        out[m.group(1).lower()] = Version(m.group(2))
    return out


def test_lowest_pins_are_the_declared_floors():
    pins = {}
    for line in (ROOT / ".ci" / "lowest.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[name.strip().lower()] = Version(version)
    declared = floors()
    torch = declared.pop("torch")
    assert pins == declared
    ci = (ROOT / ".ci" / "run").read_text()
    assert {Version(v) for v in re.findall(r"torch==([0-9.]+)", ci)} == {torch}
    assert "lowest.txt" in ci
