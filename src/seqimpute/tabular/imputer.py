"""SequentialImputer: a scikit-learn estimator that fills the NaN entries of an array with a sequential imputation
policy (Bachman & Precup 2015), trained on the incomplete array itself.

    from seqimpute import SequentialImputer
    imp = SequentialImputer(random_state=0).fit(X_train)      # X: (N, D) floats, NaN = missing
    X_filled = imp.transform(X)                                # mean of ``n_rollouts`` rollouts, observed kept
    draws = imp.sample(X, n_samples=50)                        # (50, N, D) multiple imputations
    imp.score(X_valid)                                         # minus the held-out bound, nats per imputed value
    imp.save("imputer/"); SequentialImputer.load("imputer/")   # safetensors + JSON (seqimpute.tabular.saved)

pandas DataFrames go in (their names are kept in ``feature_names_in_``) and, with scikit-learn's
``set_output(transform="pandas")``, come out with their columns and index; it fits in a ColumnTransformer. Columns
of other kinds than numbers (bool, integer, category and text; seqimpute.tabular.columns) each get their own
likelihood, and a DataFrame with such a column comes back as a DataFrame with its dtypes.

Training from incomplete data. The paper trains on complete observations with synthetic masks; here the truth of a
missing value is never known, so every batch hides an extra random share of the *observed* values (a rate drawn per
row from ``hide_rate``), the policy imputes them from the rest, and the loss scores exactly those artificially hidden,
originally observed values. Values that were never observed are treated as missing in the model's input and never
scored. The guide (which sees the whole observation during training) therefore sees the observed values only.

Assumption: the values are missing at random (MAR; MCAR is the simplest case): whether a value is missing may depend
on the observed values of its row but not on the missing value itself. Under MAR the artificially hidden observed
values are distributed like the truly missing ones given the rest of the row, so learning to impute the former
teaches the latter. When missingness depends on the value itself (e.g. large incomes left blank), the imputations
are biased toward the observed distribution, as with every imputer that learns only from observed values.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.utils.validation import _check_feature_names_in, check_is_fitted

from ..errors import SeqImputeError
from ..nn.dist import LOG_2PI, bernoulli_nll, bernoulli_nll_logits
from ..numerics import subnormals_flushed
from ..precision import matmul_precision, resolve
from ..threads import scoped
from . import missing, params, saved, training
from .columns import PROB_FLOOR, is_frame



@contextlib.contextmanager
def _runtime(threads: int | None, precision: str):
    """A block of fit/transform/sample/score: torch's threads and the products' precision set (seqimpute.threads,
    seqimpute.precision), subnormals flushed (seqimpute.numerics), all restored after it."""
    with subnormals_flushed(), matmul_precision(precision), scoped(threads):
        yield

# precision="auto" on a CPU: fp32 below this hidden width. Measured on an AVX512-BF16 CPU, one thread, batch 128:
# bf16 updates took 5-15% longer than fp32 at hidden 120 (casts and overhead dominate), 30% less at hidden 500.
BF16_MIN_HIDDEN = 256
_ROLLOUT_ROWS = 8192  # rows (examples x rollouts) per unguided rollout at transform/sample time


class SequentialImputer(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Fill missing values (NaN) with a sequential imputation policy trained on the observed values.

    Parameters
    ----------
    model : str, default "gpsi-add"
        A trainable policy of the registry (``seqimpute.models.registry.MODELS``): "gpsi-add", "gpsi-jump",
        "lstm-add", "lstm-jump". The LSTM policies have a sigmoid output only, so they take the Bernoulli likelihood.
    likelihood : {"auto", "bernoulli", "gaussian"}, default "auto"
        "bernoulli": every column's observed values must lie in [0, 1] (grey levels, proportions, binary flags); the
        canvas holds logits and the imputation is sigmoid(c). "gaussian": each column is standardised with the mean
        and standard deviation of its observed values, the canvas is the mean of a Gaussian with a learned
        per-column variance, and results are mapped back to the original units. "auto": Bernoulli when every
        observed value lies in [0, 1], Gaussian otherwise. The choice made is ``likelihood_``. A table with a
        binary, integer or categorical column takes "auto" (or "gaussian"): each column then has its own
        likelihood and ``likelihood_`` is "mixed" (see ``categorical_features``).
    categorical_features : "from_dtype", None, list of int or str, or bool mask, default "from_dtype"
        Which columns hold categories (scikit-learn's HistGradientBoosting convention). "from_dtype": a
        DataFrame's dtypes decide: ``category`` and text (object, string) columns are categorical, ``bool`` and
        ``boolean`` columns binary, integer columns (int64, Int64, ...) integer, float columns numeric; an array's
        columns are numeric. A list of column indices or names, or a boolean mask, names the categorical columns
        (for an array, columns holding numeric codes with NaN: the codes are the categories). None: no
        categorical column. Each kind has its own likelihood: numeric and integer columns are Gaussian on the
        standardised value (integers are imputed rounded and clipped to the observed range), a binary column
        Bernoulli on one logit, a categorical column a softmax over a one-hot group of logits (imputed: the
        category of largest mean probability over the rollouts; always one seen in fitting). Such tables need
        model "gpsi-add" or "gpsi-jump". Date and time columns are refused: convert them to numbers first.
    hidden, latent : int or None, default None
        Width of the policy's hidden layers and of its latent z per step. None: sized by the number of columns D,
        hidden = clip(4 D, 64, 500), latent = clip(D // 2, 4, 100).
    steps : int, default 4
        Refinement steps T of the canvas (the paper's image models take 6; on tables 4 steps scored as well on
        held-out values, at about 15% less time per update).
    max_updates : "auto", int or None, default "auto"
        The most training updates (batches). The learning rate warms up and decays over this budget. "auto": 100
        passes over the rows (epochs), at least 1000 and at most 2000 updates; early stopping (the default) ends
        training sooner when the held-out values stop improving.
    max_minutes : float or None, default None
        An optional wall-clock cap on training. When it stops training before ``max_updates`` the result depends
        on the machine's speed, so ``fit`` says so with a ConvergenceWarning (``stopped_by_`` is then "minutes").
        With ``max_updates=None`` the schedule runs over this time instead.
    batch_size : int, default 128
    learning_rate : float, default 3e-3
        Peak Adam learning rate (seqimpute.optim's budget schedule: warm-up, then cosine decay). Higher than the
        image trainer's 1e-3: small tables get budgets of hundreds of updates, not hundreds of thousands.
    hide_rate : (float, float), default (0.1, 0.6)
        Range of the share of a row's observed values hidden in each training batch (drawn uniformly per row).
    n_rollouts : int, default 20
        Unguided rollouts averaged by ``transform`` (and guided rollouts averaged by ``score``, at most 10).
    early_stopping : bool, default True
        Hold out ``validation_fraction`` of the observed values as validation holes (whole shares of some rows'
        observed values, at most 5000; none on tables with fewer than 100 observed values). They are treated as
        missing throughout training, the scaling included. Every epoch (at least 20 and at most 100 updates) the
        RMSE of their imputation (the mean of 4 unguided rollouts, in standardised units; a binary or categorical
        value's error is 1 - the mean probability of its true value) is scored; training stops after ``patience``
        scores without improvement and the parameters of the best score are kept. From the conditional Gaussian
        (``initial_canvas``), the untrained policy is scored first and a score must beat the best by 0.5% to count
        as improvement: the start is often near the best, and smaller gains are within the holes' noise.
    validation_fraction : float, default 0.1
        Share of the observed values held out for early stopping, in (0, 0.5].
    patience : "auto" or int, default "auto"
        Validation scores without improvement before training stops. "auto": 5 from the conditional Gaussian (3, 5
        and 10 imputed equally well on the tables of benchmarks/table_defaults.py, 5 in about half the time of 10),
        10 from the mean canvas, where the policy learns everything and gains come slowly (on MNIST as a table,
        5 with the 0.5% rule stopped training long before its best).
    initial_canvas : {"gaussian", "mean"}, default "gaussian"
        The canvas the policy starts from. "gaussian": a multivariate Gaussian of the standardised canvas entries
        (numbers, and the 0/1 targets of binary, categorical and Bernoulli entries) is fitted by EM on the observed
        values, and a row's missing entries start at their conditional mean given its visible ones (a linear model
        of the visible columns, one per pattern of holes; at 0/1 entries its probabilities, kept in [0.01, 0.99]);
        the writer starts silent and the learned variance at the conditional variance, so the untrained policy
        imputes exactly that mean, and training refines it where the held-out values say it helps. Up to 128
        entries the Gaussian's covariance is full; above, it is low-rank (probabilistic PCA of rank 64).
        "mean": every row starts at the learned constant c0 (the column means at first), as the paper's policies.
        ``start_entries_`` lists the entries with a Gaussian start (None: none).
    model_options : dict or None, default None
        Further constructor options of the policy (e.g. {"write": 100} for an LSTM, {"l2": 0.0}).
    device : str, default "cpu"
        Torch device for training and inference ("cuda" when available).
    n_threads : int or None, default None
        CPU threads torch uses inside fit/transform/sample/score (restored afterwards). None: 1 for small policies
        (hidden < 256), whose steps are too short to gain from threads (and lose badly on a busy machine), else
        torch's current setting.
    random_state : int, RandomState instance or None, default None
        Seeds the initialisation, the batches, the hidden values and the rollouts. transform, sample and score are
        deterministic given the fitted estimator; fit is deterministic given an int here (see ``max_minutes``);
        the validation holes of early stopping are drawn from it too.
    verbose : bool, default False
        A tqdm progress bar during training.
    precision : {"auto", "bf16", "fp32"}, default "auto"
        The precision of the matrix products in fit, transform, sample and score (seqimpute.precision): "auto"
        takes bfloat16 where the device runs it fast (CPUs with AMX or AVX512-BF16, CUDA GPUs with bf16), float32
        elsewhere, and float32 on a CPU for policies narrower than 256 hidden units, whose products are too small
        to repay bfloat16's casts. The parameters, the optimiser, the loss and the returned values are float32
        either way.
    missing_values : number, str, np.nan, None or pandas.NA, default np.nan
        The marker of a missing entry, as in scikit-learn's imputers: every entry equal to it is imputed (e.g.
        -999, or "?" in a DataFrame's text column). NaN, None and pandas.NA entries are always missing; an array
        holding NaN beside another marker is refused.
    add_indicator : bool, default False
        Append one 0/1 column per feature that had missing entries in fit, 1 where the entry was missing
        (MissingIndicator(features="missing-only"), named ``missingindicator_<name>``).
    keep_empty_features : bool, default False
        Features without any observed value in fit cannot be learned: by default they are left out of the output
        (with a warning); True keeps them, their missing entries filled with 0.

    Attributes
    ----------
    model_ : seqimpute.models.policy.Policy   the trained policy (eval mode), on ``device``
    likelihood_ : str                         "bernoulli", "gaussian" or "mixed" (a column of another kind than
                                              numbers: each column its own likelihood)
    layout_ : seqimpute.tabular.columns.ColumnLayout  each column's kind (``layout_.columns``: kind, categories, integer
                                              range) and its W entries on the policy's canvas (W = D for numbers;
                                              a categorical column takes one entry per category)
    mean_, scale_ : ndarray (W,)              the standardisation (0 and 1 for Bernoulli, binary and categorical
                                              entries), from the observed values used for training (the validation
                                              holes left out)
    log_var_ : ndarray (W,) or None           learned log-variance per entry in standardised units (Gaussian and
                                              mixed; 0, unused, at binary and categorical entries)
    n_updates_ : int                          updates made;  training_seconds_ : float
    best_iteration_ : int                     the update whose parameters were kept: the best validation score's
                                              (``n_updates_`` without validation holes)
    validation_score_ : ndarray (k,)          the validation RMSE (standardised units; for a binary or categorical
                                              value 1 - the probability of its true value) at each evaluation, and
    validation_updates_ : ndarray (k,) int    the updates made by then (both empty without validation holes)
    n_skipped_updates_ : int                  of those, updates skipped because the loss or a gradient was not
                                              finite (NaN/inf); fit warns when any were
    loss_ : float                             mean training loss over the last 10% of the updates
    stopped_by_ : str                         what ended training: "early_stopping", "updates" or "minutes"
    seed_ : int                               the torch seed derived from ``random_state``
    n_features_in_ : int;  feature_names_in_ : ndarray of str   (the latter when fitted on a DataFrame)
    empty_features_ : ndarray of int          the features without any observed value in fit
    indicator_features_ : ndarray of int or None   the features add_indicator flags (None without it)
    start_entries_ : ndarray of int or None   the canvas entries that start at the conditional Gaussian mean
    """

    def __init__(self, model="gpsi-add", likelihood="auto", hidden=None, latent=None, steps=4, max_updates="auto",
                 max_minutes=None, batch_size=128, learning_rate=3e-3, hide_rate=(0.1, 0.6), n_rollouts=20,
                 early_stopping=True, validation_fraction=0.1, patience="auto", model_options=None, device="cpu",
                 n_threads=None, random_state=None, verbose=False, precision="auto", categorical_features="from_dtype",
                 missing_values=np.nan, add_indicator=False, keep_empty_features=False, initial_canvas="gaussian"):
        self.model = model
        self.likelihood = likelihood
        self.categorical_features = categorical_features
        self.hidden = hidden
        self.latent = latent
        self.steps = steps
        self.max_updates = max_updates
        self.max_minutes = max_minutes
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.hide_rate = hide_rate
        self.n_rollouts = n_rollouts
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.model_options = model_options
        self.device = device
        self.n_threads = n_threads
        self.random_state = random_state
        self.verbose = verbose
        self.precision = precision
        self.missing_values = missing_values
        self.add_indicator = add_indicator
        self.keep_empty_features = keep_empty_features
        self.initial_canvas = initial_canvas

    # ------------------------------------------------------------------------------------------ sklearn plumbing

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # NaN marks the values to impute
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    def _more_tags(self):  # scikit-learn < 1.6
        return {"allow_nan": True, "preserves_dtype": [np.float64, np.float32]}

    def _check_X(self, X, reset: bool) -> tuple:
        return missing.check_input(self, X, reset)

    def _output(self, X, completed):
        """The output for input X from its kept features' ``completed`` values (seqimpute.tabular.missing.assemble)."""
        return missing.assemble(X, completed, self.empty_features_, self.keep_empty_features,
                                self.indicator_features_)

    def get_feature_names_out(self, input_features=None):
        """The output's column names: the input's (without the features left out as empty), then the indicator's."""
        check_is_fitted(self, "model_")
        names = _check_feature_names_in(self, input_features)
        return missing.feature_names_out(names, self.empty_features_, self.keep_empty_features,
                                         self.indicator_features_)

    def _check_params(self) -> None:
        params.check(self)

    # ------------------------------------------------------------------------------------------ saving

    def save(self, folder) -> None:
        """Write the fitted imputer to ``folder``: safetensors weights and JSON, no pickle (seqimpute.tabular.saved)."""
        saved.save(self, folder)

    @classmethod
    def load(cls, folder, device: str | None = None) -> "SequentialImputer":
        """The imputer ``save`` wrote to ``folder``; its transform, sample and score give the saved one's values
        exactly. ``device`` replaces the saved device (e.g. "cpu" for an imputer fitted on a GPU)."""
        return saved.load(cls, folder, device)

    # ------------------------------------------------------------------------------------------ scaling

    def _to_model(self, T: np.ndarray):
        """Table (N, C) -> the canvas values (N, W) as a standardised float32 tensor with NaN replaced by the
        entry's fill, and the mask."""
        X = self.layout_.canvas(T)
        observed = ~np.isnan(X)
        Z = (X.astype(np.float64) - self.mean_) / self.scale_
        Z = np.where(observed, Z, self.fill_)
        dev = torch.device(self.device)
        return (torch.as_tensor(Z, dtype=torch.float32, device=dev),
                torch.as_tensor(observed, dtype=torch.bool, device=dev))

    def _link(self, c: torch.Tensor) -> torch.Tensor:
        if self.likelihood_ == "mixed":
            return self.layout_.link(c)
        return torch.sigmoid(c) if self.likelihood_ == "bernoulli" else c

    def _nll(self, z: torch.Tensor, c: torch.Tensor, log_var: torch.Tensor | None, paper: bool) -> torch.Tensor:
        """Elementwise NLL of the standardised targets z under the canvas c."""
        if self.likelihood_ != "gaussian":
            bernoulli = bernoulli_nll(z, torch.sigmoid(c)) if paper else bernoulli_nll_logits(z, c)
            if self.likelihood_ == "bernoulli":
                return bernoulli
        gaussian = 0.5 * (LOG_2PI + log_var + (z - c).pow(2) * torch.exp(-log_var))
        return gaussian if self.likelihood_ == "gaussian" else self.layout_.nll(z, c, gaussian, bernoulli)

    def _hide(self, observed: torch.Tensor, gen: torch.Generator, rate=None) -> torch.Tensor:
        """Artificially hidden entries: a random share of each row's observed values, drawn per input column (a
        categorical column's group is hidden as a whole)."""
        n, d = observed.shape[0], len(self.layout_.columns)
        if rate is None:
            lo, hi = (float(v) for v in self.hide_rate)
            rate = lo + (hi - lo) * torch.rand(n, 1, generator=gen, device=gen.device)
        hidden = torch.rand(n, d, generator=gen, device=gen.device) < rate
        return self.layout_.expand(hidden.to(observed.device)) & observed

    # ------------------------------------------------------------------------------------------ fit

    def _threads(self, hidden: int | None = None):
        hidden = hidden if hidden is not None else getattr(getattr(self, "model_", None), "hidden", 0)
        precision = resolve(self.precision, self.device)
        if self.precision == "auto" and torch.device(self.device).type == "cpu" and hidden < BF16_MIN_HIDDEN:
            precision = "fp32"  # small products: bf16's casts of every operand cost more than its faster products
        n = int(self.n_threads) if self.n_threads is not None else 1 if hidden < 256 else None
        return _runtime(n, precision)

    def fit(self, X, y=None):
        """Train the policy on X, shape (N, D), NaN = missing (a DataFrame: also None/NA). ``y`` is ignored.
        Returns self. The training is seqimpute.tabular.training's."""
        self._check_params()
        _, _, T = self._check_X(X, reset=True)
        with self._threads(self.hidden or int(np.clip(4 * self.layout_.width, 64, 500))):
            training.fit(self, T)
        return self

    def _start_canvas(self, z: torch.Tensor, visible: torch.Tensor) -> torch.Tensor | None:
        """The first canvas of the rows z given their ``visible`` entries: the conditional-Gaussian mean at the
        start entries (as logits at binary and categorical ones: a linear model's probabilities), 0 elsewhere (None
        without a Gaussian start)."""
        if self._start is None:
            return None
        idx = torch.as_tensor(self.start_entries_, device=z.device)
        start = torch.zeros_like(z)
        start[:, idx] = self._start.conditional_mean(z[:, idx], visible[:, idx]).to(z.dtype)
        if self.likelihood_ == "mixed":
            start[:, idx] = self.layout_.canvas_of_means(start)[:, idx]
        elif self.likelihood_ == "bernoulli":  # the canvas holds logits
            start[:, idx] = torch.logit(start[:, idx].clamp(PROB_FLOOR, 1 - PROB_FLOOR))
        return start

    def _rollout(self, model, z: torch.Tensor, visible: torch.Tensor, repeat: int = 1, start=None, **kw):
        """model.rollout of the rows z (each ``repeat`` times), starting from the conditional-Gaussian canvas when
        the imputer has one (``start``: that canvas, when the caller computed it already)."""
        start = self._start_canvas(z, visible) if start is None else start
        if repeat > 1:
            z, visible, start = (t.repeat(repeat, 1) if t is not None else None for t in (z, visible, start))
        return model.rollout(z, visible, **kw) if start is None else model.rollout(z, visible, start=start, **kw)

    # ------------------------------------------------------------------------------------------ rollouts

    @torch.inference_mode()
    def _rollout_values(self, X: np.ndarray, n: int, seed_offset: int, noise: bool, mean: bool,
                        model=None) -> np.ndarray:
        """Unguided rollouts of ``model`` (default ``model_``) for the rows of the table X: (n, N, W) canvas values
        in original units (numbers; probabilities at binary and categorical entries), or their mean (N, W).
        ``noise``: Gaussian observation noise added at the Gaussian entries."""
        model = self.model_ if model is None else model
        Z, O = self._to_model(X)
        N, D = Z.shape
        gen = torch.Generator(device=Z.device).manual_seed(self.seed_ + seed_offset)
        sd = torch.exp(0.5 * self._log_var_t) if noise and self._log_var_t is not None else None
        if sd is not None and self.likelihood_ == "mixed":  # no Gaussian noise on probabilities
            sd = sd * torch.as_tensor(self.layout_.gaussian, device=sd.device)
        chunk = max(1, _ROLLOUT_ROWS // n)
        out = np.empty((N, D) if mean else (n, N, D), dtype=np.float64)
        for s in range(0, N, chunk):
            z, o = Z[s:s + chunk], O[s:s + chunk]
            b = len(z)
            r = self._rollout(model, z, o, repeat=n, guided=False, generator=gen)
            v = self._link(r.final).view(n, b, D)
            if sd is not None:
                eps = torch.randn(v.shape, generator=gen, device=v.device, dtype=v.dtype)
                v = v + sd.to(v.device) * eps
            v = v.double().cpu().numpy() * self.scale_ + self.mean_
            if mean:
                out[s:s + chunk] = v.mean(0)
            else:
                out[:, s:s + chunk] = v
        return out

    def transform(self, X):
        """X (N, D) with NaN -> a copy in X's float dtype with every NaN replaced by the mean of ``n_rollouts``
        unguided rollouts; observed entries are returned bit-identical. Deterministic for a fitted estimator.

        With binary, integer or categorical columns (``likelihood_`` "mixed"): integers are the rounded mean,
        binary values True where the mean probability exceeds 0.5, categories those of largest mean probability.
        A DataFrame then comes back as a DataFrame with X's columns, index and dtypes (whatever ``set_output``
        says); an array as a float array whose categorical columns hold valid codes."""
        check_is_fitted(self, "model_")
        with self._threads():
            return self._transform(X)

    def _transform(self, X):
        X, Xk, T = self._check_X(X, reset=False)
        holes = np.isnan(T)
        rows = np.where(holes.any(axis=1))[0]
        filled = None
        if len(rows):
            vals = self._rollout_values(T[rows], int(self.n_rollouts), 0, noise=False, mean=True)
            filled = self.layout_.decode(vals)
        return self._output(X, self._completed(Xk, holes, rows, filled))

    def _completed(self, X, holes: np.ndarray, rows: np.ndarray, filled: np.ndarray | None):
        """X with the ``holes`` of ``rows`` set from the table entries ``filled`` (one row per entry of ``rows``): a
        DataFrame (of a mixed layout) as a DataFrame, else a copy in X's float dtype. Observed entries are X's own,
        bit-identical."""
        if is_frame(X):
            return self.layout_.fill_frame(X, rows, filled, holes)
        out = np.array(X, copy=True)
        if len(rows):
            vals = self.layout_.to_array(filled)
            sub = out[rows]
            m = holes[rows]
            sub[m] = vals[m].astype(X.dtype)
            out[rows] = sub
        return out

    def sample(self, X, n_samples=1, noise=True):
        """Multiple imputation: ``n_samples`` completed copies of X, shape (n_samples, N, D), in X's float dtype.

        Each copy holds the values of one stochastic (unguided) rollout at the missing entries and X's values,
        bit-identical, at the observed ones. With the Gaussian likelihood and ``noise`` (default) the per-column
        observation noise N(0, exp(log_var_)) is added, so the copies are draws from the model's predictive
        distribution (what Rubin's rules and interval coverage need); ``noise=False`` gives the rollouts' means.
        With the Bernoulli likelihood a sample is the rollout's probability sigmoid(c_T) (a grey level), not a 0/1
        draw. Deterministic for a fitted estimator.

        With binary, integer or categorical columns, ``noise`` also draws a binary value from its probability and
        a category from its softmax (integers are rounded after the noise); ``noise=False`` takes the most likely
        ones. A DataFrame of such a layout gives a list of ``n_samples`` DataFrames (X's columns, index, dtypes)."""
        check_is_fitted(self, "model_")
        with self._threads():
            return self._sample(X, n_samples, noise)

    def _sample(self, X, n_samples=1, noise=True):
        if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
            raise SeqImputeError(f"n_samples must be a positive integer, got {n_samples!r}.")
        X, Xk, T = self._check_X(X, reset=False)
        holes = np.isnan(T)
        rows = np.where(holes.any(axis=1))[0]
        draws = [None] * n_samples
        if len(rows):
            vals = self._rollout_values(T[rows], int(n_samples), 1, noise=bool(noise), mean=False)
            rng = np.random.default_rng(self.seed_ + 1) if noise else None  # binary and categorical draws
            draws = [self.layout_.decode(v, rng) for v in vals]
        copies = [self._output(X, self._completed(Xk, holes, rows, d)) for d in draws]
        return copies if is_frame(copies[0]) else np.stack(copies)

    def score(self, X, y=None):
        """Minus the held-out bound per imputed value (higher is better, scikit-learn's convention).

        A fixed random share (the middle of ``hide_rate``) of X's observed values is hidden; the score is
        -(NLL of the hidden values at c_T + sum over steps of KL(q||p)) / (number hidden), averaged over
        min(n_rollouts, 10) guided rollouts: a lower bound on the mean log-likelihood per hidden value, in nats.
        Gaussian NLLs are in the data's original units (the standardisation's log-Jacobian is included); Bernoulli
        NLLs use the paper's epsilon-clipped form; a hidden category's NLL is -log softmax at its true category,
        and a hidden category counts as one value. Never-observed values are not scored. ``y`` is ignored."""
        check_is_fitted(self, "model_")
        with self._threads():
            return self._score(X)

    @torch.inference_mode()
    def _score(self, X):
        _, _, T = self._check_X(X, reset=False)
        Z, O = self._to_model(T)
        gen = torch.Generator(device=Z.device).manual_seed(self.seed_ + 2)
        lo, hi = (float(v) for v in self.hide_rate)
        hidden = self._hide(O, gen, rate=0.5 * (lo + hi))
        if not hidden.any():
            hidden = O.clone()  # tiny inputs: score every observed value
        if not hidden.any():
            raise SeqImputeError("X has no observed value to score; score() needs held-out data with values.")
        K = min(int(self.n_rollouts), 10)
        lv = self._log_var_t
        jac = torch.as_tensor(np.log(self.scale_), dtype=torch.float32, device=Z.device)
        total, visible = 0.0, O & ~hidden
        start = self._start_canvas(Z, visible)  # the same for every rollout
        for _ in range(K):
            r = self._rollout(self.model_, Z, visible, start=start, guided=True, generator=gen)
            nll = self._nll(Z, r.final, lv, paper=True)
            if self.likelihood_ != "bernoulli":
                nll = nll + jac  # 0 at binary and categorical entries (scale 1)
            total += float(nll.masked_fill(~hidden, 0.0).sum() + r.kl_qp.sum())
        values = hidden[:, torch.as_tensor(self.layout_.starts, device=hidden.device)]  # a category counts once
        return -total / (K * int(values.sum()))
