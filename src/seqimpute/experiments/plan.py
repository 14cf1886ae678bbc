"""What `seqimpute reproduce` runs: the presets, the datasets (or their stand-ins), the cells of each table and
figure with the paper's numbers, and the training runs that serve them (one per cell or per mask family)."""

from __future__ import annotations

import dataclasses
import json
import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ..data.masks import canonical
from ..data.sources import load_dataset
from ..errors import SeqImputeError
from ..models.registry import spec as model_spec

EXPERIMENTS = ("table1", "fig1", "fig2", "fig2c", "fig3")
PRESETS = ("paper", "cpu", "cpu-long")
NATIVE_SIDE = {"mnist": 28, "tfd": 48, "svhn": 32, "binarized-mnist": 28}  # the squares' sizes refer to these
ANCHOR_ROLE = {"MNIST": "mnist", "TFD": "tfd", "SVHN": "svhn"}
ROLE_TITLE = {"mnist": "MNIST", "tfd": "TFD", "svhn": "SVHN", "binarized-mnist": "binarized MNIST"}
TRAIN_KEYS = ("updates", "minutes", "clock", "batch", "optimizer", "lr", "warmup", "valid_every", "valid_size",
              "ckpt_every", "log_every", "sizes", "seed", "precision")
SMOKE = {"n": 50, "samples": 2, "fig3_images": 3, "fig3_samples": 2, "fig1_samples": 16, "valid_size": 50}


def load_anchors() -> dict:
    """The paper's reported numbers (seqimpute/anchors/paper_results.json)."""
    return json.loads(resources.files("seqimpute.anchors").joinpath("paper_results.json").read_text())


def generation_anchor(anchors: dict, model: str) -> float | None:
    """The paper's generation bound on binarized MNIST for draw-ext-add (its extended model) or draw (DRAW without
    attention), from the anchors' labels as the paper prints them."""
    gen = anchors["binarized_mnist_generation"]
    label = {"draw-ext-add": "extended LSTM model, c_T = c_0", "draw": "DRAW without attention"}.get(model)
    value = next((v for k, v in gen.items() if label and k.startswith(label)), None)
    return value[0] if isinstance(value, list) else value


def load_preset(name: str, _seen: tuple = ()) -> dict:
    """A preset by name (``paper``, ``cpu``, ``cpu-long``) or a path to a TOML file of the same layout. A preset
    with ``extends = "NAME"`` is that preset with its own tables laid over it (table by table, key by key)."""
    if name in _seen:
        raise SeqImputeError(f"preset {name} extends itself ({' -> '.join((*_seen, name))}).")
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
    base = preset.pop("extends", None)
    if base is not None:
        parent = load_preset(base, (*_seen, name))
        parent.pop("name")  # the preset's own name, or its file's
        preset = _overlay(parent, preset)
    if preset.get("train_per", "cell") not in ("cell", "family"):
        raise SeqImputeError(f"preset {name}: train_per must be 'cell' or 'family'.")
    preset.setdefault("name", Path(name).stem)
    return preset


