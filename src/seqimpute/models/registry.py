"""Model names -> constructors, size presets and optimiser families. Add a model here and every command has it."""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field

import torch

from ..errors import SeqImputeError
from . import gpsi
from . import lstm
from . import draw
from . import baselines, template, vae
from .policy import MAX_STEPS, Policy


@dataclass
class ModelSpec:
    cls: type  # cls(dim, **fixed, **config) builds the model
    presets: dict  # sizes name -> config
    family: str  # optimiser family for the paper preset
    description: str
    fixed: dict = field(default_factory=dict)  # constructor arguments the name fixes (e.g. step_type)

    def build(self, dim: int, **config) -> Policy:
        return self.cls(dim, **self.fixed, **config)

    def option_names(self) -> set[str]:
        """The options a user may set (--set key=value)."""
        params = inspect.signature(self.cls.__init__).parameters
        return set(params) - {"self", "dim"} - set(self.fixed)


MODELS: dict[str, ModelSpec] = {
    "gpsi-add": ModelSpec(gpsi.GPSI, gpsi.PRESETS, "gpsi", "GPSI-add: MLP policy, additive canvas updates (Sec 3.1)",
                          {"step_type": "add"}),
    "gpsi-jump": ModelSpec(gpsi.GPSI, gpsi.PRESETS, "gpsi",
                           "GPSI-jump: MLP policy, the canvas is replaced each step (Sec 3.1)", {"step_type": "jump"}),
    "lstm-add": ModelSpec(lstm.LSTMImputer, lstm.PRESETS, "lstm",
                          "LSTM-add: reader/writer LSTM policy, additive writes from the writer's output (Sec 3.2)",
                          {"step_type": "add"}),
    "lstm-jump": ModelSpec(lstm.LSTMImputer, lstm.PRESETS, "lstm",
                           "LSTM-jump: reader/writer LSTM policy, the canvas is written from the writer's cell state "
                           "(Sec 3.2)", {"step_type": "jump"}),
    "vae-imp": ModelSpec(vae.VAEImputer, vae.PRESETS, "vae",
                         "VAE-imp: a VAE trained on complete images, imputing by repeated encode/decode (Sec 4)"),
    "tm-hon": ModelSpec(template.TemplateMatcher, {}, "none",
                        "TM-hon: the training image that best explains the known values", {"oracle": False}),
    "tm-orc": ModelSpec(template.TemplateMatcher, {}, "none",
                        "TM-orc: the training image that best explains the missing values (an oracle)", {"oracle": True}),
    "mean": ModelSpec(baselines.MeanImputer, {}, "none", "mean imputation: the training mean of each value"),
    "knn": ModelSpec(baselines.KNNImputer, {}, "none",
                     "kNN imputation: mean of the k nearest training images on the known values (k tuned on valid)"),
    "draw": ModelSpec(draw.DRAW, draw.DRAW_PRESETS, "lstm",
                      "DRAW without attention: N(0,I) step priors, c_T = c_0 + sum of writes (Sec 2.4; --mask full)"),
    "draw-ext-add": ModelSpec(draw.ExtendedDRAW, draw.EXT_PRESETS, "lstm",
                              "extended DRAW: mixture initial state, priors p(z_t|s_t-1), c_T = c_0 + sum of writes "
                              "(Sec 2.5; --mask full)", {"step_type": "add"}),
    "draw-ext-jump": ModelSpec(draw.ExtendedDRAW, draw.EXT_PRESETS, "lstm",
                               "extended DRAW: mixture initial state, priors p(z_t|s_t-1), c_t = L(generator cell) "
                               "(Sec 2.5; --mask full)", {"step_type": "jump"}),
}


def spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise SeqImputeError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}.")
    return MODELS[name]


def default_sizes(dim: int) -> str:
    """The paper's size preset that fits the data: MNIST sizes for 28x28 and smaller, SVHN's for 32x32, TFD's above."""
    return "mnist" if dim <= 784 else "svhn" if dim <= 1024 else "tfd"


MAX_PARAMETERS = 500_000_000  # 2 GB of float32 weights (8 GB with Adam's moments): beyond it, a typo, not a model


