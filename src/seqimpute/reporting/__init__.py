"""The one Markdown-table helper every generated table goes through: `seqimpute reproduce`'s results, the claims,
the model cards, and the docs' tables (reporting.docs; the benchmarks' own in reporting.benchmarks)."""

from __future__ import annotations


def md_table(head: list[str], rows: list[list], align: str) -> list[str]:
    """A Markdown table: the ``head`` row, the alignment row (``align``: one letter per column, "l" or "r") and one
    line per row of cells (each turned into text with str)."""
    if len(align) != len(head) or set(align) - {"l", "r"}:
        raise ValueError(f"align needs one of l/r per column ({len(head)}), got {align!r}")
    bad = [r for r in rows if len(r) != len(head)]
    if bad:
        raise ValueError(f"a row has {len(bad[0])} cells for {len(head)} columns: {bad[0]!r}")
    line = lambda cells: "| " + " | ".join(str(c) for c in cells) + " |"  # noqa: E731
    return [line(head), "|" + "".join("---:|" if a == "r" else "---|" for a in align), *(line(r) for r in rows)]
