"""A fitted SequentialImputer saved to a folder (safetensors + JSON) and loaded back: the same values exactly, no
code run on load, bad folders refused with one error; the CLI's fit-transform --save and transform."""

from __future__ import annotations

import csv
import hashlib
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from seqimpute import SeqImputeError, SequentialImputer
from seqimpute.cli import main
from seqimpute.models.registry import MODELS

TINY = dict(hidden=16, latent=2, steps=2, max_updates=20, max_minutes=None, n_rollouts=3, batch_size=32)


def correlated(n, d, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 1)) * np.arange(1, d + 1) + 0.05 * rng.normal(size=(n, d))


def holes(X, rate, seed=1):
    Xm = X.copy()
    Xm[np.random.default_rng(seed).random(X.shape) < rate] = np.nan
    return Xm


CASES = {"gaussian": ("gpsi-add", correlated(60, 3)),  # real values: standardised, learned log-variance
         "bernoulli": ("lstm-add", np.random.default_rng(2).random((40, 5)))}  # [0, 1]: no scaling, sigmoid


@pytest.fixture(scope="module", params=sorted(CASES))
def saved(request, tmp_path_factory):
    model, X = CASES[request.param]
    if model not in MODELS:
        pytest.skip(f"{model} is not registered")
    Xm = holes(X, 0.25)
    imp = SequentialImputer(model=model, hide_rate=(0.2, 0.5), random_state=3, **TINY).fit(Xm)
    folder = tmp_path_factory.mktemp("imputer")
    imp.save(folder)
    return imp, folder, Xm, request.param


def test_a_loaded_imputer_gives_the_saved_ones_values_exactly(saved):
    imp, folder, Xm, likelihood = saved
    assert sorted(p.name for p in folder.iterdir()) == ["imputer.json", "weights.safetensors"]
    rng_before = torch.get_rng_state()
    twin = SequentialImputer.load(folder)
    assert torch.equal(torch.get_rng_state(), rng_before)  # building the policy did not draw from the global RNG
    assert twin.likelihood_ == likelihood and twin.get_params() == imp.get_params()
    new = holes(correlated(15, Xm.shape[1], seed=9) if likelihood == "gaussian"
                else np.random.default_rng(9).random((15, Xm.shape[1])), 0.3, seed=4)
    for X in (Xm, new):
        assert np.array_equal(twin.transform(X), imp.transform(X))
        assert np.array_equal(twin.sample(X, 3), imp.sample(X, 3))
        assert twin.score(X) == imp.score(X)
    for a in ("mean_", "scale_", "fill_", "seed_", "n_features_in_", "n_updates_", "n_skipped_updates_", "loss_",
              "stopped_by_", "training_seconds_", "best_iteration_", "validation_score_", "validation_updates_"):
        assert np.array_equal(getattr(twin, a), getattr(imp, a)), a
    # early stopping's holes were scored: at the 20th update, and first the untrained policy when it starts from the
    # conditional Gaussian (a GPSI policy; the Bernoulli case here is an LSTM, which starts from its constant)
    assert len(imp.validation_score_) == (2 if imp.start_entries_ is not None else 1)
    assert (imp.start_entries_ is None) == (imp.model == "lstm-add")
    assert (twin.log_var_ is None) == (likelihood == "bernoulli")
    if twin.log_var_ is not None:
        assert np.array_equal(twin.log_var_, imp.log_var_)
    assert not any(p.requires_grad for p in twin.model_.parameters()) and not twin.model_.training


