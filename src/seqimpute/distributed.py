"""Data-parallel training with torchrun: `torchrun --nproc_per_node N -m seqimpute train ...`.

The global batch (--batch) is split across ranks; every rank draws the masks and noise of the whole global batch
from the same generator and keeps its own rows, so a run matches single-process training on the global batch.
Rank 0 alone validates and writes checkpoints and metrics.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
import torch.nn as nn

from .errors import SeqImputeError
from .models.objectives import training_loss


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def setup(device: str) -> tuple[int, int, torch.device]:
    """(world size, rank, device). Initialises the process group under torchrun (gloo on CPU, nccl on CUDA)."""
    world = world_size()
    dev = torch.device(device)
    if world <= 1:
        return 1, 0, dev
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    rank = dist.get_rank()
    if dev.type == "cuda":
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(dev)
    return world, rank, dev


def local_rows(batch: int, world: int, rank: int) -> slice:
    if batch % world:
        raise SeqImputeError(f"--batch {batch} does not split evenly over {world} processes; "
                             f"use a multiple of {world}.")
    b = batch // world
    return slice(rank * b, (rank + 1) * b)


class GuidedLoss(nn.Module):
    """The training objective as a module, so DistributedDataParallel can wrap it (and average gradients)."""

    def __init__(self, policy):
        super().__init__()
        self.policy = policy

    def forward(self, x, observed, generator, known=None):
        """``known``: the values the data hold (None: all). The others are neither in the policy's input (``observed``
        must leave them out), nor scored (policy.scored_sum), nor seen by the guide: it sees 0 there, whatever x
        holds (a NaN, any number), so they cannot move the loss."""
        if known is not None:
            x = x.masked_fill(~known, 0.0)
        r = self.policy.rollout(x, observed, guided=True, generator=generator)
        return training_loss(self.policy, r, x, observed, known=known)


def wrap(policy, world: int, device: torch.device) -> nn.Module:
    loss = GuidedLoss(policy)
    if world <= 1:
        return loss
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(loss, device_ids=[device] if device.type == "cuda" else None,
                                   find_unused_parameters=True)


def broadcast_float(value: float, world: int) -> float:
    """Rank 0's value on every rank (wall-clock budgets must stop all ranks on the same step)."""
    if world <= 1:
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.broadcast(t, 0)
    return float(t)


def cleanup(world: int) -> None:
    if world > 1 and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
