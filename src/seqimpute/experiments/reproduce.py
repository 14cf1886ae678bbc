"""`seqimpute reproduce`: train what an experiment of the paper needs, score it on fixed test masks, and write its
tables and figures beside the paper's numbers.

Experiments (Bachman & Precup, NIPS 2015):
  table1  Table 1: MNIST MAR-14/16, TFD MCAR-80/MAR-25, SVHN MCAR-80/MAR-17 (the models the paper lists per cell)
  fig2    Fig 2(a,b): MNIST MCAR-60..90 for TM-orc, TM-hon, VAE-imp, GPSI-add/jump, LSTM-add/jump (+ mean, kNN)
  fig2c   Fig 2(c): GPSI-add and GPSI-jump trained per refinement-step count T in {1,2,5,10,15} on MCAR-90
  fig3    Fig 3: refinement trajectories of every policy on a MAR mask of each dataset
  fig1    Fig 1: samples of the generative model (Sec 2.5, draw-ext-add) on binarized MNIST, and its test bound
  all     all of the above
  sweep   how the preset's settings were chosen: its [sweep] candidates trained for its budget, ranked on validation

A preset (presets/<name>.toml) says how each model is trained: sizes, budget (updates or minutes), optimiser, and
whether one model serves each cell (`train_per = "cell"`, the paper) or each mask family (`"family"`: one model per
family trained on a mixture of its sizes and scored at every cell). Runs live in ``<runs>/<preset>/<role>/<model>/
<training mask>``; a run is finished when its checkpoint's step or elapsed time reaches its budget; finished runs
are skipped and unfinished ones resume. Results go to ``<out>/<preset>/``: ``<experiment>.md`` and ``.json`` (ours,
the paper's number from the packaged anchors, and ours minus the paper's), the figures, and ``status.json`` (which
runs are complete, their training time, and the exact commands).

The paper's numbers come only from ``seqimpute/anchors/paper_results.json``; nothing here is typed in by hand.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import datetime
import json
import math
import multiprocessing
import os
import re
import shlex
import time
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from .. import runs as runs_mod
from ..data.masks import canonical, mask_set
from ..data.sources import load_dataset
from ..errors import SeqImputeError
from ..numerics import flush_subnormals
from ..models.policy import Policy
from ..models.registry import spec as model_spec

EXPERIMENTS = ("table1", "fig1", "fig2", "fig2c", "fig3")
PRESETS = ("paper", "cpu")
NATIVE_SIDE = {"mnist": 28, "tfd": 48, "svhn": 32, "binarized-mnist": 28}  # the squares' sizes refer to these
ANCHOR_ROLE = {"MNIST": "mnist", "TFD": "tfd", "SVHN": "svhn"}
ROLE_TITLE = {"mnist": "MNIST", "tfd": "TFD", "svhn": "SVHN", "binarized-mnist": "binarized MNIST"}
TRAIN_KEYS = ("updates", "minutes", "clock", "batch", "optimizer", "lr", "warmup", "valid_every", "valid_size",
              "ckpt_every", "log_every", "sizes", "seed", "precision")
SMOKE = {"n": 50, "samples": 2, "fig3_images": 3, "fig3_samples": 2, "fig1_samples": 16, "valid_size": 50}
UNITS = ("paper units: per-image NLL of the imputed values (epsilon 1e-6 form) plus, for the policies, the summed "
         "KL(q||p) (the guided bound), x D/|U|; lower is better. Differences are ours minus the paper's.")


def load_anchors() -> dict:
    """The paper's reported numbers (seqimpute/anchors/paper_results.json)."""
    return json.loads(resources.files("seqimpute.anchors").joinpath("paper_results.json").read_text())


def load_preset(name: str) -> dict:
    """A preset by name (``paper``, ``cpu``) or a path to a TOML file of the same layout."""
    if name in PRESETS:
        text = resources.files("seqimpute.experiments").joinpath(f"presets/{name}.toml").read_text()
    elif name.endswith(".toml") and Path(name).exists():
        text = Path(name).read_text()
    else:
        raise SeqImputeError(f"unknown preset {name!r}; use {' or '.join(PRESETS)} (or a path to a .toml preset).")
    try:
        preset = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SeqImputeError(f"preset {name} is not valid TOML ({e}).") from None
    if preset.get("train_per", "cell") not in ("cell", "family"):
        raise SeqImputeError(f"preset {name}: train_per must be 'cell' or 'family'.")
    preset.setdefault("name", Path(name).stem)
    return preset


# ---------------------------------------------------------------------------------------------------- the plan


@dataclass
class Cell:
    """One cell of a table or figure: a dataset role, the paper's mask label and spec, the models and their paper
    values."""
    experiment: str
    role: str
    label: str
    mask: str
    models: list[str]
    paper: dict[str, float | None]
    steps: int | None = None  # fig2c: the refinement-step count of the runs


@dataclass
class DataChoice:
    role: str
    name: str | None
    options: dict
    note: str  # "" when the dataset is the paper's own
    reason: str = ""  # why the rows are not run (name is None)

    @property
    def available(self) -> bool:
        return self.name is not None


@dataclass(eq=False)
class RunPlan:
    id: str
    role: str
    model: str
    path: Path
    cfg: object  # TrainConfig
    trained_on: str
    state: dict = field(default_factory=dict)
    action: str = ""
    wall_s: float = 0.0


def _merge(*parts: dict) -> dict:
    out: dict = {}
    for p in parts:
        for k, v in (p or {}).items():
            if k == "models":
                continue
            if k == "model_options":
                out[k] = {**out.get(k, {}), **v}
            else:
                out[k] = v
    return out


def _tag(mask: str) -> str:
    return re.sub(r"[^A-Za-z0-9.\-]+", "_", canonical(mask).replace(":", "").replace("|", "+").replace("*", "x"))


