"""`seqimpute train` for every model of the registry, on the shared loop of seqimpute.loop: in-memory batches, a
fresh mask per batch, guided rollouts, restores after repeated numerical faults, periodic validation on fixed masks,
atomic last/best checkpoints, exact resume, a wall-clock or update budget. Baselines fit in one pass instead."""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import runs
from .data.masks import mask_sampler
from .data.sources import load_dataset
from .errors import SeqImputeError, require_whole
from .numerics import subnormals_flushed
from .evaluate import check_mask_allowed, evaluate
from . import distributed
from .loop import CLOCKS, BatchOrder, Budget, StepResult, WholeStep, train_loop
from .models.policy import Policy
from .models.objectives import fill_holes
from .nn.noise import noise_shard
from .models.registry import build_model, spec
from .optim import Optimizer
from .precision import PRECISIONS, cpu_name, matmul_precision, resolve

DEFAULT_MINUTES = 30.0
# Numerical faults (a NaN/inf loss or gradient) skip their update. This many in a row, or this many within the last
# FAULT_WINDOW updates, restore the last checkpoint with the learning rate halved; after MAX_RESTORES restores the
# run stops with a SeqImputeError (last.pt stays the last good state).
MAX_CONSECUTIVE_FAULTS = 5
MAX_FAULTS_IN_WINDOW = 20
FAULT_WINDOW = 100
MAX_RESTORES = 3


# Settings a resumed run may change (its totals and how it runs); every other setting defines the run.
# The products' precision is one of them: the parameters, Adam's state and the checkpoints are float32 at either,
# so a run resumed at another precision continues from the same state (the change is logged in metrics.jsonl).
RUNTIME_KEYS = ("updates", "minutes", "device", "valid_every", "ckpt_every", "log_every", "compile", "precision")
# The budgets: on resume, giving either replaces both (the one not given no longer applies), so that raising one
# extends the run even when the other is already spent; giving neither keeps the stored pair.
BUDGET_KEYS = ("updates", "minutes")


@dataclass
class TrainConfig:
    model: str
    data: str
    mask: str
    data_options: dict = field(default_factory=dict)
    sizes: str | None = None
    model_options: dict = field(default_factory=dict)
    updates: int | None = None
    minutes: float | None = None
    clock: str = "wall"  # what --minutes counts: "wall" seconds, or "cpu" seconds of this process (all its threads)
    batch: int = 250
    seed: int = 0
    device: str = "cpu"
    optimizer: str = "budget"  # "budget" (default, fits the run's budget) or "paper" (the authors' schedule)
    lr: float = 1e-3  # budget optimiser: peak learning rate
    warmup: int = 500  # budget optimiser: linear warm-up updates
    valid_every: int = 500
    valid_size: int = 1000
    ckpt_every: int = 500
    log_every: int = 50
    compile: bool = False  # run the training step's loss as one torch.compile graph (loop.WholeStep)
    # the matrix products': "auto" (bf16 where the device runs them fast), "bf16" or "fp32"; None: "auto" (and, on
    # resume, "not given": the run keeps its own)
    precision: str | None = None
    # a new run's starting weights: a run folder (its best checkpoint) or a pretrained model's name; the optimiser
    # and its schedule start fresh (a warm start, not a resume)
    init: str | None = None

    @classmethod
    def fields(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)}

    @classmethod
    def stored(cls, run: Path) -> "TrainConfig":
        """The config a run folder was trained with. Runs written before ``precision`` existed have ``amp``
        ("bf16": bfloat16 autocast, now precision "bf16"; "none": float32 products, now precision "fp32")."""
        d = dict(runs.read_config(run)["train"])
        if "amp" in d:
            d["precision"] = "bf16" if d.pop("amp") == "bf16" else "fp32"
        return cls(**d)

    def check(self) -> None:
        """Refuse nonsensical settings with one clear message (they would otherwise fail deep inside training)."""
        def whole(name, lo=1, hi=None, none_ok=False):
            require_whole(name, getattr(self, name), lo, hi, none_ok)

        whole("batch", hi=10_000_000)
        whole("updates", none_ok=True)
        whole("seed", lo=0, hi=2**32 - 1)
        whole("warmup", lo=0)
        for name in ("valid_every", "valid_size", "ckpt_every", "log_every"):
            whole(name)
        for name, none_ok in (("minutes", True), ("lr", False)):
            v = getattr(self, name)
            if v is None and none_ok:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v > 0):
                raise SeqImputeError(f"{name} must be a positive number, got {v!r}.")
        if self.precision is not None and self.precision not in PRECISIONS:
            raise SeqImputeError(f"precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}.")
        if self.clock not in CLOCKS:
            raise SeqImputeError(f"clock must be 'wall' or 'cpu', not {self.clock!r}.")
        if self.init is not None and not isinstance(self.init, str):
            raise SeqImputeError(f"init must be a run folder or a pretrained model's name, got {self.init!r}.")
        for name in ("model", "data", "mask", "device", "optimizer"):
            if not isinstance(getattr(self, name), str):
                raise SeqImputeError(f"{name} must be a string, got {getattr(self, name)!r}.")


