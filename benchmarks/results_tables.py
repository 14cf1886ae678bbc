"""The compact tables of docs/RESULTS.md ("Reproduction"), printed from the JSON files `seqimpute reproduce` wrote:
one row per cell, one column per model, ours with the paper's number in brackets. Nothing is typed in by hand.

    python benchmarks/results_tables.py                      # every results/cpu/*.json that exists
    python benchmarks/results_tables.py --results results/cpu table1 sweep
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _num(v) -> str:
    return "" if v is None else f"{v:.1f}"


def _cell(r: dict) -> str:
    if r.get("status") == "not run":
        return "not run"
    if r.get("ours") is None:
        return r.get("status", "")
    return _num(r["ours"]) + (f" ({r['paper']:g})" if r.get("paper") is not None else "")


def grid(rows: list[dict], key, heads: list[str]) -> list[str]:
    """Rows grouped by ``key(row)`` (a tuple of leading columns named ``heads``), one column per model."""
    models = list(dict.fromkeys(r["model"] for r in rows))
    groups: dict[tuple, dict] = {}
    for r in rows:
        groups.setdefault(key(r), {})[r["model"]] = r
    out = ["| " + " | ".join(heads + models) + " |", "|" + "---|" * len(heads) + "---:|" * len(models)]
    for k, by_model in groups.items():
        out.append("| " + " | ".join([str(x) for x in k] + [_cell(by_model[m]) if m in by_model else ""
                                                              for m in models]) + " |")
    return out


def table1(d: dict) -> list[str]:
    return grid(d["rows"], lambda r: (r["dataset"] + (f" ({r['data_used']} stand-in)" if r.get("stand_in") else ""),
                                      r["mask"]), ["dataset", "mask"])


def by_mask(d: dict) -> list[str]:
    """Fig 2(a,b) and Fig 1: one row per mask."""
    return grid(d["rows"], lambda r: (r["mask"],), ["mask"])


def fig2c(d: dict) -> list[str]:
    out = grid(d["rows"], lambda r: (r["steps"],), ["T"])
    updates = {}
    for r in d["rows"]:
        updates.setdefault(r["model"], []).append(f"{r['steps']}: {r.get('run_step', 0)}")
    return out + [""] + [f"- {m} updates per T: " + ", ".join(u) for m, u in updates.items()]


def sweep(d: dict) -> list[str]:
    out = ["| model | candidate | changes from the defaults | updates | best valid bound | vs best | |",
           "|---|---|---|---:|---:|---:|---|"]
    for r in d["rows"]:
        changes = "; ".join(f"{k} {json.dumps(v)}" for k, v in r["changes"].items()) or "none"
        mark = ", ".join(x for x in ("**best**" if r["best"] else "", "preset" if r["preset_choice"] else "") if x)
        vs = "" if r["vs_best"] is None else f"{r['vs_best']:+.1f}"
        out.append(f"| {r['model']} | {r['candidate']} | {changes} | {r['run_step']} | {_num(r['best_valid'])} | "
                   f"{vs} | {mark} |")
    return out


TABLES = {"table1": table1, "fig2": by_mask, "fig2c": fig2c, "fig1": by_mask, "sweep": sweep}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("which", nargs="*", help=f"tables to print, of {', '.join(TABLES)} (default: every one present)")
    ap.add_argument("--results", default="results/cpu", help="the preset's results folder (default results/cpu)")
    args = ap.parse_args()
    folder = Path(args.results)
    unknown = [w for w in args.which if w not in TABLES]
    if unknown:
        raise SystemExit(f"unknown table {unknown[0]!r}; choose from {', '.join(TABLES)}.")
    for name in args.which or TABLES:
        path = folder / f"{name}.json"
        if not path.exists():
            if args.which:
                raise SystemExit(f"{path} does not exist: run `seqimpute reproduce {name}` first.")
            continue
        print(f"## {name} ({path})\n")
        print("\n".join(TABLES[name](json.loads(path.read_text()))) + "\n")


if __name__ == "__main__":
    main()
