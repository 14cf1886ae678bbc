"""Fine-tuning of the guide q alone on the test set (docs/PAPER.md §6 (extended DRAW); the paper's 85.5 -> 84.8 nats).

The bound -log p(x) <= E_q[log q - log p(x, z)] holds for any q, so q may be fitted to the very images it scores:
every parameter of the generative model p stays frozen (bit-identical), only ``model.guide_parameters()`` train.
The authors' settings: batches of 250 test images, lr 1e-4 x 0.95 every 2000 updates, beta1 0.9, beta2 0.99 (their
Adam quirks as the "lstm" family: eps 1e-6, per-tensor gradient clipping at 10, L2 as weight decay), 50,000 updates
(about 11 hours on this CPU: give a budget with ``updates`` or ``minutes``).

The result goes to ``finetuned.pt`` (the checkpoint format of runs.py; best.pt and last.pt are never touched) and
``finetune.json`` (the raw and the fine-tuned bound on the same images, masks and noise), both written atomically;
the loss is logged to ``finetune.jsonl`` as `seqimpute train` logs metrics.jsonl. It trains as `seqimpute train`
does: the same loop, batch order (seqimpute.loop.BatchOrder) and products' precision (``precision``, which the
scores before and after use too). Each call starts again from the chosen checkpoint (``best`` by default).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch

from . import runs
from .data.masks import mask_sampler
from .data.sources import load_dataset
from .distributed import GuidedLoss
from .errors import SeqImputeError
from .evaluate import evaluate
from .files import atomic_write
from .loop import CLOCKS, BatchOrder, Budget, train_loop
from .models.objectives import fill_holes
from .optim import Optimizer
from .precision import matmul_precision, resolve

SETTINGS = {"lr": 1e-4, "decay": "x0.95 every 2000", "beta1": 0.9, "beta2": 0.99}  # optim.paper_finetune
LOG = "finetune.jsonl"


def finetune(run: str | Path, updates: int | None = None, minutes: float | None = None, checkpoint: str = "best",
             batch: int = 250, split: str = "test", eval_n: int | None = None, eval_samples: int = 1, seed: int = 0,
             device: str = "cpu", log_every: int = 100, progress_bar: bool = True, clock: str = "wall",
             precision: str = "auto") -> dict:
    """Fine-tune the guide of the model in run folder ``run`` on ``split`` for ``updates`` updates or ``minutes``
    (whichever ends first; ``clock``: "wall" time or this process's "cpu" time), scoring the bound before and
    after on the first ``eval_n`` images of the split with ``eval_samples`` rollouts each, every product at
    ``precision`` (seqimpute.precision). Returns the summary written to finetune.json."""
    run = Path(run)
    if not updates and not minutes:
        raise SeqImputeError("give a budget: --updates N or --minutes M (the paper's 50,000 updates take hours).")
    if batch < 1:
        raise SeqImputeError(f"--batch must be positive, got {batch}.")
    if clock not in CLOCKS:
        raise SeqImputeError(f"--clock must be 'wall' or 'cpu', not {clock!r}.")
    model, cfg, ck = runs.load_run_model(run, checkpoint, device=device)
    name = cfg["model"]["name"]
    guide = model.guide_parameters()
    if not guide:
        raise SeqImputeError(f"{name} has no separate guide to fine-tune; finetune takes a policy with a guide q "
                             f"(gpsi-*, lstm-*, draw, draw-ext-*).")
    mask = cfg["train"]["mask"]
    data = load_dataset(cfg["train"]["data"], split, **cfg["train"].get("data_options", {}))
    precision = resolve(precision, device)
    ev = dict(samples=eval_samples, n=eval_n, seed=seed, precision=precision)
    raw = evaluate(model, data, mask, **ev)

    ids = {id(p) for p in guide}
    for p in model.parameters():
        p.requires_grad_(id(p) in ids)  # p's parameters get no gradient, so nothing can move them
    opt = Optimizer(guide, "paper", "finetune", model.l2)
    budget = Budget(updates or None, minutes or None, CLOCKS[clock])
    cpu0 = time.process_time()
    (run / LOG).unlink(missing_ok=True)  # each call starts again from the checkpoint: one log per fine-tuning
    with matmul_precision(precision):
        step, skipped = _train_guide(run, model, opt, data, mask, budget, batch, seed, device, log_every,
                                     f"finetune {name}" if progress_bar else None)
    cpu_s = time.process_time() - cpu0
    for p in model.parameters():
        p.requires_grad_(True)
    tuned = evaluate(model, data, mask, **ev)
    elapsed, B = budget.elapsed, min(batch, len(data.x))

    keys = ("bound_nats_per_image", "iw_nats_per_image", "bound_paper_units", "kl_nats_per_image")
    summary = {"model": name, "checkpoint": checkpoint, "split": split, "mask": mask, "updates": step,
               "skipped": skipped, "minutes": elapsed / 60, "clock": clock, "batch": B, "images": step * B,
               "cpu_s": cpu_s, "precision": precision,
               "training": runs.training_record(run, cfg, ck),  # the training before fine-tuning
               "eval_images": raw["n_images"], "eval_samples": raw["samples"], "settings": SETTINGS,
               "raw": {k: raw[k] for k in keys if k in raw}, "finetuned": {k: tuned[k] for k in keys if k in tuned}}
    runs.save_checkpoint(run / "finetuned.pt", name, model, step=int(ck.get("step", 0)),
                         elapsed=float(ck.get("elapsed", 0.0)), best=float(ck.get("best", math.nan)),
                         images=ck.get("images"), cpu_s=ck.get("cpu_s"), finetune=json.dumps(summary))
    atomic_write(run / "finetune.json", json.dumps(summary, indent=2).encode())
    return summary


def _train_guide(run: Path, model, opt: Optimizer, data, mask: str, budget: Budget, batch: int, seed: int, device,
                 log_every: int, bar_title: str | None) -> tuple[int, int]:
    """The guide's updates on shuffled passes over ``data`` (the trainer's batch order), the loss logged to
    finetune.jsonl (kept apart from the training run's metrics.jsonl). Returns the updates made and how many of
    them were skipped (a NaN/inf)."""
    sampler = mask_sampler(model.train_mask or mask)
    x_all, known_all = fill_holes(data.x.to(device))  # data with holes: the NaN values are neither seen nor scored
    gen = torch.Generator(device=device).manual_seed(seed)
    order = BatchOrder(len(x_all), batch, seed)
    B = order.batch

    def next_batch(step: int) -> tuple:
        idx = order.indices(step).to(device)
        observed = sampler.sample(B, data.image_shape, generator=gen, dim=data.dim)
        if known_all is None:
            return x_all[idx], observed
        return x_all[idx], observed & known_all[idx], known_all[idx]

    guided_loss = GuidedLoss(model)  # the objective of `seqimpute train`

    def objective(x, observed, known=None):
        return guided_loss(x, observed, gen, known)

    log = {"losses": [], "lr": 0.0, "skipped": 0}

    def after(step: int, res) -> None:
        log["skipped"] += not res.ok
        if res.fault != "loss":
            log["lr"] = res.lr
            log["losses"].append(float(res.loss))
        if step % log_every == 0 and log["losses"]:
            runs.append_metrics(run, {"step": step, "loss": sum(log["losses"]) / len(log["losses"]), "lr": log["lr"],
                                      "skipped": log["skipped"], "elapsed_s": budget.elapsed}, name=LOG)
            log["losses"] = []

    bar = None
    if bar_title is not None:
        from tqdm import tqdm

        bar = tqdm(total=budget.updates, unit="upd", desc=bar_title, mininterval=1.0, dynamic_ncols=True)
    model.train()
    step = train_loop(opt, next_batch, objective, budget, after=after, bar=bar)
    if bar is not None:
        bar.close()
    return step, log["skipped"]
