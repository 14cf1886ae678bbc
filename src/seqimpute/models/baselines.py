"""Simple references every imputation user expects: mean imputation and k-nearest-neighbour imputation.

Both are deterministic, non-trainable policies: ``fit`` reads the training set, ``tune`` (kNN) picks k on the
validation split, and a rollout returns one canvas (the logits of the imputed probabilities), scored by the
evaluator as the NLL of the imputation, exactly as template matching and VAE-imp are.

kNN by GEMM: the squared distance on the known values of a query x (mask m) to a training image t is
``||m*(x-t)||^2 = sum(m x^2) - 2 (m*x).t + m.(t^2)``. The first term is the same for every t, so the ranking is
that of ``[m, m*x] @ [t^2, -2t]^T``: one matrix product per chunk of queries against the whole bank.
"""

from __future__ import annotations

import torch

from .. import metrics
from ..data.masks import mask_set
from ..errors import SeqImputeError
from ..nn.dist import bernoulli_nll
from .policy import Policy, Rollout

LOGIT_CLAMP = 30.0  # sigmoid(+-30) is 1 - 1e-13: exact 0/1 probabilities survive the epsilon-form score (< 1e-7 nats)
CHUNK_ELEMS = 1 << 24  # scores held at once per GEMM chunk (queries x bank): 64 MB in float32
K_GRID = (1, 5, 10, 20, 50)
DEFAULT_K = 10  # used only when k was never tuned (fit without tune)
TUNE_N = 5000  # validation images used to choose settings


def prob_to_logits(p: torch.Tensor) -> torch.Tensor:
    """Canvas logits of probabilities, in float64, clamped to +-30, so that the evaluator's epsilon-form NLL of the
    canvas equals that of ``p`` (to < 1e-7 nats per value), exact 0s and 1s included. Canvases stay float64."""
    p = p.double()
    return (torch.log(p) - torch.log1p(-p)).clamp(-LOGIT_CLAMP, LOGIT_CLAMP)


def training_bank(data, who: str) -> torch.Tensor:
    """The training images as a float32 (N, D) bank, checked."""
    x = data.x.float()
    if len(x) == 0:
        raise SeqImputeError(f"{who} needs training images; the training split is empty.")
    if torch.isnan(x).any():
        raise SeqImputeError(f"{who} needs complete training images; the training data hold NaN.")
    return x.contiguous()


