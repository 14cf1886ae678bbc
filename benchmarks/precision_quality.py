"""Quality of the default precision (auto: bf16 on this CPU) against fp32, same model, data, mask and seed: at equal
updates (GPSI-add MCAR-80 for 3,000, LSTM-add MAR-14 for 1,000) and at equal CPU time (GPSI-add MCAR-80 for 15
CPU-minutes of one thread); the test bounds of the last checkpoints are compared.

    python benchmarks/precision_quality.py commands            # the train and eval commands, one per line
    python benchmarks/precision_quality.py collect             # -> results/quality/precision-mnist.json
    python benchmarks/precision_quality.py rerun               # -> results/bf16/cpu/vs-fp32.json

``rerun`` pairs the trained rows of two runs of `seqimpute reproduce all --preset cpu` with the same CPU-minute
budgets: results/cpu (float32, before bf16 became the default) and results/bf16/cpu (the default precision, written
by `OMP_NUM_THREADS=1 seqimpute reproduce all --preset cpu --jobs 2 --runs runs/reproduce-bf16 --out results/bf16`):
each cell's score and the updates its run made in the budget, at both precisions.

Run the commands with `OMP_NUM_THREADS=1` (two at a time on a 2-core machine); a killed `seqimpute train` resumes
from its folder by running the same command again. ``collect`` also compares the validation bounds the two runs of a
pair logged at the same update counts (every 500), which is available before the runs finish.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

ROOT = Path("runs/precision")
# name -> (model, mask, budget)
PAIRS = {"gpsi-add-mcar80": ("gpsi-add", "mcar:0.8", ["--updates", "3000"]),
         "lstm-add-sq14": ("lstm-add", "square:14", ["--updates", "1000"]),
         "gpsi-add-mcar80-cpu15": ("gpsi-add", "mcar:0.8", ["--minutes", "15", "--clock", "cpu"])}
EVAL = ["--split", "test", "--n", "2000", "--samples", "10", "--checkpoint", "last"]


def runs():
    for pair, (model, mask, budget) in PAIRS.items():
        for prec in ("bf16", "fp32"):
            name = f"{pair}-{prec}"
            extra = ["--precision", "fp32"] if prec == "fp32" else []  # bf16: the default (auto) on this CPU
            train = ["seqimpute", "train", "--model", model, "--data", "mnist", "--mask", mask, *budget, "--seed", "0",
                     "--run", str(ROOT / name), "--quiet", *extra]
            ev = ["seqimpute", "eval", str(ROOT / name), *EVAL, "--json", str(ROOT / f"{name}.test-last.json"),
                  "--quiet"]
            yield pair, prec, name, train, ev


def collect(out: Path) -> dict:
    from seqimpute import runs as runs_mod

    res = {"what": "test bound (paper units, K=10, first 2000 test images, last checkpoint) at equal updates or "
                   "equal CPU time and the same seed, default precision (bf16 on this CPU) vs fp32", "pairs": {}}
    trained = {}
    for pair, prec, name, train, ev in runs():
        entry = {"train": shlex.join(train), "eval": shlex.join(ev)}
        run = ROOT / name
        cfg = run / "config.toml"
        if cfg.exists():
            import tomllib

            entry["precision_used"] = tomllib.loads(cfg.read_text()).get("runtime", {}).get("precision")
        if (run / "last.pt").exists():
            ck = runs_mod.load_checkpoint(run / "last.pt")
            entry["training"] = trained[name] = runs_mod.training_record(run, runs_mod.read_config(run), ck)
        metrics = run / "metrics.jsonl"
        if metrics.exists():
            recs = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
            steps = [r["step"] for r in recs if "images_per_s" in r]
            entry["updates_done"] = max(steps, default=0)
            entry["valid_bounds"] = [(r["step"], r["valid_bound_paper_units"]) for r in recs
                                     if "valid_bound_paper_units" in r]
        scores = ROOT / f"{name}.test-last.json"
        if scores.exists():
            entry["test"] = {k: v for k, v in json.loads(scores.read_text()).items() if isinstance(v, (int, float))}
        res["pairs"].setdefault(pair, {})[prec] = entry
    for pair, d in res["pairs"].items():
        va, vb = (dict(map(tuple, d.get(p, {}).get("valid_bounds", []))) for p in ("bf16", "fp32"))
        d["valid_rel_diff_bf16_vs_fp32_at_equal_updates"] = {s: (va[s] - vb[s]) / vb[s] for s in sorted(va) if s in vb}
        a, b = d.get("bf16", {}).get("test", {}), d.get("fp32", {}).get("test", {})
        if "score_paper_units" in a and "score_paper_units" in b:
            d["rel_diff_bf16_vs_fp32"] = (a["score_paper_units"] - b["score_paper_units"]) / b["score_paper_units"]
    if trained:  # the shortest run's updates and images; every run's CPU seconds
        res["training"] = {"updates": min(t["updates"] for t in trained.values()),
                           "images_seen": min(t["images_seen"] for t in trained.values()),
                           "cpu_s": {k: t["cpu_s"] for k, t in trained.items()},
                           "note": "per run: pairs.<pair>.<precision>.training; a run resumed across builds may "
                                   "lack CPU seconds from before the resume (null: not recorded)"}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2))
    return res


RERUN = ("table1", "fig2", "fig2c", "fig1")  # the experiments whose rows are trained models


def rerun(fp32: Path, bf16: Path, out: Path) -> dict:
    """The trained cells of both reproductions side by side (scores in paper units, lower is better)."""
    def rows(folder: Path) -> dict:
        got = {}
        for exp in RERUN:
            path = folder / f"{exp}.json"
            for r in json.loads(path.read_text())["rows"] if path.exists() else []:
                if r.get("run_step") and r.get("ours") is not None:
                    got[(exp, r["dataset"], r["mask"], r["model"], r.get("steps"))] = r
        return got

    old, new = rows(fp32), rows(bf16)
    pairs = []
    for k in old.keys() & new.keys():
        a, b = old[k], new[k]
        pairs.append({"experiment": k[0], "dataset": k[1], "mask": k[2], "model": k[3], "steps": k[4],
                      "paper": a.get("paper"), "fp32": a["ours"], "fp32_updates": a["run_step"],
                      "bf16": b["ours"], "bf16_updates": b["run_step"], "diff": b["ours"] - a["ours"],
                      "update_ratio": b["run_step"] / a["run_step"], "minutes": b.get("run_minutes")})
    order = {e: i for i, e in enumerate(RERUN)}
    pairs.sort(key=lambda p: (order[p["experiment"]], p["dataset"], p["model"], p["steps"] or 0, p["mask"]))
    doc = {"what": "each trained cell of `seqimpute reproduce all --preset cpu` at float32 (results/cpu) and at the "
                   "default precision, bf16 on this CPU (results/bf16/cpu), with the same CPU-minute budgets: the "
                   "score (paper units, lower is better) and the updates the run made",
           "fp32": str(fp32), "bf16": str(bf16), "rows": pairs,
           "missing": sorted(" / ".join(str(x) for x in k if x is not None) for k in old.keys() ^ new.keys())}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2))
    return doc


def main():
    what = sys.argv[1] if len(sys.argv) > 1 else "commands"
    if what == "commands":
        for _, _, _, train, ev in runs():
            print(shlex.join(train))
            print(shlex.join(ev))
    elif what == "collect":
        res = collect(Path("results/quality/precision-mnist.json"))
        for pair, d in res["pairs"].items():
            print(pair, {p: (d[p].get("updates_done"), d[p].get("test", {}).get("score_paper_units"))
                         for p in ("bf16", "fp32")}, "test:", d.get("rel_diff_bf16_vs_fp32"),
                  "valid at equal updates:", d["valid_rel_diff_bf16_vs_fp32_at_equal_updates"])
    elif what == "rerun":
        doc = rerun(Path("results/cpu"), Path("results/bf16/cpu"), Path("results/bf16/cpu/vs-fp32.json"))
        for p in doc["rows"]:
            print(p["experiment"], p["dataset"], p["mask"], p["model"], p["steps"] or "",
                  f"fp32 {p['fp32']:.1f} ({p['fp32_updates']}) bf16 {p['bf16']:.1f} ({p['bf16_updates']})")
    else:
        sys.exit("usage: precision_quality.py commands|collect|rerun")


if __name__ == "__main__":
    main()
