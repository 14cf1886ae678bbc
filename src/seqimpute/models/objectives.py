"""The objectives computed from a rollout, one implementation for every model: the NLL of the missing values, the
training loss the authors trained (NLL + 0.9 KL(q||p) + 0.1 KL(p||q)) and the paper's guided bound; and the scoring
of data with holes (NaN: never seen, never scored)."""

from __future__ import annotations

import torch

from ..nn.dist import bernoulli_nll, bernoulli_nll_logits
from .policy import Policy, Rollout


def scored_sum(nll: torch.Tensor, observed: torch.Tensor, known: torch.Tensor | None = None) -> torch.Tensor:
    """Per example (B,), an elementwise NLL summed over the scored values: those missing from the policy's input
    (``observed`` False) whose true value is ``known`` (None: every value is, complete data). A value the data
    lack (NaN in the data) is neither seen nor scored."""
    return nll.masked_fill(observed if known is None else observed | ~known, 0.0).sum(-1)


def fill_holes(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Data with holes (NaN) as (x with 0 in the holes, ``known``: the values the data hold), for `scored_sum`:
    neither the policy, its guide nor the loss then meets a NaN. Complete data: (x, None)."""
    holes = torch.isnan(x)
    if not holes.any():
        return x, None
    return x.masked_fill(holes, 0.0), ~holes


def missing_nll(x: torch.Tensor, logits: torch.Tensor, observed: torch.Tensor, paper: bool = True,
                known: torch.Tensor | None = None) -> torch.Tensor:
    """NLL of the missing values under Bernoulli(sigmoid(logits)), per example (B,). ``paper``: the reported,
    epsilon-clipped form; otherwise the logits form used for training. ``known``: the values the data hold (None:
    all); the others are not scored (`scored_sum`)."""
    nll = bernoulli_nll(x, torch.sigmoid(logits)) if paper else bernoulli_nll_logits(x, logits)
    return scored_sum(nll, observed, known)


def training_loss(policy: Policy, r: Rollout, x: torch.Tensor, observed: torch.Tensor,
                  nll: torch.Tensor | None = None, known: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """The authors' objective, mean over the batch: NLL + w_q KL(q||p) + w_p KL(p||q) (L2 is weight decay).

    ``nll``: the per-example NLL (B,) of the scored values at c_T; by default the Bernoulli NLL (logits form) of
    the values ``observed`` leaves missing and the data hold (``known``; None: all). `SequentialImputer` passes its
    own (its likelihood, on the values it hid), so both trainers share this objective."""
    if nll is None:
        nll = missing_nll(x, r.final, observed, paper=False, known=known)
    kl_qp, kl_pq = r.kl_qp.sum(0), r.kl_pq.sum(0)
    loss = (nll + policy.kl_q_weight * kl_qp + policy.kl_p_weight * kl_pq).mean()
    return loss, {"nll": nll.mean().detach(), "kl_qp": kl_qp.mean().detach(), "kl_pq": kl_pq.mean().detach()}


def bound(r: Rollout, x: torch.Tensor, observed: torch.Tensor, known: torch.Tensor | None = None) -> torch.Tensor:
    """The paper's guided bound per example: NLL of the missing (and ``known``) values at c_T + sum over steps of
    KL(q||p)."""
    return missing_nll(x, r.final, observed, known=known) + r.kl_qp.sum(0)
