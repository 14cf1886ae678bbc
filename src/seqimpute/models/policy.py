"""The one interface every model implements: a rollout over T refinement steps.

A policy refines a canvas c (logits; the guess is sigmoid(c)) over T steps. Guided rollouts draw each step's
latent from the guide q, which also sees the missing values; unguided rollouts draw from the primary p, which
sees only the known values. Loss, bound and importance weights are computed from a rollout (models/objectives.py),
never per model; the noise the latents draw comes from nn/noise.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from ..errors import SeqImputeError
from ..nn.dist import gaussian_log_prob
from ..nn.noise import normal_noise

MAX_STEPS = 10_000  # refinement steps T per rollout (the paper's models use at most 64)

@dataclass
class Rollout:
    canvases: list[torch.Tensor]  # c_0..c_T, logits (B, D)
    kl_qp: torch.Tensor | None  # (S, B): KL(q||p) per step (summed over latent dims); None when unguided
    kl_pq: torch.Tensor | None  # (S, B): KL(p||q)
    log_ratio: torch.Tensor | None  # (B,): sum over steps of log p(z_t) - log q(z_t) at the sampled z
    guided: bool
    final_step: int | None = None  # the canvas that is the model's output when not the last (VAE-imp: a step
    # chosen on validation data, while the rollout still returns the whole horizon for per-step curves)

    @classmethod
    def assemble(cls, canvases: list, kl_qp: list, kl_pq: list, log_ratio, guided: bool) -> "Rollout":
        """The rollout from per-step lists of (B,) KL terms and the summed log-ratio (0.0 when no step ran)."""
        if not guided:
            return cls(canvases, None, None, None, False)
        if not kl_qp:  # T = 0 and no initial step: empty (0, B) KL rows, zero log-ratio
            empty = canvases[0].new_zeros(0, canvases[0].shape[0])
            return cls(canvases, empty, empty, canvases[0].new_zeros(canvases[0].shape[0]), True)
        return cls(canvases, torch.stack(kl_qp), torch.stack(kl_pq), log_ratio, True)

    @property
    def final(self) -> torch.Tensor:
        return self.canvases[-1 if self.final_step is None else self.final_step]


class Trajectory:
    """A rollout as its steps make it: the canvases c_0..c_t and, when guided, each latent step's KL terms and the
    summed log-ratio. ``first``: the (kl_qp, kl_pq, log_ratio) of an initial latent step made before c_0 (the
    infinite-mixture initial state of the LSTM and extended-DRAW models)."""

    def __init__(self, c0: torch.Tensor, guided: bool, first: tuple | None = None):
        self.canvases, self.guided = [c0], guided
        self.kl_qp, self.kl_pq, self.log_ratio = [], [], 0.0
        if first is not None:
            self.kl_qp, self.kl_pq, self.log_ratio = [first[0]], [first[1]], first[2]

    def add(self, c: torch.Tensor, kl_qp, kl_pq, log_ratio) -> None:
        """Record step t: its canvas c_t and, when guided, its latent step's terms."""
        self.canvases.append(c)
        if self.guided:
            self.kl_qp.append(kl_qp)
            self.kl_pq.append(kl_pq)
            self.log_ratio = self.log_ratio + log_ratio

    def rollout(self) -> Rollout:
        return Rollout.assemble(self.canvases, self.kl_qp, self.kl_pq, self.log_ratio, self.guided)


def composite(x: torch.Tensor, observed: torch.Tensor, guess: torch.Tensor) -> torch.Tensor:
    """Known values pasted over the current guess: m*x + (1-m)*guess."""
    return torch.where(observed, x, guess)


def _latent_terms(src_mu, src_lv, eps, mu_p, lv_p, mu_q, lv_q):
    """The deterministic part of a guided latent step, from the noise: (z, KL(q||p), KL(p||q), log p(z) - log q(z)),
    sums over dims."""
    z = _sample_z(src_mu, src_lv, eps)
    dlv = lv_q - lv_p
    d2 = (mu_q - mu_p).pow(2)
    r = torch.exp(dlv)  # var_q / var_p
    kl_qp = 0.5 * (r - 1 - dlv + d2 * torch.exp(-lv_p)).sum(-1)
    kl_pq = 0.5 * (1 / r - 1 + dlv + d2 * torch.exp(-lv_q)).sum(-1)
    log_ratio = (gaussian_log_prob(z, mu_p, lv_p) + 0.5 * (math.log(2 * math.pi) + lv_q + eps.pow(2))).sum(-1)
    return z, kl_qp, kl_pq, log_ratio


