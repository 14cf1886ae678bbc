"""What `seqimpute reproduce` writes: a row per model and cell (ours, the paper's number, ours minus the paper's),
each experiment's Markdown table and JSON, its figures, and the sweep's ranking."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np

from .. import runs as runs_mod
from ..reporting import md_table
from ..files import atomic_write
from ..data.masks import mask_set
from ..data.sources import load_dataset
from ..evaluate import evaluate
from ..models.policy import Policy
from .plan import ROLE_TITLE, Cell, Plan, RunPlan

UNITS = ("paper units: per-image NLL of the imputed values (epsilon 1e-6 form) plus, for the policies, the summed "
         "KL(q||p) (the guided bound), x D/|U|; lower is better. Differences are ours minus the paper's.")


# ---------------------------------------------------------------------------------------------------- rows


def row(plan: Plan, cell: Cell, model: str, run: RunPlan | None, res: dict | None) -> dict:
    """The result row of ``model`` at ``cell``: its run's state and scores ``res`` beside the paper's number."""
    d = plan.data_for(cell.role)
    paper = cell.paper.get(model)
    out = {"dataset": ROLE_TITLE[cell.role], "data_used": d.name, "stand_in": bool(d.note.startswith("stand-in")),
           "data_note": d.note or d.reason, "mask": cell.label, "mask_spec": plan.mask_for(cell.role, cell.mask)
           if d.available else cell.mask, "model": model, "paper": paper, "ours": None, "diff": None}
    if cell.steps is not None:
        out["steps"] = cell.steps
    if not d.available:
        out["status"] = "not run"
        return out
    out.update({"run": run.id, "run_dir": str(run.path), "trained_on": run.trained_on,
                "run_complete": run.state.get("complete", False), "run_step": run.state.get("step", 0),
                "run_minutes": run.state.get("elapsed_s", 0.0) / 60})
    if res is None:
        out["status"] = "no checkpoint yet"
        return out
    out["status"] = "complete" if out["run_complete"] else "incomplete run"
    out["ours"] = res["score_paper_units"]
    out["score_kind"] = res["score_kind"]
    out["n_images"], out["samples"] = res["n_images"], res["samples"]
    if "oracle_best_step_nll_paper_units" in res:
        out["ours_oracle_step"] = res["oracle_best_step_nll_paper_units"]
        out["oracle_best_step"] = res["oracle_best_step"]
    if "bound_nats_per_image" in res:
        out["bound_nats_per_image"] = res["bound_nats_per_image"]
    if res.get("tuned_on_valid"):
        out["tuned_on_valid"] = res["tuned_on_valid"]
    if paper is not None:
        out["diff"] = out["ours"] - paper
    return out


def sweep_row(plan: Plan, model: str, name: str, over: dict, run: RunPlan) -> dict:
    """A sweep candidate's row: its settings and its best validation bound (from the run's own metrics)."""
    valid = [r["valid_bound_paper_units"] for r in runs_mod.read_metrics(run.path)
             if r.get("valid_bound_paper_units") is not None and math.isfinite(r["valid_bound_paper_units"])]
    preset_cfg = plan.preset_config(run)
    return {"model": model, "candidate": name, "changes": over, "run": run.id, "run_dir": str(run.path),
            "trained_on": run.cfg.mask, "batch": run.cfg.batch, "lr": run.cfg.lr,
            "model_options": run.cfg.model_options, "seed": run.cfg.seed, "valid_size": run.cfg.valid_size,
            "run_complete": run.state.get("complete", False), "run_step": run.state.get("step", 0),
            "run_minutes": run.state.get("elapsed_s", 0.0) / 60,
            "best_valid": min(valid) if valid else None, "valid_at_end": valid[-1] if valid else None,
            "preset_choice": dataclasses.asdict(preset_cfg) == dataclasses.asdict(run.cfg),
            "vs_best": None, "best": False}


def rank_sweep(rows: list[dict]) -> None:
    """Mark each model's best candidate and every candidate's distance to it (in place)."""
    for m in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == m and r["best_valid"] is not None]
        best = min((r["best_valid"] for r in mine), default=None)
        for r in mine:
            r["vs_best"] = r["best_valid"] - best
            r["best"] = r["best_valid"] == best


def _json_default(o):
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, float) and not math.isfinite(o):
        return None
    raise TypeError(type(o))


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.1f}"


def _md_row(r: dict, dataset: bool = True, mask: bool = True) -> list[str]:
    note = []
    if r.get("status") not in ("complete", "not run", None):
        note.append(r["status"])
    if r.get("stand_in") or r.get("status") == "not run":
        note.append(r.get("data_note", ""))
    if r.get("tuned_on_valid"):
        note.append(", ".join(f"{k} {v} chosen on valid" for k, v in r["tuned_on_valid"].items()))
    if r.get("ours_oracle_step") is not None:
        note.append(f"oracle step (paper's VAE-imp rule): {r['ours_oracle_step']:.1f} at step {r['oracle_best_step']}")
    diff = "-" if r.get("diff") is None else f"{r['diff']:+.1f}"
    ours = "not run" if r.get("status") == "not run" else _fmt(r.get("ours"))
    return ([r["dataset"] + (f" ({r['data_used']})" if r.get("stand_in") else "")] if dataset else []) + \
        ([r["mask"]] if mask else []) + [r["model"], ours, _fmt(r.get("paper")), diff, r.get("trained_on", "-"),
                                         "; ".join(n for n in note if n)]


def _notes(rows) -> list[str]:
    notes = sorted({r["data_note"] for r in rows if r.get("data_note")})
    return [f"- {n}" for n in notes]


def _sweep_md_row(r: dict) -> list:
    mark = ", ".join(x for x in ("best" if r["best"] else "", "the preset's setting" if r["preset_choice"]
                                 else "", "" if r["run_complete"] else "incomplete run") if x)
    changes = "; ".join(f"{k} {json.dumps(v)}" for k, v in r["changes"].items()) or "none"
    vs = "-" if r["vs_best"] is None else f"{r['vs_best']:+.1f}"
    return [r["model"], r["candidate"], changes, r["run_step"], f"{r['run_minutes']:.1f}", _fmt(r["best_valid"]), vs,
            mark]


# ---------------------------------------------------------------------------------------------------- writers


class Report:
    """Writes an experiment's ``<name>.md`` and ``<name>.json`` (and figures) into ``out_dir``. Each ``write_<name>``
    takes the experiment's rows and its (cell, model, run) pairs and returns the files it wrote."""

    def __init__(self, plan: Plan, out_dir: Path):
        self.plan, self.out_dir = plan, out_dir

    def _write(self, name: str, payload: dict) -> list[str]:
        """Write ``<name>.json`` and its Markdown, which is rendered from that JSON alone (`markdown`)."""
        payload = {"experiment": name, "preset": self.plan.name, "smoke": self.plan.smoke, "label": self.plan.label,
                   "units": UNITS, **payload}
        text = json.dumps(payload, indent=2, default=_json_default)
        atomic_write(self.out_dir / f"{name}.json", text.encode())
        atomic_write(self.out_dir / f"{name}.md", markdown(json.loads(text)).encode())
        return [f"{name}.md", f"{name}.json"]

    def write_table1(self, rows, pairs) -> list[str]:
        return self._write("table1", {"rows": rows})

    def write_fig2(self, rows, pairs) -> list[str]:
        files = []
        policies = [m for m in ("gpsi-add", "gpsi-jump", "lstm-add", "lstm-jump")]
        for panel, keep in (("a", None), ("b", policies)):
            f = self._plot_curves(rows, keep, f"fig2{panel}.png",
                                  f"Fig 2({panel}) MNIST MCAR" + (": the policies" if keep else ": all models"),
                                  xlabel="drop rate", x_of=lambda r: int(r["mask"].split("-")[1]) / 100)
            if f:
                files.append(f)
        return self._write("fig2", {"rows": rows, "figures": files}) + files

    def write_fig2c(self, rows, pairs) -> list[str]:
        ne = self.plan.preset.get("fig2c", {}).get("not_expressed")
        f = self._plot_curves(rows, None, "fig2c.png", "Fig 2(c) GPSI, MNIST MCAR-90",
                              xlabel="refinement steps T", x_of=lambda r: r["steps"])
        files = [f] if f else []
        return self._write("fig2c", {"rows": rows, "figures": files, "not_expressed": ne}) + files

    def write_fig1(self, rows, pairs) -> list[str]:
        from ..plots import sample_grid
        from ..sampling import fig1_steps, sample_prior

        files = []
        n = self.plan.eval["fig1_samples"]
        for c, m, run in pairs:
            if run is None or not run.state.get("exists"):
                continue
            model = runs_mod.load_run_model(run.path, "best", device=self.plan.device)[0]
            shape = self.plan.shape(c.role)
            steps = fig1_steps(model.steps)
            frames = sample_prior(model, n, steps, seed=0)
            name = f"fig1_{m}.png"
            sample_grid(frames, shape, self.out_dir / name, steps,
                        f"{m}: sigmoid(c_t) of {n} samples from the prior ({self.plan.short_label()})")
            files.append(name)
        return self._write("fig1", {"rows": rows, "figures": files}) + files

    def write_fig3(self, rows, pairs) -> list[str]:
        files, panels = [], []  # panels: a figure with its title, or why there is none
        for c, m, run in pairs:
            d = self.plan.data_for(c.role)
            if run is None:
                panels.append({"missing": f"{ROLE_TITLE[c.role]} {c.label} {m}: {d.reason}"})
                continue
            if not run.state.get("exists"):
                panels.append({"missing": f"{ROLE_TITLE[c.role]} {c.label} {m}: no checkpoint yet"})
                continue
            name = self._trajectories(c, m, run)
            if name is None:
                continue
            files.append(name)
            panels.append({"title": f"{ROLE_TITLE[c.role]} {c.label}: {m}" + (f" ({d.note})" if d.note else ""),
                           "model": m, "figure": name})
        return self._write("fig3", {"figures": files, "panels": panels}) + files

    def _trajectories(self, c: Cell, m: str, run: RunPlan) -> str | None:
        """Draw a run's refinement trajectories on the first test images under the cell's mask; the file name, or
        None for a model without refinement steps."""
        from ..plots import trajectory_grid
        from ..sampling import sample_trajectories

        model = runs_mod.load_run_model(run.path, "best", device=self.plan.device)[0]
        T = model.steps
        if T < 1:
            return None
        d = self.plan.data_for(c.role)
        ev = self.plan.eval
        test = load_dataset(d.name, "test", **d.options)
        mask = self.plan.mask_for(c.role, c.mask)
        k = min(ev["fig3_images"], len(test.x))
        observed = mask_set(mask, test.name, test.split, len(test.x), test.image_shape, test.dim)[:k]
        if type(model).tune is not Policy.tune:
            model.tune(load_dataset(d.name, "valid", **d.options), mask, evaluate)
        traj = sample_trajectories(model, test.x[:k], observed, ev["fig3_samples"], seed=0)
        keep = sorted(set(np.linspace(1, T, min(T, 7)).round().astype(int).tolist()))
        grid_rows = [{"x": test.x[i].numpy(), "observed": observed[i].numpy(),
                      "steps": [traj[s, i, t].numpy() for t in keep], "truth": test.x[i].numpy()}
                     for i in range(k) for s in range(traj.shape[0])]
        name = f"fig3_{c.role}_{m}.png"
        stand = f"; {d.note.split(':')[0]} {d.name}" if d.note.startswith("stand-in") else ""
        trajectory_grid(grid_rows, test.image_shape, self.out_dir / name, [f"t={t}" for t in keep],
                        f"{m} on {d.name} {c.label} ({mask}){stand}; trained on {run.trained_on}; "
                        f"{self.plan.short_label()}")
        return name

    def write_claims(self, payload: dict) -> list[str]:
        return self._write("claims", payload)

    def write_sweep(self, rows: list[dict]) -> list[str]:
        return self._write("sweep", {"rows": rows, "sweep": self.plan.preset["sweep"]})

    def _plot_curves(self, rows, keep, name, title, xlabel, x_of) -> str | None:
        from ..plots import _plt

        plt = _plt()
        fig, ax = plt.subplots(figsize=(6, 4))
        models = list(dict.fromkeys(r["model"] for r in rows if keep is None or r["model"] in keep))
        any_line = False
        for i, m in enumerate(models):
            col = f"C{i % 10}"
            mine = [r for r in rows if r["model"] == m]
            ours = [(x_of(r), r["ours"]) for r in mine if r["ours"] is not None]
            paper = [(x_of(r), r["paper"]) for r in mine if r["paper"] is not None]
            if ours:
                ax.plot(*zip(*ours), "-o", color=col, ms=3, lw=1.5, label=f"{m} (ours)")
                any_line = True
            if paper:
                ax.plot(*zip(*paper), "--", color=col, lw=1, alpha=0.8, label=f"{m} (paper)")
                any_line = True
        if not any_line:
            plt.close(fig)
            return None
        ax.set_xlabel(xlabel)
        ax.set_ylabel("score (paper units, lower is better)")
        ax.set_title(f"{title}\n{self.plan.short_label()}", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, ncol=2)
        fig.tight_layout()
        fig.savefig(self.out_dir / name, dpi=120)
        plt.close(fig)
        return name


