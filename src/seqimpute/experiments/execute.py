"""How `seqimpute reproduce` runs its plan: each run's state on disk, training (serially or in a pool of worker
processes), scoring runs at cells with a per-run cache, and status.json, the record of every invocation."""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import datetime
import json
import multiprocessing
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from .. import runs as runs_mod
from ..data.sources import load_dataset
from ..files import atomic_write
from ..models.policy import Policy
from ..numerics import flush_subnormals
from ..threads import usable_cores
from .claims import ClaimsPlan
from .plan import Cell, Plan, RunPlan, trainable


@dataclass
class Log:
    """Progress lines of a reproduction on stdout (none when quiet); travels to the worker processes."""
    prefix: str
    quiet: bool

    def __call__(self, msg: str) -> None:
        if not self.quiet:
            print(f"[{self.prefix}] {msg}", flush=True)


def run_state(plan: RunPlan) -> dict:
    """A run's state on disk (checkpoint, step, training time, finished or not); kept in ``plan.state``."""
    last = plan.path / "last.pt"
    cfg = plan.cfg
    state = {"exists": last.exists(), "step": 0, "elapsed_s": 0.0, "complete": False,
             "budget": {"updates": cfg.updates, "minutes": cfg.minutes} if trainable(plan.model)
             else "none (fitted, not trained)"}
    if last.exists():
        from ..train import TrainConfig, check_same_run

        check_same_run(plan.path, TrainConfig.stored(plan.path), cfg)
        ck = runs_mod.load_checkpoint(last)
        state["step"], state["elapsed_s"] = int(ck["step"]), float(ck["elapsed"])
        runtime = runs_mod.read_config(plan.path).get("runtime", {})  # what the run trained with, and where
        state["precision"], state["cpu"] = runtime.get("precision"), runtime.get("cpu")
        state["complete"] = (not trainable(plan.model)
                             or (cfg.updates is not None and state["step"] >= cfg.updates)
                             or (cfg.minutes is not None and state["elapsed_s"] >= cfg.minutes * 60))
    plan.state = state
    return state


def train_command(plan: RunPlan) -> str:
    """The `seqimpute train` command that trains (or resumes) a run by hand."""
    c = plan.cfg
    cmd = ["seqimpute", "train", "--model", c.model, "--data", c.data]
    for k, v in c.data_options.items():
        cmd += {"path": ["--data-path", str(v)], "size": ["--size", str(v)],
                "scale": ["--scale", str(v)]}.get(k, ["--data-opt", f"{k}={v}"])
    cmd += ["--mask", c.mask, "--run", str(plan.path)]
    if not trainable(c.model):  # fitted from the training split, no updates
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
        cmd += ["--precision", c.precision]
    return shlex.join(cmd)


