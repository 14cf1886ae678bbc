"""Quality of the default precision (auto: bf16 on this CPU) against fp32, same model, data, mask and seed: at equal
updates (GPSI-add MCAR-80 for 3,000, LSTM-add MAR-14 for 1,000) and at equal CPU time (GPSI-add MCAR-80 for 15
CPU-minutes of one thread); the test bounds of the last checkpoints are compared.

    python benchmarks/precision_quality.py commands            # the train and eval commands, one per line
    python benchmarks/precision_quality.py collect             # -> results/quality/precision-mnist.json

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
         "gpsi-add-mcar80-cpu15": ("gpsi-add", "mcar:0.8", ["--minutes", "15", "--set", "clock=cpu"])}
EVAL = ["--split", "test", "--n", "2000", "--samples", "10", "--checkpoint", "last"]


def runs():
    for pair, (model, mask, budget) in PAIRS.items():
        for prec in ("bf16", "fp32"):
            name = f"{pair}-{prec}"
            extra = ["--set", "precision=fp32"] if prec == "fp32" else []  # bf16: the default (auto) on this CPU
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
    else:
        sys.exit("usage: precision_quality.py commands|collect")


if __name__ == "__main__":
    main()