def _restore(run: Path, model, opt: Optimizer, gen: torch.Generator, seed: int, step: int) -> tuple[int, float | None]:
    """After repeated numerical faults: the last checkpoint's parameters and optimiser state (or the current ones
    when there is none yet, which skipped updates kept finite), half the learning rate, and a fresh noise stream so
    the same draws do not replay the same fault. Returns the step to continue from and the checkpoint's best
    validation score (None without a checkpoint)."""
    path, best = run / "last.pt", None
    if path.exists():
        ck = runs.load_checkpoint(path)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        step, best = int(ck["step"]), float(ck["best"])
    opt.lr_scale *= 0.5
    gen.manual_seed(seed)
    return step, best


def _tune_checkpoints(run: Path, cfg: TrainConfig, valid_set) -> None:
    """After training: Policy.tune on the validation split for the last and best checkpoints (e.g. VAE-imp's step
    count); the chosen settings go into each checkpoint's model config, and the best one's into config.toml."""
    tuned = None
    for which in ("last", "best"):
        path = run / f"{which}.pt"
        if not path.exists():
            continue
        ck = runs.load_checkpoint(path)
        tuned = runs.model_of_checkpoint(ck, cfg.model, path)
        tuned.to(cfg.device).tune(valid_set, cfg.mask, evaluate)
        ck["model_config"] = json.dumps(tuned.config())
        runs.atomic_save(ck, path)
    if tuned is not None:
        config = runs.read_config(run)
        config["model"] = {"name": cfg.model, **tuned.config()}
        runs.write_config(run, config)


def check_same_run(run: Path, stored: TrainConfig, cfg: TrainConfig) -> None:
    """Refuse to reuse the run in ``run`` for settings it was not trained with (reproduce's plans: a finished run
    of an older preset would otherwise be taken for the new one). ``train`` itself resumes with the stored
    settings and takes only the runtime keys from a given config."""
    differ = [k for k in sorted(TrainConfig.fields() - set(RUNTIME_KEYS)) if getattr(stored, k) != getattr(cfg, k)]
    if differ:
        was = ", ".join(f"{k}={getattr(stored, k)!r}" for k in differ)
        now = ", ".join(f"{k}={getattr(cfg, k)!r}" for k in differ)
        raise SeqImputeError(f"{run} was trained with {was}, not {now}; a run keeps the settings it started with: "
                             f"choose another run folder (or move this one away).")


def train(run: str | Path, cfg: TrainConfig | None = None, progress_bar: bool = True, quiet: bool = False,
          session_updates: int | None = None) -> dict:
    """Train (or resume) the run in folder ``run``. A new run needs ``cfg``; an existing one continues with its
    stored config, where ``cfg`` may give new budgets (the run's totals: ``updates`` and ``minutes`` given replace
    the stored pair, see BUDGET_KEYS) and change runtime settings. ``session_updates`` stops this call after that
    many updates (the run itself is unchanged: resume continues exactly as if never stopped). Subnormal floats are
    flushed to zero meanwhile (seqimpute.numerics). Returns a summary dict; its ``stopped_by`` says what ended
    training ("updates", "minutes" or "session"; loop.Budget.stopped_by), also logged in metrics.jsonl as
    ``{"event": "stopped"}`` for the two budgets."""
    with subnormals_flushed():
        return _train(Path(run), cfg, progress_bar, quiet, session_updates)


