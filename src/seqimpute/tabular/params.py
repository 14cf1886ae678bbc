"""SequentialImputer's parameters, validated in one place (``check``, called by fit and by load)."""

from __future__ import annotations

import numpy as np

from ..errors import SeqImputeError
from ..models.registry import MODELS
from ..precision import PRECISIONS
from . import missing
from .columns import check_categorical_features

LIKELIHOODS = ("auto", "bernoulli", "gaussian")
INITIAL_CANVASES = ("gaussian", "mean")


def check(imp) -> None:
    """Every parameter of ``imp`` checked, each with one error that names the fix (called by fit)."""
    trainable = [n for n, s in MODELS.items() if s.cls.trainable and s.family != "none" and s.cls.train_mask is None]
    if imp.model not in MODELS or imp.model not in trainable:
        raise SeqImputeError(f"model={imp.model!r} is not a trainable policy; choose one of "
                             f"{', '.join(trainable)}.")
    if imp.precision not in PRECISIONS:
        raise SeqImputeError(f"precision={imp.precision!r}; choose one of {', '.join(PRECISIONS)}.")
    if imp.initial_canvas not in INITIAL_CANVASES:
        raise SeqImputeError(f"initial_canvas={imp.initial_canvas!r}; choose 'gaussian' or 'mean'.")
    if imp.likelihood not in LIKELIHOODS:
        raise SeqImputeError(f"likelihood={imp.likelihood!r}; choose 'auto', 'bernoulli' or 'gaussian'.")
    check_categorical_features(imp.categorical_features)
    missing.check_missing_values(imp.missing_values)
    for name in ("add_indicator", "keep_empty_features"):
        if not isinstance(getattr(imp, name), (bool, np.bool_)):
            raise SeqImputeError(f"{name} must be True or False, got {getattr(imp, name)!r}.")

    def positive_int(name, value, allow_none=False):
        if value is None and allow_none:
            return
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            extra = {"max_updates": ", 'auto' or None", "patience": " or 'auto'"}.get(name, " or None" if allow_none else "")
            raise SeqImputeError(f"{name} must be a positive integer{extra}, got {value!r}.")

    positive_int("hidden", imp.hidden, True)
    positive_int("latent", imp.latent, True)
    positive_int("steps", imp.steps)
    if imp.max_updates != "auto":
        positive_int("max_updates", imp.max_updates, True)
    positive_int("batch_size", imp.batch_size)
    positive_int("n_rollouts", imp.n_rollouts)
    positive_int("n_threads", imp.n_threads, True)
    if imp.patience != "auto":
        positive_int("patience", imp.patience)
    if not isinstance(imp.early_stopping, (bool, np.bool_)):
        raise SeqImputeError(f"early_stopping must be True or False, got {imp.early_stopping!r}.")
    if isinstance(imp.validation_fraction, bool) or not (
            isinstance(imp.validation_fraction, (int, float)) and 0 < imp.validation_fraction <= 0.5):
        raise SeqImputeError(f"validation_fraction must be a share in (0, 0.5], e.g. 0.1, got "
                             f"{imp.validation_fraction!r}.")
    if imp.max_minutes is not None and not (isinstance(imp.max_minutes, (int, float)) and imp.max_minutes > 0):
        raise SeqImputeError(f"max_minutes must be a positive number or None, got {imp.max_minutes!r}.")
    if imp.max_updates is None and imp.max_minutes is None:
        raise SeqImputeError("give a training budget: max_updates ('auto', or e.g. 1000) and/or max_minutes "
                             "(e.g. 1.0).")
    if not (isinstance(imp.learning_rate, (int, float)) and imp.learning_rate > 0):
        raise SeqImputeError(f"learning_rate must be a positive number, got {imp.learning_rate!r}.")
    try:
        lo, hi = (float(v) for v in imp.hide_rate)
    except (TypeError, ValueError):
        raise SeqImputeError(f"hide_rate must be a pair (low, high) of shares, e.g. (0.1, 0.6); "
                             f"got {imp.hide_rate!r}.") from None
    if not (0.0 <= lo <= hi < 1.0 and hi > 0.0):
        raise SeqImputeError(f"hide_rate must satisfy 0 <= low <= high < 1 with high > 0, e.g. (0.1, 0.6); "
                             f"got {imp.hide_rate!r}.")
    if imp.model_options is not None and not isinstance(imp.model_options, dict):
        raise SeqImputeError(f"model_options must be a dict or None, got {type(imp.model_options).__name__}.")
