"""Fine-tuning of the guide q alone on the test set (docs/PAPER.md §6 (extended DRAW); the paper's 85.5 -> 84.8 nats).

The bound -log p(x) <= E_q[log q - log p(x, z)] holds for any q, so q may be fitted to the very images it scores:
every parameter of the generative model p stays frozen (bit-identical), only ``model.guide_parameters()`` train.
The authors' settings: batches of 250 test images, lr 1e-4 x 0.95 every 2000 updates, beta1 0.9, beta2 0.99 (their
Adam quirks as the "lstm" family: eps 1e-6, per-tensor gradient clipping at 10, L2 as weight decay), 50,000 updates
(about 11 hours on this CPU: give a budget with ``updates`` or ``minutes``).

The result goes to ``finetuned.pt`` (the checkpoint format of runs.py; best.pt and last.pt are never touched) and
``finetune.json`` (the raw and the fine-tuned bound on the same images, masks and noise); the loss is logged to
``finetune.jsonl``. Each call starts again
from the chosen checkpoint (``best`` by default).
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
from .errors import SeqImputeError
from .evaluate import evaluate
from .models.policy import training_loss
from .optim import Optimizer
from .train import CLOCKS

LR, LR_DECAY, DECAY_EVERY, BETA1 = 1e-4, 0.95, 2000, 0.9  # beta2 0.99: the "lstm" family


def schedule(i: int, progress: float) -> tuple[float, float]:
    """The authors' fine-tuning schedule: (lr, beta1) at update i."""
    return LR * LR_DECAY ** (i // DECAY_EVERY), BETA1


def finetune(run: str | Path, updates: int | None = None, minutes: float | None = None, checkpoint: str = "best",
             batch: int = 250, split: str = "test", eval_n: int | None = None, eval_samples: int = 1, seed: int = 0,
             device: str = "cpu", log_every: int = 100, progress_bar: bool = True, clock: str = "wall") -> dict:
    """Fine-tune the guide of the model in run folder ``run`` on ``split`` for ``updates`` updates or ``minutes``
    (whichever ends first; ``clock``: "wall" time or this process's "cpu" time), scoring the bound before and
    after on the first ``eval_n`` images of the split with ``eval_samples`` rollouts each. Returns the summary
    written to finetune.json."""
    run = Path(run)
    if not updates and not minutes:
        raise SeqImputeError("give a budget: --updates N or --minutes M (the paper's 50,000 updates take hours).")
    if batch < 1:
        raise SeqImputeError(f"--batch must be positive, got {batch}.")
    if clock not in CLOCKS:
        raise SeqImputeError(f"--clock must be 'wall' or 'cpu', not {clock!r}.")
    now = CLOCKS[clock]
    model, cfg, ck = runs.load_run_model(run, checkpoint, device=device)
    name = cfg["model"]["name"]
    if not hasattr(model, "guide_parameters"):
        raise SeqImputeError(f"{name} has no separate guide to fine-tune; finetune takes a policy with a guide q "
                             f"(gpsi-*, lstm-*, draw, draw-ext-*).")
    mask = cfg["train"]["mask"]
    data = load_dataset(cfg["train"]["data"], split, **cfg["train"].get("data_options", {}))
    ev = dict(samples=eval_samples, n=eval_n, seed=seed)
    raw = evaluate(model, data, mask, **ev)

    guide = model.guide_parameters()
    ids = {id(p) for p in guide}
    for p in model.parameters():
        p.requires_grad_(id(p) in ids)  # p's parameters get no gradient, so nothing can move them
    opt = Optimizer(guide, "paper", "lstm", model.l2)
    opt.schedule = schedule
    sampler = mask_sampler(getattr(model, "train_mask", None) or mask)
    x_all = data.x.to(device)
    gen = torch.Generator(device=device).manual_seed(seed)
    perm_gen = torch.Generator().manual_seed(seed)
    B = min(batch, len(x_all))
    bar = None
    if progress_bar:
        from tqdm import tqdm

        bar = tqdm(total=updates, unit="upd", desc=f"finetune {name}", mininterval=1.0, dynamic_ncols=True)
    model.train()
    step, skipped, t0, perm, pos, acc = 0, 0, now(), None, 0, []
    cpu0 = time.process_time()
    elapsed = 0.0
    while not ((updates and step >= updates) or (minutes and elapsed >= minutes * 60)):
        if perm is None or pos + B > len(perm):
            perm, pos = torch.randperm(len(x_all), generator=perm_gen), 0
        x = x_all[perm[pos : pos + B].to(device)]
        pos += B
        observed = sampler.sample(B, data.image_shape, generator=gen, dim=data.dim)
        r = model.rollout(x, observed, guided=True, generator=gen)
        loss, _ = training_loss(model, r, x, observed)
        opt.zero_grad()
        if torch.isfinite(loss):
            loss.backward()
            lr = opt.step(step, 0.0)
            acc.append(float(loss.detach()))
        else:
            skipped += 1
        step += 1
        elapsed = now() - t0
        if bar is not None:
            bar.update(1)
        if step % log_every == 0 and acc:
            with open(run / "finetune.jsonl", "a") as f:  # kept apart from the training run's metrics.jsonl
                f.write(json.dumps({"step": step, "loss": sum(acc) / len(acc), "lr": lr, "skipped": skipped,
                                    "elapsed_s": elapsed}) + "\n")
            acc = []
    if bar is not None:
        bar.close()
    cpu_s = time.process_time() - cpu0
    for p in model.parameters():
        p.requires_grad_(True)
    tuned = evaluate(model, data, mask, **ev)

    keys = ("bound_nats_per_image", "iw_nats_per_image", "bound_paper_units", "kl_nats_per_image")
    summary = {"model": name, "checkpoint": checkpoint, "split": split, "mask": mask, "updates": step,
               "skipped": skipped, "minutes": elapsed / 60, "clock": clock, "batch": B, "images": step * B,
               "cpu_s": cpu_s, "training": runs.training_record(run, cfg, ck),  # the training before fine-tuning
               "eval_images": raw["n_images"],
               "eval_samples": raw["samples"], "settings": {"lr": LR, "decay": f"x{LR_DECAY} every {DECAY_EVERY}",
                                                           "beta1": BETA1, "beta2": 0.99},
               "raw": {k: raw[k] for k in keys if k in raw}, "finetuned": {k: tuned[k] for k in keys if k in tuned}}
    runs.atomic_save({"format": runs.CHECKPOINT_FORMAT, "version": runs.CHECKPOINT_VERSION, "model_name": name,
                      "model_config": json.dumps(model.config()), "model": model.state_dict(),
                      "step": int(ck.get("step", 0)), "elapsed": float(ck.get("elapsed", 0.0)),
                      "best": float(ck.get("best", math.nan)), "images": ck.get("images"), "cpu_s": ck.get("cpu_s"),
                      "finetune": json.dumps(summary)},
                     run / "finetuned.pt")
    (run / "finetune.json").write_text(json.dumps(summary, indent=2))
    return summary