def _train(run: Path, cfg: TrainConfig | None, progress_bar: bool, quiet: bool, session_updates: int | None) -> dict:
    cfg, resuming = _settled_config(run, cfg)
    precision = resolve(cfg.precision or "auto", cfg.device)
    ms = spec(cfg.model)
    check_mask_allowed(ms.cls.allowed_masks, cfg.model, cfg.mask)  # generators: 'full' only
    if torch.device(cfg.device).type == "cuda" and not torch.cuda.is_available():
        raise SeqImputeError("--device cuda was asked for but no CUDA GPU is available; use --device cpu.")
    world, rank, device = distributed.setup(cfg.device)
    train_set, valid_set, sampler = _data(cfg)
    if resuming:
        model, _, ck = runs.load_run_model(run, "last")
    else:
        torch.manual_seed(cfg.seed)  # parameter init
        model, ck = build_model(cfg.model, train_set.dim, cfg.sizes, cfg.model_options), None
        if cfg.init:
            _start_from(model, cfg)
    if not model.trainable:  # baselines: fitting is a pass over the training set, no updates
        return _fit_baseline(run, cfg, model, train_set, valid_set)
    if model.dim != train_set.dim:
        raise SeqImputeError(f"{run} was trained on {model.dim} values per example, the data have {train_set.dim}.")
    model.to(device)
    if model.train_mask:  # a model that trains on its own mask whatever the run's (a VAE: 'full')
        sampler = mask_sampler(model.train_mask)
    t = _Trainer(run, cfg, model, ms.family, device, ck, world, rank, session_updates, valid_set, precision)
    if t.main:
        t.prepare_folder(resuming, train_set, quiet)

    # data with holes (NaN): a value the data lack is neither in the policy's input nor scored (policy.fill_holes)
    x_train, known_train = fill_holes(train_set.x.to(device))
    order = BatchOrder(len(x_train), cfg.batch, cfg.seed)
    t.B = order.batch
    rows = distributed.local_rows(t.B, world, rank)
    objective = distributed.wrap(model, world, device)
    if cfg.compile:
        objective = WholeStep(objective)

    def batch(step: int) -> tuple:  # masks (and, in the rollout, noise) are drawn for the global batch on every rank
        idx = order.indices(step)[rows].to(device)
        observed = sampler.sample(t.B, train_set.image_shape, generator=t.gen, dim=train_set.dim)[rows]
        if known_train is None:
            return x_train[idx], observed
        return x_train[idx], observed & known_train[idx], known_train[idx]

    def loss(x, observed, known=None):
        with noise_shard(world, rank), matmul_precision(precision):
            return objective(x, observed, t.gen, known)

    if progress_bar and not quiet and t.main:
        from tqdm import tqdm

        t.bar = tqdm(total=cfg.updates, initial=t.step, unit="upd", desc=cfg.model, mininterval=1.0,
                     dynamic_ncols=True)
    t.start()
    t.step = train_loop(t.opt, batch, loss, t.budget, t.step, world, t.fault, t.after, t.bar)
    return t.finish()


def _start_from(model: Policy, cfg: TrainConfig) -> None:
    """Load ``cfg.init``'s weights into the new run's ``model``, which must be the same model with the same sizes."""
    from .pretrained import load_model

    src, src_cfg, _ = load_model(cfg.init, "best")
    name = src_cfg["model"]["name"]
    if name != cfg.model or src.config() != model.config():
        mine = model.config()
        diff = [f"{k}={v} where this run has {mine.get(k)}" for k, v in src.config().items() if mine.get(k) != v]
        raise SeqImputeError(f"--init {cfg.init} holds a {name} model that this {cfg.model} run cannot start from "
                             f"({'; '.join(diff) or 'another model'}): give the same --model and sizes (--set ...) "
                             f"or another --init.")
    model.load_state_dict(src.state_dict())


