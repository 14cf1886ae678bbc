"""Train, carry and publish the shipped pretrained policies (src/seqimpute/pretrained/).

Each shipped model is declared once in MODELS below: its stages, each the `seqimpute train` arguments of one run (a
later stage starts from the previous one's best weights with --init). The runs live in runs/pretrained/RUN (ignored
by git); a run that outlives one machine travels as a safetensors snapshot in pretraining/RUN (committed), from
which the next machine resumes it exactly.

    python benchmarks/pretrain.py train NAME [--threads 1]   # each stage: restore from pretraining/RUN if needed, train
    python benchmarks/pretrain.py history NAME               # beside `train`: keep the weights at HISTORY_STEPS
    python benchmarks/pretrain.py snapshot NAME              # write pretraining/RUN of unfinished stages (resumable)
    python benchmarks/pretrain.py publish NAME               # half-precision weights + card, scored on the test cells
    python benchmarks/pretrain.py curve NAME                 # test bound of the kept weights (MCAR-80 / MAR-14)
    python benchmarks/pretrain.py report                     # the reproduction table's JSON and the curves figure
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from seqimpute import runs  # noqa: E402

RUNS = ROOT / "runs" / "pretrained"
CARRY = ROOT / "pretraining"
RESULTS = ROOT / "results" / "pretrained"

# GPSI-add with the paper's T=6 refinement steps, hidden 500 (the cpu preset's sweep), batch 250, lr 2e-3 (the
# any-CPU recipe's), the budget schedule over the run's updates. T=2 learns most in minutes (docs/RESULTS.md,
# "Learning per wall-second"), but the paper's own Fig 2(c) puts trained T=2 policies 4-5 units behind T>=5, so a
# long run takes the paper's T. One model per mask family, the families the cpu preset trains on (MCAR 0.5-0.95,
# squares of side 12-18).
RECIPE = ["--set", "hidden=500", "--set", "steps=6", "--set", "lr=2e-3", "--batch", "250"]
RESUMED = ("started with --updates 30000, resumed at update 1,100 with --updates 40000 and at update 2,250 with "
           "--updates 30000 again: until then the learning rate differed from the command's by under 1%")
# A second stage: a new run from the first's best weights (--init), its own schedule from lr 1e-3 (half the
# first's peak) and another seed (other batches and masks than the first stage's).
MORE = ["--set", "hidden=500", "--set", "steps=6", "--set", "lr=1e-3", "--batch", "250", "--seed", "1"]
MODELS = {
    "gpsi-add-mnist-mcar": {"model": "gpsi-add", "data": "mnist", "mask": "mcar:0.5-0.95",
                            "cells": ["MCAR-60", "MCAR-70", "MCAR-80", "MCAR-90"],
                            "stages": [{"run": "gpsi-add-mnist-mcar", "updates": 30000, "args": RECIPE,
                                        "note": RESUMED},
                                       {"run": "gpsi-add-mnist-mcar-more", "updates": 30000, "args": MORE}]},
    "gpsi-add-mnist-mar": {"model": "gpsi-add", "data": "mnist", "mask": "square:12-18", "cells": ["MAR-14", "MAR-16"],
                           "stages": [{"run": "gpsi-add-mnist-mar", "updates": 30000, "args": RECIPE,
                                       "note": RESUMED}]},
}
RUN_SETTINGS = ["--set", "valid_every=2000", "--set", "valid_size=1000", "--set", "ckpt_every=1000", "--quiet"]
HISTORY_STEPS = [[1000, 2000, 3000, 4000, 6000, 8000, 12000, 16000, 20000, 25000, 30000],  # the first stage's
                 [2000, 5000, 10000, 15000, 20000, 25000, 30000]]  # a later stage's (its own update count)


def stages(name: str) -> list[dict]:
    return MODELS[name]["stages"]


def train_command(name: str, stage: int, threads: int) -> list[str]:
    m, st = MODELS[name], stages(name)[stage]
    init = ["--init", f"runs/pretrained/{stages(name)[stage - 1]['run']}"] if stage else []
    return ["seqimpute", "train", "--model", m["model"], "--data", m["data"], "--mask", m["mask"],
            "--run", f"runs/pretrained/{st['run']}", *init, "--updates", str(st["updates"]), *st["args"],
            *RUN_SETTINGS, "--threads", str(threads)]


def cmd_train(name: str, threads: int) -> None:
    """Each stage in turn (a finished one is skipped), restored from pretraining/RUN first where it was carried."""
    for i, st in enumerate(stages(name)):
        run = RUNS / st["run"]
        if not (run / "last.pt").exists() and (CARRY / st["run"]).exists():
            step = runs.restore_run(CARRY / st["run"], run)
            print(f"restored {run} from {CARRY / st['run']} at update {step}")
        if _last_step(run) >= st["updates"]:
            continue
        cmd = train_command(name, i, threads)
        print("$", shlex.join(cmd))
        subprocess.run(cmd, cwd=ROOT, check=True)


def cmd_history(name: str, poll_s: float = 10.0) -> None:
    """Keep the model weights of each stage's last.pt whenever its step is one of HISTORY_STEPS (checkpoints come
    every 1000 updates), until the last stage's last step is kept."""
    for i, st in enumerate(stages(name)):
        run, out = RUNS / st["run"], RUNS / st["run"] / "history"
        keep = HISTORY_STEPS[min(i, 1)]
        while not (out / f"{st['updates']:06d}.safetensors").exists():
            step = _last_step(run)
            path = out / f"{step:06d}.safetensors"
            if step in keep and not path.exists():
                ck = runs.load_checkpoint(run / "last.pt")
                if int(ck["step"]) == step:
                    runs.save_safetensors_checkpoint(runs.weights_only(ck), path)
                    print(f"kept {path}", flush=True)
            time.sleep(poll_s)


