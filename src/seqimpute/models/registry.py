"""Model names -> constructors, size presets and optimiser families. Add a model here and every command has it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..errors import SeqImputeError
from . import gpsi
from .policy import Policy


@dataclass
class ModelSpec:
    build: Callable[..., Policy]  # build(dim, **config)
    presets: dict  # sizes name -> config
    family: str  # optimiser family for the paper preset
    description: str


MODELS: dict[str, ModelSpec] = {
    "gpsi-add": ModelSpec(lambda dim, **kw: gpsi.GPSI(dim, step_type="add", **kw), gpsi.PRESETS, "gpsi",
                          "GPSI-add: MLP policy, additive canvas updates (Sec 3.1)"),
    "gpsi-jump": ModelSpec(lambda dim, **kw: gpsi.GPSI(dim, step_type="jump", **kw), gpsi.PRESETS, "gpsi",
                           "GPSI-jump: MLP policy, the canvas is replaced each step (Sec 3.1)"),
}


def spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise SeqImputeError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}.")
    return MODELS[name]


def default_sizes(dim: int) -> str:
    """The paper's size preset that fits the data: MNIST sizes for 28x28 and smaller, SVHN's for 32x32, TFD's above."""
    return "mnist" if dim <= 784 else "svhn" if dim <= 1024 else "tfd"


def build_model(name: str, dim: int, sizes: str | None = None, overrides: dict | None = None) -> Policy:
    s = spec(name)
    sizes = sizes or default_sizes(dim)
    if sizes not in s.presets:
        raise SeqImputeError(f"unknown sizes {sizes!r} for {name}; choose one of {', '.join(s.presets)}.")
    config = {**s.presets[sizes], **(overrides or {})}
    config.pop("step_type", None)
    try:
        return s.build(dim, **config)
    except TypeError as e:
        raise SeqImputeError(f"bad model option for {name}: {e}.") from None


def model_from_config(name: str, config: dict) -> Policy:
    config = dict(config)
    dim = config.pop("dim")
    config.pop("step_type", None)
    return spec(name).build(dim, **config)
