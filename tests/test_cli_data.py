"""`seqimpute data list|get|info`: exit codes, output and one-line errors."""

from __future__ import annotations

import json

import numpy as np

from seqimpute.cli import main


def test_data_info_json(capsys):
    assert main(["data", "info", "sklearn-digits", "--json"]) == 0
    out = capsys.readouterr().out
    info = json.loads(out)
    assert info["name"] == "sklearn-digits"
    assert info["sizes"] == {"train": 1438, "valid": 180, "test": 179}
    assert info["dim"] == 64 and info["image_shape"] == [8, 8] and info["shape"] == "8x8"
    assert info["min"] == 0.0 and info["max"] == 1.0 and info["nan_fraction"] == 0.0
    assert info["likelihood"] == "bernoulli"


def test_data_info_text(capsys):
    assert main(["data", "info", "sklearn-digits"]) == 0
    out = capsys.readouterr().out
    assert "train 1438" in out and "8x8" in out and "bernoulli" in out


def test_data_info_unknown_is_one_line_exit_2(capsys):
    assert main(["data", "info", "nope"]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("seqimpute: error:") and "nope" in err and "sklearn-digits" in err
    assert "Traceback" not in captured.err and captured.out == ""


def test_data_errors_exit_2(capsys, tmp_path):
    assert main(["data", "info", "svhn"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--data-path" in err
    assert main(["data", "info", "sklearn-digits", "--data-opt", "novalue"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
    assert main(["data", "info"]) == 2
    assert "needs a dataset name" in capsys.readouterr().err
    assert main(["data", "frobnicate"]) == 2  # argparse's usage error
    capsys.readouterr()


def test_data_list(capsys):
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("mnist", "binarized-mnist", "svhn", "tfd", "orl-faces", "sklearn-digits", "PATH"):
        assert name in out
    assert "--data-path" in out and "--data-opt fold=" in out


def test_data_get_shipped(capsys, tmp_path):
    assert main(["data", "get", "sklearn-digits", "--data-root", str(tmp_path / "root")]) == 0
    out = capsys.readouterr().out
    assert "nothing to download" in out and "sklearn-digits: ready" in out


def test_data_info_own_table(capsys, tmp_path):
    x = np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32)
    x[0, 0] = np.nan
    np.save(tmp_path / "t.npy", x)
    assert main(["data", "info", str(tmp_path / "t.npy"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["image_shape"] is None and info["dim"] == 3 and info["likelihood"] == "gaussian"
    assert abs(info["nan_fraction"] - 1 / 60) < 1e-9
    # all values missing: still valid JSON (no NaN literal)
    np.save(tmp_path / "allnan.npy", np.full((5, 2), np.nan, np.float32))
    assert main(["data", "info", str(tmp_path / "allnan.npy"), "--json"]) == 0
    out = capsys.readouterr().out
    info = json.loads(out, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    assert info["min"] is None and info["nan_fraction"] == 1.0
    assert main(["data", "info", str(tmp_path / "allnan.npy")]) == 0
    assert "range" in capsys.readouterr().out


def test_data_get_own_images_with_options(capsys, tmp_path):
    from PIL import Image

    for i in range(5):
        Image.fromarray(np.full((6, 6), 40 * i, np.uint8)).save(tmp_path / f"{i}.png")
    assert main(["data", "info", str(tmp_path), "--size", "4x4", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["image_shape"] == [4, 4] and sum(info["sizes"].values()) == 5


# --data-root: every command that reads a dataset takes it (the README says so); these read none.
DATA_READERS = {"data": ["data", "list"], "train": ["train", "--run", "r"], "eval": ["eval", "r"],
                "impute": ["impute", "r", "--input", "i.npy", "--out", "o.png"], "finetune": ["finetune", "r"],
                "sample": ["sample", "r", "--out", "o.png"], "demo": ["demo"], "reproduce": ["reproduce", "fig1"]}
READ_NO_DATA = {"pretrained", "curve", "bench", "fit-transform", "transform"}


def test_every_data_reading_command_takes_data_root():
    import argparse

    from seqimpute.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert set(commands) == set(DATA_READERS) | READ_NO_DATA  # a new command must be sorted into one of the two
    for name, argv in DATA_READERS.items():
        assert parser.parse_args(argv + ["--data-root", "/some/cache"]).data_root == "/some/cache", name


def test_impute_with_data_root_refits_a_baseline_from_that_cache(tmp_path, monkeypatch, capsys):
    """A baseline's run keeps no training set: `impute` refits it from the data, found through --data-root."""
    from seqimpute.data import sources

    def no_download(*a, **k):
        raise AssertionError("the data should have come from --data-root, not a download")

    monkeypatch.setattr(sources, "fetch_from_wheel", no_download)
    root = tmp_path / "cache"
    rng = np.random.default_rng(0)
    sources._write_cache(root / "mnist" / "mnist.npz",  # a tiny stand-in for MNIST's cache (grey levels k/256)
                         **{s: rng.integers(0, 256, size=(n, 784), dtype=np.uint8)
                            for s, n in (("train", 8), ("valid", 4), ("test", 4))})
    run = tmp_path / "mean-run"
    assert main(["train", "--model", "mean", "--data", "mnist", "--mask", "mcar:0.5", "--run", str(run),
                 "--quiet", "--data-root", str(root)]) == 0
    monkeypatch.setenv("SEQIMPUTE_DATA", str(tmp_path / "empty"))  # `train` above set it for this process
    x = rng.random((2, 784)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "grid.png"
    assert main(["impute", str(run), "--input", str(tmp_path / "x.npy"), "--mask", "mcar:0.5", "--samples", "1",
                 "--out", str(out), "--save", str(tmp_path / "filled.npy"), "--data-root", str(root)]) == 0
    filled = np.load(tmp_path / "filled.npy")[0]
    train = sources.load_dataset("mnist", "train", data_root=root).x.numpy()
    # mean imputation: the filled values are the training set's per-pixel means (where x was missing)
    missing = filled != x
    assert missing.any()
    np.testing.assert_allclose(filled[missing], np.broadcast_to(train.mean(0), x.shape)[missing], rtol=1e-5, atol=1e-6)