EVAL_N, EVAL_K = 2000, 10  # the cpu preset's test cells: the first 2000 test images, K=10
EVAL = ["--n", str(EVAL_N), "--samples", str(EVAL_K)]


def paper_score(cell: str):
    """The paper's GPSI-add at an MNIST cell, from the packaged anchors: Fig 2(a) for MCAR, Table 1 for MAR."""
    from seqimpute.experiments import load_anchors

    a = load_anchors()
    fig = a["fig2_mnist_mcar"]
    mcar = {f"MCAR-{round(100 * r)}": v for r, v in zip(fig["drop_rates"], fig["GPSI-add"])}
    mar = {cell: row["GPSI-add"] for cell, row in a["table1"]["MNIST"].items()}
    return {**mcar, **mar}.get(cell)


def _offsets(name: str) -> list[dict]:
    """Per stage, what came before it: the updates, seconds and CPU-seconds of the weights it started from (the
    previous stage's best checkpoint, which --init loads) and the CPU-seconds all earlier stages spent."""
    out, acc = [], {"updates": 0, "training_s": 0.0, "cpu_s": 0.0, "images": 0}
    for st in stages(name):
        out.append(dict(acc))
        best = runs.load_checkpoint(RUNS / st["run"] / "best.pt") if (RUNS / st["run"] / "best.pt").exists() else None
        last = runs.load_checkpoint(RUNS / st["run"] / "last.pt") if (RUNS / st["run"] / "last.pt").exists() else None
        if best is not None and last is not None:
            acc = {"updates": acc["updates"] + int(best["step"]), "training_s": acc["training_s"] + float(last["elapsed"]),
                   "cpu_s": acc["cpu_s"] + float(last["cpu_s"]), "images": acc["images"] + int(best.get("images", 0))}
    return out


