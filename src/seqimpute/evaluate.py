"""The evaluator: every model scored on the same fixed, seeded masks, in the paper's units and per imputed value.

For a policy, on each image, K guided rollouts give the paper's bound (NLL of the missing values at c_T plus the
summed KL(q||p)) and an importance-weighted estimate of -log p(x_missing | x_known) with the guide as proposal;
K unguided rollouts give the unguided NLL and the imputations scored by MSE and PSNR.
"""

from __future__ import annotations

import math
import numbers

import torch

from . import metrics
from .data.masks import canonical, mask_set
from .data.sources import Dataset
from .errors import SeqImputeError, require_whole
from .numerics import subnormals_flushed
from .precision import matmul_precision, resolve
from .models.policy import MAX_STEPS, Policy
from .models.objectives import bound, fill_holes, missing_nll


ROWS_BUDGET = 5000  # rollout rows (images x samples) per evaluation batch: memory stays bounded for any K (K <= 20 keeps batch 250)


def check_mask_allowed(allowed, name: str, spec: str) -> None:
    """A model that takes only some masks (``Policy.allowed_masks``; the generators: 'full') refuses the others."""
    if allowed and canonical(spec) not in allowed:
        options = " or ".join(f"--mask {a}" for a in allowed)
        raise SeqImputeError(f"{name} takes only {options}, not mask {spec!r}; use {options}.")


UNGUIDED_SAMPLES = 10  # default unguided rollouts per image for a policy with a bound (see evaluate)
MAX_SAMPLES = ROWS_BUDGET  # K rollouts per image: one image's K rows fit one evaluation batch


def check_counts(samples=1, steps=None, n=None, batch=1, seed=0) -> None:
    """Whole-number knobs of evaluation and imputation, refused with one message when they make no sense
    (--samples 0, --steps -1, --n 0) or would exhaust memory or never end (--samples 10**9, --steps 10**9)."""
    def whole(name, v, lo, hi=None, none_ok=False):
        require_whole(name, v, lo, hi, none_ok, types=numbers.Integral)

    whole("samples", samples, 1, MAX_SAMPLES)
    whole("steps", steps, 1, MAX_STEPS, none_ok=True)
    whole("n", n, 1, none_ok=True)
    whole("batch", batch, 1)
    whole("seed", seed, 0, 2**63 - 1)


def _check_masks(observed: torch.Tensor, spec: str) -> None:
    if not (~observed).any():
        raise SeqImputeError(f"mask {spec!r} leaves nothing missing; choose a mask that hides some values.")


@torch.inference_mode()
def evaluate(model: Policy, data: Dataset, mask: str, samples: int = 10, steps: int | None = None,
             n: int | None = None, batch: int = 250, seed: int = 0, device=None, progress: bool = False,
             unguided_samples: int | None = None, precision: str = "auto", per_image: bool = False) -> dict:
    """Score ``model`` on the first ``n`` examples of ``data`` (all by default) with the fixed mask set of
    (data, mask). Returns a dict of scores (see README "Scores").

    ``unguided_samples``: unguided rollouts per image for the unguided NLL and the imputations' MSE/PSNR. For a
    policy with a bound it defaults to min(K, 10): a large K sharpens the importance-weighted estimate, while the
    unguided figures need no more than the paper's 10 (a third of the cost at K=100). Otherwise it is K (those
    models are scored by their unguided NLL). On data with holes (NaN) the scores count only the hidden values the
    data hold (``imputed_fraction``: their share). ``precision``: of the matrix products (seqimpute.precision; bf16
    bounds were within 0.003% of fp32 ones on trained models, benchmarks/RESULTS.md section J). ``per_image``: also
    return each image's score in nats and its count of scored hidden values (``per_image``: ``score_nats``,
    ``hidden``), from which any resample of the images gets its score in paper units (a bootstrap)."""
    products = matmul_precision(resolve(precision, device or next(model.parameters(), torch.empty(0)).device))
    with subnormals_flushed(), products:  # subnormal weights are slow on the CPU (seqimpute.numerics)
        return _evaluate(model, data, mask, samples, steps, n, batch, seed, device, progress, unguided_samples,
                         per_image)