def _check_options(name: str, s: ModelSpec, dim, config: dict) -> None:
    """Types and sizes of constructor options, checked before anything is allocated: a whole-number option takes a
    whole number (not 1.5, not true), a real one a finite number; the parameter count is taken on the meta device,
    so an absurd size (hidden=10**12) is refused in microseconds instead of exhausting memory."""
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise SeqImputeError(f"{name}: the data must have at least one value per example, got dim={dim!r}.")
    params = inspect.signature(s.cls.__init__).parameters
    for k, v in config.items():
        default = params[k].default if k in params else None
        if isinstance(default, bool):
            if not isinstance(v, bool):
                raise SeqImputeError(f"{name}: option {k} takes true or false, got {v!r}.")
        elif isinstance(default, int):
            if isinstance(v, bool) or not isinstance(v, int):
                raise SeqImputeError(f"{name}: option {k} takes a whole number, got {v!r}.")
        elif isinstance(default, float):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise SeqImputeError(f"{name}: option {k} takes a finite number, got {v!r}.")
    steps = config.get("steps")
    if isinstance(steps, int) and steps > MAX_STEPS:
        raise SeqImputeError(f"{name}: steps={steps} refinement steps per rollout is far beyond any use "
                             f"(at most {MAX_STEPS}); the paper's models take 6 to 64.")
    sizes = ", ".join(f"{k}={v}" for k, v in config.items())
    try:
        with torch.device("meta"):
            n = sum(p.numel() for p in _construct(name, s, dim, config).parameters())
    except SeqImputeError:
        raise
    except Exception as e:
        if isinstance(e, RuntimeError) and "overflow" in str(e):  # a size in bytes beyond 64 bits
            raise SeqImputeError(f"{name} with {sizes} would have more parameters than memory can address "
                                 f"(at most {MAX_PARAMETERS:,}); choose smaller sizes.") from None
        # not a bad option (those raise SeqImputeError above) but a model the guard cannot size: a bug to report
        raise RuntimeError(f"{name} cannot be built on the meta device, so its parameter count cannot be checked "
                           f"before allocation ({type(e).__name__}: {e}); every registry model must build there.") \
            from e
    if n > MAX_PARAMETERS:
        raise SeqImputeError(f"{name} with {sizes} would have {n:,} parameters (at most {MAX_PARAMETERS:,}); "
                             f"choose smaller sizes.")


def _construct(name: str, s: ModelSpec, dim, config: dict) -> Policy:
    """``s.build``, with a constructor's complaint about an option (TypeError, ValueError) as one SeqImputeError."""
    try:
        return s.build(dim, **config)
    except SeqImputeError:
        raise
    except (TypeError, ValueError) as e:
        raise SeqImputeError(f"bad model option for {name}: {e}.") from None


def _build(name: str, s: ModelSpec, dim, config: dict) -> Policy:
    _check_options(name, s, dim, config)
    try:
        return _construct(name, s, dim, config)
    except (MemoryError, RuntimeError) as e:
        if isinstance(e, MemoryError) or "allocate" in str(e):
            raise SeqImputeError(f"{name} does not fit in memory with {config}; choose smaller sizes.") from None
        raise


def build_model(name: str, dim: int, sizes: str | None = None, overrides: dict | None = None) -> Policy:
    s = spec(name)
    sizes = sizes or default_sizes(dim)
    if s.presets and sizes not in s.presets:
        raise SeqImputeError(f"unknown sizes {sizes!r} for {name}; choose one of {', '.join(s.presets)}.")
    config = {**s.presets.get(sizes, {}), **(overrides or {})}
    unknown = set(config) - s.option_names()
    if unknown:
        raise SeqImputeError(f"unknown option(s) {', '.join(sorted(unknown))} for {name}; "
                             f"it takes {', '.join(sorted(s.option_names()))}.")
    return _build(name, s, dim, config)


def model_from_config(name: str, config: dict) -> Policy:
    """A model from the config a checkpoint stores (checked like user options: checkpoints are untrusted)."""
    s = spec(name)
    if not isinstance(config, dict) or "dim" not in config:
        raise SeqImputeError(f"the stored {name} configuration is not a mapping with 'dim'.")
    config = {k: v for k, v in config.items() if k not in s.fixed}
    dim = config.pop("dim")
    unknown = set(config) - s.option_names()
    if unknown:
        raise SeqImputeError(f"the stored {name} configuration has unknown option(s) {', '.join(sorted(unknown))}.")
    return _build(name, s, dim, config)
