"""The paper's experiments as presets (TOML files in presets/) and the runner behind `seqimpute reproduce`."""

from .reproduce import EXPERIMENTS, load_anchors, load_preset, reproduce

__all__ = ["EXPERIMENTS", "load_anchors", "load_preset", "reproduce"]
