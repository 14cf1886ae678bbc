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
