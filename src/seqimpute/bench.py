"""`seqimpute bench`: training and imputation speed against the machine's float32 matmul peak, measured in one run.

peak_share = (matmul FLOPs of one forward+backward training step / its time) / (median GFLOP/s of a large
square float32 matmul). FLOPs are counted by torch.utils.flop_counter, i.e. only matrix products.
"""

from __future__ import annotations

import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from .models.policy import training_loss
from .models.registry import build_model, spec
from .optim import Optimizer


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def matmul_peak_gflops(device="cpu", n: int = 2048, repeats: int = 7) -> tuple[float, list[float]]:
    """Median GFLOP/s of an n x n float32 matmul over ``repeats`` timings (it is noisy; the median is robust)."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    torch.mm(a, b)
    _sync(device)
    inner = max(1, int(4e9 // (2 * n**3)))  # ~4 GFLOP per timing
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(inner):
            torch.mm(a, b)
        _sync(device)
        rates.append(2 * n**3 * inner / (time.perf_counter() - t) / 1e9)
    return statistics.median(rates), rates


def _batch(dim, batch, device, mask, image_shape, gen):
    from .data.masks import mask_sampler

    x = torch.rand(batch, dim, generator=gen, device=device)
    observed = mask_sampler(mask).sample(batch, image_shape, generator=gen, dim=dim)
    return x, observed


def bench_model(name: str, sizes: str = "mnist", batch: int = 250, device="cpu", steps: int = 10,
                warmup: int = 3, overrides: dict | None = None, mask: str = "mcar:0.8") -> dict:
    """Training images/s, matmul GFLOP/s of the step, and imputation (unguided rollout) images/s."""
    dims = {"mnist": (28, 28), "tfd": (48, 48), "svhn": (32, 32)}
    image_shape = dims.get(sizes, (28, 28))
    dim = image_shape[0] * image_shape[1]
    torch.manual_seed(0)
    model = build_model(name, dim, sizes, overrides).to(device)
    gen = torch.Generator(device=device).manual_seed(0)
    out = {"model": name, "sizes": sizes, "batch": batch, "device": str(device), "dim": dim}
    if not model.trainable:
        return out
    opt = Optimizer(model.parameters(), "budget", spec(name).family, model.l2)
    mask = getattr(model, "train_mask", None) or mask
    x, observed = _batch(dim, batch, device, mask, image_shape, gen)

    def step(i):
        r = model.rollout(x, observed, guided=True, generator=gen)
        loss, _ = training_loss(model, r, x, observed)
        opt.zero_grad()
        loss.backward()
        opt.step(i, 0.5)

    with FlopCounterMode(display=False) as fc:
        step(0)
    flops = fc.get_total_flops()
    for i in range(warmup):
        step(i)
    _sync(device)
    t = time.perf_counter()
    for i in range(steps):
        step(i)
    _sync(device)
    dt = (time.perf_counter() - t) / steps
    with torch.inference_mode():
        model.rollout(x, observed, guided=False, generator=gen)
        _sync(device)
        t = time.perf_counter()
        for _ in range(steps):
            model.rollout(x, observed, guided=False, generator=gen)
        _sync(device)
        dti = (time.perf_counter() - t) / steps
    out.update({"train_images_per_s": batch / dt, "step_seconds": dt, "step_gflop": flops / 1e9,
                "step_gflops": flops / dt / 1e9, "impute_images_per_s": batch / dti,
                "params": sum(p.numel() for p in model.parameters())})
    return out


def run_bench(models: list[str], sizes: str = "mnist", batch: int = 250, device="cpu", steps: int = 10,
              overrides: dict | None = None) -> dict:
    peak_before, rates_before = matmul_peak_gflops(device)
    results = [bench_model(m, sizes, batch, device, steps, overrides=overrides) for m in models]
    peak_after, rates_after = matmul_peak_gflops(device)
    peak = statistics.median(rates_before + rates_after)
    for r in results:
        if "step_gflops" in r:
            r["peak_share"] = r["step_gflops"] / peak
    return {"peak_gflops": peak, "peak_samples": rates_before + rates_after, "threads": torch.get_num_threads(),
            "torch": torch.__version__, "device": str(device), "models": results}