def test_the_saved_files_are_plain_tensors_and_json(saved):
    imp, folder, Xm, likelihood = saved
    meta = json.loads((folder / "imputer.json").read_text())
    assert meta["format"] == "seqimpute-imputer" and meta["format_version"] == 5
    assert meta["params"]["hide_rate"] == [0.2, 0.5] and meta["fitted"]["seed_"] == imp.seed_
    assert set(meta["versions"]) >= {"seqimpute", "torch", "numpy", "scikit-learn"}
    assert meta["weights_sha256"] == hashlib.sha256((folder / "weights.safetensors").read_bytes()).hexdigest()
    tensors = load_file(folder / "weights.safetensors")
    policy = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    state = imp.model_.state_dict()
    assert policy.keys() == state.keys() and all(torch.equal(policy[k], state[k]) for k in state)
    assert tensors["mean_"].dtype == torch.float64 and np.array_equal(tensors["scale_"].numpy(), imp.scale_)
    assert ("log_var" in tensors) == (likelihood == "gaussian")
    if imp.start_entries_ is not None:  # the starting canvas's conditional Gaussian over every entry, full covariance
        G = Xm.shape[1]
        assert meta["fitted"]["start_entries_"] == list(range(G))
        assert tensors["start_mean"].shape == (G,) and tensors["start_cov"].shape == (G, G)
        assert torch.equal(tensors["start_cov"], imp._start.cov)
    else:  # an LSTM policy has no start
        assert meta["fitted"]["start_entries_"] is None and not any(k.startswith("start_") for k in tensors)


def test_a_wide_tables_low_rank_start_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    X = (rng.random((80, 3)) @ rng.random((3, 140)) / 3).clip(0, 1)  # 140 Bernoulli columns: over MAX_ENTRIES
    Xm = np.where(rng.random(X.shape) < 0.3, np.nan, X)
    imp = SequentialImputer(max_updates=4, hidden=16, latent=2, steps=2, random_state=0).fit(Xm)
    assert imp.likelihood_ == "bernoulli" and type(imp._start).__name__ == "LowRankGaussian"
    imp.save(tmp_path / "wide")
    tensors = load_file(tmp_path / "wide" / "weights.safetensors")
    assert {"start_mean", "start_factor", "start_noise"} <= set(tensors) and "start_cov" not in tensors
    twin = SequentialImputer.load(tmp_path / "wide")
    assert np.array_equal(twin.transform(Xm), imp.transform(Xm))
    _edit_weights(tmp_path / "wide", lambda t: t.update(start_noise=torch.tensor([-1.0], dtype=torch.float64)))
    with pytest.raises(SeqImputeError, match="starting canvas's Gaussian .* does not fit .*positive noise"):
        SequentialImputer.load(tmp_path / "wide")


def _edit_json(folder, edit):
    path = folder / "imputer.json"
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))


def _copy(src, dst):
    dst.mkdir()
    for p in src.iterdir():
        (dst / p.name).write_bytes(p.read_bytes())
    return dst


def _edit_weights(folder, edit):
    """Change the tensors and update the hash to match: only the checks of the tensors themselves can object."""
    tensors = load_file(folder / "weights.safetensors")
    edit(tensors)
    save_file(tensors, folder / "weights.safetensors")
    digest = hashlib.sha256((folder / "weights.safetensors").read_bytes()).hexdigest()
    _edit_json(folder, lambda m: m.update(weights_sha256=digest))


