"""`seqimpute demo` on a small dataset: GPSI-add scored beside kNN and mean imputation on the same holes, eval.json."""

import json
import math

import numpy as np
import torch

from seqimpute import load_dataset
from seqimpute.cli import main
from seqimpute.data.masks import mask_set
from seqimpute.demo import RECIPE
from seqimpute.precision import cpu_name

N = 40  # test images scored


def test_demo_scores_gpsi_beside_knn_and_mean_on_the_same_holes(tmp_path, capsys):
    run = tmp_path / "demo"
    argv = ["demo", "--data", "sklearn-digits", "--minutes", "0.01", "--n", str(N), "--run", str(run), "--quiet",
            "--precision", "fp32", "--threads", "1"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    res = json.loads((run / "eval.json").read_text())
    for key in ("bound_paper_units", "knn_paper_units", "mse", "knn_mse", "mean_paper_units", "mean_mse"):
        assert math.isfinite(res[key]) and res[key] > 0, key
    assert res["paper_bound_paper_units"] == 80.5  # the paper's Fig 2(a), GPSI-add at MCAR-80
    assert res["training"]["clock"] == "wall" and res["training"]["updates"] >= 1  # an idle machine's budget
    assert res["cpu"] == cpu_name() and res["threads"] == res["training"]["threads"] == 1
    assert res["precision"] == res["training"]["precision"] == "fp32"
    assert res["training"]["recipe"]["hidden"] == RECIPE["model"]["hidden"]
    assert (run / "trajectories.png").exists()

    # mean imputation's MSE by hand: the training mean of each pixel against the hidden test pixels
    train, test = load_dataset("sklearn-digits", "train").x.double().numpy(), load_dataset("sklearn-digits", "test")
    hidden = ~mask_set("mcar:0.8", test.name, test.split, len(test.x), test.image_shape, test.dim).numpy()[:N]
    x = test.x.double().numpy()[:N]
    assert np.isclose(res["mean_mse"], ((train.mean(0) - x) ** 2)[hidden].mean(), rtol=1e-5)

    # the verdict line says by how much GPSI-add beats or misses kNN
    gap = res["knn_paper_units"] - res["bound_paper_units"]
    assert f"{'beats' if gap > 0 else 'misses'} kNN by {abs(gap):.1f} paper units" in out

    # a second call resumes the finished run: no more training, the same scores
    assert main(argv) == 0
    again = json.loads((run / "eval.json").read_text())
    assert again["training"]["updates"] == res["training"]["updates"]
    assert again["bound_paper_units"] == res["bound_paper_units"] and again["knn_mse"] == res["knn_mse"]


def test_demo_refuses_zero_threads(tmp_path, capsys):
    assert main(["demo", "--threads", "0", "--run", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert "threads must be a whole number of at least 1" in err and len(err.strip().splitlines()) == 1


def test_demo_on_the_cpu_clock_with_the_default_threads(tmp_path, monkeypatch):
    from seqimpute import threads

    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    run, before = tmp_path / "demo", torch.get_num_threads()
    try:
        assert main(["demo", "--data", "sklearn-digits", "--minutes", "0.01", "--n", "20", "--run", str(run),
                     "--quiet", "--clock", "cpu"]) == 0
    finally:
        torch.set_num_threads(before)
    res = json.loads((run / "eval.json").read_text())
    assert res["threads"] == 2 and res["training"]["clock"] == "cpu"


def test_the_demo_says_when_a_wall_clock_budget_was_shared():
    from seqimpute.demo import busy

    idle = {"clock": "wall", "cpu_s": 830.0, "threads": 2, "training_s": 420.0}  # results/demo/fp32's training
    assert not busy(idle)
    assert busy({**idle, "cpu_s": 300.0})  # a third of two threads' time: another job had the cores
    assert not busy({**idle, "clock": "cpu", "cpu_s": 300.0}) and not busy({**idle, "cpu_s": None})
