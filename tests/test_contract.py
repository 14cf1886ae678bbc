"""The contract every entry of the model registry keeps (in the style of scikit-learn's common tests): a new model
that breaks it fails here, not in a user's hands.

For each name in ``seqimpute.models.registry.MODELS``: the size guard can count its parameters before allocating
them, its rollouts have the shapes the loss and the evaluator read (guided and unguided), ``config()`` rebuilds
the same model, a run folder saves and reloads it, the evaluator scores it on a partial mask (or refuses the mask,
for the generators that take only 'full'), and `SequentialImputer` takes it exactly when it is one of the policies
its documentation lists.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from seqimpute import SeqImputeError, SequentialImputer, load_dataset
from seqimpute.evaluate import evaluate
from seqimpute.models import registry
from seqimpute.models.registry import MODELS, build_model, model_from_config
from seqimpute.runs import load_run_model
from seqimpute.train import TrainConfig, train

NAMES = list(MODELS)
IMPUTER_MODELS = {"gpsi-add", "gpsi-jump", "lstm-add", "lstm-jump"}  # SequentialImputer's documented `model=` values
D, B = 64, 5  # sklearn-digits: 8x8 images


@pytest.fixture(scope="module")
def digits():
    return {split: load_dataset("sklearn-digits", split) for split in ("train", "valid", "test")}


def generator_only(model) -> bool:
    return tuple(getattr(model, "allowed_masks", None) or ()) == ("full",)


def ready(name, options, digits):
    """The model, seeded, fitted when it is a baseline (baselines fit from the training split, not by updates)."""
    torch.manual_seed(0)
    model = build_model(name, D, None, options)
    if not model.trainable:
        model.fit(digits["train"])
    return model


def inputs(model, digits):
    x = digits["test"].x[:B]
    observed = torch.zeros(B, D, dtype=torch.bool) if generator_only(model) else torch.rand(
        B, D, generator=torch.Generator().manual_seed(0)) >= 0.5
    return x, observed


@pytest.mark.parametrize("name", NAMES)
def test_the_size_guard_counts_its_parameters_before_allocation(name, tiny_options):
    """registry._check_options builds the model on the meta device: it must build there, with the real count."""
    options = tiny_options(name)
    with torch.device("meta"):
        meta = registry.spec(name).build(D, **options)
    real = build_model(name, D, None, options)
    assert sum(p.numel() for p in meta.parameters()) == sum(p.numel() for p in real.parameters())
    assert real.name == name  # results and checkpoints are labelled by it


@pytest.mark.parametrize("name", NAMES)
def test_rollout_shapes_guided_and_unguided(name, tiny_options, digits):
    model = ready(name, tiny_options(name), digits)
    x, observed = inputs(model, digits)
    T = getattr(model, "steps", 0)
    gen = torch.Generator().manual_seed(1)
    r = model.rollout(x, observed, guided=False, generator=gen)
    assert not r.guided and r.kl_qp is None and r.kl_pq is None and r.log_ratio is None
    assert len(r.canvases) == T + 1 and all(c.shape == (B, D) for c in r.canvases)
    assert r.final.shape == (B, D) and torch.isfinite(r.final).all()
    if T:  # the evaluator's --steps: a rollout of any length
        assert len(model.rollout(x, observed, guided=False, steps=1, generator=gen).canvases) == 2
    g = model.rollout(x, observed, guided=True, generator=gen)
    if not model.trainable:  # baselines have no guide: any rollout is their imputation
        assert not g.guided and g.kl_qp is None
        return
    assert g.guided and all(c.shape == (B, D) for c in g.canvases)
    S = g.kl_qp.shape[0]
    assert g.kl_qp.shape == g.kl_pq.shape == (S, B) and g.log_ratio.shape == (B,) and S >= 1
    assert (g.kl_qp >= -1e-5).all() and (g.kl_pq >= -1e-5).all()  # KL divergences
    if model.has_bound:  # scored by the bound: T steps, plus an initial latent step in some models
        assert len(g.canvases) == T + 1 and S in (T, T + 1)


@pytest.mark.parametrize("name", NAMES)
def test_config_round_trip(name, tiny_options, digits):
    """model_from_config(config()) through JSON (as checkpoints store it) is the same model: same parameter
    shapes, and with the same state dict the same outputs for the same noise."""
    model = ready(name, tiny_options(name), digits)
    twin = model_from_config(name, json.loads(json.dumps(model.config())))
    assert twin.config() == model.config()
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert {k: v.shape for k, v in twin.state_dict().items()} == shapes
    twin.load_state_dict(model.state_dict())
    if not twin.trainable:
        twin.fit(digits["train"])
    x, observed = inputs(model, digits)
    for guided in (True, False):
        a = model.rollout(x, observed, guided=guided, generator=torch.Generator().manual_seed(2))
        b = twin.rollout(x, observed, guided=guided, generator=torch.Generator().manual_seed(2))
        assert all(torch.equal(u, v) for u, v in zip(a.canvases, b.canvases))


@pytest.mark.parametrize("name", NAMES)
def test_run_folder_round_trip_and_evaluation_on_a_partial_mask(name, tiny_options, digits, tmp_path):
    """A two-update `train` run saves the model; load_run_model gives it back; the evaluator scores it on a
    partial mask (a 2x2 hole), or, for a generator, refuses that mask and scores 'full'."""
    torch.manual_seed(0)
    probe = build_model(name, D, None, tiny_options(name))
    mask = "full" if generator_only(probe) else "square:2"
    run = tmp_path / "run"
    train(run, TrainConfig(model=name, data="sklearn-digits", mask=mask, model_options=tiny_options(name), updates=2,
                           batch=16, valid_every=2, valid_size=16, ckpt_every=2, log_every=1), progress_bar=False,
          quiet=True)
    model, cfg, ck = load_run_model(run, "last")
    assert cfg["model"]["name"] == name and model.name == name
    saved = ck["model"]
    assert model.state_dict().keys() == saved.keys()
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())
    assert model.config() == json.loads(ck["model_config"])
    test = digits["test"]
    res = evaluate(model, test, mask, samples=2, n=6)
    assert np.isfinite(res["score_paper_units"]) and res["model"] == name
    assert res["score_paper_units"] == pytest.approx(D * res["score_nats_per_value"], rel=1e-12)  # x D/|U|
    if mask == "square:2":
        assert res["imputed_fraction"] == 4 / D  # one 2x2 hole per image
    else:
        with pytest.raises(SeqImputeError, match="--mask full"):
            evaluate(model, test, "square:2", samples=2, n=6)


@pytest.mark.parametrize("name", NAMES)
def test_sequential_imputer_takes_exactly_its_documented_policies(name):
    rng = np.random.default_rng(0)
    X = rng.random((30, 6))
    X[rng.random(X.shape) < 0.2] = np.nan
    X[:, 0] = rng.random(30)  # no empty column
    imp = SequentialImputer(model=name, hidden=8, latent=2, steps=2, max_updates=3, max_minutes=None, n_rollouts=2,
                            random_state=0)
    if name not in IMPUTER_MODELS:
        with pytest.raises(SeqImputeError, match="not a trainable policy; choose one of gpsi-add"):
            imp.fit(X)
        return
    out = imp.fit_transform(X)
    assert out.shape == X.shape and not np.isnan(out).any()
    assert np.array_equal(out[~np.isnan(X)], X[~np.isnan(X)])
    assert np.isfinite(imp.score(X)) and imp.n_skipped_updates_ == 0


def test_the_size_guard_refuses_absurd_sizes_with_one_message():
    for hidden in (10**6, 10**12, 2**62):  # too many parameters; beyond what 64-bit sizes can address
        with pytest.raises(SeqImputeError, match=r"parameters.*choose smaller sizes"):
            build_model("gpsi-add", D, None, {"hidden": hidden})


def test_the_size_guard_does_not_swallow_a_model_it_cannot_size(monkeypatch):
    """A constructor that fails on the meta device is a bug to report, not a reason to skip the guard."""

    class Unsizable(registry.Policy):
        def __init__(self, dim, hidden: int = 4):
            super().__init__()
            if torch.empty(0).device.type == "meta":
                raise NotImplementedError("an operation without a meta kernel")
            self.dim = dim

    monkeypatch.setitem(MODELS, "unsizable", registry.ModelSpec(Unsizable, {}, "none", "a test double"))
    with pytest.raises(RuntimeError, match="unsizable cannot be built on the meta device.*NotImplementedError"):
        build_model("unsizable", D, None, {"hidden": 4})

    class BadOption(Unsizable):
        def __init__(self, dim, hidden: int = 4):
            raise ValueError(f"hidden={hidden} is not a power of two")

    monkeypatch.setitem(MODELS, "bad-option", registry.ModelSpec(BadOption, {}, "none", "a test double"))
    with pytest.raises(SeqImputeError, match="bad model option for bad-option: hidden=3 is not a power of two"):
        build_model("bad-option", D, None, {"hidden": 3})
