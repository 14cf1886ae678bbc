"""`seqimpute bench`: training and imputation speed against the machine's matmul peaks, measured in one run.

peak_share = (matmul FLOPs of one forward+backward training step / its time) / (median GFLOP/s of a large
square float32 matmul, timed before and after the models in the same process); bf16_peak_share: the same against
a bfloat16 matmul timed alongside (the limit of a step whose products run in bf16: ``precision``, which is the
trainer's, ``auto`` by default; seqimpute.precision). FLOPs: 2 m k n for every matrix product the step runs
(recorded at dispatch, `GemmRecorder`); the optimiser's elementwise work is in the time, not the FLOPs.

gemm_share: the same step's matrix products alone, replayed with their recorded shapes and memory layouts (operands
of one layout reused, so warmer in cache than in the step) and timed, as a share of the same peak: the ceiling any
implementation of the step that does these products at these shapes can reach. ``of_gemm_ceiling`` = peak_share /
gemm_share says how much of that ceiling the whole step (elementwise work, autograd, optimiser) keeps.

``--all``: every registered model at its paper preset: training images/s, share of the peak, peak memory, and the
imputation rate (an unguided rollout under inference mode); non-trainable baselines get the imputation rate only.
``--sweep T|D|batch``: one model (default gpsi-add) as T (1..32), D (784, 1024, 2304) or the batch grows.

Peak memory ("peak_mem_mb", with "peak_mem_kind" saying how it was measured):
* CUDA: ``torch.cuda.max_memory_allocated`` over two training steps after the timed ones (reset first), i.e.
  tensors only;
* CPU: the resident-set high-water over two untimed training steps, above the RSS just before them, read from
  /proc/self/statm by a sampling thread every millisecond (freed memory is handed back to the OS with malloc_trim
  before each model, so earlier models do not hide the growth; short spikes between samples can be missed, so this
  is a lower bound on the true peak, and it includes the allocator's slack).
"""

from __future__ import annotations

import ctypes
import gc
import math
import os
import statistics
import threading
import time

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from .precision import cpu_name, fast_bf16, matmul_precision, resolve

from .models.objectives import training_loss

from .loop import WholeStep
from .models.registry import build_model, spec
from .loop import train_step
from .optim import Optimizer

SWEEPS = {"T": [1, 2, 4, 8, 16, 32], "D": [784, 1024, 2304], "batch": [50, 100, 250, 500]}
SIZE_SHAPES = {"mnist": (28, 28), "tfd": (48, 48), "svhn": (32, 32)}
BASELINE_BANK = 10_000  # synthetic training images the non-trainable baselines search (MNIST has 50,000)


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def matmul_peak_gflops(device="cpu", n: int = 2048, repeats: int = 7, dtype: torch.dtype = torch.float32,
                       clock=time.perf_counter) -> tuple[float, list[float]]:
    """Median GFLOP/s of an n x n matmul in ``dtype`` over ``repeats`` timings (it is noisy; the median is robust).
    ``clock``: wall time by default; ``time.process_time`` gives GFLOP per CPU-second (a CPU shared with others)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    torch.mm(a, b)
    _sync(device)
    # ~4 GFLOP per timing on a CPU; a GPU needs far more work per timing to be measurable
    inner = max(1, int((4e12 if torch.device(device).type == "cuda" else 4e9) // (2 * n**3)))
    rates = []
    for _ in range(repeats):
        t = clock()
        for _ in range(inner):
            torch.mm(a, b)
        _sync(device)
        rates.append(2 * n**3 * inner / (clock() - t) / 1e9)
    return statistics.median(rates), rates


def _image_shape(dim: int) -> tuple[int, int] | None:
    side = math.isqrt(dim)
    return (side, side) if side * side == dim else None


def _batch(dim, batch, device, mask, image_shape, gen):
    from .data.masks import mask_sampler

    x = torch.rand(batch, dim, generator=gen, device=device)
    observed = mask_sampler(mask).sample(batch, image_shape, generator=gen, dim=dim)
    return x, observed


# ------------------------------------------------------------------------------------------------ peak memory

def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _trim():
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakMemory:
    """Peak memory of the block: CUDA max_memory_allocated, or the sampled RSS high-water above the start (CPU)."""

    def __init__(self, device):
        self.cuda = torch.device(device).type == "cuda"
        self.kind = "cuda max_memory_allocated" if self.cuda else "cpu rss high-water above start (sampled 1 ms)"
        self.peak = 0

    def __enter__(self):
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
            return self
        _trim()
        self.base = self.peak = _rss_bytes() if os.path.exists("/proc/self/statm") else 0
        self._stop = threading.Event()

        def sample():
            while not self._stop.wait(0.001):
                self.peak = max(self.peak, _rss_bytes())

        self._thread = threading.Thread(target=sample, daemon=True) if self.base else None
        if self._thread:
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.cuda:
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated()
            self.mb = self.peak / 2**20  # everything allocated at the peak, the model's weights included
        else:
            if self._thread:
                self._stop.set()
                self._thread.join()
                self.peak = max(self.peak, _rss_bytes())
            self.mb = max(self.peak - self.base, 0) / 2**20 if self.base else float("nan")


# ------------------------------------------------------------------------------------------------ GEMM ceiling

_aten = torch.ops.aten
GEMMS = (_aten.mm.default, _aten.addmm.default, _aten.addmm_.default, _aten.bmm.default, _aten.baddbmm.default)
_WITH_ADDEND = (_aten.addmm.default, _aten.addmm_.default, _aten.baddbmm.default)


class GemmRecorder(TorchDispatchMode):
    """Records every matrix product run inside it: the op, and each tensor argument's shape, strides and dtype."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in GEMMS:
            self.calls.append((func, tuple((tuple(a.shape), a.stride(), a.dtype) if isinstance(a, torch.Tensor)
                                           else a for a in args), dict(kwargs)))
        return func(*args, **kwargs)


