"""Every generated table of the docs (README.md, docs/RESULTS.md), printed from the JSON files that
`seqimpute reproduce` and the benchmarks wrote: one name per table (TABLES), nothing typed in by hand. The
reproduction's rows carry ours with the paper's number in brackets; the benchmarks' tables are theirs
(seqimpute.reporting.benchmarks). benchmarks/results_tables.py runs this module's command line:

    python benchmarks/results_tables.py                      # every results/cpu/*.json that exists
    python benchmarks/results_tables.py --results results/cpu table1 sweep
    python benchmarks/results_tables.py --write docs/RESULTS.md   # regenerate its marked tables in place
    python benchmarks/results_tables.py --check docs/RESULTS.md   # exit 1 if one differs (tests/test_results_doc.py)

In a Markdown file, a generated table sits between `<!-- generated: python benchmarks/results_tables.py NAME -->`
(or `... results_tables.py --results FOLDER NAME -->` for JSON outside results/cpu) and `<!-- end generated -->`.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from . import md_table
from .benchmarks import (baselines_markdown, cell_lines, mixed_cell_lines, paired_lines, summary_lines,
                         timing_lines)


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
    body = [[*k, *(_cell(by_model[m]) if m in by_model else "" for m in models)] for k, by_model in groups.items()]
    return md_table(heads + models, body, "l" * len(heads) + "r" * len(models))


def table1(d: dict) -> list[str]:
    return grid(d["rows"], lambda r: (r["dataset"] + (f" ({r['data_used']} stand-in)" if r.get("stand_in") else ""),
                                      r["mask"]), ["dataset", "mask"])


def by_mask(d: dict) -> list[str]:
    """Fig 2(a,b) and Fig 1: one row per mask."""
    return grid(d["rows"], lambda r: (r["mask"],), ["mask"])


def fig2c(d: dict) -> list[str]:
    """One row per T; per model its score (the paper's) and the updates its run made in the budget."""
    models = list(dict.fromkeys(r["model"] for r in d["rows"]))
    cells = {(r["steps"], r["model"]): r for r in d["rows"]}
    body = []
    for t in dict.fromkeys(r["steps"] for r in d["rows"]):
        row = [t]
        for m in models:
            r = cells.get((t, m))
            row += [_cell(r), r.get("run_step", "")] if r else ["", ""]
        body.append(row)
    head = ["T"] + [h for m in models for h in (f"{m} (paper)", "updates")]
    return md_table(head, body, "r" * len(head))


def runs(status: dict, experiment: str) -> list[str]:
    """The runs behind an experiment, from status.json: updates, training time, what each was trained on."""
    return [f"- {rid}: {r['step']} updates, {r['training_minutes']:.1f} min; trained on {r['trained_on']}"
            for rid in status["experiments"][experiment]["runs"] for r in [status["runs"][rid]]]


def sweep(d: dict) -> list[str]:
    body = []
    for r in d["rows"]:
        changes = "; ".join(f"{k} {json.dumps(v)}" for k, v in r["changes"].items()) or "none"
        mark = ", ".join(x for x in ("**best**" if r["best"] else "", "preset" if r["preset_choice"] else "") if x)
        vs = "" if r["vs_best"] is None else f"{r['vs_best']:+.1f}"
        body.append([r["model"], r["candidate"], changes, r["run_step"], _num(r["best_valid"]), vs, mark])
    return md_table(["model", "candidate", "changes from the defaults", "updates", "best valid bound", "vs best", ""],
                    body, "lllrrrl")


def soak(d: dict) -> list[str]:
    """benchmarks/soak.py's samples at 1k, 2k and every 2k updates: RSS, CPU time per update, wall-clock rate."""
    keep = [r for r in d["samples"] if r["step"] in (1000, 2000) or r["step"] % 2000 == 0]
    fmt = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
    return md_table(["updates", *(f"{r['step'] // 1000}k" for r in keep)],
                    [["RSS, MB", *(fmt(r["rss_mb"], ".1f") for r in keep)],
                     ["CPU ms per update", *(fmt(r["cpu_ms_per_update"], ".2f") for r in keep)],
                     ["wall-clock images/s", *(fmt(r["images_per_s"], ".0f") for r in keep)]], "l" + "r" * len(keep))


def baselines(d: dict) -> list[str]:
    """benchmarks/baselines.py's own table (its markdown), from its baselines.json."""
    return baselines_markdown(d).rstrip("\n").split("\n")


def imputers_summary(d: dict) -> list[str]:
    """benchmarks/imputers.py's summary: mean rank, cells worse than mean, median seconds and 90% coverage."""
    return summary_lines(d)


def imputers_paired(d: dict) -> list[str]:
    """benchmarks/imputers.py: SequentialImputer's cells won, tied and lost against each reference (paired
    intervals over seeds)."""
    return paired_lines(d)


def imputers_cells(d: dict) -> list[str]:
    """benchmarks/imputers.py's per-cell tables (RMSE / Wasserstein, 90% coverage) and seconds per table."""
    return cell_lines(d)


def imputers_timing(d: dict) -> list[str]:
    """benchmarks/imputers.py --timing: seconds against the synthetic table's size."""
    return timing_lines(d)


def claims(d: dict) -> list[str]:
    """`reproduce claims`: one row per claim, its verdict and each comparison's difference with its 95% interval."""
    body = []
    for r in d["rows"]:
        comps = "; ".join(f"{c['a']} vs {c['b']}: " + ("not run" if c["diff"] is None else
                          f"{c['diff']:+.1f} [{c['ci95'][0]:+.1f}, {c['ci95'][1]:+.1f}] ({c['verdict']})")
                          for c in r["comparisons"])
        body.append([r["title"], r["source"], f"**{r['verdict']}**", comps])
    return md_table(["claim", "paper", "verdict", "A - B over seeds, 95% interval (lower is better)"], body, "llll")


def claims_tolerance(d: dict) -> list[str]:
    """`reproduce claims`: how each verdict moves with the tolerance (claims.json written with per-image scores)."""
    from ..experiments.claims import tolerance_table

    return tolerance_table(d)


def vs_fp32(d: dict) -> list[str]:
    """benchmarks/precision_quality.py rerun: each trained cell at fp32 and at bf16 in the same CPU-minute budget."""
    body = [[r["experiment"], r["dataset"], r["mask"], r["model"] + (f" T={r['steps']}" if r.get("steps") else ""),
             _num(r["fp32"]), r["fp32_updates"], _num(r["bf16"]), r["bf16_updates"], f"{r['diff']:+.1f}",
             f"{r['update_ratio']:.2f}"] for r in d["rows"]]
    return md_table(["experiment", "dataset", "mask", "model", "fp32: score", "updates", "bf16: score", "updates",
                     "bf16 - fp32", "updates x"], body, "llllrrrrrr")


def recipe(d: dict) -> list[str]:
    """benchmarks/recipe.py: each GPSI-add recipe's validation bound at 1, 2.5 and 5 wall-minutes, best first."""
    body = []
    for name, r in sorted(d["recipes"].items(), key=lambda kv: kv[1]["best_valid_bound_paper_units"]):
        at = [min((c["valid_bound_paper_units"] for c in r["curve"] if c["elapsed_s"] <= t + 1), default=None)
              for t in (60, 150)]
        body.append([name, f"{r['updates']:,}", _num(at[0]) or "-", _num(at[1]) or "-",
                     f"{r['best_valid_bound_paper_units']:.1f}"])
    return md_table([f"recipe ({d['precision']}, {d['threads']} threads)", f"updates in {d['minutes']:g} min",
                     "bound at 1 min", "at 2.5 min", f"at {d['minutes']:g} min (best)"], body, "lrrrr")


def threads(d: dict) -> list[str]:
    """benchmarks/threads.py: training updates per wall-second at each precision and thread count."""
    counts = sorted({k.split("/")[1] for k in d["updates_per_s"]}, key=int)
    body = []
    for p in dict.fromkeys(k.split("/")[0] for k in d["updates_per_s"]):
        rates = [d["updates_per_s"][f"{p}/{t}"] for t in counts]
        body.append([p, *(f"{r:.2f}" for r in rates), f"{rates[-1] / rates[0]:.2f}x"])
    return md_table(["precision", *(f"{t} thread{'s' * (t != '1')}" for t in counts), "speed-up"], body,
                    "l" + "r" * (len(counts) + 1))


def table_defaults(d: dict) -> list[str]:
    """benchmarks/table_defaults.py: RMSE and CPU seconds of each setting on each generated table."""
    tables = list(dict.fromkeys(r["table"] for r in d["rows"]))
    at = {(r["table"], r["setting"]): r for r in d["rows"]}
    body = [[name, *(f"{at[t, name]['rmse']:.3f} ({at[t, name]['cpu_s']:.2f} s)" for t in tables)]
            for name in dict.fromkeys(r["setting"] for r in d["rows"])]
    return md_table(["setting", *tables], body, "l" + "r" * len(tables))


def breast_cancer(d: dict) -> list[str]:
    """benchmarks/breast_cancer.py: per MCAR rate, each setting's RMSE and mean / largest CPU seconds."""
    rates = list(dict.fromkeys(r["rate"] for r in d["rows"]))
    at = {(r["rate"], r["setting"]): r for r in d["rows"]}
    body = [[name, *(f"{at[r, name]['rmse']:.3f} ({at[r, name]['cpu_s']:.2f} / {at[r, name]['cpu_s_max']:.2f} s)"
                     for r in rates)] for name in dict.fromkeys(r["setting"] for r in d["rows"])]
    return md_table(["setting", *(f"MCAR {r:.0%}" for r in rates)], body, "l" + "r" * len(rates))


def pretrained(d: dict) -> list[str]:
    """benchmarks/pretrain.py report: each shipped model's test bound per MNIST cell beside the paper's GPSI-add
    and the cpu preset's GPSI-add."""
    body = [[r["cell"], r["name"], f"{r['updates']:,}", f"{r['bound_paper_units']:.1f}", _num(r["paper"]),
             _num(r["cpu_preset"])] for r in d["rows"]]
    return md_table(["cell", "shipped model", "updates", "shipped GPSI-add", "paper GPSI-add", "cpu preset GPSI-add"],
                    body, "llrrrr")


def imputers_wide(d: dict) -> list[str]:
    """benchmarks/wide_table.py: each imputer's RMSE and seconds on the wide MNIST table."""
    body = [[name, f"{r['rmse']:.4f}", f"{r['wall_s']:.0f}", f"{r['cpu_s']:.0f}",
             f"{r['updates']:,} ({r['stopped_by']})" if "updates" in r else ""] for name, r in d["rows"].items()]
    return md_table(["imputer", "RMSE (grey levels)", "wall s", "CPU s", "updates (stopped by)"], body, "lrrrl")


def mixed_tables(d: dict) -> list[str]:
    """benchmarks/mixed_tables.py: RMSE / accuracy per table and rate, and each imputer's averages."""
    return mixed_cell_lines(d)


def kill_resume(d: dict) -> list[str]:
    """benchmarks/kill_resume.py: the kills, those inside a checkpoint write, and the comparison at the end."""
    yes = lambda v: "equal" if v else "DIFFERENT"  # noqa: E731
    return md_table(["kills", "inside a checkpoint write", "final parameters (last / best)", "metrics", "CPU"],
                    [[d["kills"], d["mid_write_kills"], f"{yes(d['final_last_equal'])} / {yes(d['final_best_equal'])}",
                      "one history" if d["metrics_equal"] else "DIFFERENT", d["cpu"]]], "rrlll")


TABLES = {"table1": table1, "claims": claims, "fig2": by_mask, "fig2c": fig2c, "fig1": by_mask, "sweep": sweep,
          "table1-runs": lambda status: runs(status, "table1"), "soak": soak, "baselines": baselines,
          "vs-fp32": vs_fp32, "imputers-summary": imputers_summary, "imputers-paired": imputers_paired,
          "imputers-cells": imputers_cells, "imputers-timing": imputers_timing, "recipe-fp32": recipe,
          "recipe-bf16": recipe, "threads": threads, "table-defaults": table_defaults, "breast-cancer": breast_cancer,
          "pretrained": pretrained, "kill-resume": kill_resume,
          "imputers-wide": imputers_wide, "mixed-tables": mixed_tables, "claims-tolerance": claims_tolerance}
SOURCE = {"table1-runs": "status", "imputers-summary": "imputers", "imputers-paired": "imputers",
          "imputers-cells": "imputers", "imputers-timing": "timing", "recipe-fp32": "fp32",
          "recipe-bf16": "bf16", "table-defaults": "defaults", "breast-cancer": "breast-cancer", "pretrained": "reproduction",
          "imputers-wide": "mnist-5000", "mixed-tables": "mixed", "claims-tolerance": "claims"}  # the JSON file a table is read from, when not <name>.json
MARKED = re.compile(r"(<!-- generated: python benchmarks/results_tables\.py (?:--results (\S+) )?(\S+) -->\n)(.*?)"
                    r"(<!-- end generated -->)", re.S)


def render(name: str, folder: Path) -> list[str]:
    return TABLES[name](json.loads((folder / f"{SOURCE.get(name, name)}.json").read_text()))


def regenerate(text: str, root: Path = Path(".")) -> str:
    """``text`` with every marked table regenerated (a blank line on each side) from the JSON in the marker's
    --results folder (default results/cpu), relative to the repository root ``root``."""
    def block(m):
        folder, name = m.group(2) or "results/cpu", m.group(3)
        if name not in TABLES:
            raise SystemExit(f"unknown table {name!r} in a generated block; choose from {', '.join(TABLES)}.")
        return m.group(1) + "\n" + "\n".join(render(name, root / folder)) + "\n\n" + m.group(5)
    return MARKED.sub(block, text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("which", nargs="*", help=f"tables to print, of {', '.join(TABLES)} (default: every one present)")
    ap.add_argument("--results", default="results/cpu", help="the preset's results folder (default results/cpu)")
    ap.add_argument("--write", metavar="MD", help="regenerate the marked tables of this Markdown file in place (run "
                    "from the repository root)")
    ap.add_argument("--check", metavar="MD", help="exit 1 when a marked table of this Markdown file differs")
    args = ap.parse_args()
    folder = Path(args.results)
    for path, write in ((args.write, True), (args.check, False)):
        if path:
            text = Path(path).read_text()
            new = regenerate(text)
            if write:
                Path(path).write_text(new)
            elif new != text:
                sys.exit(f"{path}: a generated table differs from its JSON; run --write {path}.")
            return
    unknown = [w for w in args.which if w not in TABLES]
    if unknown:
        raise SystemExit(f"unknown table {unknown[0]!r}; choose from {', '.join(TABLES)}.")
    for name in args.which or TABLES:
        path = folder / f"{SOURCE.get(name, name)}.json"
        if not path.exists():
            if args.which:
                raise SystemExit(f"{path} does not exist: run `seqimpute reproduce {name}` (or the benchmark that "
                                 f"writes it) first.")
            continue
        print(f"## {name} ({path})\n")
        print("\n".join(render(name, folder)) + "\n")


if __name__ == "__main__":
    main()