BAD = {  # damage -> what the one error says
    "newer format": (lambda f: _edit_json(f, lambda m: m.update(format_version=6)),
                     r"format version 6 .* reads format versions 1, 2, 3, 4, 5 only; load it with the seqimpute that saved "
                     r"it, or fit it again"),
    "other format": (lambda f: _edit_json(f, lambda m: m.update(format="something-else")),
                     "is not a saved SequentialImputer"),
    "not json": (lambda f: (f / "imputer.json").write_text("{oops"), "imputer.json is not readable JSON"),
    "no weights": (lambda f: (f / "weights.safetensors").unlink(), "weights.safetensors cannot be read"),
    "edited weights": (lambda f: (f / "weights.safetensors").write_bytes(b"\0" * 64), "SHA-256 differs"),
    "bad parameter": (lambda f: _edit_json(f, lambda m: m["params"].update(steps=-1)),
                      "a saved parameter is invalid .*steps must be a positive integer"),
    "unknown parameter": (lambda f: _edit_json(f, lambda m: m["params"].update(exec="print(1)")),
                          "does not hold SequentialImputer's parameters"),
    "bad attribute": (lambda f: _edit_json(f, lambda m: m["fitted"].update(likelihood_="poisson", seed_="1")),
                      "invalid fitted attribute.*likelihood_, seed_"),
    "mismatched weights": (lambda f: _edit_weights(f, lambda t: t.update({"model.c0": torch.zeros(99)})),
                           r"its policy does not load \(.*c0"),  # a width the JSON's policy config does not have
    "NaN weights": (lambda f: _edit_weights(f, lambda t: t["model.c0"].fill_(float("nan"))), "not all finite"),
    "bad scale": (lambda f: _edit_weights(f, lambda t: t["scale_"].fill_(-1.0)), "scale_ .* not positive"),
    "bad output": (lambda f: _edit_json(f, lambda m: m.update(output="excel")), "output setting 'excel'"),
}


@pytest.mark.parametrize("damage", sorted(BAD))
def test_a_damaged_or_foreign_folder_is_one_clear_error(saved, tmp_path, damage):
    folder = _copy(saved[1], tmp_path / "copy")
    how, message = BAD[damage]
    how(folder)
    with pytest.raises(SeqImputeError, match=message) as e:
        SequentialImputer.load(folder)
    if damage not in ("newer format", "other format"):  # those are not damaged saves: they say what to load
        assert "save the imputer again" in str(e.value)


def test_a_folder_that_is_not_a_saved_imputer_is_refused(tmp_path):
    with pytest.raises(SeqImputeError, match=r"does not exist, so it is not a saved SequentialImputer.*--save"):
        SequentialImputer.load(tmp_path / "nowhere")
    (tmp_path / "config.toml").write_text("[model]\n")  # e.g. a `seqimpute train` run folder
    with pytest.raises(SeqImputeError, match=r"has no imputer.json, so it is not a saved SequentialImputer"):
        SequentialImputer.load(tmp_path)
    with pytest.raises(SeqImputeError, match="is a file; give a folder"):
        SequentialImputer(**TINY).fit(correlated(20, 2)).save(tmp_path / "config.toml")


def test_a_gpu_imputer_loads_on_the_cpu_when_asked(saved, tmp_path):
    imp, folder, Xm, _ = saved
    folder = _copy(folder, tmp_path / "copy")
    _edit_json(folder, lambda m: m["params"].update(device="cuda"))
    if not torch.cuda.is_available():
        with pytest.raises(SeqImputeError, match=r"no CUDA GPU is available; load it with .*device='cpu'"):
            SequentialImputer.load(folder)
    twin = SequentialImputer.load(folder, device="cpu")
    assert twin.device == "cpu" and np.array_equal(twin.transform(Xm), imp.transform(Xm))


def _write_csv(path, header, X):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for row in X:
            w.writerow(["" if np.isnan(v) else repr(float(v)) for v in row])


def _read_csv(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], np.array([[float(c) for c in r] for r in rows[1:]])