def gemm_flops(calls) -> int:
    """2 m k n per product (times the batch for bmm), from the recorded shapes."""
    total = 0
    for func, args, _ in calls:
        a, b = (args[1], args[2]) if func in _WITH_ADDEND else (args[0], args[1])
        sa, sb = a[0], b[0]
        total += 2 * math.prod(sa) * sb[-1]
    return total


def replay_gemms(calls, device, repeats: int = 5) -> float:
    """Median GFLOP/s of the recorded products run back to back, one operand per (shape, strides, dtype)."""
    pool = {}

    def operand(a):
        if not isinstance(a, tuple):
            return a
        if a not in pool:
            shape, stride, dtype = a
            pool[a] = torch.empty_strided(shape, stride, dtype=dtype, device=device).uniform_(-1, 1)
        return pool[a]

    work = [(func, [operand(a) for a in args], kw) for func, args, kw in calls]
    flops = gemm_flops(calls)

    def once():
        for func, args, kw in work:
            func(*args, **kw)
        _sync(device)

    once()
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        once()
        rates.append(flops / (time.perf_counter() - t) / 1e9)
    return statistics.median(rates)


# ------------------------------------------------------------------------------------------------ one model

def bench_model(name: str, sizes: str = "mnist", batch: int = 250, device="cpu", steps: int = 10,
                warmup: int = 3, overrides: dict | None = None, mask: str = "mcar:0.8", dim: int | None = None,
                compile: bool = False, precision: str = "auto", impute: bool = True,
                bank: int = BASELINE_BANK) -> dict:
    """Training images/s, matmul GFLOP/s of the step, peak memory, and imputation (unguided rollout) images/s.
    ``dim``: values per example (default: the preset's image size). ``compile``/``precision``: the whole-step
    graph and the products' precision (train's ``--set compile=true`` / ``--precision ...``), which the
    imputation rate uses too (as `seqimpute eval` / `impute` do)."""
    precision = resolve(precision, device)
    image_shape = SIZE_SHAPES.get(sizes, (28, 28)) if dim is None else _image_shape(dim)
    dim = dim or image_shape[0] * image_shape[1]
    torch.manual_seed(0)
    model = build_model(name, dim, sizes, overrides).to(device)
    gen = torch.Generator(device=device).manual_seed(0)
    out = {"model": name, "sizes": sizes, "batch": batch, "device": str(device), "dim": dim,
           "trainable": bool(model.trainable)}
    if not model.trainable:
        if not impute:
            return out
        from .data.sources import Dataset

        bank_x = torch.rand(bank, dim, generator=torch.Generator().manual_seed(1))
        model.fit(Dataset(bank_x, image_shape, "synthetic", "train"))
        model.to(device)
        x, observed = _batch(dim, batch, device, mask, image_shape, gen)
        out["bank"] = bank
        out["impute_images_per_s"] = _impute_rate(model, x, observed, gen, device, max(1, min(steps, 3)))
        return out
    opt = Optimizer(model.parameters(), "budget", spec(name).family, model.l2)
    mask = model.train_mask or mask
    x, observed = _batch(dim, batch, device, mask, image_shape, gen)

    def eager(x, observed, generator):
        return training_loss(model, model.rollout(x, observed, guided=True, generator=generator), x, observed)

    objective = WholeStep(eager) if compile else eager

    def step(i, objective=objective):  # the training step (seqimpute.loop), at mid-schedule
        def loss(x, observed):
            with matmul_precision(precision):
                return objective(x, observed, gen)

        train_step(loss, opt, (x, observed), i, 0.5)

    with GemmRecorder() as rec:  # the step's matrix products (torch's FlopCounterMode misses the in-place addmm_)
        step(0, eager)
    flops = gemm_flops(rec.calls)
    for i in range(max(warmup, 2) if compile else warmup):  # a graph: one eager call records, one compiles
        step(i)
    _sync(device)
    t = time.perf_counter()
    for i in range(steps):
        step(i)
    _sync(device)
    dt = (time.perf_counter() - t) / steps
    with PeakMemory(device) as mem:  # separate steps: the CPU sampler thread would slow the timed ones
        for i in range(2):
            step(i)
    out.update({"train_images_per_s": batch / dt, "step_seconds": dt, "step_gflop": flops / 1e9,
                "step_gflops": flops / dt / 1e9, "peak_mem_mb": mem.mb, "peak_mem_kind": mem.kind,
                "params": sum(p.numel() for p in model.parameters()), "compile": bool(compile),
                "precision": precision, "steps_T": model.steps,
                "gemm_gflops": replay_gemms(rec.calls, device)})
    if impute:
        with matmul_precision(precision):
            out["impute_images_per_s"] = _impute_rate(model, x, observed, gen, device, steps)
    return out


