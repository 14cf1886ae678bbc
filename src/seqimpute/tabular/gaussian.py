"""The starting canvas of SequentialImputer: a multivariate Gaussian over the standardised canvas entries, fitted by
EM on the observed values; a row's missing entries start at their conditional mean given its visible ones. Up to
MAX_ENTRIES entries the Gaussian has a full covariance (ConditionalGaussian); a wider table (an image as a row) gets
a low-rank one, probabilistic PCA (LowRankGaussian), whose per-row solves stay small.

That conditional mean is a linear model of the visible columns, a different one for each pattern of holes, which
is what IterativeImputer's chained regressions approximate. The policy then refines it over its T steps (and learns
what a linear model cannot: the variance of the imputation, nonlinear dependence, the other column kinds).
"""

from __future__ import annotations

import torch

EM_ITERATIONS = 10  # on breast cancer at 30% MCAR the imputation RMSE moves by under 1% after 5-10
RIDGE = 1e-3  # added to the visible block's diagonal (standardised units): a column that is a linear function of
# others, or a pair never observed together, leaves the solve well posed
MAX_ENTRIES = 128  # above this many entries a full covariance's per-row solves cost too much: a low-rank one
CHUNK_ROWS = 512  # rows per batched solve (memory: CHUNK_ROWS x G x G float64)