def _sample_z(src_mu, src_lv, eps):
    return src_mu + torch.exp(0.5 * src_lv) * eps


def latent_step(mu_p, lv_p, mu_q, lv_q, guided: bool, generator):
    """Sample z from q (guided) or p, and return (z, KL(q||p), KL(p||q), log p(z) - log q(z)), sums over dims.
    The last three are None for unguided steps. One fused pass: the exps are shared between the terms.
    Under bf16 products (seqimpute.precision) the Gaussians' parameters are taken in float32 first: the noise, the
    sample and the KL terms stay float32 (and the random stream is that of the float32 path)."""
    src_mu, src_lv = (mu_q, lv_q) if guided else (mu_p, lv_p)
    if src_mu.dtype in (torch.bfloat16, torch.float16):
        mu_p, lv_p = mu_p.float(), lv_p.float()
        src_mu, src_lv = src_mu.float(), src_lv.float()
        if guided:
            mu_q, lv_q = mu_q.float(), lv_q.float()
    eps = normal_noise(src_mu.shape, generator, src_mu.device, src_mu.dtype)
    if not guided:
        return _sample_z(src_mu, src_lv, eps), None, None, None
    return _latent_terms(src_mu, src_lv, eps, mu_p, lv_p, mu_q, lv_q)


class Policy(nn.Module):
    """Base class. Subclasses set ``name`` and implement ``rollout`` and ``config``."""

    name = "policy"
    has_bound = True  # a variational bound exists (False for baselines scored by their imputation's NLL)
    stochastic = True  # evaluated with K samples; deterministic models are evaluated once
    trainable = True
    steps = 0  # refinement steps T of a rollout (0: a model that does not refine, e.g. the baselines)
    allowed_masks: tuple[str, ...] | None = None  # the masks the model takes; None: any (the generators: 'full')
    l2 = 0.0  # the authors' L2 penalty on every parameter (added by the optimiser as weight decay 2*l2)
    kl_q_weight = 0.9  # the authors' trained objective: NLL + 0.9 KL(q||p) + 0.1 KL(p||q)
    kl_p_weight = 0.1
    train_mask: str | None = None  # the trainer's mask when set, whatever the run's mask (a VAE trains on 'full')
    takes_start = False  # rollout(start=...) begins from a given canvas, and a silent writer keeps it (GPSI)

    def rollout(self, x: torch.Tensor, observed: torch.Tensor, guided: bool = True, steps: int | None = None,
                generator: torch.Generator | None = None) -> Rollout:
        raise NotImplementedError

    def config(self) -> dict:
        raise NotImplementedError

    def fit(self, data) -> "Policy":
        """Non-trainable models (baselines) fit here from the training ``Dataset``; policies train by the trainer."""
        return self

    def guide_parameters(self) -> list[nn.Parameter]:
        """The guide q's parameters: what `seqimpute finetune` trains (the bound holds for any q). Empty for a
        model without a separate guide."""
        return []

    def tune(self, valid, mask: str, evaluate) -> dict:
        """Settings chosen on the validation ``Dataset`` under the run's ``mask`` after fitting or training (not by
        gradient: kNN's k, VAE-imp's step count). They must appear in ``config()``, so a reloaded model keeps them.
        ``evaluate``: the evaluator (seqimpute.evaluate.evaluate), passed in so that models never import it.
        Returns what was chosen; the default tunes nothing."""
        return {}

    def check_input(self, x: torch.Tensor, observed: torch.Tensor) -> None:
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise SeqImputeError(f"{self.name} was built for {self.dim} values per example, got input of shape "
                                 f"{tuple(x.shape)}; resize your data to the trained size.")
        if observed.shape != x.shape or observed.dtype != torch.bool:
            raise SeqImputeError(f"the mask must be a bool tensor of shape {tuple(x.shape)} (True = observed).")