def workers(jobs: int):
    """``jobs`` fresh worker processes and the torch threads each gets: on a small CPU, separate single-threaded
    runs use the cores better than one run with several threads (benchmarks/RESULTS.md)."""
    threads = max(1, usable_cores() // jobs)
    return cf.ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")), threads


class RunQueue:
    """Trains (or resumes) the unfinished runs of a plan, ``jobs`` at a time; finished runs are skipped, and with
    ``report_only`` nothing is trained."""

    def __init__(self, jobs: int, report_only: bool, quiet: bool, log: Callable[[str], None]):
        self.jobs, self.report_only, self.quiet, self.log = jobs, report_only, quiet, log

    def train_all(self, plans: list[RunPlan]) -> None:
        todo = []
        for i, plan in enumerate(plans, 1):
            st = run_state(plan)
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
        self._train_in_pool(todo, len(plans))

    def _train_in_pool(self, todo: list[tuple], n: int) -> None:
        pool, threads = workers(self.jobs)
        with pool:
            running = {}
            for i, plan, existed in todo:
                self._announce(i, n, plan, existed, f" [queued: {self.jobs} at a time, {threads} "
                                                    f"thread{'s' * (threads > 1)} each]")
                running[pool.submit(_train_one, plan.path, plan.cfg, threads)] = (plan, existed)
            for fut in cf.as_completed(running):
                plan, existed = running[fut]
                wall = fut.result()  # a failed run stops the reproduction with its own error
                self._trained(plan, existed, wall)
                self.log(f"done {plan.id}: {plan.state['step']} updates, {plan.state['elapsed_s'] / 60:.1f} min")

    def _announce(self, i, n, plan, existed, how=""):
        b = plan.state["budget"]
        budget = ", ".join(f"{v:g} {k}" for k, v in b.items() if v is not None) if isinstance(b, dict) else b
        self.log(f"({i}/{n}) {'resuming' if existed else 'training'} {plan.id} on {plan.cfg.data}, mask "
                 f"{plan.cfg.mask} ({budget}){how}")

    @staticmethod
    def _trained(plan, existed, wall_s):
        plan.wall_s = wall_s
        plan.action = "resumed" if existed else "trained"
        run_state(plan)


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


class Scorer:
    """The evaluator's scores of runs at cells, one loaded model at a time, cached in each run folder per
    checkpoint and setting (``reproduce_eval.json``). By default the runs' best checkpoints on the plan's test
    images and rollouts; ``checkpoint``, ``n`` and ``samples`` choose others."""

    def __init__(self, plan: Plan, jobs: int, log: Callable[[str], None], checkpoint: str = "best",
                 n: int | None = None, samples: int | None = None, per_image: bool = False):
        self.plan, self.jobs, self.log = plan, jobs, log
        self.checkpoint, self.per_image = checkpoint, per_image
        self.n = n if n is not None else plan.eval["n"]
        self.samples = samples or plan.eval["samples"]
        self._loaded = None, None

    def __getstate__(self):  # no model travels to the workers
        return {**self.__dict__, "_loaded": (None, None)}

    def release(self) -> None:
        """Free the loaded model (template banks are large)."""
        self._loaded = None, None

    def _load(self, plan: RunPlan):
        if self._loaded[0] != plan.id:
            self.release()  # free the previous model before loading
            model, _, _ = runs_mod.load_run_model(plan.path, self.checkpoint, device=self.plan.device)
            self._loaded = plan.id, model
        return self._loaded[1]

    def score(self, plan: RunPlan, cell: Cell) -> dict | None:
        """The evaluator's scores of a run at a cell (cached in the run folder per checkpoint and setting)."""
        from ..evaluate import evaluate

        if not plan.state.get("exists"):
            return None
        d = self.plan.data_for(cell.role)
        mask = self.plan.mask_for(cell.role, cell.mask)
        n, K = self.n, self.samples
        key = json.dumps([mask, "test", n, K, plan.state["step"], round(plan.state["elapsed_s"], 3), self.checkpoint]
                         + (["per_image"] if self.per_image else []))
        cache_path = plan.path / "reproduce_eval.json"
        cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
        if key in cache:
            return cache[key]
        model = self._load(plan)
        tuned = {}
        if type(model).tune is not Policy.tune:  # VAE-imp's step, kNN's k: chosen on validation under this mask
            tuned = model.tune(load_dataset(d.name, "valid", **d.options), mask, evaluate)
        self.log(f"scoring {plan.id} at {cell.label} ({mask})")
        res = evaluate(model, load_dataset(d.name, "test", **d.options), mask, samples=K, n=n, seed=0,
                       per_image=self.per_image)
        res["tuned_on_valid"] = {k: v for k, v in tuned.items() if k in ("impute_step", "k")}
        cache[key] = res
        atomic_write(cache_path, json.dumps(cache, indent=1).encode())
        return res

    def score_all(self, todo: list[tuple]) -> dict:
        """Scores of (experiment, index, cell, model, plan) items, keyed by (experiment, index). With --jobs > 1
        each run's cells are scored in a worker process (its model loaded once there; the cache is per run)."""
        by_plan: dict[str, list] = {}
        for e, i, c, m, plan in todo:
            by_plan.setdefault(plan.id, []).append((e, i, c, plan))
        if self.jobs == 1 or len(by_plan) < 2:
            return {(e, i): self.score(plan, c) for e, i, c, m, plan in todo}
        self.release()
        results = {}
        pool, threads = workers(self.jobs)
        with pool:
            futs = {pool.submit(_score_in_worker, self, items[0][3], [it[2] for it in items], threads): items
                    for items in by_plan.values()}
            for fut in cf.as_completed(futs):
                for (e, i, _, _), res in zip(futs[fut], fut.result()):
                    results[(e, i)] = res
        return results


def _score_in_worker(scorer: Scorer, plan: RunPlan, cells: list, threads: int) -> list:
    """A worker's share of the scoring: one run at each of its cells."""
    flush_subnormals()
    torch.set_num_threads(threads)
    return [scorer.score(plan, c) for c in cells]


class Status:
    """status.json in the results folder: which runs are complete, their training time, the exact commands, and
    every invocation (appended to what an earlier invocation wrote)."""

    def __init__(self, plan: Plan, out_dir: Path, command: str | None, experiments: list[str]):
        self.plan, self.path, self.experiments = plan, out_dir / "status.json", experiments
        self.t_start = time.perf_counter()
        started = datetime.datetime.now().isoformat(timespec="seconds")
        out_dir.mkdir(parents=True, exist_ok=True)
        status = json.loads(self.path.read_text()) if self.path.exists() else {}
        status.update({"preset": plan.name, "smoke": plan.smoke, "label": plan.label,
                       "data_override": plan.override, "runs_dir": str(plan.runs_dir)})
        status.setdefault("runs", {})
        status.setdefault("experiments", {})
        status.setdefault("invocations", [])
        status["invocations"].append({"command": command, "experiments": experiments, "started": started,
                                      "finished": None, "wall_s": None})
        self.status = status

    def write(self, plans: list[RunPlan], finished: bool, written: dict | None = None) -> None:
        status = self.status
        for p in plans:
            prev = status["runs"].get(p.id, {})
            status["runs"][p.id] = {
                "path": str(p.path), "model": p.model, "data": p.cfg.data, "mask": p.cfg.mask,
                "trained_on": p.trained_on, "budget": p.state.get("budget"), "step": p.state.get("step", 0),
                "training_minutes": round(p.state.get("elapsed_s", 0.0) / 60, 3),
                "precision": p.state.get("precision"), "cpu": p.state.get("cpu"),
                "complete": bool(p.state.get("complete")), "last_action": p.action or prev.get("last_action", ""),
                "this_invocation_wall_s": round(p.wall_s, 2), "command": train_command(p)}
        for e in self.experiments:
            mine = ClaimsPlan(self.plan).runs() if e == "claims" else self.plan.plans_of(e)
            files = (written or {}).get(e) or status["experiments"].get(e, {}).get("files", [])
            status["experiments"][e] = {"complete": finished and all(p.state.get("complete") for p in mine),
                                        "runs": [p.id for p in mine], "files": files}
        inv = status["invocations"][-1]
        if finished:
            inv["finished"] = datetime.datetime.now().isoformat(timespec="seconds")
        inv["wall_s"] = round(time.perf_counter() - self.t_start, 2)
        atomic_write(self.path, json.dumps(status, indent=2).encode())