def _overlay(base: dict, top: dict) -> dict:
    """``base`` with ``top``'s keys laid over it; tables merge key by key, any other value replaces."""
    out = dict(base)
    for k, v in top.items():
        out[k] = _overlay(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


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


def merge(*parts: dict) -> dict:
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


def tag(mask: str) -> str:
    return re.sub(r"[^A-Za-z0-9.\-]+", "_", canonical(mask).replace(":", "").replace("|", "+").replace("*", "x"))


def trainable(model: str) -> bool:
    return bool(model_spec(model).cls.trainable)


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


class Plan:
    """A preset applied: which data each dataset role uses, the cells of each experiment, and the runs (their
    TrainConfig and folder) that serve them. ``smoke`` cuts every budget to ``smoke_updates`` updates."""

    def __init__(self, preset: str = "cpu", runs: str | Path = "runs/reproduce", smoke: bool = False,
                 smoke_updates: int = 3, data: str | None = None, tfd_path: str | None = None,
                 svhn_path: str | None = None, binarized_path: str | None = None, device: str = "cpu"):
        self.preset = load_preset(preset)
        self.name = self.preset["name"]
        self.smoke, self.smoke_updates = bool(smoke), int(smoke_updates)
        if self.smoke_updates < 1:
            raise SeqImputeError("--smoke-updates must be a positive integer.")
        self.override = data
        suffix = ("-smoke" if smoke else "") + (f"-{re.sub(r'[^A-Za-z0-9.-]+', '_', data)}" if data else "")
        self.folder = f"{self.name}{suffix}"  # of the runs and of the results
        self.runs_dir = Path(runs) / self.folder
        self.paths = {"tfd": tfd_path, "svhn": svhn_path, "binarized-mnist": binarized_path}
        self.device = device
        self.anchors = load_anchors()
        self.eval = self._eval_settings()
        self.label = self.preset.get("label", self.name)
        if self.smoke:
            self.label = (f"SMOKE RUN of the {self.name} preset: {self.smoke_updates} updates per model and "
                          f"{self.eval['n']} test images; the numbers are meaningless (pipeline check only). "
                          f"Preset: {self.label}")
        self.plans: dict[str, RunPlan] = {}
        self._shapes: dict[str, tuple | None] = {}

    def _eval_settings(self) -> dict:
        """How the runs are scored and drawn: the preset's [eval], cut down for a smoke run."""
        ev = dict(self.preset.get("eval", {}))
        if self.smoke:
            ev.update({k: v for k, v in SMOKE.items() if k != "valid_size"})
        return {"n": int(ev.get("n", 0)) or None, "samples": int(ev.get("samples", 10)),
                "fig3_images": int(ev.get("fig3_images", 8)), "fig3_samples": int(ev.get("fig3_samples", 2)),
                "fig1_samples": int(ev.get("fig1_samples", 64))}

    def short_label(self) -> str:
        return f"{self.name} preset" + (" SMOKE RUN, meaningless" if self.smoke else "") + (
            ", one model per mask family" if self.preset.get("train_per") == "family" else "")

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

    def shape(self, role: str) -> tuple | None:
        """The image shape of the data a role uses (None when not available)."""
        if role not in self._shapes:
            d = self.data_for(role)
            shape = load_dataset(d.name, "train", **d.options).image_shape if d.available else None
            self._shapes[role] = tuple(shape) if shape else None
        return self._shapes[role]

    def side(self, role: str) -> int | None:
        shape = self.shape(role)
        return shape[0] if shape and shape[0] == shape[1] else (min(shape) if shape else None)

    def mask_for(self, role: str, spec: str) -> str:
        return adapt_mask(spec, NATIVE_SIDE[role], self.side(role))

    # ------------------------------------------------------------------------------------------------ cells

    def cells(self, experiment: str) -> list[Cell]:
        """The cells of an experiment, each with the paper's numbers from the packaged anchors."""
        if experiment not in EXPERIMENTS:
            raise SeqImputeError(f"unknown experiment {experiment!r}; choose {', '.join(EXPERIMENTS)} or all.")
        cells = {"table1": self._cells_table1, "fig2": self._cells_fig2, "fig2c": self._cells_fig2c,
                 "fig3": self._cells_fig3, "fig1": self._cells_fig1}
        return cells[experiment]()

    def _extra_models(self, experiment: str, default: list[str]) -> list[str]:
        return self.preset.get("experiments", {}).get(experiment, {}).get("extra_models", default)

    def _cells_table1(self) -> list[Cell]:
        out = []
        extra = self._extra_models("table1", [])
        for ds, by_mask in self.anchors["table1"].items():
            role = ANCHOR_ROLE[ds]
            for label, vals in by_mask.items():
                models = [m.lower() for m in vals] + [m for m in extra if m not in (x.lower() for x in vals)]
                out.append(Cell("table1", role, label, canonical(label), models,
                                {m.lower(): v for m, v in vals.items()}))
        return out

    def _cells_fig2(self) -> list[Cell]:
        fig = self.anchors["fig2_mnist_mcar"]
        names = [k for k in fig if k != "drop_rates"]
        extra = self._extra_models("fig2", ["mean", "knn"])
        out = []
        for i, rate in enumerate(fig["drop_rates"]):
            label = f"MCAR-{round(rate * 100)}"
            out.append(Cell("fig2", "mnist", label, canonical(f"mcar:{rate:g}"),
                            [n.lower() for n in names] + list(extra), {n.lower(): fig[n][i] for n in names}))
        return out

    def _cells_fig2c(self) -> list[Cell]:
        fig = self.anchors["fig2c_gpsi_mnist_mcar90_refinement_steps"]
        c = self.preset.get("fig2c", {})
        steps = c.get("steps", fig["steps"])
        names = [k for k in fig if k != "steps"]
        out = []
        for T in steps:
            paper = {n.lower(): fig[n][fig["steps"].index(T)] if T in fig["steps"] else None for n in names}
            out.append(Cell("fig2c", "mnist", "MCAR-90", canonical(c.get("mask", "mcar:0.9")),
                            [n.lower() for n in names], paper, steps=int(T)))
        return out

    def _cells_fig3(self) -> list[Cell]:
        out, seen = [], set()
        for cell in self._cells_table1():
            if cell.mask.startswith("square") and cell.role not in seen:
                seen.add(cell.role)
                out.append(dataclasses.replace(cell, experiment="fig3"))
        return out

    def _cells_fig1(self) -> list[Cell]:
        return [Cell("fig1", "binarized-mnist", "generation (mask full)", "full", ["draw-ext-add"],
                     {"draw-ext-add": generation_anchor(self.anchors, "draw-ext-add")})]

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
            s = merge(p.get("defaults", {}), ds, c)
        else:
            s = merge(p.get("defaults", {}), ds, p.get("models", {}).get(model, {}),
                       ds.get("models", {}).get(model, {}))
        return self.smoked(s)

    def smoked(self, s: dict) -> dict:
        if self.smoke:
            s.update({"updates": self.smoke_updates, "minutes": None, "valid_every": self.smoke_updates,
                      "valid_size": SMOKE["valid_size"], "ckpt_every": self.smoke_updates, "log_every": 1})
        return s

    def _training_mask(self, cell: Cell, model: str) -> tuple[str, str, str]:
        """(mask, folder tag, what it was trained on) of the run that serves ``model`` at ``cell``."""
        role = cell.role
        ms = model_spec(model)
        shared = not ms.cls.trainable or ms.cls.train_mask is not None
        families = self.preset.get("families", {}).get(role, {})
        if cell.mask == "full":
            return "full", "full", "mask full (generation)"
        if shared:
            mask = "|".join(self.mask_for(role, m) for m in self.role_cells(role))
            return mask, "all-cells", ("complete images (its step count chosen on validation per cell)"
                                       if ms.cls.trainable else "no training (settings chosen on validation per cell)")
        if self.preset.get("train_per") == "family" and cell.experiment != "fig2c" and families:
            kind = "mcar" if cell.mask.startswith("mcar") else "square"
            if kind not in families:
                raise SeqImputeError(f"preset {self.name} has no {kind} family for {role}.")
            mask = self.mask_for(role, families[kind])
            return mask, tag(mask), f"{mask} (one model for the family)"
        mask = self.mask_for(role, cell.mask)
        return mask, tag(mask), f"{mask} (this cell)"

    def plan_run(self, cell: Cell, model: str) -> RunPlan:
        """The run that serves ``model`` at ``cell`` (one object per run: cells that share a run share it)."""
        role = cell.role
        fig2c = cell.experiment == "fig2c"
        mask, tag, trained_on = self._training_mask(cell, model)
        name = f"{model}-T{cell.steps}" if fig2c else model
        rid = f"{role}/{name}/{tag}"
        if rid in self.plans:
            return self.plans[rid]
        s = self.settings(role, model, fig2c)
        if fig2c:
            s["model_options"] = {**s.get("model_options", {}), "steps": cell.steps}
        plan = RunPlan(rid, role, model, self.runs_dir / role / name / tag, self.config_for(rid, role, model, mask, s),
                       trained_on)
        self.plans[rid] = plan
        return plan

    def config_for(self, rid: str, role: str, model: str, mask: str, s: dict):
        """The TrainConfig of a run from its merged settings."""
        from ..train import TrainConfig

        d = self.data_for(role)
        kw = {k: s[k] for k in TRAIN_KEYS if k in s}
        cfg = TrainConfig(model=model, data=d.name, mask=mask, data_options=dict(d.options),
                          model_options=dict(s.get("model_options", {})), device=self.device, **kw)
        if cfg.updates is None and cfg.minutes is None and model_spec(model).cls.trainable:
            raise SeqImputeError(f"preset {self.name} gives {rid} no budget (updates or minutes).")
        return cfg

    def preset_config(self, plan: RunPlan):
        """The TrainConfig the preset's own settings give a run's model on its data and mask."""
        return self.config_for(plan.id, plan.role, plan.model, plan.cfg.mask, self.settings(plan.role, plan.model))

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
        base = merge(self.preset.get("defaults", {}), self.preset.get("datasets", {}).get(role, {}))
        out = []
        for model, cands in sw["candidates"].items():
            for name, over in cands.items():
                if not re.fullmatch(r"[A-Za-z0-9._-]+", name):
                    raise SeqImputeError(f"sweep candidate name {name!r}: use letters, digits, '.', '_' or '-' "
                                         "(it names the run folder).")
                rid = f"sweep/{role}/{model}/{tag(mask)}/{name}"
                if rid not in self.plans:
                    cfg = self.config_for(rid, role, model, mask, self.smoked(merge(base, over)))
                    self.plans[rid] = RunPlan(rid, role, model, self.runs_dir / rid, cfg,
                                              f"{mask} (sweep candidate {name})")
                out.append((model, name, over, self.plans[rid]))
        return out

    def pairs(self, cells: list[Cell]) -> list[tuple[Cell, str, RunPlan | None]]:
        """(cell, model, its run) of every row of the cells; the run is None where the data are not available."""
        return [(c, m, self.plan_run(c, m) if self.data_for(c.role).available else None)
                for c in cells for m in c.models]

    def plans_of(self, experiment: str) -> list[RunPlan]:
        """The runs an experiment needs, each once."""
        if experiment == "sweep":
            return [p for *_, p in self.sweep_plans()]
        if experiment == "claims":
            raise ValueError("the claims' runs are claims.ClaimsPlan(plan).runs()")  # claims builds on this module
        out = []
        for c in self.cells(experiment):
            if self.data_for(c.role).available:
                out += [self.plan_run(c, m) for m in c.models]
        return list(dict.fromkeys(out))
