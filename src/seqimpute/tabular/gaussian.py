"""The starting canvas of SequentialImputer: a multivariate Gaussian over the standardised numeric columns, fitted
by EM on the observed values; a row's missing numbers start at their conditional mean given its visible ones.

That conditional mean is a linear model of the visible columns, a different one for each pattern of holes, which
is what IterativeImputer's chained regressions approximate. The policy then refines it over its T steps (and learns
what a linear model cannot: the variance of the imputation, nonlinear dependence, the other column kinds).
"""

from __future__ import annotations

import torch

EM_ITERATIONS = 10  # on breast cancer at 30% MCAR the imputation RMSE moves by under 1% after 5-10
RIDGE = 1e-3  # added to the visible block's diagonal (standardised units): a column that is a linear function of
# others, or a pair never observed together, leaves the solve well posed
MAX_ENTRIES = 128  # above this many numeric entries the per-row solves cost more than they help; start at the mean
CHUNK_ROWS = 512  # rows per batched solve (memory: CHUNK_ROWS x G x G float64)


class ConditionalGaussian:
    """mean (G,) and covariance (G, G) of the standardised numeric entries, float64."""

    def __init__(self, mean: torch.Tensor, cov: torch.Tensor):
        self.mean, self.cov = mean.double(), cov.double()

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
