"""The one training loop for every trainable model: in-memory batches, a fresh mask per batch, guided rollouts,
periodic validation on fixed masks, atomic last/best checkpoints, exact resume, a wall-clock or update budget."""

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
from .models.policy import Policy, WholeStep, noise_shard
from .models.registry import build_model, model_from_config, spec
from .optim import Optimizer
from .precision import PRECISIONS, matmul_precision, resolve

DEFAULT_MINUTES = 30.0
# Numerical faults (a NaN/inf loss or gradient) skip their update. This many in a row, or this many within the last
# FAULT_WINDOW updates, restore the last checkpoint with the learning rate halved; after MAX_RESTORES restores the
# run stops with a SeqImputeError (last.pt stays the last good state).
MAX_CONSECUTIVE_FAULTS = 5
MAX_FAULTS_IN_WINDOW = 20
FAULT_WINDOW = 100
MAX_RESTORES = 3
# What a --minutes budget counts. "cpu": the process's CPU time over all its threads, so on a shared machine a
# budget buys the same work however busy the other cores are (with one thread it is the single core's time).
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


# Settings a resumed run may change (its totals and how it runs); every other setting defines the run.
# The products' precision is one of them: the parameters, Adam's state and the checkpoints are float32 at either,
# so a run resumed at another precision continues from the same state (the change is logged in metrics.jsonl).
RUNTIME_KEYS = ("updates", "minutes", "device", "valid_every", "ckpt_every", "log_every", "compile", "precision")


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
    compile: bool = False  # run the training step's loss as one torch.compile graph (models.policy.WholeStep)
    # the matrix products': "auto" (bf16 where the device runs them fast), "bf16" or "fp32"; None: "auto" (and, on
    # resume, "not given": the run keeps its own)
    precision: str | None = None

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
        for name in ("model", "data", "mask", "device", "optimizer"):
            if not isinstance(getattr(self, name), str):
                raise SeqImputeError(f"{name} must be a string, got {getattr(self, name)!r}.")


def _progress(step: int, elapsed: float, cfg: TrainConfig) -> float:
    p = 0.0
    if cfg.updates:
        p = max(p, step / cfg.updates)
    if cfg.minutes:
        p = max(p, elapsed / (cfg.minutes * 60))
    return p


