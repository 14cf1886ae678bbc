"""Subnormal floats are flushed to zero while seqimpute trains and evaluates, and the caller's mode comes back."""

from __future__ import annotations

import torch

from seqimpute.numerics import subnormals_are_flushed, subnormals_flushed
from seqimpute.train import TrainConfig, train


def _subnormal_product() -> float:
    return float((torch.full((4, 4), 1e-20) @ torch.full((4, 4), 1e-20))[0, 0])


def test_block_flushes_and_restores():
    torch.set_flush_denormal(False)
    assert not subnormals_are_flushed()
    assert _subnormal_product() > 0  # 4e-40: subnormal, kept
    with subnormals_flushed():
        assert subnormals_are_flushed()
        assert _subnormal_product() == 0.0
    assert not subnormals_are_flushed() and _subnormal_product() > 0


def test_block_keeps_a_mode_that_was_already_on():
    torch.set_flush_denormal(True)
    try:
        with subnormals_flushed():
            pass
        assert subnormals_are_flushed()
    finally:
        torch.set_flush_denormal(False)


def test_train_flushes_inside_and_restores_the_callers_mode(tmp_path, monkeypatch):
    from seqimpute import train as train_mod

    seen = []
    real = train_mod._train

    def spy(*a, **k):
        seen.append(subnormals_are_flushed())
        return real(*a, **k)

    monkeypatch.setattr(train_mod, "_train", spy)
    torch.set_flush_denormal(False)
    cfg = TrainConfig(model="gpsi-add", data="sklearn-digits", mask="mcar:0.5", updates=2, batch=16, valid_every=2,
                      valid_size=20, ckpt_every=2, model_options={"hidden": 16, "z": 4, "steps": 2})
    train(tmp_path / "run", cfg, progress_bar=False, quiet=True)
    assert seen == [True] and not subnormals_are_flushed()