def _impute_rate(model, x, observed, gen, device, reps: int) -> float:
    with torch.inference_mode():
        model.rollout(x, observed, guided=False, generator=gen)
        _sync(device)
        t = time.perf_counter()
        for _ in range(reps):
            model.rollout(x, observed, guided=False, generator=gen)
        _sync(device)
        return len(x) * reps / (time.perf_counter() - t)


PEAK_N = 2048  # the peaks' square matmul size


def _peaks(device) -> tuple[list[float], list[float]]:
    """Timings of the float32 and the bfloat16 matmul peak (GFLOP/s), one after the other. The bf16 peak is not
    timed where the device lacks fast bf16 products (a CPU without AMX or AVX512-BF16 emulates them about 50x slower
    than float32: one 2048^3 timing would take minutes); its list is then empty."""
    bf16 = matmul_peak_gflops(device, PEAK_N, dtype=torch.bfloat16)[1] if fast_bf16(device) else []
    return matmul_peak_gflops(device, PEAK_N)[1], bf16


def _with_peak(results: list[dict], rates: list[float], bf16_rates: list[float]) -> float:
    """Each result's shares of the float32 peak (and of the bf16 one, ``bf16_`` keys); the GEMM ceiling is the
    share of the peak of the step's own precision."""
    peak, bf16_peak = statistics.median(rates), statistics.median(bf16_rates) if bf16_rates else None
    for r in results:
        if "step_gflops" in r:
            r["peak_share"] = r["step_gflops"] / peak
            r["bf16_peak_share"] = r["step_gflops"] / bf16_peak if bf16_peak else None
        own = bf16_peak if r.get("precision") == "bf16" else peak
        if "gemm_gflops" in r and own:
            r["gemm_share"] = r["gemm_gflops"] / own
            r["of_gemm_ceiling"] = r["step_gflops"] / own / r["gemm_share"]
    return peak


def _header(device, rates, bf16_rates) -> dict:
    return {"peak_gflops": statistics.median(rates), "peak_samples": rates,
            "bf16_peak_gflops": statistics.median(bf16_rates) if bf16_rates else None, "bf16_peak_samples": bf16_rates,
            **({} if bf16_rates else {"bf16_peak_note": "not timed: this device has no fast bf16 matrix products"}),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__, "device": str(device),
            "device_name": torch.cuda.get_device_name(torch.device(device)) if torch.device(device).type == "cuda"
            else cpu_name()}


def run_bench(models: list[str], sizes: str = "mnist", batch: int = 250, device="cpu", steps: int = 10,
              overrides: dict | None = None, compile: bool = False, precision: str = "auto",
              warmup: int = 3) -> dict:
    """The suite: the matmul peaks before and after, every model in between (one process)."""
    before = _peaks(device)
    def own(m):  # with several models, each takes the options it has (--all --set steps=4)
        if not overrides or len(models) == 1:
            return overrides
        return {k: v for k, v in overrides.items() if k in spec(m).option_names()}

    results = [bench_model(m, sizes, batch, device, steps, warmup=warmup, overrides=own(m), compile=compile,
                           precision=precision) for m in models]
    after = _peaks(device)
    rates, bf16_rates = before[0] + after[0], before[1] + after[1]
    _with_peak(results, rates, bf16_rates)
    return {**_header(device, rates, bf16_rates), "models": results}