def test_cli_saves_the_fitted_imputer_and_transforms_new_rows_with_it(tmp_path, capsys):
    X = correlated(60, 3)
    Xm = holes(X, 0.2)
    names = ["height", "weight", "age"]
    _write_csv(tmp_path / "train.csv", names, Xm)
    model = tmp_path / "model"
    assert main(["fit-transform", str(tmp_path / "train.csv"), str(tmp_path / "filled.csv"), "--updates", "15",
                 "--rollouts", "3", "--seed", "2", "--quiet", "--save", str(model)]) == 0
    assert str(model) in capsys.readouterr().out
    # the saved imputer fills the training table exactly as the fitting run did
    assert main(["transform", str(model), str(tmp_path / "train.csv"), str(tmp_path / "again.csv")]) == 0
    assert (tmp_path / "again.csv").read_text() == (tmp_path / "filled.csv").read_text()
    # new rows, later: observed values kept, every hole filled, the header kept
    new = holes(correlated(8, 3, seed=5), 0.4, seed=6)
    new[0] = np.nan  # a row with nothing observed is filled too
    _write_csv(tmp_path / "new.csv", names, new)
    assert main(["transform", str(model), str(tmp_path / "new.csv"), str(tmp_path / "new_filled.csv"),
                 "--samples", "2"]) == 0
    assert f"imputed {int(np.isnan(new).sum())} missing value(s) of 8x3" in capsys.readouterr().out
    header, filled = _read_csv(tmp_path / "new_filled.csv")
    seen = ~np.isnan(new)
    assert header == names and filled.shape == new.shape and np.isfinite(filled).all()
    assert np.array_equal(filled[seen], new[seen])
    assert _read_csv(tmp_path / "new_filled.sample2.csv")[0] == names
    assert list(SequentialImputer.load(model).feature_names_in_) == names  # the CSV's header, for pandas users too
    # a table with other columns is refused before anything is written
    _write_csv(tmp_path / "swapped.csv", ["weight", "height", "age"], new)
    assert main(["transform", str(model), str(tmp_path / "swapped.csv"), str(tmp_path / "x.csv")]) == 2
    assert "are not those the imputer" in capsys.readouterr().err
    np.save(tmp_path / "narrow.npy", new[:, :2])
    assert main(["transform", str(model), str(tmp_path / "narrow.npy"), str(tmp_path / "x.npy")]) == 2
    assert "has 2 column(s) but the imputer" in capsys.readouterr().err
    assert main(["transform", str(tmp_path), str(tmp_path / "new.csv"), str(tmp_path / "x.csv")]) == 2
    assert "has no imputer.json" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists() and not (tmp_path / "x.npy").exists()


def test_cli_transform_keeps_a_float32_array_file(tmp_path, capsys):
    Xm = holes(correlated(40, 4), 0.2).astype(np.float32)
    np.save(tmp_path / "train.npy", Xm)
    assert main(["fit-transform", str(tmp_path / "train.npy"), str(tmp_path / "o.npy"), "--updates", "5",
                 "--rollouts", "2", "--quiet", "--save", str(tmp_path / "m")]) == 0
    new = holes(correlated(5, 4, seed=3), 0.3).astype(np.float32)
    np.savez(tmp_path / "new.npz", x=new)
    assert main(["transform", str(tmp_path / "m"), str(tmp_path / "new.npz"), str(tmp_path / "out.npz")]) == 0
    with np.load(tmp_path / "out.npz") as z:
        out = z["x"]
    assert out.dtype == np.float32 and np.array_equal(out[~np.isnan(new)], new[~np.isnan(new)])
    assert not np.isnan(out).any()


def test_save_and_load_cover_the_declared_fitted_state(tmp_path):
    """Every attribute of seqimpute.tabular.state.FITTED is written by save and set, equal, by load."""
    from seqimpute.tabular.state import ARRAYS, FITTED

    X = np.random.default_rng(0).normal(size=(40, 3))
    X[::5, 1] = np.nan
    imp = SequentialImputer(hidden=8, latent=2, steps=2, max_updates=5, n_rollouts=2, random_state=0).fit(X)
    imp.save(tmp_path / "imp")
    meta = json.loads((tmp_path / "imp" / "imputer.json").read_text())
    assert set(meta["fitted"]) == set(FITTED) | {"model_config"}
    back = SequentialImputer.load(tmp_path / "imp")
    for k in list(FITTED) + list(ARRAYS):
        a, b = getattr(imp, k, None), getattr(back, k, None)
        if isinstance(a, np.ndarray):
            assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), k
        else:
            assert a == b or (a != a and b != b), k  # NaN loss_ reads back as NaN