def cmd_publish(name: str) -> None:
    """Ship the last stage's best checkpoint (by validation) as pretrained model NAME, then score the shipped
    half-precision copy on each test cell with `seqimpute eval` and record the scores in its card. Its updates,
    seconds and CPU-hours count every stage that led to it."""
    from seqimpute import pretrained
    from seqimpute.precision import cpu_name

    sts, before = stages(name), _offsets(name)[-1]
    run = RUNS / sts[-1]["run"]
    cfg, ck = runs.read_config(run), runs.load_checkpoint(run / "best.pt")
    last = runs.load_checkpoint(run / "last.pt")
    rt = cfg.get("runtime", {})
    notes = [f"stage {i + 1}: {st['note']}" for i, st in enumerate(sts) if st.get("note")]
    if len(sts) > 1:
        notes.append(f"{len(sts)} stages, each a new run from the previous stage's best weights (--init) with its own "
                     f"learning-rate schedule; the counts add up the stages")
    training = {"updates": before["updates"] + int(ck["step"]), "run_updates": before["updates"] + int(last["step"]),
                "images_seen": before["images"] + int(ck.get("images", 0)),
                "training_s": before["training_s"] + float(ck["elapsed"]),
                "cpu_hours": (before["cpu_s"] + float(ck["cpu_s"])) / 3600, "clock": cfg["train"]["clock"],
                "precision": rt.get("precision"), "threads": rt.get("threads"), "cpu": rt.get("cpu"),
                "best_valid_bound_paper_units": float(ck["best"]),
                "command": " && ".join(shlex.join(train_command(name, i, 1)) for i in range(len(sts))),
                "note": "; ".join(notes) or None}
    pretrained.write(name, ck, cfg, training)
    for cell in MODELS[name]["cells"]:
        out = RESULTS / f"{name}-{cell}.json"
        cmd = ["seqimpute", "eval", name, "--mask", cell, *EVAL, "--quiet", "--json", str(out.relative_to(ROOT))]
        subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        res = json.loads(out.read_text())
        pretrained.add_scores(name, cell, {
            "bound_paper_units": res["bound_paper_units"], "mse": res["mse"], "n": res["n_images"], "samples": res["samples"],
            "paper": paper_score(cell), "cpu": cpu_name(), "command": shlex.join(cmd[:-2])})
        print(f"{name} {cell}: {res['bound_paper_units']:.2f} paper units (paper {paper_score(cell)})")


def cmd_curve(name: str) -> None:
    """The test bound of the weights `history` kept in every stage, at MCAR-80 or MAR-14, against the updates that
    led to them: results/pretrained/curve-NAME.json (points already there are kept, so it can run while the
    training goes on)."""
    from seqimpute.data.sources import load_dataset
    from seqimpute.evaluate import evaluate
    from seqimpute.precision import cpu_name

    cell = MODELS[name]["cells"][2 if name.endswith("mcar") else 0]  # MCAR-80 (Table 1's MNIST cells are MAR)
    data = load_dataset(MODELS[name]["data"], "test")
    out = RESULTS / f"curve-{name}.json"
    points = json.loads(out.read_text())["points"] if out.exists() else []  # scored already: kept
    done = {p["updates"] for p in points}
    offsets = _offsets(name)
    for st, before in zip(stages(name), offsets):
        for path in sorted((RUNS / st["run"] / "history").glob("*.safetensors")):
            if before["updates"] + int(path.stem) in done:
                continue
            ck = runs.load_safetensors_checkpoint(path)
            model = runs.model_of_checkpoint(ck, ck["model_name"], path)
            res = evaluate(model.eval(), data, cell, samples=EVAL_K, n=EVAL_N, seed=0)
            points.append({"updates": before["updates"] + int(ck["step"]),
                           "training_s": before["training_s"] + float(ck["elapsed"]),
                           "cpu_s": before["cpu_s"] + float(ck["cpu_s"]), "bound_paper_units": res["bound_paper_units"]})
            print(f"{name} {cell} update {points[-1]['updates']}: {res['bound_paper_units']:.2f}", flush=True)
    points.sort(key=lambda p: p["updates"])
    RESULTS.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "name": name, "cell": cell, "n": EVAL_N, "samples": EVAL_K, "cpu": cpu_name(), "paper": paper_score(cell),
        "note": "weights kept during the runs (each stage's learning rate follows its own schedule to its last "
                "update; a later stage starts from the previous stage's best weights)" if len(stages(name)) > 1 else
                "weights kept during the one run (its learning rate follows the run's schedule to its last update)",
        "stages": [{"run": st["run"], "starts_at": b["updates"]} for st, b in zip(stages(name), offsets)],
        "command": f"python benchmarks/pretrain.py curve {name}", "points": points}, indent=2) + "\n")


