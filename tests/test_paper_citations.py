"""Citations of the paper and the authors' code point at docs/PAPER.md, and every section they cite exists there.

Code, tests, presets and docs cite sections as "docs/PAPER.md §4.3 (name)" (or a bare "§4.3" beside such a
citation); docs/PAPER.md has a heading "## §4 ..." / "### §4.3 ..." for each. The private notes the numbering
came from are not in the repository, so no file may send a reader there.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "docs" / "PAPER.md"
SCANNED = ("src", "tests", "benchmarks", "docs")
SUFFIXES = {".py", ".md", ".toml"}
OUTSIDE = "REFERENCE" + ".md"  # split, so this file does not match itself
HEADING = re.compile(r"^#{1,6} §(\d+(?:\.\d+)*) ", re.M)
CITED = re.compile(r"§(\d+(?:\.\d+)*)")
# The sections the code cites, by the numbering every citation uses.
REQUIRED = {"3", "3.1", "3.4", "3.5", "3.6", "4", "4.1", "4.2", "4.3", "4.4", "5", "5.1", "6", "7", "7.1", "7.2",
            "8", "9", "10", "12", "12.2", "12.7", "13", "13.0", "13.1", "13.2", "13.3", "13.4", "13.5", "13.6"}


def sections(text: str) -> list[str]:
    """The section numbers of the headings of ``text``, in order."""
    return HEADING.findall(text)


def unknown_citations(text: str, known: set[str]) -> list[tuple[int, str]]:
    """(line number, section) of every § citation in ``text`` that is not a known section."""
    return [(i, s) for i, line in enumerate(text.splitlines(), 1) for s in CITED.findall(line) if s not in known]


def scanned_files() -> list[Path]:
    files = [ROOT / "README.md"]
    for top in SCANNED:
        files += [p for p in sorted((ROOT / top).rglob("*")) if p.suffix in SUFFIXES and "__pycache__" not in p.parts]
    return files


def test_paper_headings_are_unique_and_cover_the_cited_sections():
    heads = sections(PAPER.read_text(encoding="utf-8"))
    assert len(heads) == len(set(heads)), f"duplicate section headings in docs/PAPER.md: {heads}"
    assert REQUIRED <= set(heads), f"docs/PAPER.md lacks sections {sorted(REQUIRED - set(heads))}"
    for s in heads:  # every subsection sits under its section
        assert "." not in s or s.rsplit(".", 1)[0] in heads, f"§{s} has no parent section"


def test_checker_finds_a_missing_section():
    known = {"4", "4.3", "10"}
    S = "\N{SECTION SIGN}"  # not typed as the sign itself, so the scan of this file skips these made-up sections
    text = f"see docs/PAPER.md {S}4.3 (camera-ready).\nand {S}10 (paper units), {S}4.5, {S}99.\n"
    assert unknown_citations(text, known) == [(2, "4.5"), (2, "99")]
    assert sections(f"## {S}4 GPSI\ntext {S}7\n### {S}4.3 Fig 2c\n#### not a section\n") == ["4", "4.3"]


def test_no_file_cites_notes_outside_the_repository():
    hits = [f"{p.relative_to(ROOT)}:{i}" for p in scanned_files()
            for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if OUTSIDE in line]
    assert not hits, f"these lines cite {OUTSIDE}, which is not in the repository; cite docs/PAPER.md: {hits}"


def test_every_cited_section_exists():
    known = set(sections(PAPER.read_text(encoding="utf-8")))
    bad = [f"{p.relative_to(ROOT)}:{i} §{s}" for p in scanned_files()
           for i, s in unknown_citations(p.read_text(encoding="utf-8"), known)]
    assert not bad, f"citations of sections that docs/PAPER.md does not have: {bad}"