def run_sweep(what: str, model: str = "gpsi-add", sizes: str = "mnist", batch: int = 250, device="cpu",
              steps: int = 2, values: list[int] | None = None, overrides: dict | None = None,
              compile: bool = False, precision: str = "auto", warmup: int = 1) -> dict:
    """How a training step's cost grows with T, D or the batch (every other setting at the preset)."""
    from .errors import SeqImputeError

    if what not in SWEEPS:
        raise SeqImputeError(f"--sweep takes T, D or batch, not {what!r}.")
    values = values or SWEEPS[what]
    before = _peaks(device)
    results = []
    for v in values:
        ov = dict(overrides or {})
        kw = {}
        if what == "T":
            ov["steps"] = int(v)
        elif what == "D":
            kw["dim"] = int(v)
        r = bench_model(model, sizes, int(v) if what == "batch" else batch, device, steps, warmup=warmup,
                        overrides=ov, dim=kw.get("dim"), compile=compile, precision=precision, impute=True)
        r["sweep"], r["value"] = what, int(v)
        results.append(r)
    after = _peaks(device)
    rates, bf16_rates = before[0] + after[0], before[1] + after[1]
    _with_peak(results, rates, bf16_rates)
    out = {**_header(device, rates, bf16_rates), "sweep": what, "model": model, "models": results}
    if what == "T" and len(results) >= 2:
        out["linear_fit"] = linear_fit([r["value"] for r in results], [r["step_seconds"] for r in results])
    return out


def linear_fit(xs: list[float], ys: list[float]) -> dict:
    """Least squares y = a + b x, and the largest relative deviation of a point from the line."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0
    a = my - b * mx
    dev = max(abs(y - (a + b * x)) / y for x, y in zip(xs, ys))
    return {"intercept_s": a, "slope_s_per_step": b, "max_rel_deviation": dev}


def format_table(res: dict) -> str:
    bf16 = f"{res['bf16_peak_gflops']:.1f}" if res.get("bf16_peak_gflops") else "not timed (no fast bf16 products)"
    lines = [f"matmul peak float32 {res['peak_gflops']:.1f}, bfloat16 {bf16} GFLOP/s (medians "
             f"of {len(res['peak_samples'])}; {res['threads']} threads, torch {res['torch']}, "
             f"{res.get('device_name', res['device'])})"]
    key = res.get("sweep")
    first = f"{key:>6s}" if key else f"{'model':14s}"
    lines.append(f"{first}{'prec':>5s}{'train img/s':>12s}{'s/step':>9s}{'GFLOP/step':>11s}{'GFLOP/s':>9s}"
                 f"{'fp32 share':>11s}{'bf16 share':>11s}{'GEMM ceil':>10s}{'peak MB':>9s}{'impute img/s':>13s}")
    for r in res["models"]:
        head = f"{r['value']:6d}" if key else f"{r['model']:14s}"
        imp = f"{r['impute_images_per_s']:13.1f}" if "impute_images_per_s" in r else f"{'':13s}"
        if "train_images_per_s" in r:
            lines.append(f"{head}{r['precision']:>5s}{r['train_images_per_s']:12.1f}{r['step_seconds']:9.3f}"
                         f"{r['step_gflop']:11.2f}{r['step_gflops']:9.1f}{r['peak_share']:11.3f}"
                         f"{r['bf16_peak_share'] or float('nan'):11.3f}{r.get('gemm_share', float('nan')):10.3f}"
                         f"{r['peak_mem_mb']:9.0f}{imp}")
        else:
            lines.append(f"{head}{'':5s}{'(not trained)':>12s}{'':9s}{'':11s}{'':9s}{'':11s}{'':11s}{'':10s}{'':9s}"
                         f"{imp}")
    lines.append("shares: the step's GFLOP/s over the float32 and the bfloat16 matmul peak; GEMM ceil: the step's own "
                 "matrix products replayed alone, as a share of the peak of its precision")
    if "linear_fit" in res:
        f = res["linear_fit"]
        lines.append(f"linear fit: s/step = {f['intercept_s']:.4f} + {f['slope_s_per_step']:.4f} T; "
                     f"largest deviation {100 * f['max_rel_deviation']:.1f}%")
    if res["models"] and "peak_mem_kind" in next((r for r in res["models"] if "peak_mem_kind" in r), {}):
        lines.append("peak MB: " + next(r for r in res["models"] if "peak_mem_kind" in r)["peak_mem_kind"])
    return "\n".join(lines)