class BatchOrder:
    """Epoch-wise shuffles derived from (seed, epoch) alone, so batch i is the same whether or not the run resumed."""

    def __init__(self, n: int, batch: int, seed: int):
        self.n, self.batch, self.seed = n, min(batch, n), seed
        self.per_epoch = max(n // self.batch, 1)
        self._epoch, self._perm = -1, None

    def indices(self, step: int) -> torch.Tensor:
        epoch, pos = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._epoch, self._perm = epoch, torch.randperm(self.n, generator=g)
        return self._perm[pos * self.batch : (pos + 1) * self.batch]


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
        tuned = model_from_config(cfg.model, json.loads(ck["model_config"]))
        tuned.load_state_dict(ck["model"])
        tuned.to(cfg.device).tune(valid_set, cfg.mask)
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
    stored config, where ``cfg`` may raise ``updates``/``minutes`` (the run's totals) and change runtime settings.
    ``session_updates`` stops this call after that many updates (the run itself is unchanged: resume continues
    exactly as if never stopped). Subnormal floats are flushed to zero meanwhile (seqimpute.numerics). Returns a
    summary dict."""
    with subnormals_flushed():
        return _train(Path(run), cfg, progress_bar, quiet, session_updates)


def _train(run: Path, cfg: TrainConfig | None, progress_bar: bool, quiet: bool, session_updates: int | None) -> dict:
    resuming = (run / "last.pt").exists()
    if resuming:
        stored = TrainConfig.stored(run)
        if cfg is not None:
            if cfg.model != stored.model:
                raise SeqImputeError(f"{run} holds a {stored.model} run, not {cfg.model}; choose another --run folder.")
            for k in RUNTIME_KEYS:
                v = getattr(cfg, k)
                if v is not None and v != getattr(TrainConfig, k, None):
                    setattr(stored, k, v)
        cfg = stored
    elif cfg is None:
        raise SeqImputeError(f"{run} is not a run folder (no last.pt); start a run with --model, --data and --mask.")
    elif (run / "config.toml").exists() and not (run / "last.pt").exists():
        pass  # a run that never reached its first checkpoint starts again
    cfg.check()
    if not cfg.updates and not cfg.minutes:
        cfg.minutes = DEFAULT_MINUTES
    precision = resolve(cfg.precision or "auto", cfg.device)
    ms = spec(cfg.model)
    check_mask_allowed(getattr(ms.cls, "allowed_masks", None), cfg.model, cfg.mask)  # generators: 'full' only
    if torch.device(cfg.device).type == "cuda" and not torch.cuda.is_available():
        raise SeqImputeError("--device cuda was asked for but no CUDA GPU is available; use --device cpu.")
    world, rank, device = distributed.setup(cfg.device)
    main = rank == 0

    train_set = load_dataset(cfg.data, "train", **cfg.data_options)
    valid_set = load_dataset(cfg.data, "valid", **cfg.data_options)
    if torch.isnan(train_set.x).any():
        raise SeqImputeError("the training data hold NaN; the policies train on complete data "
                             "(use seqimpute.SequentialImputer for data with holes).")
    sampler = mask_sampler(cfg.mask)
    trial = sampler.sample(256, train_set.image_shape, generator=torch.Generator().manual_seed(0), dim=train_set.dim)
    if not (~trial).any():
        raise SeqImputeError(f"mask {cfg.mask!r} leaves nothing missing, so there is nothing to learn; choose a mask "
                             f"that hides values, e.g. mcar:0.8.")

    if resuming:
        model, _, ck = runs.load_run_model(run, "last")
    else:
        torch.manual_seed(cfg.seed)  # parameter init
        model = build_model(cfg.model, train_set.dim, cfg.sizes, cfg.model_options)
        ck = None
    if not model.trainable:  # baselines: fitting is a pass over the training set, no updates
        model.fit(train_set)
        model.tune(valid_set, cfg.mask)  # settings chosen on the validation split (e.g. kNN's k), in config()
        runs.write_config(run, {"train": dataclasses.asdict(cfg), "model": {"name": cfg.model, **model.config()},
                                "data": {"name": train_set.name, "image_shape": list(train_set.image_shape or []),
                                         "dim": train_set.dim, "note": train_set.note}})
        runs.atomic_save({"format": runs.CHECKPOINT_FORMAT, "version": runs.CHECKPOINT_VERSION,
                          "model_name": cfg.model, "model_config": json.dumps(model.config()),
                          "model": model.state_dict(), "step": 0, "elapsed": 0.0, "best": math.nan}, run / "last.pt")
        return {"run": str(run), "step": 0, "elapsed_s": 0.0, "best_valid_bound_paper_units": math.nan}
    if model.dim != train_set.dim:
        raise SeqImputeError(f"{run} was trained on {model.dim} values per example, the data have {train_set.dim}.")
    model.to(device)
    if model.train_mask:  # a model that trains on its own mask whatever the run's (a VAE: 'full')
        sampler = mask_sampler(model.train_mask)
    opt = Optimizer(model.parameters(), cfg.optimizer, ms.family, model.l2, cfg.lr, cfg.warmup)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    step, elapsed, best, restores = 0, 0.0, math.inf, 0
    if ck is not None:
        try:
            opt.load_state_dict(ck["optimizer"])
            gen.set_state(ck["rng"])
            step, elapsed, best = int(ck["step"]), float(ck["elapsed"]), float(ck["best"])
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise SeqImputeError(f"{run}/last.pt lacks a usable training state ({type(e).__name__}: {e}); it cannot "
                                 f"be resumed: start a new run folder.") from None
        opt.lr_scale, restores = float(ck.get("lr_scale", 1.0)), int(ck.get("restores", 0))
    if main:
        # A resumed run continues from its last complete checkpoint: temporary files of a killed write go, and
        # metrics logged after the checkpoint's step are dropped (they are logged again, once, as the run replays).
        runs.remove_partials(run)
        runs.truncate_metrics(run, step)
        before = runs.read_config(run).get("runtime", {}).get("precision") if resuming else None
        if before is not None and before != precision:
            runs.append_metrics(run, {"step": step, "event": "precision_changed", "from": before, "to": precision})
            if not quiet:
                print(f"note: {run} trained with {before} products until update {step}; it continues with "
                      f"{precision} (the parameters and the optimiser state are float32 at either)")
        runs.write_config(run, {"train": dataclasses.asdict(cfg), "model": {"name": cfg.model, **model.config()},
                                "data": {"name": train_set.name, "image_shape": list(train_set.image_shape or []),
                                         "dim": train_set.dim, "note": train_set.note},
                                "runtime": {"precision": precision}})

    x_train = train_set.x.to(device)
    order = BatchOrder(len(x_train), cfg.batch, cfg.seed)
    B = order.batch
    rows = distributed.local_rows(B, world, rank)
    objective = distributed.wrap(model, world, device)
    if cfg.compile:
        objective = WholeStep(objective)

    def save(which: str):
        runs.atomic_save({"format": runs.CHECKPOINT_FORMAT, "version": runs.CHECKPOINT_VERSION,
                          "model_name": cfg.model, "model_config": json.dumps(model.config()),
                          "model": model.state_dict(), "optimizer": opt.state_dict(), "rng": gen.get_state(),
                          "step": step, "elapsed": elapsed, "best": best, "lr_scale": opt.lr_scale,
                          "restores": restores}, run / f"{which}.pt")

    def validate() -> float:
        res = evaluate(model, valid_set, cfg.mask, samples=1, n=cfg.valid_size, batch=500, seed=cfg.seed,
                       precision=precision)
        return res["score_paper_units"]

    start_step = step

    def done() -> bool:
        return (cfg.updates is not None and step >= cfg.updates) or \
               (cfg.minutes is not None and elapsed >= cfg.minutes * 60) or \
               (session_updates is not None and step - start_step >= session_updates)

    bar = None
    if progress_bar and not quiet and main:
        from tqdm import tqdm

        bar = tqdm(total=cfg.updates, initial=step, unit="upd", desc=cfg.model, mininterval=1.0, dynamic_ncols=True)
    last_valid = best if math.isfinite(best) else float("nan")
    lr = 0.0

    def fresh_acc() -> dict:  # running sums of the logged window
        return {"loss": 0.0, "nll": 0.0, "kl_qp": 0.0, "kl_pq": 0.0, "n": 0, "skipped": 0}

    acc = fresh_acc()
    fault_run, faults = 0, collections.deque()  # consecutive faults; steps of the faults in the last FAULT_WINDOW
    t_log, steps_log = time.perf_counter(), 0
    rate = [0, 0.0]  # images and seconds of the logged windows (validation not charged): this call's training rate
    model.train()
    clock = CLOCKS[cfg.clock]
    t0 = clock()
    base_elapsed = elapsed
    while not done():
        idx = order.indices(step)[rows].to(device)
        x = x_train[idx]
        # masks (and, inside the rollout, noise) are drawn for the global batch on every rank: see distributed.py
        observed = sampler.sample(B, train_set.image_shape, generator=gen, dim=train_set.dim)[rows]
        with noise_shard(world, rank), matmul_precision(precision):
            loss, stats = objective(x, observed, gen)
        opt.zero_grad()
        finite = bool(torch.isfinite(loss))
        cause = "loss"
        if world > 1:  # every rank must join the gradient all-reduce; a fault anywhere skips the update everywhere
            loss.backward()
            finite = all(bool(torch.isfinite(p.grad).all()) for p in model.parameters() if p.grad is not None)
        elif finite:
            loss.backward()
        if finite:
            lr = opt.step(step, _progress(step, elapsed, cfg))
            finite, cause = not opt.skipped, "gradient"  # the optimiser skips a NaN/inf gradient
        if finite:
            acc["loss"] += loss.detach()
            for k in ("nll", "kl_qp", "kl_pq"):
                acc[k] += stats[k]
            acc["n"] += 1
            fault_run = 0
        else:  # a numerical fault: skip the update rather than poison the parameters
            acc["skipped"] += 1
            fault_run += 1
            faults.append(step)
            while faults and faults[0] <= step - FAULT_WINDOW:
                faults.popleft()
            if main:
                runs.append_metrics(run, {"step": step + 1, "event": "skipped_update", "cause": f"non-finite {cause}"})
            if fault_run >= MAX_CONSECUTIVE_FAULTS or len(faults) >= MAX_FAULTS_IN_WINDOW:
                restores += 1
                if restores > MAX_RESTORES:
                    if bar is not None:
                        bar.close()
                    raise SeqImputeError(
                        f"training diverged: non-finite losses or gradients kept coming back after {MAX_RESTORES} "
                        f"restores of the last checkpoint with the learning rate halved each time (now x"
                        f"{opt.lr_scale:g}); lower the learning rate (--set lr=...) or check the data for extreme "
                        f"values. {run / 'last.pt'} holds the last good state.")
                step, ck_best = _restore(run, model, opt, gen, cfg.seed + 1_000_003 * restores, step)
                best = best if ck_best is None else ck_best
                fault_run, acc = 0, fresh_acc()
                faults.clear()
                if main:
                    runs.truncate_metrics(run, step)
                    runs.append_metrics(run, {"step": step, "event": "restored", "lr_scale": opt.lr_scale,
                                              "restores": restores})
                    save("last")  # the halved rate and the fresh noise stream survive a crash from here on
                t_log, steps_log = time.perf_counter(), 0
                continue
        step += 1
        steps_log += 1
        elapsed = distributed.broadcast_float(base_elapsed + clock() - t0, world) if cfg.minutes \
            else base_elapsed + clock() - t0
        if bar is not None:
            bar.update(1)
        if not main:
            continue
        if step % cfg.log_every == 0 or done():
            now = time.perf_counter()
            n = max(acc["n"], 1)
            rec = {"step": step, "images": step * B, "loss": float(acc["loss"]) / n, "nll": float(acc["nll"]) / n,
                   "kl_qp": float(acc["kl_qp"]) / n, "kl_pq": float(acc["kl_pq"]) / n, "lr": lr if acc["n"] else 0.0,
                   "skipped": acc["skipped"], "images_per_s": steps_log * B / max(now - t_log, 1e-9),
                   "elapsed_s": elapsed}
            runs.append_metrics(run, rec)
            rate[0], rate[1] = rate[0] + steps_log * B, rate[1] + now - t_log
            if bar is not None:
                bar.set_postfix(loss=f"{rec['loss']:.1f}", valid=f"{last_valid:.1f}",
                                img_s=f"{rec['images_per_s']:.0f}", refresh=False)
            acc = fresh_acc()
            t_log, steps_log = now, 0
        if step % cfg.valid_every == 0 or done():
            last_valid = validate()
            runs.append_metrics(run, {"step": step, "images": step * B, "valid_bound_paper_units": last_valid,
                                      "elapsed_s": elapsed})
            if last_valid < best:
                best = last_valid
                save("best")
            t_log = time.perf_counter()  # validation time is not charged to the training rate
        if step % cfg.ckpt_every == 0 or done():
            save("last")
    if bar is not None:
        bar.close()
    distributed.cleanup(world)
    if not main:
        return {"run": str(run), "step": step, "elapsed_s": elapsed, "best_valid_bound_paper_units": best}
    if not (run / "last.pt").exists():
        save("last")
    if type(model).tune is not Policy.tune:
        _tune_checkpoints(run, cfg, valid_set)
    return {"run": str(run), "step": step, "elapsed_s": elapsed, "best_valid_bound_paper_units": best,
            "images_per_s": rate[0] / rate[1] if rate[1] else math.nan, "precision": precision}
