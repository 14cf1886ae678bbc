"""The N(0, I) noise a rollout's latents draw, and how data-parallel training shares it: within ``noise_shard``
every rank draws the noise of the whole global batch and keeps its rows (seqimpute.distributed), so N processes
reproduce single-process training exactly. Noise can also be drawn ahead (``NoiseTape``) or recorded
(``NoiseRecorder``), for a compiled training step (seqimpute.loop.WholeStep)."""

from __future__ import annotations

import torch

_NOISE_SHARD: tuple[int, int] | None = None  # (world size, rank) while a data-parallel step runs


class noise_shard:
    """Within this context every rank draws the noise of the whole global batch and keeps its own rows, so N
    processes with the same generator state reproduce single-process training on the global batch exactly."""

    def __init__(self, world: int, rank: int):
        self.shard = (world, rank) if world > 1 else None

    def __enter__(self):
        global _NOISE_SHARD
        self.prev, _NOISE_SHARD = _NOISE_SHARD, self.shard

    def __exit__(self, *exc):
        global _NOISE_SHARD
        _NOISE_SHARD = self.prev


class NoiseTape:
    """Noise drawn ahead, handed out in order: a rollout given a tape as its ``generator`` takes these tensors
    instead of drawing (a compiled graph cannot hold a torch.Generator; see `WholeStep`)."""

    def __init__(self, draws: list[torch.Tensor]):
        self.draws, self.i = draws, 0

    def next(self) -> torch.Tensor:
        eps = self.draws[self.i]
        self.i += 1
        return eps


class NoiseRecorder:
    """Draws from ``generator`` as usual and records each draw's (shape, device, dtype)."""

    def __init__(self, generator):
        self.generator, self.draws = generator, []


def normal_noise(shape, generator, device, dtype=torch.float32) -> torch.Tensor:
    """N(0, I) noise of ``shape`` (batch first), honouring a data-parallel noise shard. ``generator`` may also be
    a `NoiseTape` (noise drawn ahead) or a `NoiseRecorder`."""
    if isinstance(generator, NoiseTape):
        return generator.next()
    if isinstance(generator, NoiseRecorder):
        generator.draws.append((tuple(shape), device, dtype))
        return normal_noise(shape, generator.generator, device, dtype)
    if _NOISE_SHARD is None:
        return torch.randn(shape, generator=generator, device=device, dtype=dtype)
    world, rank = _NOISE_SHARD
    b = shape[0]
    full = torch.randn((b * world, *shape[1:]), generator=generator, device=device, dtype=dtype)
    return full[rank * b : (rank + 1) * b]
