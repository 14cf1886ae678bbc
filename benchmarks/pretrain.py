"""Train, carry and publish the shipped pretrained policies (src/seqimpute/pretrained/).

Each shipped model is declared once in MODELS below: the `seqimpute train` arguments it was trained with. The runs
live in runs/pretrained/NAME (ignored by git); a run that outlives one machine travels as a safetensors snapshot
in pretraining/NAME (committed), from which the next machine resumes it exactly.

    python benchmarks/pretrain.py train NAME [--threads 1]   # restore from pretraining/NAME if needed, then train
    python benchmarks/pretrain.py history NAME               # beside `train`: keep the weights at HISTORY_STEPS
    python benchmarks/pretrain.py snapshot NAME              # write pretraining/NAME (resumable state)
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
MODELS = {
    "gpsi-add-mnist-mcar": {"model": "gpsi-add", "data": "mnist", "mask": "mcar:0.5-0.95", "updates": 30000,
                            "cells": ["MCAR-60", "MCAR-70", "MCAR-80", "MCAR-90"], "args": RECIPE, "note": RESUMED},
    "gpsi-add-mnist-mar": {"model": "gpsi-add", "data": "mnist", "mask": "square:12-18", "updates": 30000,
                           "cells": ["MAR-14", "MAR-16"], "args": RECIPE, "note": RESUMED},
}
RUN_SETTINGS = ["--set", "valid_every=2000", "--set", "valid_size=1000", "--set", "ckpt_every=1000", "--quiet"]
HISTORY_STEPS = [1000, 2000, 3000, 4000, 6000, 8000, 12000, 16000, 20000, 25000, 30000]


def train_command(name: str, threads: int) -> list[str]:
    m = MODELS[name]
    return ["seqimpute", "train", "--model", m["model"], "--data", m["data"], "--mask", m["mask"],
            "--run", f"runs/pretrained/{name}", "--updates", str(m["updates"]), *m["args"], *RUN_SETTINGS,
            "--threads", str(threads)]


def cmd_train(name: str, threads: int) -> None:
    run = RUNS / name
    if not (run / "last.pt").exists() and (CARRY / name).exists():
        step = runs.restore_run(CARRY / name, run)
        print(f"restored {run} from {CARRY / name} at update {step}")
    cmd = train_command(name, threads)
    print("$", shlex.join(cmd))
    subprocess.run(cmd, cwd=ROOT, check=True)


def cmd_history(name: str, poll_s: float = 10.0) -> None:
    """Keep the model weights of runs/pretrained/NAME/last.pt whenever its step is one of HISTORY_STEPS (its
    checkpoints come every 1000 updates), until the run's last step is kept."""
    run, out = RUNS / name, RUNS / name / "history"
    last = MODELS[name]["updates"]
    while not (out / f"{last:06d}.safetensors").exists():
        step = _last_step(run)
        path = out / f"{step:06d}.safetensors"
        if step in HISTORY_STEPS and not path.exists():
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


def cmd_publish(name: str) -> None:
    """Ship runs/pretrained/NAME's best checkpoint (by validation) as pretrained model NAME, then score the shipped
    half-precision copy on each test cell with `seqimpute eval` and record the scores in its card."""
    from seqimpute import pretrained
    from seqimpute.precision import cpu_name

    run = RUNS / name
    cfg, ck = runs.read_config(run), runs.load_checkpoint(run / "best.pt")
    last = runs.load_checkpoint(run / "last.pt")
    rt = cfg.get("runtime", {})
    training = {"updates": int(ck["step"]), "run_updates": int(last["step"]), "images_seen": ck.get("images"),
                "training_s": float(ck["elapsed"]), "cpu_hours": float(ck["cpu_s"]) / 3600, "clock": cfg["train"]["clock"],
                "precision": rt.get("precision"), "threads": rt.get("threads"), "cpu": rt.get("cpu"),
                "best_valid_bound_paper_units": float(ck["best"]), "command": shlex.join(train_command(name, 1)),
                "note": MODELS[name].get("note")}
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
    """The test bound of the weights `history` kept, at MCAR-80 or MAR-14: results/pretrained/curve-NAME.json
    (points already there are kept, so it can run while the training goes on)."""
    from seqimpute.data.sources import load_dataset
    from seqimpute.evaluate import evaluate
    from seqimpute.precision import cpu_name

    cell = MODELS[name]["cells"][2 if name.endswith("mcar") else 0]  # MCAR-80 (Table 1's MNIST cells are MAR)
    data = load_dataset(MODELS[name]["data"], "test")
    out = RESULTS / f"curve-{name}.json"
    points = json.loads(out.read_text())["points"] if out.exists() else []  # scored already: kept
    done = {p["updates"] for p in points}
    for path in sorted((RUNS / name / "history").glob("*.safetensors")):
        if int(path.stem) in done:
            continue
        ck = runs.load_safetensors_checkpoint(path)
        model = runs.model_of_checkpoint(ck, ck["model_name"], path)
        res = evaluate(model.eval(), data, cell, samples=EVAL_K, n=EVAL_N, seed=0)
        points.append({"updates": int(ck["step"]), "training_s": float(ck["elapsed"]),
                       "cpu_s": ck.get("cpu_s"), "bound_paper_units": res["bound_paper_units"]})
        print(f"{name} {cell} update {points[-1]['updates']}: {res['bound_paper_units']:.2f}", flush=True)
    points.sort(key=lambda p: p["updates"])
    RESULTS.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "name": name, "cell": cell, "n": EVAL_N, "samples": EVAL_K, "cpu": cpu_name(), "paper": paper_score(cell),
        "note": "weights kept during the one run (its learning rate follows the run's schedule to its last update)",
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
    elif a.action == "snapshot":
        step = runs.snapshot_run(RUNS / a.name, CARRY / a.name)
        print(f"wrote {CARRY / a.name} (update {step})")


if __name__ == "__main__":
    main()