def adapt_mask(spec: str, native: int, side: int | None) -> str:
    """The paper's squares are sized for its images; on another image size (a stand-in dataset) scale each square
    side by side/native, kept within the paper's placement (side - 3 at most)."""
    if side is None or side == native:
        return spec

    def scale(m):
        lo = int(m.group(1))
        hi = int(m.group(2) or lo)
        f = lambda s: max(1, min(side - 3, round(s * side / native)))
        a, b = f(lo), f(hi)
        return f"square:{a}" + (f"-{b}" if b != a else "")

    return re.sub(r"square:(\d+)(?:-(\d+))?", scale, canonical(spec))


class Reproduction:
    def __init__(self, preset: str = "cpu", runs: str | Path = "runs/reproduce", out: str | Path = "results",
                 smoke: bool = False, smoke_updates: int = 3, data: str | None = None, tfd_path: str | None = None,
                 svhn_path: str | None = None, binarized_path: str | None = None, device: str = "cpu",
                 quiet: bool = False, report_only: bool = False, command: str | None = None, jobs: int = 1):
        self.preset = load_preset(preset)
        self.name = self.preset["name"]
        self.smoke, self.smoke_updates = bool(smoke), int(smoke_updates)
        if self.smoke_updates < 1:
            raise SeqImputeError("--smoke-updates must be a positive integer.")
        self.override = data
        suffix = ("-smoke" if smoke else "") + (f"-{re.sub(r'[^A-Za-z0-9.-]+', '_', data)}" if data else "")
        self.runs_dir = Path(runs) / f"{self.name}{suffix}"
        self.out_dir = Path(out) / f"{self.name}{suffix}"
        self.paths = {"tfd": tfd_path, "svhn": svhn_path, "binarized-mnist": binarized_path}
        self.device, self.quiet, self.report_only = device, quiet, report_only
        if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
            raise SeqImputeError(f"--jobs must be a positive integer, got {jobs!r}.")
        self.jobs = jobs
        self.command = command
        self.anchors = load_anchors()
        ev = dict(self.preset.get("eval", {}))
        if self.smoke:
            ev.update({k: v for k, v in SMOKE.items() if k != "valid_size"})
        self.eval = {"n": int(ev.get("n", 0)) or None, "samples": int(ev.get("samples", 10)),
                     "fig3_images": int(ev.get("fig3_images", 8)), "fig3_samples": int(ev.get("fig3_samples", 2)),
                     "fig1_samples": int(ev.get("fig1_samples", 64))}
        self.label = self.preset.get("label", self.name)
        if self.smoke:
            self.label = (f"SMOKE RUN of the {self.name} preset: {self.smoke_updates} updates per model and "
                          f"{self.eval['n']} test images; the numbers are meaningless (pipeline check only). "
                          f"Preset: {self.label}")
        self.plans: dict[str, RunPlan] = {}
        self._shapes: dict[str, tuple | None] = {}
        self._log_lines: list[str] = []

    # ------------------------------------------------------------------------------------------------ data

    def data_for(self, role: str) -> DataChoice:
        path = self.paths.get(role)
        if role == "svhn" and not path:
            return DataChoice(role, None, {}, "", "not run: the SVHN files were not given (--svhn-path)")
        if self.override:
            return DataChoice(role, self.override, {}, f"stand-in: {self.override} replaces {ROLE_TITLE[role]}")
        if role == "tfd":
            if path:
                return DataChoice(role, "tfd", {"path": path}, "")
            return DataChoice(role, "orl-faces", {"size": "48x48"},
                              "stand-in: orl-faces (48x48, 320 training images) replaces TFD, which is not public; "
                              "give --tfd-path for the real rows")
        if role == "svhn":
            return DataChoice(role, "svhn", {"path": path}, "")
        if role == "binarized-mnist":
            if path:
                return DataChoice(role, role, {"path": path}, "")
            return DataChoice(role, role, {}, "seeded stochastic binarization of MNIST, not Larochelle's fixed one "
                                              "(give --binarized-path with the .amat files); not strictly comparable")
        return DataChoice(role, role, {}, "")

    def side(self, role: str) -> int | None:
        if role not in self._shapes:
            d = self.data_for(role)
            shape = load_dataset(d.name, "train", **d.options).image_shape if d.available else None
            self._shapes[role] = tuple(shape) if shape else None
        shape = self._shapes[role]
        return shape[0] if shape and shape[0] == shape[1] else (min(shape) if shape else None)

    def mask_for(self, role: str, spec: str) -> str:
        return adapt_mask(spec, NATIVE_SIDE[role], self.side(role))

    # ------------------------------------------------------------------------------------------------ cells

    def cells(self, experiment: str) -> list[Cell]:
        a = self.anchors
        if experiment == "table1":
            out = []
            extra = self.preset.get("experiments", {}).get("table1", {}).get("extra_models", [])
            for ds, by_mask in a["table1"].items():
                role = ANCHOR_ROLE[ds]
                for label, vals in by_mask.items():
                    models = [m.lower() for m in vals] + [m for m in extra if m not in (x.lower() for x in vals)]
                    out.append(Cell("table1", role, label, canonical(label), models,
                                    {m.lower(): v for m, v in vals.items()}))
            return out
        if experiment == "fig2":
            fig = a["fig2_mnist_mcar"]
            names = [k for k in fig if k != "drop_rates"]
            extra = self.preset.get("experiments", {}).get("fig2", {}).get("extra_models", ["mean", "knn"])
            out = []
            for i, rate in enumerate(fig["drop_rates"]):
                label = f"MCAR-{round(rate * 100)}"
                out.append(Cell("fig2", "mnist", label, canonical(f"mcar:{rate:g}"),
                                [n.lower() for n in names] + list(extra), {n.lower(): fig[n][i] for n in names}))
            return out
        if experiment == "fig2c":
            fig = a["fig2c_gpsi_mnist_mcar90_refinement_steps"]
            c = self.preset.get("fig2c", {})
            steps = c.get("steps", fig["steps"])
            names = [k for k in fig if k != "steps"]
            out = []
            for T in steps:
                paper = {n.lower(): fig[n][fig["steps"].index(T)] if T in fig["steps"] else None for n in names}
                out.append(Cell("fig2c", "mnist", "MCAR-90", canonical(c.get("mask", "mcar:0.9")),
                                [n.lower() for n in names], paper, steps=int(T)))
            return out
        if experiment == "fig3":
            out, seen = [], set()
            for cell in self.cells("table1"):
                if cell.mask.startswith("square") and cell.role not in seen:
                    seen.add(cell.role)
                    out.append(dataclasses.replace(cell, experiment="fig3"))
            return out
        if experiment == "fig1":
            gen = a["binarized_mnist_generation"]
            key = next(k for k in gen if k.startswith("extended LSTM model, c_T = c_0"))
            return [Cell("fig1", "binarized-mnist", "generation (mask full)", "full", ["draw-ext-add"],
                         {"draw-ext-add": gen[key][0]})]
        raise SeqImputeError(f"unknown experiment {experiment!r}; choose {', '.join(EXPERIMENTS)} or all.")

    def role_cells(self, role: str) -> list[str]:
        """Every cell mask of a role across Table 1 and Fig 2 (whatever was asked for): shared runs stay the same."""
        masks = [c.mask for e in ("table1", "fig2") for c in self.cells(e) if c.role == role]
        return list(dict.fromkeys(masks))

    # ------------------------------------------------------------------------------------------------ runs

    def settings(self, role: str, model: str, fig2c: bool = False) -> dict:
        p = self.preset
        ds = p.get("datasets", {}).get(role, {})
        if fig2c:
            c = {k: v for k, v in p.get("fig2c", {}).items() if k not in ("mask", "steps", "not_expressed")}
            s = _merge(p.get("defaults", {}), ds, c)
        else:
            s = _merge(p.get("defaults", {}), ds, p.get("models", {}).get(model, {}),
                       ds.get("models", {}).get(model, {}))
        return self._smoked(s)

    def _smoked(self, s: dict) -> dict:
        if self.smoke:
            s.update({"updates": self.smoke_updates, "minutes": None, "valid_every": self.smoke_updates,
                      "valid_size": SMOKE["valid_size"], "ckpt_every": self.smoke_updates, "log_every": 1})
        return s

    def plan_run(self, cell: Cell, model: str) -> RunPlan:
        role = cell.role
        ms = model_spec(model)
        shared = not ms.cls.trainable or getattr(ms.cls, "train_mask", None) is not None
        fig2c = cell.experiment == "fig2c"
        families = self.preset.get("families", {}).get(role, {})
        if cell.mask == "full":
            mask, tag, trained_on = "full", "full", "mask full (generation)"
        elif shared:
            mask = "|".join(self.mask_for(role, m) for m in self.role_cells(role))
            tag = "all-cells"
            trained_on = ("complete images (its step count chosen on validation per cell)" if ms.cls.trainable else
                          "no training (settings chosen on validation per cell)")
        elif self.preset.get("train_per") == "family" and not fig2c and families:
            kind = "mcar" if cell.mask.startswith("mcar") else "square"
            if kind not in families:
                raise SeqImputeError(f"preset {self.name} has no {kind} family for {role}.")
            mask = self.mask_for(role, families[kind])
            tag, trained_on = _tag(mask), f"{mask} (one model for the family)"
        else:
            mask = self.mask_for(role, cell.mask)
            tag, trained_on = _tag(mask), f"{mask} (this cell)"
        name = f"{model}-T{cell.steps}" if fig2c else model
        rid = f"{role}/{name}/{tag}"
        if rid in self.plans:
            return self.plans[rid]
        s = self.settings(role, model, fig2c)
        if fig2c:
            s["model_options"] = {**s.get("model_options", {}), "steps": cell.steps}
        plan = RunPlan(rid, role, model, self.runs_dir / role / name / tag, self._config(rid, role, model, mask, s),
                       trained_on)
        self.plans[rid] = plan
        return plan

    def _config(self, rid: str, role: str, model: str, mask: str, s: dict):
        """The TrainConfig of a run from its merged settings."""
        from ..train import TrainConfig

        d = self.data_for(role)
        kw = {k: s[k] for k in TRAIN_KEYS if k in s}
        cfg = TrainConfig(model=model, data=d.name, mask=mask, data_options=dict(d.options),
                          model_options=dict(s.get("model_options", {})), device=self.device, **kw)
        if cfg.updates is None and cfg.minutes is None and model_spec(model).cls.trainable:
            raise SeqImputeError(f"preset {self.name} gives {rid} no budget (updates or minutes).")
        return cfg

    def sweep_plans(self) -> list[tuple[str, str, dict, RunPlan]]:
        """(model, candidate, its settings, plan) for every candidate of the preset's [sweep]: each candidate's
        settings are the preset's defaults and dataset settings with the candidate's on top (not the preset's
        per-model choices, so the sweep does not move when a choice is made from it)."""
        sw = self.preset.get("sweep") or {}
        if not sw.get("candidates"):
            raise SeqImputeError(f"preset {self.name} has no [sweep.candidates.<model>] tables; see the layout in "
                                 "seqimpute/experiments/presets/cpu.toml.")
        role, kind = sw.get("role", "mnist"), sw.get("family", "square")
        if not self.data_for(role).available:
            raise SeqImputeError(f"the sweep's dataset {role} is not available: {self.data_for(role).reason}.")
        family = self.preset.get("families", {}).get(role, {})
        if kind not in family:
            raise SeqImputeError(f"preset {self.name}: the sweep's family {kind!r} is not in [families.{role}].")
        mask = self.mask_for(role, family[kind])
        base = _merge(self.preset.get("defaults", {}), self.preset.get("datasets", {}).get(role, {}))
        out = []
        for model, cands in sw["candidates"].items():
            for name, over in cands.items():
                if not re.fullmatch(r"[A-Za-z0-9._-]+", name):
                    raise SeqImputeError(f"sweep candidate name {name!r}: use letters, digits, '.', '_' or '-' "
                                         "(it names the run folder).")
                rid = f"sweep/{role}/{model}/{_tag(mask)}/{name}"
                if rid not in self.plans:
                    cfg = self._config(rid, role, model, mask, self._smoked(_merge(base, over)))
                    self.plans[rid] = RunPlan(rid, role, model, self.runs_dir / rid, cfg,
                                              f"{mask} (sweep candidate {name})")
                out.append((model, name, over, self.plans[rid]))
        return out

    def run_state(self, plan: RunPlan) -> dict:
        last = plan.path / "last.pt"
        cfg = plan.cfg
        state = {"exists": last.exists(), "step": 0, "elapsed_s": 0.0, "complete": False,
                 "budget": {"updates": cfg.updates, "minutes": cfg.minutes} if _trainable(plan.model)
                 else "none (fitted, not trained)"}
        if last.exists():
            from ..train import TrainConfig, check_same_run

            check_same_run(plan.path, TrainConfig.stored(plan.path), cfg)
            ck = runs_mod.load_checkpoint(last)
            state["step"], state["elapsed_s"] = int(ck["step"]), float(ck["elapsed"])
            state["complete"] = (not _trainable(plan.model)
                                 or (cfg.updates is not None and state["step"] >= cfg.updates)
                                 or (cfg.minutes is not None and state["elapsed_s"] >= cfg.minutes * 60))
        plan.state = state
        return state

    def train_command(self, plan: RunPlan) -> str:
        c = plan.cfg
        cmd = ["seqimpute", "train", "--model", c.model, "--data", c.data]
        for k, v in c.data_options.items():
            cmd += {"path": ["--data-path", str(v)], "size": ["--size", str(v)],
                    "scale": ["--scale", str(v)]}.get(k, ["--data-opt", f"{k}={v}"])
        cmd += ["--mask", c.mask, "--run", str(plan.path)]
        if not _trainable(c.model):  # fitted from the training split, no updates
            return shlex.join(cmd)
        if c.updates is not None:
            cmd += ["--updates", str(c.updates)]
        if c.minutes is not None:
            cmd += ["--minutes", f"{c.minutes:g}"]
        cmd += ["--batch", str(c.batch), "--seed", str(c.seed)]
        if c.sizes:
            cmd += ["--sizes", c.sizes]
        if c.device != "cpu":
            cmd += ["--device", c.device]
        for k, v in c.model_options.items():
            cmd += ["--set", f"{k}={json.dumps(v)}"]
        for k in ("clock", "optimizer", "lr", "warmup", "valid_every", "valid_size", "ckpt_every"):
            cmd += ["--set", f"{k}={getattr(c, k)}"]
        if c.precision is not None:
            cmd += ["--set", f"precision={c.precision}"]
        return shlex.join(cmd)

    def log(self, msg: str) -> None:
        if not self.quiet:
            print(f"[reproduce {self.name}{' smoke' if self.smoke else ''}] {msg}", flush=True)

    def train_all(self, plans: list[RunPlan]) -> None:
        todo = []
        for i, plan in enumerate(plans, 1):
            st = self.run_state(plan)
            if st["complete"]:
                plan.action = "skipped (finished)"
                self.log(f"({i}/{len(plans)}) {plan.id}: finished ({st['step']} updates, "
                         f"{st['elapsed_s'] / 60:.1f} min); skipped")
            elif self.report_only:
                plan.action = "not trained (--report-only)"
            else:
                todo.append((i, plan, st["exists"]))
        if self.jobs == 1 or len(todo) < 2:
            for i, plan, existed in todo:
                self._announce(i, len(plans), plan, existed)
                wall = _train_one(plan.path, plan.cfg, None, progress=not self.quiet, quiet=self.quiet)
                self._trained(plan, existed, wall)
            return
        pool, threads = self._workers()
        with pool:
            running = {}
            for i, plan, existed in todo:
                self._announce(i, len(plans), plan, existed, f" [queued: {self.jobs} at a time, {threads} "
                                                             f"thread{'s' * (threads > 1)} each]")
                running[pool.submit(_train_one, plan.path, plan.cfg, threads)] = (plan, existed)
            for fut in cf.as_completed(running):
                plan, existed = running[fut]
                wall = fut.result()  # a failed run stops the reproduction with its own error
                self._trained(plan, existed, wall)
                self.log(f"done {plan.id}: {plan.state['step']} updates, {plan.state['elapsed_s'] / 60:.1f} min")

    def _workers(self):
        """``jobs`` fresh worker processes and the torch threads each gets: on a small CPU, separate single-threaded
        runs use the cores better than one run with several threads (benchmarks/RESULTS.md)."""
        threads = max(1, (os.cpu_count() or 1) // self.jobs)
        return cf.ProcessPoolExecutor(self.jobs, mp_context=multiprocessing.get_context("spawn")), threads

    def _announce(self, i, n, plan, existed, how=""):
        b = plan.state["budget"]
        budget = ", ".join(f"{v:g} {k}" for k, v in b.items() if v is not None) if isinstance(b, dict) else b
        self.log(f"({i}/{n}) {'resuming' if existed else 'training'} {plan.id} on {plan.cfg.data}, mask "
                 f"{plan.cfg.mask} ({budget}){how}")

    def _trained(self, plan, existed, wall_s):
        plan.wall_s = wall_s
        plan.action = "resumed" if existed else "trained"
        self.run_state(plan)

    # ------------------------------------------------------------------------------------------------ evaluation

    def _load(self, plan: RunPlan):
        if getattr(self, "_loaded", (None, None))[0] != plan.id:
            self._loaded = None, None  # free the previous model (template banks are large) before loading
            model, _, _ = runs_mod.load_run_model(plan.path, "best", device=self.device)
            self._loaded = plan.id, model
        return self._loaded[1]

    def score(self, plan: RunPlan, cell: Cell) -> dict | None:
        """The evaluator's scores of a run at a cell (cached in the run folder per checkpoint and setting)."""
        from ..evaluate import evaluate

        if not plan.state.get("exists"):
            return None
        d = self.data_for(cell.role)
        mask = self.mask_for(cell.role, cell.mask)
        n, K = self.eval["n"], self.eval["samples"]
        key = json.dumps([mask, "test", n, K, plan.state["step"], round(plan.state["elapsed_s"], 3), "best"])
        cache_path = plan.path / "reproduce_eval.json"
        cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
        if key in cache:
            return cache[key]
        model = self._load(plan)
        tuned = {}
        if type(model).tune is not Policy.tune:  # VAE-imp's step, kNN's k: chosen on validation under this mask
            tuned = model.tune(load_dataset(d.name, "valid", **d.options), mask)
        self.log(f"scoring {plan.id} at {cell.label} ({mask})")
        res = evaluate(model, load_dataset(d.name, "test", **d.options), mask, samples=K, n=n, seed=0)
        res["tuned_on_valid"] = {k: v for k, v in tuned.items() if k in ("impute_step", "k")}
        cache[key] = res
        tmp = cache_path.with_suffix(".part")
        tmp.write_text(json.dumps(cache, indent=1))
        os.replace(tmp, cache_path)
        return res

    def score_all(self, todo: list[tuple]) -> dict:
        """Scores of (experiment, index, cell, model, plan) items, keyed by (experiment, index). With --jobs > 1
        each run's cells are scored in a worker process (its model loaded once there; the cache is per run)."""
        by_plan: dict[str, list] = {}
        for e, i, c, m, plan in todo:
            by_plan.setdefault(plan.id, []).append((e, i, c, plan))
        if self.jobs == 1 or len(by_plan) < 2:
            return {(e, i): self.score(plan, c) for e, i, c, m, plan in todo}
        self._loaded = None, None  # no model travels to the workers
        results = {}
        pool, threads = self._workers()
        with pool:
            futs = {pool.submit(_score_in_worker, self, items[0][3], [it[2] for it in items], threads): items
                    for items in by_plan.values()}
            for fut in cf.as_completed(futs):
                for (e, i, _, _), res in zip(futs[fut], fut.result()):
                    results[(e, i)] = res
        return results

    def row(self, cell: Cell, model: str, plan: RunPlan | None, res: dict | None) -> dict:
        d = self.data_for(cell.role)
        paper = cell.paper.get(model)
        row = {"dataset": ROLE_TITLE[cell.role], "data_used": d.name, "stand_in": bool(d.note.startswith("stand-in")),
               "data_note": d.note or d.reason, "mask": cell.label, "mask_spec": self.mask_for(cell.role, cell.mask)
               if d.available else cell.mask, "model": model, "paper": paper, "ours": None, "diff": None}
        if cell.steps is not None:
            row["steps"] = cell.steps
        if not d.available:
            row["status"] = "not run"
            return row
        row.update({"run": plan.id, "run_dir": str(plan.path), "trained_on": plan.trained_on,
                    "run_complete": plan.state.get("complete", False), "run_step": plan.state.get("step", 0),
                    "run_minutes": plan.state.get("elapsed_s", 0.0) / 60})
        if res is None:
            row["status"] = "no checkpoint yet"
            return row
        row["status"] = "complete" if row["run_complete"] else "incomplete run"
        row["ours"] = res["score_paper_units"]
        row["score_kind"] = res["score_kind"]
        row["n_images"], row["samples"] = res["n_images"], res["samples"]
        if "oracle_best_step_nll_paper_units" in res:
            row["ours_oracle_step"] = res["oracle_best_step_nll_paper_units"]
            row["oracle_best_step"] = res["oracle_best_step"]
        if "bound_nats_per_image" in res:
            row["bound_nats_per_image"] = res["bound_nats_per_image"]
        if res.get("tuned_on_valid"):
            row["tuned_on_valid"] = res["tuned_on_valid"]
        if paper is not None:
            row["diff"] = row["ours"] - paper
        return row

    # ------------------------------------------------------------------------------------------------ main

    def run(self, experiments: list[str]) -> dict:
        if "sweep" in experiments:
            if experiments != ["sweep"]:
                raise SeqImputeError("run the sweep on its own: seqimpute reproduce sweep --preset NAME.")
            return self.run_sweep()
        cells = {e: self.cells(e) for e in experiments}
        pairs = {e: [] for e in experiments}  # (cell, model, plan | None)
        for e, cs in cells.items():
            for c in cs:
                for m in c.models:
                    plan = self.plan_run(c, m) if self.data_for(c.role).available else None
                    pairs[e].append((c, m, plan))
        plans = list(dict.fromkeys(p for ps in pairs.values() for *_, p in ps if p is not None))
        session = self._train_recorded(experiments, plans)
        rows = {e: [] for e in experiments}
        order = sorted(((e, i) for e in experiments for i in range(len(pairs[e]))),
                       key=lambda ei: (pairs[ei[0]][ei[1]][2].id if pairs[ei[0]][ei[1]][2] else "",))
        results = self.score_all([(e, i, *pairs[e][i]) for e, i in order if e != "fig3" and pairs[e][i][2]])
        for e in experiments:
            rows[e] = [self.row(c, m, p, results.get((e, i))) for i, (c, m, p) in enumerate(pairs[e])]
        self._loaded = None, None
        written = {}
        for e in experiments:
            written[e] = getattr(self, f"_write_{e}")(cells[e], rows[e], pairs[e])
        return self._finish(session, plans, experiments, rows, written)

    def _train_recorded(self, experiments: list[str], plans: list[RunPlan]) -> tuple:
        """Train (or skip) the plans, recording the invocation and every run's state in status.json, also when
        training stops with an error. Returns the session that `_finish` completes."""
        t_start = time.perf_counter()
        started = datetime.datetime.now().isoformat(timespec="seconds")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        status = self._status_begin(experiments, started)
        try:
            self.train_all(plans)
        finally:
            for p in plans:
                self.run_state(p)
            self._status_write(status, plans, experiments, started, t_start, finished=False)
        return status, started, t_start

    def _finish(self, session: tuple, plans, experiments, rows: dict, written: dict) -> dict:
        status, started, t_start = session
        self._status_write(status, plans, experiments, started, t_start, finished=True, written=written)
        self.log(f"wrote {self.out_dir}")
        return {"out": str(self.out_dir), "runs": str(self.runs_dir), "rows": rows, "files": written,
                "status": str(self.out_dir / "status.json")}

    def run_sweep(self) -> dict:
        """Train every sweep candidate for the preset's budget and rank them by their best validation bound (the
        evaluator's fixed seeded masks on the validation split; the test split is never used to choose)."""
        items = self.sweep_plans()
        plans = [p for *_, p in items]
        session = self._train_recorded(["sweep"], plans)
        rows = [self._sweep_row(*it) for it in items]
        for m in dict.fromkeys(r["model"] for r in rows):
            mine = [r for r in rows if r["model"] == m and r["best_valid"] is not None]
            best = min((r["best_valid"] for r in mine), default=None)
            for r in mine:
                r["vs_best"] = r["best_valid"] - best
                r["best"] = r["best_valid"] == best
        return self._finish(session, plans, ["sweep"], {"sweep": rows}, {"sweep": self._write_sweep(rows)})

    def _sweep_row(self, model: str, name: str, over: dict, plan: RunPlan) -> dict:
        valid = [r["valid_bound_paper_units"] for r in runs_mod.read_metrics(plan.path)
                 if r.get("valid_bound_paper_units") is not None and math.isfinite(r["valid_bound_paper_units"])]
        preset_cfg = self._config(plan.id, plan.role, model, plan.cfg.mask, self.settings(plan.role, model))
        return {"model": model, "candidate": name, "changes": over, "run": plan.id, "run_dir": str(plan.path),
                "trained_on": plan.cfg.mask, "batch": plan.cfg.batch, "lr": plan.cfg.lr,
                "model_options": plan.cfg.model_options, "seed": plan.cfg.seed, "valid_size": plan.cfg.valid_size,
                "run_complete": plan.state.get("complete", False), "run_step": plan.state.get("step", 0),
                "run_minutes": plan.state.get("elapsed_s", 0.0) / 60,
                "best_valid": min(valid) if valid else None, "valid_at_end": valid[-1] if valid else None,
                "preset_choice": dataclasses.asdict(preset_cfg) == dataclasses.asdict(plan.cfg),
                "vs_best": None, "best": False}

    def _write_sweep(self, rows: list[dict]) -> list[str]:
        sw = self.preset["sweep"]
        md = self._header(f"Sweep: the {self.name} preset's settings, chosen on validation")
        md += [f"Each candidate trains for the preset's budget on {ROLE_TITLE[sw.get('role', 'mnist')]} "
               f"({rows[0]['trained_on']}: the {sw.get('family', 'square')} family) and is scored by its best "
               f"validation bound (the training run's own validation: {rows[0]['valid_size']} validation images, one "
               "rollout each, fixed seeded masks). The test split is never used to choose.",
               "", "| model | candidate | changes from the defaults | updates | budget used (min) | best valid bound "
               "| vs best | |", "|---|---|---|---:|---:|---:|---:|---|"]
        for r in rows:
            mark = ", ".join(x for x in ("best" if r["best"] else "", "the preset's setting" if r["preset_choice"]
                                         else "", "" if r["run_complete"] else "incomplete run") if x)
            changes = "; ".join(f"{k} {json.dumps(v)}" for k, v in r["changes"].items()) or "none"
            vs = "-" if r["vs_best"] is None else f"{r['vs_best']:+.1f}"
            md.append(f"| {r['model']} | {r['candidate']} | {changes} | {r['run_step']} | {r['run_minutes']:.1f} | "
                      f"{_fmt(r['best_valid'])} | {vs} | {mark} |")
        off = [m for m in dict.fromkeys(r["model"] for r in rows)
               if any(r["best"] for r in rows if r["model"] == m)
               and not any(r["best"] and r["preset_choice"] for r in rows if r["model"] == m)]
        if off:
            md += ["", f"The preset does not use the best candidate for: {', '.join(off)}."]
        return self._write("sweep", md, {"rows": rows, "sweep": sw})

    # ------------------------------------------------------------------------------------------------ status

    def _status_begin(self, experiments, started) -> dict:
        path = self.out_dir / "status.json"
        status = json.loads(path.read_text()) if path.exists() else {}
        status.update({"preset": self.name, "smoke": self.smoke, "label": self.label,
                       "data_override": self.override, "runs_dir": str(self.runs_dir)})
        status.setdefault("runs", {})
        status.setdefault("experiments", {})
        status.setdefault("invocations", [])
        status["invocations"].append({"command": self.command, "experiments": experiments, "started": started,
                                      "finished": None, "wall_s": None})
        return status

    def _status_write(self, status, plans, experiments, started, t_start, finished, written=None) -> None:
        for p in plans:
            prev = status["runs"].get(p.id, {})
            status["runs"][p.id] = {
                "path": str(p.path), "model": p.model, "data": p.cfg.data, "mask": p.cfg.mask,
                "trained_on": p.trained_on, "budget": p.state.get("budget"), "step": p.state.get("step", 0),
                "training_minutes": round(p.state.get("elapsed_s", 0.0) / 60, 3),
                "complete": bool(p.state.get("complete")), "last_action": p.action or prev.get("last_action", ""),
                "this_invocation_wall_s": round(p.wall_s, 2), "command": self.train_command(p)}
        for e in experiments:
            mine = self._plans_of(e)
            files = (written or {}).get(e) or status["experiments"].get(e, {}).get("files", [])
            status["experiments"][e] = {"complete": finished and all(p.state.get("complete") for p in mine),
                                        "runs": [p.id for p in mine], "files": files}
        inv = status["invocations"][-1]
        if finished:
            inv["finished"] = datetime.datetime.now().isoformat(timespec="seconds")
        inv["wall_s"] = round(time.perf_counter() - t_start, 2)
        path = self.out_dir / "status.json"
        tmp = path.with_suffix(".part")
        tmp.write_text(json.dumps(status, indent=2))
        os.replace(tmp, path)

    def _plans_of(self, experiment: str) -> list[RunPlan]:
        if experiment == "sweep":
            return [p for *_, p in self.sweep_plans()]
        out = []
        for c in self.cells(experiment):
            if self.data_for(c.role).available:
                out += [self.plan_run(c, m) for m in c.models]
        return list(dict.fromkeys(out))

    # ------------------------------------------------------------------------------------------------ writers

    def _header(self, title: str, units: bool = True) -> list[str]:
        return [f"# {title}", "", f"**{self.label}**", ""] + ([UNITS, ""] if units else [])

    def _write(self, name: str, md: list[str], payload: dict) -> list[str]:
        (self.out_dir / f"{name}.md").write_text("\n".join(md) + "\n")
        payload = {"experiment": name, "preset": self.name, "smoke": self.smoke, "label": self.label,
                   "units": UNITS, **payload}
        (self.out_dir / f"{name}.json").write_text(json.dumps(payload, indent=2, default=_json_default))
        return [f"{name}.md", f"{name}.json"]

    def _write_table1(self, cells, rows, pairs) -> list[str]:
        md = self._header("Table 1: imputation NLL (guided bound; VAE-imp: NLL of its imputation)")
        md += ["| dataset | mask | model | ours | paper | ours - paper | trained on | note |",
               "|---|---|---|---:|---:|---:|---|---|"]
        md += [_md_row(r) for r in rows]
        md += ["", *_notes(rows)]
        return self._write("table1", md, {"rows": rows})

    def _write_fig2(self, cells, rows, pairs) -> list[str]:
        md = self._header("Fig 2(a,b): MNIST, score against the MCAR drop rate")
        md += ["| mask | model | ours | paper | ours - paper | trained on | note |", "|---|---|---:|---:|---:|---|---|"]
        md += [_md_row(r, dataset=False) for r in rows]
        files = []
        policies = [m for m in ("gpsi-add", "gpsi-jump", "lstm-add", "lstm-jump")]
        for panel, keep in (("a", None), ("b", policies)):
            f = self._plot_curves(rows, "mask", keep, f"fig2{panel}.png",
                                  f"Fig 2({panel}) MNIST MCAR" + (": the policies" if keep else ": all models"),
                                  xlabel="drop rate", x_of=lambda r: int(r["mask"].split("-")[1]) / 100)
            if f:
                files.append(f)
                md += ["", f"![Fig 2({panel})]({f})"]
        md += ["", "Solid: ours; dashed: the paper's plotted values (same colour).", "", *_notes(rows)]
        return self._write("fig2", md, {"rows": rows, "figures": files}) + files

    def _write_fig2c(self, cells, rows, pairs) -> list[str]:
        md = self._header("Fig 2(c): GPSI on MNIST MCAR-90, score against the number of refinement steps T")
        ne = self.preset.get("fig2c", {}).get("not_expressed")
        if ne:
            md += ["Camera-ready settings not expressed by this preset: " + "; ".join(ne) + ".", ""]
        md += ["| T | model | ours | paper | ours - paper | trained on | note |", "|---:|---|---:|---:|---:|---|---|"]
        for r in rows:
            md.append(f"| {r['steps']} " + _md_row(r, dataset=False, mask=False))
        f = self._plot_curves(rows, "steps", None, "fig2c.png", "Fig 2(c) GPSI, MNIST MCAR-90",
                              xlabel="refinement steps T", x_of=lambda r: r["steps"])
        files = [f] if f else []
        if f:
            md += ["", f"![Fig 2(c)]({f})", "", "Solid: ours; dashed: the paper's plotted values."]
        md += ["", *_notes(rows)]
        return self._write("fig2c", md, {"rows": rows, "figures": files, "not_expressed": ne}) + files

    def _write_fig1(self, cells, rows, pairs) -> list[str]:
        from ..plots import sample_grid

        md = self._header("Fig 1: samples of the Sec 2.5 model; its test bound (nats per image, mask full)")
        md += ["| model | ours | paper (raw, before fine-tuning q) | ours - paper | trained on | note |",
               "|---|---:|---:|---:|---|---|"]
        md += [_md_row(r, dataset=False, mask=False) for r in rows]
        files = []
        for c, m, plan in pairs:
            if plan is None or not plan.state.get("exists"):
                continue
            model = runs_mod.load_run_model(plan.path, "best", device=self.device)[0]
            shape = self._shape(c.role)
            T = getattr(model, "steps", 0)
            steps = sorted({t for t in (1, 3, 5, 9) if t <= T} | {T})
            gen = torch.Generator(device=self.device).manual_seed(0)
            x = torch.zeros(self.eval["fig1_samples"], model.dim, device=self.device)
            model.eval()
            with torch.inference_mode():
                r = model.rollout(x, torch.zeros_like(x, dtype=torch.bool), guided=False, generator=gen)
                frames = np.stack([torch.sigmoid(r.canvases[t]).cpu().numpy() for t in steps])
            name = f"fig1_{m}.png"
            sample_grid(frames, shape, self.out_dir / name, steps,
                        f"{m}: sigmoid(c_t) of {len(x)} samples from the prior ({self._short_label()})")
            files.append(name)
            md += ["", f"![{m} samples]({name})"]
        md += ["", *_notes(rows)]
        return self._write("fig1", md, {"rows": rows, "figures": files}) + files

    def _write_fig3(self, cells, rows, pairs) -> list[str]:
        from ..imputation import sample_trajectories
        from ..plots import trajectory_grid

        md = self._header("Fig 3: refinement trajectories on MAR masks (primary policy, held-out test images)",
                          units=False)
        files = []
        for c, m, plan in pairs:
            d = self.data_for(c.role)
            if plan is None:
                md.append(f"- {ROLE_TITLE[c.role]} {c.label} {m}: {d.reason}")
                continue
            if not plan.state.get("exists"):
                md.append(f"- {ROLE_TITLE[c.role]} {c.label} {m}: no checkpoint yet")
                continue
            model = runs_mod.load_run_model(plan.path, "best", device=self.device)[0]
            T = getattr(model, "steps", 0)
            if T < 1:
                continue
            test = load_dataset(d.name, "test", **d.options)
            mask = self.mask_for(c.role, c.mask)
            k = min(self.eval["fig3_images"], len(test.x))
            observed = mask_set(mask, test.name, test.split, len(test.x), test.image_shape, test.dim)[:k]
            if type(model).tune is not Policy.tune:
                model.tune(load_dataset(d.name, "valid", **d.options), mask)
            traj = sample_trajectories(model, test.x[:k], observed, self.eval["fig3_samples"], seed=0)
            keep = sorted(set(np.linspace(1, T, min(T, 7)).round().astype(int).tolist()))
            grid_rows = [{"x": test.x[i].numpy(), "observed": observed[i].numpy(),
                          "steps": [traj[s, i, t].numpy() for t in keep], "truth": test.x[i].numpy()}
                         for i in range(k) for s in range(traj.shape[0])]
            name = f"fig3_{c.role}_{m}.png"
            stand = f"; {d.note.split(':')[0]} {d.name}" if d.note.startswith("stand-in") else ""
            trajectory_grid(grid_rows, test.image_shape, self.out_dir / name, [f"t={t}" for t in keep],
                            f"{m} on {d.name} {c.label} ({mask}){stand}; trained on {plan.trained_on}; "
                            f"{self._short_label()}")
            files.append(name)
            md += ["", f"### {ROLE_TITLE[c.role]} {c.label}: {m}" + (f" ({d.note})" if d.note else ""),
                   f"![{m}]({name})"]
        return self._write("fig3", md, {"figures": files}) + files

    def _short_label(self) -> str:
        return f"{self.name} preset" + (" SMOKE RUN, meaningless" if self.smoke else "") + (
            ", one model per mask family" if self.preset.get("train_per") == "family" else "")

    def _shape(self, role):
        self.side(role)
        return self._shapes[role]

    def _plot_curves(self, rows, xkey, keep, name, title, xlabel, x_of) -> str | None:
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
        ax.set_title(f"{title}\n{self._short_label()}", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, ncol=2)
        fig.tight_layout()
        fig.savefig(self.out_dir / name, dpi=120)
        plt.close(fig)
        return name


def _train_one(path, cfg, threads: int | None, progress: bool = False, quiet: bool = True) -> float:
    """Train (or resume) one run; ``threads``: set the process's torch threads first (a parallel worker). Returns
    the wall time it took (measured where it ran: a queued run's waiting is not in it)."""
    from ..train import train

    flush_subnormals()  # this worker process's threads start after it and inherit it
    if threads:
        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    train(path, dataclasses.replace(cfg), progress_bar=progress, quiet=quiet)
    return time.perf_counter() - t0


def _score_in_worker(rep: "Reproduction", plan: RunPlan, cells: list, threads: int) -> list:
    """A worker's share of the scoring: one run at each of its cells."""
    flush_subnormals()
    torch.set_num_threads(threads)
    return [rep.score(plan, c) for c in cells]


def _trainable(model: str) -> bool:
    return bool(model_spec(model).cls.trainable)


def _json_default(o):
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, float) and not math.isfinite(o):
        return None
    raise TypeError(type(o))


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.1f}"


def _md_row(r: dict, dataset: bool = True, mask: bool = True) -> str:
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
    cells = ([r["dataset"] + (f" ({r['data_used']})" if r.get("stand_in") else "")] if dataset else []) + \
            ([r["mask"]] if mask else []) + [r["model"], ours, _fmt(r.get("paper")), diff, r.get("trained_on", "-"),
                                             "; ".join(n for n in note if n)]
    return "| " + " | ".join(cells) + " |"


def _notes(rows) -> list[str]:
    notes = sorted({r["data_note"] for r in rows if r.get("data_note")})
    return [f"- {n}" for n in notes]


def reproduce(experiment: str, preset: str = "cpu", **options) -> dict:
    """Run one experiment (or ``all``); see the module docstring. Returns a summary with the rows written."""
    exps = list(EXPERIMENTS) if experiment == "all" else [experiment]
    for e in exps:
        if e not in EXPERIMENTS + ("sweep",):
            raise SeqImputeError(f"unknown experiment {e!r}; choose {', '.join(EXPERIMENTS)}, all or sweep.")
    return Reproduction(preset, **options).run(exps)
