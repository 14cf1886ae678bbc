"""Early stopping of SequentialImputer.fit: validation holes held out of the observed values (``holdout``), and the
scorer that evaluates them every epoch, keeps the best parameters and halts the budget (``EarlyStopping``)."""

from __future__ import annotations

import math

import numpy as np
import torch

from ..loop import Budget

# The validation holes are whole shares of some rows' observed values, as
# the training batches hide them, so they look like the holes transform fills; few rows keep each evaluation cheap.
VALIDATION_MAX = 5000  # validation entries: validation_fraction of the observed values, at most this many
VALIDATION_ROW_RATE = 0.35  # share of a validation row's observed values held out (the middle of hide_rate)
VALIDATION_ROLLOUTS = 4  # unguided rollouts averaged per validation score (the same noise at every evaluation)
VALIDATION_EVERY = (20, 100)  # updates between evaluations: one epoch, clipped to this range
VALIDATION_SMALLEST = 100  # fewer observed values than this: no validation holes, the whole budget is trained
IMPROVEMENT = 0.005  # a score must beat the best by this share to count as progress (the best is kept either way):
# gains of 0.1-0.3% per epoch, within the noise of a few hundred held-out values, no longer hold training open


def holdout(observed: np.ndarray, share: float, seed: int) -> np.ndarray:
    """The validation holes of early stopping: a (N, D) bool mask of observed entries, none of them used for
    training. Rows are taken in a random order and VALIDATION_ROW_RATE of each one's observed values held out until
    ``share`` of all observed values (at most VALIDATION_MAX) are; every column keeps at least one training value
    and every row one observed value. All False when fewer than VALIDATION_SMALLEST are observed. The entries are
    the table's (one per input column): a held-out category hides its whole one-hot group."""
    n_obs = int(observed.sum())
    if n_obs < VALIDATION_SMALLEST:
        return np.zeros_like(observed)
    want = min(max(round(share * n_obs), 1), VALIDATION_MAX)
    rng = np.random.default_rng(seed)
    per_row = observed.sum(1)
    take = np.where(per_row >= 2, np.maximum(1, np.round(VALIDATION_ROW_RATE * per_row)), 0).astype(int)
    order = rng.permutation(len(observed))
    rows = order[:int(np.searchsorted(np.cumsum(take[order]), want)) + 1]
    keys = np.where(observed[rows], rng.random((len(rows), observed.shape[1])), np.inf)
    held = np.zeros_like(observed)
    held[rows] = keys.argsort(1).argsort(1) < take[rows, None]  # each row's take[i] randomly ranked observed values
    emptied = ~(observed & ~held).any(0)  # a column left without a training value gets its values back
    held[:, emptied] = False
    return held


class EarlyStopping:
    """Scores the validation holes every ``every`` updates, keeps the best parameters, and halts the budget after
    ``patience`` evaluations without improvement. The score is the RMSE, in standardised units (the likelihood's
    units for Bernoulli), of the mean of unguided rollouts there (VALIDATION_ROLLOUTS of them, with the same noise
    at every evaluation so that scores differ by the parameters alone): what transform returns for numbers. A binary
    or categorical value's error is 1 - the mean probability of its true value (ColumnLayout.errors). Only a score
    ``improvement`` (a share) below the best counts as progress; the parameters of the lowest score are kept."""

    def __init__(self, imp, model, params, X_train, X, held, patience: int, per_epoch: int, budget: Budget,
                 improvement: float = IMPROVEMENT):
        self.imp, self.model, self.params, self.budget, self.patience = imp, model, params, budget, patience
        self.improvement = improvement
        self.rows = np.where(held.any(axis=1))[0]
        self.X_in = X_train[self.rows]
        self.held = held[self.rows]
        self.truth = X[self.rows]
        self.every = int(np.clip(per_epoch, *VALIDATION_EVERY))
        self.updates, self.scores, self.best, self.since = [], [], (math.inf, 0, None), 0

    @property
    def active(self) -> bool:
        return len(self.rows) > 0

    def score(self) -> float:
        vals = self.imp._rollout_values(self.X_in, VALIDATION_ROLLOUTS, 3, noise=False, mean=True, model=self.model)
        err = self.imp.layout_.errors(vals, self.truth, self.imp.scale_)
        return float(np.sqrt(np.mean(err[self.held] ** 2)))

    def evaluate(self, step: int) -> None:
        s = self.score()
        self.updates.append(step)
        self.scores.append(s)
        progress = s < self.best[0] * (1 - self.improvement)
        if s < self.best[0]:
            self.best = (s, step, [p.detach().clone() for p in self.params])
        self.since = 0 if progress else self.since + 1
        if self.since >= self.patience:
            self.budget.halted = "early_stopping"

    def after(self, step: int) -> None:
        if self.active and step % self.every == 0:
            self.evaluate(step)

    def postfix(self) -> dict:
        return {"valid": f"{self.scores[-1]:.3g}"} if self.scores else {}

    def finish(self, step: int) -> None:
        """Evaluate the last update too, restore the best parameters, and record the curve on the imputer."""
        if self.active and (not self.updates or self.updates[-1] != step):
            self.evaluate(step)
        score, best_step, saved = self.best
        if saved is not None:
            with torch.no_grad():
                for p, v in zip(self.params, saved):
                    p.copy_(v)
        self.imp.best_iteration_ = best_step if saved is not None else step
        self.imp.validation_score_ = np.asarray(self.scores, dtype=np.float64)
        self.imp.validation_updates_ = np.asarray(self.updates, dtype=np.int64)