def _settled_config(run: Path, cfg: TrainConfig | None) -> tuple[TrainConfig, bool]:
    """The run's settings and whether it resumes: a new run's ``cfg``, or a run folder's stored config with the
    runtime settings ``cfg`` changes (its budgets, when it gives any, replace the stored ones)."""
    resuming = (run / "last.pt").exists()  # a run that never reached its first checkpoint starts again
    if resuming:
        stored = TrainConfig.stored(run)
        if cfg is not None:
            if cfg.model != stored.model:
                raise SeqImputeError(f"{run} holds a {stored.model} run, not {cfg.model}; choose another --run folder.")
            for k in RUNTIME_KEYS:
                v = getattr(cfg, k)
                if k not in BUDGET_KEYS and v is not None and v != getattr(TrainConfig, k, None):
                    setattr(stored, k, v)
            if any(getattr(cfg, k) is not None for k in BUDGET_KEYS):
                stored.updates, stored.minutes = cfg.updates, cfg.minutes
        cfg = stored
    elif cfg is None:
        raise SeqImputeError(f"{run} is not a run folder (no last.pt); start a run with --model, --data and --mask.")
    cfg.check()
    if not cfg.updates and not cfg.minutes:
        cfg.minutes = DEFAULT_MINUTES
    return cfg, resuming


def _data(cfg: TrainConfig):
    """The training and validation splits and the mask sampler, refused when there is nothing to learn."""
    train_set = load_dataset(cfg.data, "train", **cfg.data_options)
    valid_set = load_dataset(cfg.data, "valid", **cfg.data_options)
    if torch.isnan(train_set.x).all():
        raise SeqImputeError("the training data hold no value (every entry is NaN); give data with values.")
    sampler = mask_sampler(cfg.mask)
    trial = sampler.sample(256, train_set.image_shape, generator=torch.Generator().manual_seed(0), dim=train_set.dim)
    if not (~trial).any():
        raise SeqImputeError(f"mask {cfg.mask!r} leaves nothing missing, so there is nothing to learn; choose a mask "
                             f"that hides values, e.g. mcar:0.8.")
    return train_set, valid_set, sampler


def _write_config(run: Path, cfg: TrainConfig, model: Policy, data, **more) -> None:
    runs.write_config(run, {"train": dataclasses.asdict(cfg), "model": {"name": cfg.model, **model.config()},
                            "data": {"name": data.name, "image_shape": list(data.image_shape or []), "dim": data.dim,
                                     "note": data.note}, **more})


def _fit_baseline(run: Path, cfg: TrainConfig, model: Policy, train_set, valid_set) -> dict:
    """A baseline fits in one pass over the training set, then tunes on the validation split (e.g. kNN's k)."""
    model.fit(train_set)
    model.tune(valid_set, cfg.mask, evaluate)  # the chosen settings are in config()
    _write_config(run, cfg, model, train_set, runtime={"threads": torch.get_num_threads(), "cpu": cpu_name()})
    runs.save_checkpoint(run / "last.pt", cfg.model, model, step=0, elapsed=0.0, best=math.nan, images=0)
    return {"run": str(run), "step": 0, "elapsed_s": 0.0, "best_valid_bound_paper_units": math.nan}


def _fresh_window() -> dict:  # running sums of the logged window
    return {"loss": 0.0, "nll": 0.0, "kl_qp": 0.0, "kl_pq": 0.0, "n": 0, "skipped": 0}