class ConditionalGaussian:
    """mean (G,) and covariance (G, G) of the standardised numeric entries, float64."""

    def __init__(self, mean: torch.Tensor, cov: torch.Tensor):
        self.mean, self.cov = mean.double(), cov.double()

    def tensors(self) -> dict:
        """What a saved imputer holds of it (``from_tensors`` reads it back)."""
        return {"start_mean": self.mean, "start_cov": self.cov}

    @classmethod
    def fit(cls, z: torch.Tensor, visible: torch.Tensor, iterations: int = EM_ITERATIONS) -> "ConditionalGaussian":
        """EM for a Gaussian with values missing at random: z (N, G) standardised values (any number where not
        ``visible``), visible (N, G) bool. Starts from the mean 0 and unit covariance of standardised columns."""
        z, visible = z.double(), visible.bool()
        n, g = z.shape
        model = cls(torch.zeros(g, dtype=torch.float64, device=z.device),
                    torch.eye(g, dtype=torch.float64, device=z.device))
        for _ in range(iterations):
            filled, spread = model._expectations(z, visible)
            mean = filled.mean(0)
            centred = filled - mean
            model = cls(mean, (centred.T @ centred + spread) / n)
        return model

    def missing_variance(self, z: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """(G,) each entry's conditional variance given a row's visible entries, averaged over the rows where it is
        not visible (the unconditional variance where it always is): the spread of its imputations."""
        _, spread = self._expectations(z.double(), visible.bool())
        hidden = (~visible.bool()).sum(0)
        return torch.where(hidden > 0, spread.diagonal() / hidden.clamp(min=1), self.cov.diagonal())

    def conditional_mean(self, z: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """z with every entry that is not ``visible`` replaced by its conditional mean given the visible ones."""
        out = torch.empty_like(z)
        for s in range(0, len(z), CHUNK_ROWS):
            out[s:s + CHUNK_ROWS] = self._solve(z[s:s + CHUNK_ROWS].double(), visible[s:s + CHUNK_ROWS].bool())[0].to(z.dtype)
        return out

    def _expectations(self, z: torch.Tensor, visible: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """E-step: the rows with their missing entries at the conditional mean, and the sum over rows of the
        conditional covariance of the missing entries (zero elsewhere)."""
        filled, spread = torch.empty_like(z), torch.zeros_like(self.cov)
        for s in range(0, len(z), CHUNK_ROWS):
            filled[s:s + CHUNK_ROWS], part = self._solve(z[s:s + CHUNK_ROWS], visible[s:s + CHUNK_ROWS], spread=True)
            spread += part
        return filled, spread

    def _solve(self, z: torch.Tensor, visible: torch.Tensor, spread: bool = False):
        S = self.cov
        v = visible.to(S.dtype)
        # One system per row: the visible block of S with identity rows and columns where the entry is missing,
        # so that a batched solve handles every pattern of holes at once (the missing entries solve to zero).
        eye = torch.eye(len(S), dtype=S.dtype, device=S.device)
        A = S * v[:, :, None] * v[:, None, :] + eye * (1 - v + RIDGE * v)[:, None, :]
        b = ((z - self.mean) * v).unsqueeze(-1)
        Sv = S[None] * v[:, :, None] if spread else None  # visible rows of S: the columns of S_ov
        # one factorisation per row for both right-hand sides: A^-1 (z - mean)_o and A^-1 S_o.
        solved = torch.linalg.solve(A, b if Sv is None else torch.cat([b, Sv], -1))
        w = solved[..., 0]
        filled = torch.where(visible, z, self.mean + w @ S)  # S symmetric: S @ w per row
        if Sv is None:
            return filled, None
        K = solved[..., 1:]
        u = 1 - v
        cov_u = (S[None] - Sv.transpose(1, 2) @ K) * u[:, :, None] * u[:, None, :]
        return filled, cov_u.sum(0)


RANK = 64  # the low-rank start's latent dimensions (probabilistic PCA), and its EM iterations: chosen on the MNIST
PPCA_ITERATIONS = 10  # table of benchmarks/imputers.py (rank 30 imputed it clearly worse, 100 barely better at twice
# the time; more iterations moved little once the parameter expansion was in)


class LowRankGaussian:
    """Probabilistic PCA (Tipping & Bishop 1999) of the entries: z = mean + factor x + noise, x ~ N(0, I_k), noise
    ~ N(0, noise_var I); covariance factor factor^T + noise_var I. For tables with more entries than MAX_ENTRIES (an
    image as a row): its per-row solves are k x k, not G x G. float64."""

    def __init__(self, mean: torch.Tensor, factor: torch.Tensor, noise_var: torch.Tensor):
        self.mean, self.factor, self.noise_var = mean.double(), factor.double(), noise_var.double().reshape(1)

    def tensors(self) -> dict:
        return {"start_mean": self.mean, "start_factor": self.factor, "start_noise": self.noise_var}

    @classmethod
    def fit(cls, z: torch.Tensor, visible: torch.Tensor, rank: int = RANK,
            iterations: int = PPCA_ITERATIONS) -> "LowRankGaussian":
        """EM with values missing at random (Ilin & Raiko 2010, "Practical approaches to PCA with missing
        values"), from the principal components of the mean-filled table."""
        z, v = z.double(), visible.double()
        n, g = z.shape
        k = max(1, min(rank, g - 1, n - 1))
        mean = (z * v).sum(0) / v.sum(0).clamp(min=1)
        filled = torch.where(visible.bool(), z, mean)
        _, s, vt = torch.linalg.svd(filled - mean, full_matrices=False)
        noise = (s[k:] ** 2).sum() / (n * g) + 1e-6
        model = cls(mean, vt[:k].T * (s[:k] / n ** 0.5), noise)
        one = torch.ones(n, 1, dtype=z.dtype, device=z.device)
        for _ in range(iterations):
            x, cov_x = model._posterior(z, v)
            # M-step: per entry, the regression of its visible values on [x, 1] (factor row and mean together)
            xa = torch.cat([x, one], 1)
            second = xa[:, :, None] * xa[:, None, :]
            second[:, :k, :k] += cov_x
            A = (v.T @ second.reshape(n, -1)).reshape(g, k + 1, k + 1)  # over the rows where the entry is visible
            A = A + 1e-9 * torch.eye(k + 1, dtype=A.dtype, device=A.device)
            coef = torch.linalg.solve(A, ((z * v).T @ xa).unsqueeze(-1))[..., 0]
            factor, mean = coef[:, :k], coef[:, k]
            err = (((z - mean - x @ factor.T) * v) ** 2).sum()
            spread = torch.einsum("gk,gkl,gl->", factor, (v.T @ cov_x.reshape(n, k * k)).reshape(g, k, k), factor)
            # parameter expansion (Liu, Rubin & Wu 1998): the latent's fitted moments moved into the mean and factor,
            # so x stays N(0, I); plain EM creeps along this direction for hundreds of iterations
            m = x.mean(0)
            C = (x.T @ x) / n + cov_x.mean(0) - torch.outer(m, m)
            mean, factor = mean + factor @ m, factor @ torch.linalg.cholesky(C + 1e-9 * torch.eye(k, dtype=C.dtype))
            model = cls(mean, factor, (err + spread) / v.sum() + 1e-6)
        return model

    def _posterior(self, z: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per row, the latent x's posterior mean (N, k) and covariance (N, k, k) given its visible entries."""
        W, k = self.factor, self.factor.shape[1]
        xs, covs = [], []
        for s in range(0, len(z), CHUNK_ROWS):
            vs = v[s:s + CHUNK_ROWS]
            M = torch.einsum("ng,gk,gl->nkl", vs, W, W) + self.noise_var * torch.eye(k, dtype=W.dtype, device=W.device)
            Minv = torch.linalg.inv(M)
            xs.append((Minv @ (((z[s:s + CHUNK_ROWS] - self.mean) * vs) @ W).unsqueeze(-1))[..., 0])
            covs.append(self.noise_var * Minv)
        return torch.cat(xs), torch.cat(covs)

    def conditional_mean(self, z: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """z with every entry that is not ``visible`` replaced by its conditional mean given the visible ones."""
        x, _ = self._posterior(z.double(), visible.double())
        return torch.where(visible.bool(), z, (self.mean + x @ self.factor.T).to(z.dtype))

    def missing_variance(self, z: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """(G,) each entry's conditional variance given a row's visible entries, averaged over the rows where it is
        not visible (the unconditional variance where it always is)."""
        _, cov_x = self._posterior(z.double(), visible.double())
        hidden = (~visible.bool()).double()
        k = cov_x.shape[1]
        per = torch.einsum("gk,gkl,gl->g", self.factor, (hidden.T @ cov_x.reshape(len(z), k * k)).reshape(-1, k, k),
                           self.factor)
        n_hidden = hidden.sum(0)
        full = (self.factor ** 2).sum(1) + self.noise_var
        return torch.where(n_hidden > 0, per / n_hidden.clamp(min=1) + self.noise_var, full)


def from_tensors(t: dict, G: int) -> ConditionalGaussian | LowRankGaussian:
    """The start a saved imputer's ``start_*`` tensors hold, for G entries; ValueError when they do not fit."""
    if any(v.dtype != torch.float64 or not torch.isfinite(v).all() for v in t.values()):
        raise ValueError("not all finite float64 values")
    mean = t.get("start_mean")
    if mean is None or tuple(mean.shape) != (G,):
        raise ValueError(f"no mean of {G} values")
    if set(t) == {"start_mean", "start_cov"} and tuple(t["start_cov"].shape) == (G, G):
        return ConditionalGaussian(mean, t["start_cov"])
    if set(t) == {"start_mean", "start_factor", "start_noise"} and t["start_factor"].ndim == 2 and \
            t["start_factor"].shape[0] == G and tuple(t["start_noise"].shape) == (1,) and t["start_noise"].item() > 0:
        return LowRankGaussian(mean, t["start_factor"], t["start_noise"])
    raise ValueError(f"neither a {G}x{G} covariance nor a factor of {G} rows with a positive noise variance")