def query_chunk(n_bank: int, elems: int = CHUNK_ELEMS) -> int:
    """Queries per GEMM chunk so that a chunk's (queries x bank) scores hold about ``elems`` values."""
    return max(1, elems // max(n_bank, 1))


def tune_set(valid, mask: str, n: int = TUNE_N):
    """The first ``n`` validation images and their fixed validation masks (the evaluator's mask set for them)."""
    x = valid.x[:n]
    observed = mask_set(mask, valid.name, valid.split, len(x), valid.image_shape, valid.dim, x=x)
    return x, observed


class MeanImputer(Policy):
    """Every missing value is the training set's mean of that value."""

    name = "mean"
    trainable = False
    has_bound = False
    stochastic = False

    def __init__(self, dim: int):
        super().__init__()
        self.dim = int(dim)
        self.register_buffer("mean", torch.full((self.dim,), 0.5), persistent=False)  # refit from the data on load

    def config(self) -> dict:
        return {"dim": self.dim}

    def fit(self, data) -> "MeanImputer":
        self.mean = training_bank(data, "mean imputation").mean(0).to(self.mean.device)
        return self

    def rollout(self, x, observed, guided=False, steps=None, generator=None) -> Rollout:
        self.check_input(x, observed)
        c = prob_to_logits(self.mean).to(x.device).expand(x.shape[0], -1)
        return Rollout([c], None, None, None, False)


class KNNImputer(Policy):
    """The mean of the k training images nearest on the known values (squared distance), on the missing values.

    k is chosen from ``k_grid`` on the validation split under the run's mask (``tune``; the validation NLL of each
    k, in paper units, is kept in ``valid_nll`` and in the config)."""

    name = "knn"
    trainable = False
    has_bound = False
    stochastic = False

    def __init__(self, dim: int, k: int | None = None, k_grid: list[int] | tuple[int, ...] = K_GRID,
                 valid_nll: list[float] | None = None):
        super().__init__()
        self.dim = int(dim)
        self.k_grid = sorted({int(v) for v in k_grid})
        if not self.k_grid or self.k_grid[0] < 1 or (k is not None and int(k) < 1):
            raise SeqImputeError(f"k and k_grid must be positive integers, got k={k}, k_grid={list(k_grid)}.")
        self.k = None if k is None else int(k)
        self.valid_nll = None if valid_nll is None else [float(v) for v in valid_nll]
        self.register_buffer("bank", torch.empty(0, self.dim), persistent=False)
        self.register_buffer("w", torch.empty(2 * self.dim, 0), persistent=False)

    def config(self) -> dict:
        return {"dim": self.dim, "k": self.k, "k_grid": self.k_grid, "valid_nll": self.valid_nll}

    def fit(self, data) -> "KNNImputer":
        t = training_bank(data, "kNN imputation").to(self.bank.device)
        self.bank = t
        self.w = torch.cat([t.pow(2), -2 * t], 1).T.contiguous()  # (2D, N): [m, m*x] @ w ranks by distance
        return self

    def _check_fitted(self):
        if self.bank.shape[0] == 0:
            raise SeqImputeError(f"{self.name} is not fitted; call fit(training_dataset) first.")

    def neighbours(self, x: torch.Tensor, observed: torch.Tensor, k: int) -> torch.Tensor:
        """Indices (B, k) of the k nearest training images on the known values, nearest first."""
        self._check_fitted()
        k = min(int(k), self.bank.shape[0])
        m = observed.to(self.w.dtype)
        q = torch.cat([m, torch.where(observed, x, 0.0).to(self.w.dtype)], 1)  # missing values never read
        step = query_chunk(self.bank.shape[0])
        return torch.cat([(q[s : s + step] @ self.w).topk(k, dim=1, largest=False).indices
                          for s in range(0, len(q), step)])

    def impute(self, x: torch.Tensor, observed: torch.Tensor, k: int | None = None) -> torch.Tensor:
        """The neighbours' mean (B, D), float32."""
        k = k or self.k or DEFAULT_K
        idx = self.neighbours(x.to(self.bank.device), observed.to(self.bank.device), k)
        step = max(1, CHUNK_ELEMS // (idx.shape[1] * self.dim))
        return torch.cat([self.bank[idx[s : s + step]].mean(1) for s in range(0, len(idx), step)])

    def rollout(self, x, observed, guided=False, steps=None, generator=None) -> Rollout:
        self.check_input(x, observed)
        return Rollout([prob_to_logits(self.impute(x, observed)).to(x.device)], None, None, None, False)

    @torch.inference_mode()
    def tune(self, valid, mask: str, evaluate=None) -> dict:
        """Choose k from ``k_grid`` by the NLL of the imputations on the validation split (paper units)."""
        self._check_fitted()
        x, observed = tune_set(valid, mask)
        x, observed = x.to(self.bank.device), observed.to(self.bank.device)
        n_missing = float((~observed).sum())
        if n_missing == 0 or torch.isnan(x).any():
            return {}
        kmax = min(self.k_grid[-1], self.bank.shape[0])
        grid = [k for k in self.k_grid if k <= kmax] or [kmax]
        tot = torch.zeros(len(grid), dtype=torch.float64)
        step = max(1, CHUNK_ELEMS // (kmax * self.dim))
        for s in range(0, len(x), step):
            xb, ob = x[s : s + step], observed[s : s + step]
            nb = self.bank[self.neighbours(xb, ob, kmax)].double().cumsum(1)  # (b, kmax, D): running sums
            for j, k in enumerate(grid):
                p = nb[:, k - 1] / k
                tot[j] += float(bernoulli_nll(xb.double(), p).masked_fill(ob, 0.0).sum())
        nll = [metrics.paper_units(t, self.dim, n_missing) for t in tot.tolist()]
        best = min(range(len(grid)), key=lambda j: nll[j])
        self.k = grid[best]
        self.valid_nll = [nll[grid.index(k)] if k in grid else float("nan") for k in self.k_grid]
        return {"k": self.k, "valid_nll": self.valid_nll}