class _Trainer:
    """One call of `train` around the shared loop (seqimpute.loop): the run's state (optimiser, noise stream,
    step, best validation score, restores), and what follows each update: fault handling with restores, the
    metrics log, validation and checkpoints. Rank 0 alone writes."""

    def __init__(self, run: Path, cfg: TrainConfig, model: Policy, family: str, device, ck: dict | None,
                 world: int, rank: int, session_updates: int | None, valid_set, precision: str):
        self.run, self.cfg, self.model, self.world, self.main = run, cfg, model, world, rank == 0
        self.valid_set = valid_set
        self.opt = Optimizer(model.parameters(), cfg.optimizer, family, model.l2, cfg.lr, cfg.warmup)
        self.gen = torch.Generator(device=device).manual_seed(cfg.seed)
        self.step, elapsed, self.best, self.restores = 0, 0.0, math.inf, 0
        self.cpu_before = 0.0  # this run's CPU seconds in earlier sessions (None: a checkpoint from before it was recorded)
        if ck is not None:
            elapsed = self._resume(ck)
        agree = (lambda v: distributed.broadcast_float(v, world)) if cfg.minutes else (lambda v: v)
        self.budget = Budget(cfg.updates, cfg.minutes, CLOCKS[cfg.clock], session_updates, elapsed=elapsed,
                             agree=agree)
        self.bar, self.B, self.cpu_t0 = None, 0, 0.0
        self.last_valid = self.best if math.isfinite(self.best) else float("nan")
        self.lr, self.acc = 0.0, _fresh_window()
        self.fault_run, self.faults = 0, collections.deque()  # consecutive faults; steps of those in the FAULT_WINDOW
        self.t_log, self.steps_log = 0.0, 0
        self.rate = [0, 0.0]  # images and seconds of the logged windows (validation not charged): this call's rate
        self.precision = precision  # the products' precision, which validation uses too

    def start(self) -> None:
        self.model.train()
        self.t_log, self.cpu_t0 = time.perf_counter(), time.process_time()

    def validate(self) -> float:
        cfg = self.cfg
        return evaluate(self.model, self.valid_set, cfg.mask, samples=1, n=cfg.valid_size, batch=500,
                        seed=cfg.seed, precision=self.precision)["score_paper_units"]

    def _resume(self, ck: dict) -> float:
        """The training state of checkpoint ``ck``; returns its elapsed seconds."""
        self.cpu_before = ck.get("cpu_s")
        try:
            self.opt.load_state_dict(ck["optimizer"])
            self.gen.set_state(ck["rng"])
            self.step, elapsed, self.best = int(ck["step"]), float(ck["elapsed"]), float(ck["best"])
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise SeqImputeError(f"{self.run}/last.pt lacks a usable training state ({type(e).__name__}: {e}); it "
                                 f"cannot be resumed: start a new run folder.") from None
        self.opt.lr_scale, self.restores = float(ck.get("lr_scale", 1.0)), int(ck.get("restores", 0))
        return elapsed

    def prepare_folder(self, resuming: bool, train_set, quiet: bool) -> None:
        """A resumed run continues from its last complete checkpoint: temporary files of a killed write go, and
        metrics logged after the checkpoint's step are dropped (they are logged again, once, as the run replays)."""
        run, step, precision = self.run, self.step, self.precision
        runs.remove_partials(run)
        runs.truncate_metrics(run, step)
        before = runs.read_config(run).get("runtime", {}).get("precision") if resuming else None
        if before is not None and before != precision:
            runs.append_metrics(run, {"step": step, "event": "precision_changed", "from": before, "to": precision})
            if not quiet:
                print(f"note: {run} trained with {before} products until update {step}; it continues with "
                      f"{precision} (the parameters and the optimiser state are float32 at either)")
        _write_config(run, self.cfg, self.model, train_set,
                      runtime={"precision": precision, "threads": torch.get_num_threads(), "cpu": cpu_name()})

    def save(self, which: str) -> None:
        cpu_s = None if self.cpu_before is None else self.cpu_before + time.process_time() - self.cpu_t0
        runs.save_checkpoint(self.run / f"{which}.pt", self.cfg.model, self.model, optimizer=self.opt.state_dict(),
                             rng=self.gen.get_state(), step=self.step, elapsed=self.budget.elapsed, best=self.best,
                             lr_scale=self.opt.lr_scale, restores=self.restores, images=self.step * self.B, cpu_s=cpu_s)

    def fault(self, step: int, res: StepResult) -> int | None:
        """A skipped update, logged. This many in a row, or within the last FAULT_WINDOW updates, restore the last
        checkpoint with the learning rate halved (returns the step to continue from); too many restores end the
        run with a SeqImputeError."""
        self.acc["skipped"] += 1
        self.fault_run += 1
        self.faults.append(step)
        while self.faults and self.faults[0] <= step - FAULT_WINDOW:
            self.faults.popleft()
        if self.main:
            runs.append_metrics(self.run, {"step": step + 1, "event": "skipped_update",
                                           "cause": f"non-finite {res.fault}"})
        if self.fault_run < MAX_CONSECUTIVE_FAULTS and len(self.faults) < MAX_FAULTS_IN_WINDOW:
            return None
        self.restores += 1
        if self.restores > MAX_RESTORES:
            if self.bar is not None:
                self.bar.close()
            raise SeqImputeError(
                f"training diverged: non-finite losses or gradients kept coming back after {MAX_RESTORES} restores "
                f"of the last checkpoint with the learning rate halved each time (now x{self.opt.lr_scale:g}); lower "
                f"the learning rate (--set lr=...) or check the data for extreme values. {self.run / 'last.pt'} "
                f"holds the last good state.")
        self.step, ck_best = _restore(self.run, self.model, self.opt, self.gen,
                                      self.cfg.seed + 1_000_003 * self.restores, step)
        self.best = self.best if ck_best is None else ck_best
        self.fault_run, self.acc = 0, _fresh_window()
        self.faults.clear()
        if self.main:
            runs.truncate_metrics(self.run, self.step)
            runs.append_metrics(self.run, {"step": self.step, "event": "restored", "lr_scale": self.opt.lr_scale,
                                           "restores": self.restores})
            self.save("last")  # the halved rate and the fresh noise stream survive a crash from here on
        self.t_log, self.steps_log = time.perf_counter(), 0
        return self.step

    def after(self, step: int, res: StepResult) -> None:
        """After update ``step``: its terms into the logged window; on rank 0, the log, validation and checkpoints
        at their intervals and at the end."""
        self.step = step
        self.steps_log += 1
        if res.lr is not None:
            self.lr = res.lr
        if res.ok:
            self.acc["loss"] += res.loss
            for k in ("nll", "kl_qp", "kl_pq"):
                self.acc[k] += res.stats[k]
            self.acc["n"] += 1
            self.fault_run = 0
        if not self.main:
            return
        cfg, last = self.cfg, self.budget.done(step)
        if step % cfg.log_every == 0 or last:
            self._log(step)
        if step % cfg.valid_every == 0 or last:
            self.last_valid = self.validate()
            runs.append_metrics(self.run, {"step": step, "images": step * self.B,
                                           "valid_bound_paper_units": self.last_valid,
                                           "elapsed_s": self.budget.elapsed})
            if self.last_valid < self.best:
                self.best = self.last_valid
                self.save("best")
            self.t_log = time.perf_counter()  # validation time is not charged to the training rate
        if step % cfg.ckpt_every == 0 or last:
            self.save("last")

    def _log(self, step: int) -> None:
        now, acc, B = time.perf_counter(), self.acc, self.B
        n = max(acc["n"], 1)
        rec = {"step": step, "images": step * B, "loss": float(acc["loss"]) / n, "nll": float(acc["nll"]) / n,
               "kl_qp": float(acc["kl_qp"]) / n, "kl_pq": float(acc["kl_pq"]) / n,
               "lr": self.lr if acc["n"] else 0.0, "skipped": acc["skipped"],
               "images_per_s": self.steps_log * B / max(now - self.t_log, 1e-9), "elapsed_s": self.budget.elapsed}
        runs.append_metrics(self.run, rec)
        self.rate[0], self.rate[1] = self.rate[0] + self.steps_log * B, self.rate[1] + now - self.t_log
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{rec['loss']:.1f}", valid=f"{self.last_valid:.1f}",
                                 img_s=f"{rec['images_per_s']:.0f}", refresh=False)
        self.acc = _fresh_window()
        self.t_log, self.steps_log = now, 0

    def finish(self) -> dict:
        if self.bar is not None:
            self.bar.close()
        distributed.cleanup(self.world)
        cfg, by = self.cfg, self.budget.stopped_by(self.step)
        budget = {"updates": cfg.updates, "minutes": cfg.minutes, "clock": cfg.clock}
        out = {"run": str(self.run), "step": self.step, "elapsed_s": self.budget.elapsed,
               "best_valid_bound_paper_units": self.best, "stopped_by": by, "budget": budget}
        if not self.main:
            return out
        if by in BUDGET_KEYS:  # not a session's pause, which a resume continues as if it never happened
            runs.append_metrics(self.run, {"step": self.step, "event": "stopped", "by": by, **budget,
                                           "elapsed_s": self.budget.elapsed})
        if not (self.run / "last.pt").exists():
            self.save("last")
        if type(self.model).tune is not Policy.tune:
            _tune_checkpoints(self.run, self.cfg, self.valid_set)
        return {**out, "images_per_s": self.rate[0] / self.rate[1] if self.rate[1] else math.nan,
                "precision": self.precision}