def _evaluate(model, data, mask, samples, steps, n, batch, seed, device, progress, unguided_samples,
              per_image) -> dict:
    check_counts(samples=samples, steps=steps, n=n, batch=batch, seed=seed)
    check_mask_allowed(model.allowed_masks, model.name, mask)
    device = torch.device(device or next(model.parameters(), torch.empty(0)).device)
    x_all = data.x[:n] if n else data.x
    # masks of the whole split, then the first n: `--n` scores the same holes as a full evaluation does
    observed_all = mask_set(mask, data.name, data.split, len(data.x), data.image_shape, data.dim, x=data.x)[: len(x_all)]
    _check_masks(observed_all, mask)
    # data with holes (NaN): only the hidden values the data hold are scored; the others are missing from the
    # input too (policy.fill_holes)
    x_all, known_all = fill_holes(x_all)
    known_all = torch.ones_like(observed_all) if known_all is None else known_all
    observed_all = observed_all & known_all
    if not (~observed_all & known_all).any():
        raise SeqImputeError(f"mask {mask!r} hides only values the data lack (NaN), so there is nothing to score; "
                             f"choose a mask that hides known values, e.g. mcar:0.5.")
    K = samples if model.stochastic else 1
    if unguided_samples is not None:
        check_counts(samples=unguided_samples)
    Ku = min(K, unguided_samples or (UNGUIDED_SAMPLES if model.has_bound else K))
    batch = max(1, min(batch, ROWS_BUDGET // K))  # each batch is repeated K times: B*K rows stay bounded
    was_training = model.training
    model.eval()
    gen = torch.Generator(device=device).manual_seed(seed)
    T = steps if steps is not None else model.steps
    tot = {k: 0.0 for k in ("bound", "iw", "unguided", "kl", "sq_err", "missing")}
    per_step_g = torch.zeros(T + 1, dtype=torch.float64)
    per_step_u = torch.zeros(T + 1, dtype=torch.float64)
    images = {"score_nats": [], "hidden": []}  # per_image: each image's score (the bound, else the unguided NLL)
    it = range(0, len(x_all), batch)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="eval", unit="batch", leave=False)
    for start in it:
        x = x_all[start : start + batch].to(device)
        obs = observed_all[start : start + batch].to(device)
        kn = known_all[start : start + batch].to(device)
        B = len(x)
        xk, ok, kk = x.repeat(K, 1), obs.repeat(K, 1), kn.repeat(K, 1)  # K samples per image in one batch
        tot["missing"] += float((~obs & kn).sum())
        if model.has_bound:
            r = model.rollout(xk, ok, guided=True, steps=steps, generator=gen)
            nll = missing_nll(xk, r.final, ok, known=kk)
            b = bound(r, xk, ok, known=kk)
            tot["bound"] += float(b.sum()) / K
            images["score_nats"] += b.view(K, B).double().mean(0).tolist() if per_image else []
            tot["kl"] += float(r.kl_qp.sum()) / K
            log_w = (-nll + r.log_ratio).view(K, B).double()
            tot["iw"] += float(-(torch.logsumexp(log_w, 0) - math.log(K)).sum())
            per_step_g += torch.tensor([float(missing_nll(xk, c, ok, known=kk).sum()) / K for c in r.canvases],
                                       dtype=torch.float64)
        xk, ok, kk = xk[: Ku * B], ok[: Ku * B], kk[: Ku * B]  # the first Ku of the K copies
        r = model.rollout(xk, ok, guided=False, steps=steps, generator=gen)
        unguided = missing_nll(xk, r.final, ok, known=kk)
        tot["unguided"] += float(unguided.sum()) / Ku
        if per_image:
            images["hidden"] += (~obs & kn).sum(1).tolist()
            images["score_nats"] += [] if model.has_bound else unguided.view(Ku, B).double().mean(0).tolist()
        per_step_u += torch.tensor([float(missing_nll(xk, c, ok, known=kk).sum()) / Ku for c in r.canvases],
                                   dtype=torch.float64)
        mean_guess = torch.sigmoid(r.final).view(Ku, B, -1).mean(0)
        tot["sq_err"] += float(((mean_guess - x).pow(2) * (~obs & kn)).sum())
    model.train(was_training)
    out = _report(model, data, mask, tot, per_step_g, per_step_u, len(x_all), K, Ku, T)
    if per_image:
        out["per_image"] = images
    return out


def _report(model, data, mask, tot: dict, per_step_g, per_step_u, N: int, K: int, Ku: int, T: int) -> dict:
    """The scores of the evaluation's running totals, in every unit (README "Scores")."""
    D, U = data.dim, tot["missing"]
    to_paper = lambda total: metrics.paper_units(total, D, U)  # = per-image mean x D / mean |U|
    out = {"model": model.name, "dataset": data.name, "split": data.split, "mask": mask, "n_images": N,
           "samples": K, "unguided_samples": Ku, "steps": T, "dim": D, "imputed_fraction": U / (N * D)}
    if model.has_bound:
        out.update({
            "bound_paper_units": to_paper(tot["bound"]), "bound_nats_per_value": tot["bound"] / U,
            "bound_bits_per_value": metrics.bits(tot["bound"] / U), "bound_nats_per_image": tot["bound"] / N,
            "kl_nats_per_image": tot["kl"] / N,
            "iw_paper_units": to_paper(tot["iw"]), "iw_nats_per_value": tot["iw"] / U,
            "iw_nats_per_image": tot["iw"] / N, "paper_unit_factor": to_paper(N),  # N D / |U|
            "iw_bits_per_value": metrics.bits(tot["iw"] / U),
            "per_step_guided_nll_paper_units": [to_paper(v) for v in per_step_g.tolist()],
        })
    out.update({
        "unguided_nll_paper_units": to_paper(tot["unguided"]), "unguided_nll_nats_per_value": tot["unguided"] / U,
        "per_step_unguided_nll_paper_units": [to_paper(v) for v in per_step_u.tolist()],
        "mse": tot["sq_err"] / U, "psnr": metrics.psnr(tot["sq_err"] / U),
    })
    # The number every model is compared by: the guided bound for a policy, else the NLL of its imputation.
    key = "bound" if model.has_bound else "unguided_nll"
    out["score_paper_units"] = out[f"{key}_paper_units"]
    out["score_nats_per_value"] = out[f"{key}_nats_per_value"]
    out["score_bits_per_value"] = metrics.bits(out["score_nats_per_value"])
    out["score_kind"] = "guided bound" if model.has_bound else "NLL of the imputation"
    if not model.has_bound and T >= 1:  # the paper's VAE-imp score: the best step picked on these data themselves
        best_t = min(range(1, T + 1), key=lambda t: per_step_u[t].item())
        out["oracle_best_step"] = best_t
        out["oracle_best_step_nll_paper_units"] = to_paper(per_step_u[best_t].item())
        out["oracle_note"] = ("oracle_*: min over steps 1..T of the unguided NLL, the step chosen on the evaluation "
                              "data itself ('found oracularly', the paper's VAE-imp rule); not a held-out score")
    return out


def format_table(res: dict) -> str:
    rows = [("score (" + res["score_kind"] + ")", res["score_paper_units"], res["score_nats_per_value"])]
    if "bound_paper_units" in res:
        rows.append(("importance-weighted NLL", res["iw_paper_units"], res["iw_nats_per_value"]))
    rows.append(("unguided NLL", res["unguided_nll_paper_units"], res["unguided_nll_nats_per_value"]))
    ku = res.get("unguided_samples", res["samples"])
    lines = [f"{res['model']} on {res['dataset']}/{res['split']}, mask {res['mask']}, {res['n_images']} images, "
             f"K={res['samples']}" + (f" (unguided {ku})" if ku != res["samples"] else "") + f", T={res['steps']}",
             f"{'':28s}{'paper units':>12s}{'nats/value':>12s}{'bits/value':>12s}"]
    for name, pu, npv in rows:
        lines.append(f"{name:28s}{pu:12.2f}{npv:12.4f}{metrics.bits(npv):12.4f}")
    lines.append(f"{'MSE / PSNR':28s}{res['mse']:12.5f}{res['psnr']:11.2f}dB")
    if "per_step_guided_nll_paper_units" in res:
        lines.append("NLL after each step (guided): " + " ".join(f"{v:.1f}" for v in res["per_step_guided_nll_paper_units"]))
    lines.append("NLL after each step (unguided): " + " ".join(f"{v:.1f}" for v in res["per_step_unguided_nll_paper_units"]))
    if "oracle_best_step" in res:
        lines.append(f"oracle (step picked on these data, the paper's VAE-imp rule): "
                     f"{res['oracle_best_step_nll_paper_units']:.2f} at step {res['oracle_best_step']}")
    return "\n".join(lines)