# ---------------------------------------------------------------------------------------------------- Markdown

TITLES = {"table1": "Table 1: imputation NLL (guided bound; VAE-imp: NLL of its imputation)",
          "fig2": "Fig 2(a,b): MNIST, score against the MCAR drop rate",
          "fig2c": "Fig 2(c): GPSI on MNIST MCAR-90, score against the number of refinement steps T",
          "fig1": "Fig 1: samples of the Sec 2.5 model; its test bound (nats per image, mask full)",
          "fig3": "Fig 3: refinement trajectories on MAR masks (primary policy, held-out test images)",
          "claims": "The paper's claims, tested at equal update counts"}


def markdown(payload: dict) -> str:
    """An experiment's ``<name>.md``, rendered from its ``<name>.json`` alone (so a results folder can be checked
    against its JSON without any run)."""
    name, rows, figures = payload["experiment"], payload.get("rows", []), payload.get("figures", [])
    title = f"Sweep: the {payload['preset']} preset's settings, chosen on validation" if name == "sweep" \
        else TITLES[name]
    if name == "claims":
        from .claims import markdown as claims_markdown

        return "\n".join([f"# {title}", "", f"**{payload['label']}**", "", *claims_markdown(payload)]) + "\n"
    md = [f"# {title}", "", f"**{payload['label']}**", ""] + ([payload["units"], ""] if name != "fig3" else [])
    if name == "table1":
        md += [*md_table(["dataset", "mask", "model", "ours", "paper", "ours - paper", "trained on", "note"],
                         [_md_row(r) for r in rows], "lllrrrll"), "", *_notes(rows)]
    elif name == "fig2":
        md += md_table(["mask", "model", "ours", "paper", "ours - paper", "trained on", "note"],
                       [_md_row(r, dataset=False) for r in rows], "llrrrll")
        for f in figures:
            md += ["", f"![Fig 2({f.removeprefix('fig2').removesuffix('.png')})]({f})"]
        md += ["", "Solid: ours; dashed: the paper's plotted values (same colour).", "", *_notes(rows)]
    elif name == "fig2c":
        if payload.get("not_expressed"):
            md += ["Camera-ready settings not expressed by this preset: " + "; ".join(payload["not_expressed"]) + ".",
                   ""]
        md += md_table(["T", "model", "ours", "paper", "ours - paper", "trained on", "note"],
                       [[r["steps"], *_md_row(r, dataset=False, mask=False)] for r in rows], "rlrrrll")
        for f in figures:
            md += ["", f"![Fig 2(c)]({f})", "", "Solid: ours; dashed: the paper's plotted values."]
        md += ["", *_notes(rows)]
    elif name == "fig1":
        md += md_table(["model", "ours", "paper (raw, before fine-tuning q)", "ours - paper", "trained on", "note"],
                       [_md_row(r, dataset=False, mask=False) for r in rows], "lrrrll")
        for f in figures:
            md += ["", f"![{f.removeprefix('fig1_').removesuffix('.png')} samples]({f})"]
        md += ["", *_notes(rows)]
    elif name == "fig3":
        for p in payload["panels"]:
            md += [f"- {p['missing']}"] if "missing" in p else ["", f"### {p['title']}", f"![{p['model']}]({p['figure']})"]
    elif name == "sweep":
        md += _sweep_markdown(rows, payload["sweep"])
    return "\n".join(md) + "\n"


def _sweep_markdown(rows: list[dict], sw: dict) -> list[str]:
    md = [f"Each candidate trains for the preset's budget on {ROLE_TITLE[sw.get('role', 'mnist')]} "
          f"({rows[0]['trained_on']}: the {sw.get('family', 'square')} family) and is scored by its best "
          f"validation bound (the training run's own validation: {rows[0]['valid_size']} validation images, one "
          "rollout each, fixed seeded masks). The test split is never used to choose.",
          "", *md_table(["model", "candidate", "changes from the defaults", "updates", "budget used (min)",
                         "best valid bound", "vs best", ""], [_sweep_md_row(r) for r in rows], "lllrrrrl")]
    off = [m for m in dict.fromkeys(r["model"] for r in rows)
           if any(r["best"] for r in rows if r["model"] == m)
           and not any(r["best"] and r["preset_choice"] for r in rows if r["model"] == m)]
    if off:
        md += ["", f"The preset does not use the best candidate for: {', '.join(off)}."]
    return md
