"""GPSI-add and GPSI-jump (Sec 3.1; docs/PAPER.md §4 (GPSI) and §13.1 (GPSI spec)).

Each step: composite x~ = m*x + (1-m)*sigmoid(c); the primary p(z|x~) and the guide q(z|[x~, x]) are ReLU MLPs
giving diagonal Gaussians; z is drawn from q (guided) or p; the writer (omega) maps z to delta; add: c += delta,
jump: c = delta. Loss and bound come from the shared rollout (models/objectives.py).

``link`` names the canvas's output link: "sigmoid" (the paper's, default: the guess is sigmoid(c), c are logits for a
Bernoulli likelihood) or "identity" (the guess is c itself, a mean for a Gaussian likelihood on standardised reals,
as seqimpute.SequentialImputer uses).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import SeqImputeError
from ..nn.layers import DecMLP, GaussMLP
from ..nn.shared import SharedLinear
from ..precision import for_product, linear
from .policy import Policy, Rollout, Trajectory, composite, latent_step

PRESETS = {  # docs/PAPER.md §4.1 (GPSI sizes)
    "mnist": {"hidden": 1000, "z": 100, "steps": 6},
    "tfd": {"hidden": 1500, "z": 200, "steps": 6},
    "svhn": {"hidden": 1500, "z": 200, "steps": 6},
}


class GPSI(Policy):
    l2 = 1e-4
    takes_start = True

    def __init__(self, dim: int, hidden: int = 1000, z: int = 100, steps: int = 6, step_type: str = "add",
                 kl_q_weight: float = 0.9, kl_p_weight: float = 0.1, l2: float = 1e-4, link: str = "sigmoid"):
        super().__init__()
        if step_type not in ("add", "jump"):
            raise SeqImputeError(f"step_type must be 'add' or 'jump', not {step_type!r}.")
        if link not in ("sigmoid", "identity"):
            raise SeqImputeError(f"link must be 'sigmoid' (Bernoulli) or 'identity' (Gaussian means), not {link!r}.")
        self.link = link
        for k, v in (("dim", dim), ("hidden", hidden), ("z", z), ("steps", steps)):
            if int(v) < 1:
                raise SeqImputeError(f"{k} must be a positive integer, got {v}.")
        self.dim, self.hidden, self.z, self.steps, self.step_type = int(dim), int(hidden), int(z), int(steps), step_type
        self.kl_q_weight, self.kl_p_weight, self.l2 = float(kl_q_weight), float(kl_p_weight), float(l2)
        self.name = f"gpsi-{step_type}"
        self.c0 = nn.Parameter(torch.zeros(dim))  # the first guess is sigmoid(0) = 0.5
        self.p = GaussMLP(dim, hidden, z)  # primary: sees the composite
        self.q = GaussMLP(2 * dim, hidden, z)  # guide: sees [composite, x]
        self.writer = DecMLP(z, hidden, dim)  # omega

    def config(self) -> dict:
        return {"dim": self.dim, "hidden": self.hidden, "z": self.z, "steps": self.steps, "step_type": self.step_type,
                "kl_q_weight": self.kl_q_weight, "kl_p_weight": self.kl_p_weight, "l2": self.l2,
                **({} if self.link == "sigmoid" else {"link": self.link})}

    def guide_parameters(self) -> list[nn.Parameter]:
        """q's parameters: what `seqimpute finetune` trains (the bound holds for any q)."""
        return list(self.q.parameters())

    def rollout(self, x, observed, guided=True, steps=None, generator=None, start=None) -> Rollout:
        """``start`` (B, D): a per-row first canvas, added to c0 (SequentialImputer's conditional-Gaussian start);
        None: c0 alone, the paper's."""
        self.check_input(x, observed)
        T = self.steps if steps is None else int(steps)
        B, D = x.shape
        # Effective weights once per rollout, not per step, as SharedLinear layers (each weight's gradient formed in
        # one pass over the steps). The first layers of p and q both read the composite, so they run as one GEMM;
        # q's columns for x are constant over the steps and computed once.
        wp1, bp1 = self.p.fc1.effective()
        p_rest = self.p.step_layers()
        writer = self.writer.step_layers()
        if guided:
            wq1, bq1 = self.q.fc1.effective()
            wq_c, wq_x = wq1.split(D, dim=1)  # one SplitBackward (a cat of the two grads), not two zero-filled slices
            first = SharedLinear(torch.cat([wp1, wq_c]))
            q_from_x = linear(x, wq_x, bq1)
            bp1 = for_product(bp1)  # added to a product's output: in its dtype
            q_rest = self.q.step_layers()
        else:
            first = SharedLinear(wp1, bp1)
        guess = torch.sigmoid if self.link == "sigmoid" else (lambda u: u)
        c = self.c0.expand(B, D) if start is None else self.c0 + start
        traj = Trajectory(c, guided)
        for _ in range(T):
            xt = composite(x, observed, guess(c))
            if guided:
                hp, hq = first(xt).split(self.hidden, dim=-1)
                mu_p, lv_p = self.p.from_hidden(F.relu(hp + bp1), *p_rest)
                mu_q, lv_q = self.q.from_hidden(F.relu(hq + q_from_x), *q_rest)
            else:
                mu_p, lv_p = self.p.from_hidden(F.relu(first(xt)), *p_rest)
                mu_q = lv_q = None
            z, kqp, kpq, lr = latent_step(mu_p, lv_p, mu_q, lv_q, guided, generator)
            delta = self.writer(z, writer)
            c = c + delta if self.step_type == "add" else delta.to(x.dtype)  # the canvas: in the data's dtype
            traj.add(c, kqp, kpq, lr)
        return traj.rollout()
