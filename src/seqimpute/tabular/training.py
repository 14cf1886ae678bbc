"""SequentialImputer.fit: the policy trained on the incomplete table itself, through the training loop that
`seqimpute train` runs (seqimpute.loop), with the table's likelihood, scaling, starting canvas and early stopping."""

from __future__ import annotations

import math
import time
import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.validation import check_random_state

from ..errors import SeqImputeError
from ..loop import BatchOrder, Budget, train_loop
from ..models.objectives import scored_sum, training_loss
from ..models.registry import build_model, spec
from ..optim import Optimizer
from . import early_stopping
from .gaussian import MAX_ENTRIES, ConditionalGaussian, LowRankGaussian

LOG_VAR_GAIN = 20.0  # log_var = GAIN * raw: Adam moves raw by ~lr per update, so the log-variance moves ~GAIN*lr
# (a 1e-3 step alone could not leave 0 in a budget of a few hundred updates); it is clamped at LOG_VAR_MIN
LOG_VAR_MIN = -9.0  # a standard deviation of 1% of the column's: a floor against collapse on near-duplicates
# The scale of a column whose observed values are all equal, relative to the value: a standardised imputation of
# any plausible size (|z| < 2^8) moves it by less than half a float64 ulp, so the constant itself is imputed.
CONSTANT_SCALE = 2.0**-62
AUTO_EPOCHS, AUTO_UPDATES = 100, (1000, 2000)  # max_updates="auto": this many epochs, clipped to this range
PATIENCE_FROM_START, PATIENCE_FROM_MEAN = 5, 10  # patience="auto" (the estimator's docstring says why)