def cmd_report() -> None:
    """results/pretrained/reproduction.json (every shipped model's test cells beside the paper's GPSI-add and the
    cpu preset's, from results/cpu) and docs/figures/pretrained-curves.png (the curves `curve` wrote)."""
    from seqimpute import pretrained

    preset = {}
    for name in ("fig2", "table1"):
        for r in json.loads((ROOT / "results" / "cpu" / f"{name}.json").read_text())["rows"]:
            if r["dataset"] == "MNIST" and r["model"] == "gpsi-add" and r.get("ours") is not None:
                preset[r["mask"]] = {"bound": r["ours"], "updates": r.get("run_step")}
    rows = []
    for name in pretrained.names():
        c = pretrained.card(name)
        for cell, sc in c["scores"].items():
            rows.append({"cell": cell, "name": name, "updates": c["training"]["updates"],
                         "bound_paper_units": sc["bound_paper_units"], "paper": sc.get("paper"),
                         "cpu_preset": preset.get(cell, {}).get("bound"),
                         "cpu_preset_updates": preset.get(cell, {}).get("updates")})
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "reproduction.json").write_text(json.dumps({
        "units": "paper units (the guided bound x D/|U|), the first 2000 MNIST test images, K=10; lower is better",
        "command": "python benchmarks/pretrain.py report", "rows": rows}, indent=2) + "\n")
    _plot_curves()
    print(f"wrote {RESULTS / 'reproduction.json'}")


def _plot_curves() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("curve-*.json"))]
    if not curves:
        return
    fig, axes = plt.subplots(1, len(curves), figsize=(5.5 * len(curves), 4), squeeze=False)
    for ax, c in zip(axes[0], curves):
        pts = c["points"]
        ax.plot([p["updates"] for p in pts], [p["bound_paper_units"] for p in pts], "o-", label=c["name"])
        if c.get("paper") is not None:
            ax.axhline(c["paper"], color="k", ls="--", lw=1, label=f"paper GPSI-add ({c['paper']:g})")
        for i, st in enumerate(c.get("stages", [])[1:], start=2):
            ax.axvline(st["starts_at"], color="grey", ls=":", lw=1, label=f"stage {i} starts (--init)")
        ax.set_xscale("log")
        ax.set_xlabel("updates")
        ax.set_ylabel(f"test bound at {c['cell']}, paper units")
        ax.set_title(f"{c['name']} ({c['cell']}, {c['n']} test images, K={c['samples']})", fontsize=9)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    out = ROOT / "docs" / "figures" / "pretrained-curves.png"
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


def _last_step(run: Path) -> int:
    try:
        return int(runs.load_checkpoint(run / "last.pt")["step"])
    except Exception:  # mid-write or not there yet
        return -1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=["train", "history", "snapshot", "publish", "curve", "report"])
    ap.add_argument("name", nargs="?", choices=sorted(MODELS))
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    if a.action == "report":
        return cmd_report()
    if a.name is None:
        ap.error(f"{a.action} needs a model name: {', '.join(sorted(MODELS))}")
    if a.action == "train":
        cmd_train(a.name, a.threads)
    elif a.action == "history":
        cmd_history(a.name)
    elif a.action == "publish":
        cmd_publish(a.name)
    elif a.action == "curve":
        cmd_curve(a.name)
    elif a.action == "snapshot":  # every unfinished stage (a finished one travels as the shipped weights' card)
        for st in stages(a.name):
            if 0 <= _last_step(RUNS / st["run"]) < st["updates"]:
                step = runs.snapshot_run(RUNS / st["run"], CARRY / st["run"])
                print(f"wrote {CARRY / st['run']} (update {step})")


if __name__ == "__main__":
    main()
