"""Template matching over the training set (docs/PAPER.md §7.2 (template matching), §13.5): TM-hon and TM-orc.

The training images are the templates; their values serve directly as Bernoulli probabilities with the paper's
epsilon. For an image x, a selection s of its values (the known ones for TM-hon, the missing ones for TM-orc) and
a template t,

    LL_s(t) = sum_i s_i [x_i log(t_i+eps) + (1-x_i) log(1-t_i+eps)]
            = sum_i (s_i x_i) [log(t_i+eps) - log(1-t_i+eps)] + sum_i s_i log(1-t_i+eps),

which is linear in (s*x, s): the log-likelihoods of all templates are one product ``[s*x, s] @ [A, L]^T`` per
chunk of images. The chosen template is the argmax; the search runs in float32 and its few best candidates are
rescored exactly (float64) so near-ties resolve as a direct loop would. The score, computed by the evaluator, is
the epsilon-form NLL of the chosen template on the missing values.

TM-hon chooses by the known values only and never reads the missing ones. TM-orc chooses by the missing values:
it reads the truth it is scored on, which is its definition (an oracle, a bound on what matching can reach).
"""

from __future__ import annotations

import torch

from ..errors import SeqImputeError
from ..nn.dist import PAPER_EPS
from .baselines import prob_to_logits, query_chunk, training_bank
from .policy import Policy, Rollout


class TemplateMatcher(Policy):
    trainable = False
    has_bound = False
    stochastic = False

    def __init__(self, dim: int, oracle: bool = False, candidates: int = 4):
        super().__init__()
        self.dim, self.oracle, self.candidates = int(dim), bool(oracle), int(candidates)
        if self.candidates < 1:
            raise SeqImputeError(f"candidates must be a positive integer, got {candidates}.")
        self.name = "tm-orc" if self.oracle else "tm-hon"
        self.register_buffer("bank", torch.empty(0, self.dim), persistent=False)  # refit from the data on load
        self.register_buffer("w", torch.empty(2 * self.dim, 0), persistent=False)

    def config(self) -> dict:
        return {"dim": self.dim, "oracle": self.oracle, "candidates": self.candidates}

    def fit(self, data) -> "TemplateMatcher":
        t = training_bank(data, "template matching").to(self.bank.device)
        self.bank = t
        log_t, log_1mt = torch.log(t + PAPER_EPS), torch.log(1 - t + PAPER_EPS)
        self.w = torch.cat([log_t - log_1mt, log_1mt], 1).T.contiguous()  # (2D, N)
        return self

    def log_likelihoods(self, x: torch.Tensor, select: torch.Tensor) -> torch.Tensor:
        """LL_select(t) of every template, (B, N), float32, by one GEMM. Reads x only where ``select``."""
        s = select.to(self.w.dtype)
        return torch.cat([torch.where(select, x, 0.0).to(self.w.dtype), s], 1) @ self.w

    def choose(self, x: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        """The index (B,) of the chosen template: argmax of the known-value (honest) or missing-value (oracle)
        log-likelihood."""
        if self.bank.shape[0] == 0:
            raise SeqImputeError(f"{self.name} is not fitted; call fit(training_dataset) first.")
        x, observed = x.to(self.bank.device), observed.to(self.bank.device)
        select = ~observed if self.oracle else observed
        xs = torch.where(select, x, 0.0)  # the only view of x used below: honest never sees a missing value
        c = min(self.candidates, self.bank.shape[0])
        step = query_chunk(self.bank.shape[0])
        out = []
        for s in range(0, len(x), step):
            xb, sb = xs[s : s + step], select[s : s + step]
            cand = self.log_likelihoods(xb, sb).topk(c, dim=1).indices  # (b, c)
            t = self.bank[cand].double()  # exact rescoring of the candidates
            xd = xb.double().unsqueeze(1)
            ll = (sb.unsqueeze(1) * (xd * torch.log(t + PAPER_EPS) + (1 - xd) * torch.log(1 - t + PAPER_EPS))).sum(-1)
            out.append(cand.gather(1, ll.argmax(1, keepdim=True)).squeeze(1))
        return torch.cat(out) if out else torch.empty(0, dtype=torch.long, device=x.device)

    def rollout(self, x, observed, guided=False, steps=None, generator=None) -> Rollout:
        self.check_input(x, observed)
        return Rollout([prob_to_logits(self.bank[self.choose(x, observed)]).to(x.device)], None, None, None, False)

