"""A VAE and VAE-imp (docs/PAPER.md §7.1 (VAE-imp), §13.4 (VAE-imp spec)), as a policy.

A VAE is a one-step policy whose guide is the encoder q(z|x) and whose primary is the prior N(0, I). Its guided
rollout, run by the shared trainer on mask 'full' (every value "missing": ``train_mask``), gives canvases
[c_0, dec(z)] with z ~ q(z|x) and KL(q || N(0,I)), so the shared training loss with kl_q_weight = 1 and
kl_p_weight = 0 is the negative ELBO (Bernoulli NLL of every value + KL), plus the 1e-4 L2 as weight decay.

Its unguided rollout is VAE-imp: the missing values start at 0.5 (c_0 = 0); then ``steps`` times: paste the known
values over the guess, z ~ q(z | composite), c = dec(z). The known values are never changed (the composite keeps
them, and the evaluator scores only the missing ones). The paper scores the best step chosen on the evaluation
data itself; here the step whose canvas is the imputation (``impute_step``) is chosen on the validation split
after training (``tune``), and the evaluator adds the paper's oracular min over steps as a labelled extra key.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import SeqImputeError
from ..nn.layers import DecMLP, GaussMLP
from ..precision import linear
from .policy import Policy, Rollout, composite, latent_step

PRESETS = {  # docs/PAPER.md §7.1 (VAE-imp): H = 500 for MNIST, 1000 for TFD and SVHN; z = 100; 15 refinement steps
    "mnist": {"hidden": 500, "z": 100, "steps": 15},
    "tfd": {"hidden": 1000, "z": 100, "steps": 15},
    "svhn": {"hidden": 1000, "z": 100, "steps": 15},
}
TUNE_N = 1000  # validation images for the step choice
TUNE_SAMPLES = 10  # rollouts per image, as the paper's scoring


class VAEImputer(Policy):
    name = "vae-imp"
    has_bound = False  # scored by the NLL of its imputation
    stochastic = True
    train_mask = "full"  # the VAE trains on complete images whatever the run's mask
    kl_q_weight = 1.0  # NLL + KL(q || N(0,I)): the ELBO
    kl_p_weight = 0.0

    def __init__(self, dim: int, hidden: int = 500, z: int = 100, steps: int = 15, impute_step: int | None = None,
                 step_valid_nll: list[float] | None = None, l2: float = 1e-4):
        super().__init__()
        for k, v in (("dim", dim), ("hidden", hidden), ("z", z), ("steps", steps)):
            if int(v) < 1:
                raise SeqImputeError(f"{k} must be a positive integer, got {v}.")
        if impute_step is not None and not 1 <= int(impute_step) <= int(steps):
            raise SeqImputeError(f"impute_step must lie in 1..steps ({steps}), got {impute_step}.")
        self.dim, self.hidden, self.z, self.steps = int(dim), int(hidden), int(z), int(steps)
        self.impute_step = None if impute_step is None else int(impute_step)
        self.step_valid_nll = None if step_valid_nll is None else [float(v) for v in step_valid_nll]
        self.l2 = float(l2)
        self.enc = GaussMLP(dim, hidden, z)  # q(z|x)
        self.dec = DecMLP(z, hidden, dim)  # p(x|z), logits

    def config(self) -> dict:
        return {"dim": self.dim, "hidden": self.hidden, "z": self.z, "steps": self.steps,
                "impute_step": self.impute_step, "step_valid_nll": self.step_valid_nll, "l2": self.l2}

    def encode(self, u: torch.Tensor, weights=None) -> tuple[torch.Tensor, torch.Tensor]:
        w1, rest = weights or (self.enc.fc1.effective(), self.enc.step_layers())
        return self.enc.from_hidden(F.relu(linear(u, *w1)), *rest)

    def rollout(self, x, observed, guided=True, steps=None, generator=None) -> Rollout:
        """Guided: one VAE step, z ~ q(z|x) (the ELBO's terms). Unguided: VAE-imp for ``steps`` steps (default
        ``self.steps``), all canvases returned; the imputation is the canvas at ``impute_step`` when it was
        tuned and no explicit ``steps`` is asked for, else the last."""
        self.check_input(x, observed)
        B, D = x.shape
        c = x.new_zeros(B, D)  # sigmoid(0) = 0.5
        if guided:
            mu, lv = self.encode(x)
            zero = torch.zeros_like(mu)
            z, kl_qp, kl_pq, log_ratio = latent_step(zero, zero, mu, lv, True, generator)
            return Rollout([c, self.dec(z).to(x.dtype)], kl_qp.unsqueeze(0), kl_pq.unsqueeze(0), log_ratio, True)
        T = self.steps if steps is None else int(steps)
        enc_w = (self.enc.fc1.effective(), self.enc.step_layers())
        dec_w = self.dec.step_layers()
        canvases = [c]
        for _ in range(T):
            mu, lv = self.encode(composite(x, observed, torch.sigmoid(c)), enc_w)
            z, *_ = latent_step(mu, lv, None, None, False, generator)
            c = self.dec(z, dec_w).to(x.dtype)  # the canvas: in the data's dtype
            canvases.append(c)
        final = self.impute_step if steps is None and self.impute_step is not None and T >= 1 else None
        return Rollout(canvases, None, None, None, False, final_step=final)

    def tune(self, valid, mask: str, evaluate) -> dict:
        """Choose the imputation step (1..steps) by the validation NLL of VAE-imp under ``mask`` (paper units),
        as ``evaluate`` (seqimpute.evaluate.evaluate) scores it."""
        res = evaluate(self, valid, mask, samples=TUNE_SAMPLES, n=min(len(valid), TUNE_N), batch=500)
        curve = res["per_step_unguided_nll_paper_units"]  # the evaluator's per-step curve, on the validation masks
        self.impute_step = min(range(1, len(curve)), key=lambda t: curve[t])
        self.step_valid_nll = curve
        return {"impute_step": self.impute_step, "step_valid_nll": curve}