def fit(imp, X: np.ndarray) -> None:
    """Train ``imp``'s policy on the table X (N, C): numbers and category codes, NaN = missing. Sets the fitted
    attributes (model_, likelihood_, mean_, scale_, ..., validation_score_)."""
    observed = ~np.isnan(X)
    if X.shape[1] == 0:
        raise SeqImputeError("no column of X has an observed value, so nothing can be learned; give data with "
                             "values.")
    imp.likelihood_ = choose_likelihood(imp, X, observed)
    ms = spec(imp.model)
    if imp.likelihood_ != "bernoulli" and "link" not in ms.option_names():
        raise SeqImputeError(
            f"model {imp.model!r} has a sigmoid output only, but X has binary, integer or categorical columns, whose "
            f"canvas holds means and logits; use model='gpsi-add' or 'gpsi-jump'." if imp.likelihood_ == "mixed" else
            f"model {imp.model!r} has a sigmoid output only, so it takes likelihood='bernoulli' (values in [0, 1]); "
            f"for real-valued columns use model='gpsi-add' or scale your columns into [0, 1].")
    imp.seed_ = int(check_random_state(imp.random_state).randint(0, 2**31 - 1))
    held = (early_stopping.holdout(observed, float(imp.validation_fraction), imp.seed_) if imp.early_stopping
            else np.zeros_like(observed))
    Xt = np.where(held, np.nan, X)  # the training view: validation holes are missing, even to the scaling
    fit_scaling(imp, Xt)
    device = torch.device(imp.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SeqImputeError("device='cuda' was asked for but no CUDA GPU is available; use device='cpu'.")
    model = build_policy(imp, ms, imp.layout_.width, device)
    raw_lv = torch.nn.Parameter(torch.zeros(imp.layout_.width, device=device)) if imp.likelihood_ != "bernoulli" else None
    Z, O = imp._to_model(Xt)
    fit_start(imp, Z, O, model)
    if imp._start is not None:  # the untrained policy imputes the conditional mean, with its spread
        with torch.no_grad():
            model.writer.out.weight.zero_()  # a silent writer: the canvas stays at the start until trained
        if raw_lv is not None:
            idx = torch.as_tensor(imp.start_entries_, device=device)
            var = imp._start.missing_variance(Z[:, idx], O[:, idx]).clamp(min=math.exp(LOG_VAR_MIN))
            numbers = torch.as_tensor(imp.layout_.gaussian[imp.start_entries_], device=device)  # have a variance
            with torch.no_grad():
                raw_lv[idx[numbers]] = (var[numbers].log() / LOG_VAR_GAIN).to(raw_lv.dtype)
    _train(imp, model, raw_lv, ms, Z, O, Xt, X, held)


def _log_var(raw_lv):
    return None if raw_lv is None else (LOG_VAR_GAIN * raw_lv).clamp(min=LOG_VAR_MIN)


def _train(imp, model, raw_lv, ms, Z, O, Xt, X, held) -> None:
    """The training loop (seqimpute.loop.train_loop) with early stopping; sets the fitted results."""
    device, N = Z.device, len(Z)
    params = list(model.parameters()) + ([raw_lv] if raw_lv is not None else [])
    updates, minutes = max_updates(imp, N), imp.max_minutes
    opt = Optimizer(params, "budget", ms.family, model.l2, float(imp.learning_rate), max(1, (updates or 500) // 20))
    gen = torch.Generator(device=device).manual_seed(imp.seed_)
    order = BatchOrder(N, int(imp.batch_size), imp.seed_)

    def batch(step: int) -> tuple:  # rows, their observed values, and those hidden to be imputed and scored
        idx = order.indices(step).to(device)
        return Z[idx], O[idx], imp._hide(O[idx], gen)

    def objective(z, obs, hidden):
        inputs = obs & ~hidden  # the hidden values are scored: missing from the input, known in the data
        r = imp._rollout(model, z, inputs, guided=True, generator=gen)  # products: fit's _Threads precision
        nll = scored_sum(imp._nll(z, r.final, _log_var(raw_lv), paper=False), inputs, known=obs)
        return training_loss(model, r, z, inputs, nll=nll)  # the objective of `seqimpute train`

    bar = None
    if imp.verbose:
        from tqdm import tqdm

        bar = tqdm(total=updates, unit="upd", desc=f"SequentialImputer {imp.model}", mininterval=0.5,
                   dynamic_ncols=True)
    # the schedule follows the updates when they are given, so a fit repeats whatever the machine's speed
    budget = Budget(updates, minutes, time.perf_counter, by_updates=True)
    start = imp._start is not None
    patience = int(imp.patience) if imp.patience != "auto" else (PATIENCE_FROM_START if start else PATIENCE_FROM_MEAN)
    stopper = early_stopping.EarlyStopping(imp, model, params, Xt, X, held, patience, order.per_epoch, budget,
                                           improvement=early_stopping.IMPROVEMENT if start else 0.0)
    if imp._start is not None:  # the untrained policy imputes the conditional mean: the first candidate
        stopper.after(0)
    losses, skipped = [], [0]

    def after(step: int, res) -> None:
        skipped[0] += not res.ok
        if res.fault != "loss":
            losses.append(res.loss)
        stopper.after(step)
        if bar is not None and step % 20 == 0 and losses:
            bar.set_postfix(loss=f"{float(losses[-1]):.3g}", **stopper.postfix(), refresh=False)

    model.train()
    step = train_loop(opt, batch, objective, budget, after=after, bar=bar)
    stopper.finish(step)
    if bar is not None:
        bar.close()
    _finish(imp, model, raw_lv, step, budget, updates, losses, skipped[0])


def _finish(imp, model, raw_lv, step: int, budget: Budget, updates, losses: list, skipped: int) -> None:
    """The fitted results of a finished loop, and its warnings."""
    imp.stopped_by_ = budget.stopped_by(step)
    if imp.stopped_by_ == "minutes" and updates is not None:
        warnings.warn(f"SequentialImputer stopped at the max_minutes={imp.max_minutes:g} wall-clock cap after {step} "
                      f"of max_updates={updates} updates; raise max_minutes, or set it to None to make every "
                      f"update.", ConvergenceWarning, stacklevel=4)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    imp.model_ = model
    lv = _log_var(raw_lv)
    imp.log_var_ = None if lv is None else lv.detach().cpu().numpy().astype(np.float64)
    imp._log_var_t = None if lv is None else lv.detach()
    imp.n_updates_, imp.n_skipped_updates_ = step, skipped
    if skipped:
        warnings.warn(f"SequentialImputer skipped {skipped} of {step} training updates whose loss or gradient "
                      f"was not finite (NaN/inf); if many were, lower learning_rate or scale the columns.",
                      RuntimeWarning, stacklevel=4)
    imp.training_seconds_ = time.perf_counter() - budget.t0
    tail = losses[-max(1, len(losses) // 10):]
    imp.loss_ = float(torch.stack(tail).mean()) if tail else math.nan


def choose_likelihood(imp, X: np.ndarray, observed: np.ndarray) -> str:
    """``likelihood`` resolved on the table X: "mixed" for a layout with other kinds than numbers, else
    "bernoulli" or "gaussian" ("auto": Bernoulli when every observed value lies in [0, 1])."""
    if imp.layout_.mixed:
        if imp.likelihood == "bernoulli":
            raise SeqImputeError("likelihood='bernoulli' is for arrays of values in [0, 1], but X has binary, "
                                 "integer or categorical columns, which take their own likelihoods; use "
                                 "likelihood='auto'.")
        return "mixed"
    vals = X[observed]
    in_unit = bool(vals.size == 0 or (vals.min() >= 0.0 and vals.max() <= 1.0))
    if imp.likelihood == "bernoulli":
        if not in_unit:
            cols = np.where(np.any(observed & ((np.nan_to_num(X) < 0) | (np.nan_to_num(X) > 1)), axis=0))[0]
            raise SeqImputeError(
                f"likelihood='bernoulli' needs every observed value in [0, 1], but column(s) "
                f"{', '.join(map(str, cols[:10]))}{' ...' if len(cols) > 10 else ''} hold values in "
                f"{vals.min():g}..{vals.max():g}; use likelihood='gaussian' (or 'auto'), or scale those columns "
                f"into [0, 1].")
        return "bernoulli"
    if imp.likelihood == "gaussian":
        return "gaussian"
    return "bernoulli" if in_unit else "gaussian"


def fit_scaling(imp, T: np.ndarray) -> None:
    """mean_, scale_ and the fill of never-observed values (W,), from the observed values of each canvas entry
    of the table T: Gaussian entries standardised, the others (0/1, one-hot) kept."""
    Xd = imp.layout_.canvas(T).astype(np.float64)
    W = Xd.shape[1]
    if imp.likelihood_ == "bernoulli":
        imp.mean_, imp.scale_ = np.zeros(W), np.ones(W)
        imp.fill_ = np.nanmean(Xd, axis=0)
        return
    gaussian = imp.layout_.gaussian
    imp.mean_ = np.where(gaussian, np.nanmean(Xd, axis=0), 0.0)
    sd = np.nanstd(Xd, axis=0)
    # a constant column: a scale so small that any standardised value maps back to the constant itself
    constant = gaussian & (sd == 0)
    tiny = CONSTANT_SCALE * np.maximum(np.abs(np.nan_to_num(imp.mean_)), 1.0)
    imp.scale_ = np.where(gaussian & np.isfinite(sd) & (sd > 0), sd, np.where(constant, tiny, 1.0))
    imp.fill_ = np.zeros(W)


def build_policy(imp, ms, D: int, device: torch.device):
    """The policy, sized by the number of columns D unless given, initialised from ``seed_``."""
    options = {"hidden": imp.hidden or int(np.clip(4 * D, 64, 500)),
               "z": imp.latent or int(np.clip(D // 2, 4, 100)), "steps": imp.steps}
    if "write" in ms.option_names():  # LSTM: the write layer follows the hidden width unless given
        options["write"] = options["hidden"]
    if imp.likelihood_ != "bernoulli":
        options["link"] = "identity"  # the canvas holds means (and logits, in a mixed table)
    options.update(imp.model_options or {})
    with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's global RNG
        torch.manual_seed(imp.seed_)
        return build_model(imp.model, D, None, options).to(device)


def fit_start(imp, Z: torch.Tensor, O: torch.Tensor, model) -> None:
    """initial_canvas="gaussian": a Gaussian of every canvas entry (start_entries_), fitted on the training view:
    the numbers, and the 0/1 targets of binary, categorical and Bernoulli entries (whose conditional means are a
    linear model's probabilities); with a full covariance up to gaussian.MAX_ENTRIES entries, else low-rank. None
    for a policy that cannot start from a canvas (the LSTM policies start from their learned constant)."""
    imp.start_entries_, imp._start = None, None
    if imp.initial_canvas != "gaussian" or not model.takes_start:
        return
    width = imp.layout_.width
    imp.start_entries_ = np.arange(width, dtype=np.int64)
    imp._start = (ConditionalGaussian if width <= MAX_ENTRIES else LowRankGaussian).fit(Z, O)


def max_updates(imp, n_rows: int) -> int | None:
    """The updates budget: ``max_updates``, or for "auto" AUTO_EPOCHS passes over the rows, clipped to
    AUTO_UPDATES (early stopping usually ends training well before)."""
    if imp.max_updates != "auto":
        return imp.max_updates
    per_epoch = max(1, math.ceil(n_rows / int(imp.batch_size)))
    return int(np.clip(AUTO_EPOCHS * per_epoch, *AUTO_UPDATES))
