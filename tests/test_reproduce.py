"""`seqimpute reproduce`: smoke runs of the presets on sklearn-digits (the data cache is an empty temp folder, see
conftest.py), tables beside the packaged paper numbers, figures, resume/skip, and the status file."""

from __future__ import annotations

import json
import os
import time
from importlib import resources

import pytest

from seqimpute import SeqImputeError
from seqimpute.cli import main
from seqimpute.experiments import reproduce
from seqimpute.experiments.plan import trainable
from seqimpute.experiments.reproduce import Reproduction, adapt_mask
from seqimpute.models.registry import build_model


def anchors() -> dict:  # read independently of the runner
    return json.loads(resources.files("seqimpute.anchors").joinpath("paper_results.json").read_text())


def _check_rows(rows, paper_of):
    assert rows
    for r in rows:
        assert r["paper"] == paper_of(r)
        if r["ours"] is not None and r["paper"] is not None:
            assert r["diff"] == pytest.approx(r["ours"] - r["paper"])


def test_cpu_fig2_smoke_then_rerun_skips(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "results"
    argv = ["reproduce", "fig2", "--preset", "cpu", "--smoke", "--data", "sklearn-digits", "--runs", str(runs),
            "--out", str(out), "--quiet"]
    t0 = time.perf_counter()
    assert main(argv) == 0
    first = time.perf_counter() - t0
    res = out / "cpu-smoke-sklearn-digits"
    for f in ("fig2.md", "fig2.json", "fig2a.png", "fig2b.png", "status.json"):
        assert (res / f).stat().st_size > 0, f

    fig = anchors()["fig2_mnist_mcar"]
    table = json.loads((res / "fig2.json").read_text())
    rows = table["rows"]

    def paper_of(r):
        name = {k.lower(): k for k in fig if k != "drop_rates"}.get(r["model"])
        rate = int(r["mask"].split("-")[1]) / 100
        return None if name is None else fig[name][fig["drop_rates"].index(rate)]

    _check_rows(rows, paper_of)
    assert {r["model"] for r in rows} >= {"gpsi-add", "gpsi-jump", "lstm-add", "lstm-jump", "vae-imp", "tm-hon",
                                          "tm-orc", "mean", "knn"}
    assert {r["mask"] for r in rows} == {"MCAR-60", "MCAR-70", "MCAR-80", "MCAR-90"}
    assert all(r["ours"] is not None and r["status"] == "complete" for r in rows)
    # the family models: one per policy, trained on the MCAR mixture and scored at every cell
    assert {r["trained_on"] for r in rows if r["model"] == "gpsi-add"} == {"mcar:0.5-0.95 (one model for the family)"}
    md = (res / "fig2.md").read_text()
    assert "one model per MNIST mask family" in md and "SMOKE RUN" in md and "stand-in: sklearn-digits" in md
    gpsi60 = next(r for r in rows if r["model"] == "gpsi-add" and r["mask"] == "MCAR-60")
    assert f"| {gpsi60['ours']:.1f} | {gpsi60['paper']:.1f} | {gpsi60['diff']:+.1f} |" in md

    status = json.loads((res / "status.json").read_text())
    assert status["experiments"]["fig2"]["complete"] is True
    assert status["runs"] and all(r["complete"] and r["last_action"] == "trained" for r in status["runs"].values())
    assert all(r["command"].startswith("seqimpute train ") for r in status["runs"].values())
    assert all(r["cpu"] for r in status["runs"].values())  # where each ran, and the trained ones' products
    assert all(r["precision"] in ("fp32", "bf16") for r in status["runs"].values() if "/tm-" not in r["path"]
               and not r["path"].endswith(("mean/all-cells", "knn/all-cells")))
    assert "seqimpute reproduce fig2 --preset cpu" in status["invocations"][0]["command"]
    ckpt = runs / "cpu-smoke-sklearn-digits" / "mnist" / "gpsi-add" / "mcar0.5-0.95" / "last.pt"
    mtime = ckpt.stat().st_mtime_ns

    t0 = time.perf_counter()
    assert main(argv) == 0
    second = time.perf_counter() - t0
    status = json.loads((res / "status.json").read_text())
    assert all(r["last_action"] == "skipped (finished)" for r in status["runs"].values())
    assert len(status["invocations"]) == 2 and status["invocations"][1]["finished"]
    assert ckpt.stat().st_mtime_ns == mtime  # nothing retrained
    assert second < first
    assert json.loads((res / "fig2.json").read_text())["rows"] == rows  # same checkpoints, same masks, same scores


def test_paper_fig1_smoke_resumes_unfinished_runs(tmp_path):
    kw = dict(runs=tmp_path / "runs", out=tmp_path / "results", smoke=True, data="sklearn-digits", quiet=True)
    reproduce("fig1", "paper", smoke_updates=1, **kw)
    res = tmp_path / "results" / "paper-smoke-sklearn-digits"
    status = json.loads((res / "status.json").read_text())
    (rid, run), = status["runs"].items()
    assert rid == "binarized-mnist/draw-ext-add/full" and run["step"] == 1 and run["last_action"] == "trained"
    # a larger budget makes the finished run unfinished: it resumes from its checkpoint
    reproduce("fig1", "paper", smoke_updates=2, **kw)
    run = json.loads((res / "status.json").read_text())["runs"][rid]
    assert run["step"] == 2 and run["last_action"] == "resumed" and run["complete"]
    reproduce("fig1", "paper", smoke_updates=2, **kw)
    assert json.loads((res / "status.json").read_text())["runs"][rid]["last_action"] == "skipped (finished)"
    table = json.loads((res / "fig1.json").read_text())
    gen = anchors()["binarized_mnist_generation"]
    paper = gen["extended LSTM model, c_T = c_0 + sum of writes (raw / q fine-tuned on test)"][0]
    _check_rows(table["rows"], lambda r: paper)
    assert (res / "fig1_draw-ext-add.png").stat().st_size > 0


def test_paper_preset_plan_has_the_papers_settings_and_every_model_builds():
    rep = Reproduction("paper", data="sklearn-digits")
    exps = ("table1", "fig1", "fig2", "fig2c", "fig3")
    plans = {}
    for e in exps:
        for c in rep.cells(e):
            if rep.data_for(c.role).available:
                for m in c.models:
                    p = rep.plan_run(c, m)
                    plans[p.id] = p
    want = {"gpsi-add": 200000, "gpsi-jump": 200000, "lstm-add": 250000, "lstm-jump": 250000, "vae-imp": 200000,
            "draw-ext-add": 250000}
    built = set()
    for p in plans.values():
        cfg = p.cfg
        if p.model in want:
            assert cfg.updates == want[p.model] and cfg.minutes is None and cfg.optimizer == "paper", p.id
        if "-T" in p.id:  # Fig 2(c): camera-ready settings
            assert cfg.batch == 200 and cfg.mask == "mcar:0.9"
            assert cfg.model_options["hidden"] == 800 and cfg.model_options["l2"] == 1e-5
        elif p.model == "vae-imp":
            assert cfg.batch == (200 if p.role == "mnist" else 250)
        else:
            assert cfg.batch == 250
        key = (p.model, cfg.sizes, json.dumps(cfg.model_options, sort_keys=True))
        if key not in built:  # the preset's options are valid for every model
            build_model(p.model, 64, cfg.sizes, cfg.model_options)
            built.add(key)
    steps = sorted(p.cfg.model_options["steps"] for p in plans.values() if p.id.startswith("mnist/gpsi-add-T"))
    assert steps == anchors()["fig2c_gpsi_mnist_mcar90_refinement_steps"]["steps"]
    # one model per cell: four MCAR and two MAR runs of each MNIST policy
    assert sum(1 for i in plans if i.startswith("mnist/lstm-jump/")) == 6


def test_parallel_jobs_train_the_same_runs_as_serial(tmp_path):
    """--jobs 2 trains and scores runs in two worker processes (one thread each): the same checkpoints and scores
    as the serial path."""
    import torch

    from seqimpute.runs import load_checkpoint

    kw = dict(smoke=True, smoke_updates=2, data="sklearn-digits", quiet=True, out=tmp_path / "results")
    reproduce("fig2c", "cpu", runs=tmp_path / "par", jobs=2, **kw)
    res = tmp_path / "results" / "cpu-smoke-sklearn-digits"
    status = json.loads((res / "status.json").read_text())
    par_rows = json.loads((res / "fig2c.json").read_text())["rows"]  # scored in the workers too
    assert len(status["runs"]) == 10
    assert all(r["complete"] and r["last_action"] == "trained" and r["step"] == 2 for r in status["runs"].values())
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the workers' thread count, so the float sums round alike
    try:
        reproduce("fig2c", "cpu", runs=tmp_path / "ser", jobs=1, **kw)
    finally:
        torch.set_num_threads(threads)
    ser_rows = json.loads((res / "fig2c.json").read_text())["rows"]
    assert [r["model"] for r in par_rows] == [r["model"] for r in ser_rows] and all(r["ours"] for r in par_rows)
    for a, b in zip(par_rows, ser_rows):
        assert a["ours"] == pytest.approx(b["ours"], rel=1e-4)
    for rid in status["runs"]:
        par = load_checkpoint(tmp_path / "par" / "cpu-smoke-sklearn-digits" / rid / "last.pt")["model"]
        ser = load_checkpoint(tmp_path / "ser" / "cpu-smoke-sklearn-digits" / rid / "last.pt")["model"]
        for k in ser:
            torch.testing.assert_close(par[k], ser[k], rtol=1e-5, atol=1e-6, msg=f"{rid} {k}")
    with pytest.raises(SeqImputeError, match="--jobs must be a positive integer"):
        Reproduction("cpu", jobs=0)


def test_cpu_preset_budgets_and_families():
    rep = Reproduction("cpu")
    rep._shapes.update({"mnist": (28, 28), "tfd": (48, 48), "binarized-mnist": (28, 28)})  # no data needed
    plans = {}
    for e in ("table1", "fig1", "fig2", "fig2c"):
        for c in rep.cells(e):
            if rep.data_for(c.role).available:
                for m in c.models:
                    p = rep.plan_run(c, m)
                    plans[p.id] = p
    trained = [p for p in plans.values() if trainable(p.model)]
    assert all(p.cfg.minutes <= (8 if "-T" in p.id else 15) for p in trained)
    assert all(p.cfg.clock == "cpu" for p in trained)  # budgets in CPU time: fair on a shared machine
    assert sum(p.cfg.minutes for p in trained) <= 4.5 * 60
    masks = {p.cfg.mask for p in plans.values() if p.id.startswith("mnist/lstm-add/")}
    assert masks == {"mcar:0.5-0.95", "square:12-18"}
    assert rep.data_for("tfd").name == "orl-faces" and "stand-in" in rep.data_for("tfd").note
    assert not rep.data_for("svhn").available


def test_svhn_rows_are_not_run_without_files():
    rep = Reproduction("cpu", data="sklearn-digits")
    cell = next(c for c in rep.cells("table1") if c.role == "svhn")
    row = rep.row(cell, cell.models[0], None, None)
    assert row["status"] == "not run" and row["ours"] is None
    assert row["paper"] == anchors()["table1"]["SVHN"][cell.label][next(iter(anchors()["table1"]["SVHN"][cell.label]))]


def test_adapt_mask_scales_squares_to_a_stand_in():
    assert adapt_mask("square:14", 28, 28) == "square:14"
    assert adapt_mask("square:14", 28, 8) == "square:4"
    assert adapt_mask("square:12-18", 28, 8) == "square:3-5"
    assert adapt_mask("mcar:0.8|square:16", 28, 8) == "mcar:0.8|square:5"


def test_unknown_preset_and_experiment_exit_2(tmp_path, capsys):
    assert main(["reproduce", "fig2", "--preset", "gpu", "--runs", str(tmp_path)]) == 2
    assert "unknown preset" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("SEQIMPUTE_SLOW_TESTS"), reason="set SEQIMPUTE_SLOW_TESTS=1 (about 2 min)")
def test_paper_all_smoke(tmp_path):
    r = reproduce("all", "paper", runs=tmp_path / "runs", out=tmp_path / "results", smoke=True, smoke_updates=1,
                  data="sklearn-digits", quiet=True)
    status = json.loads((tmp_path / "results" / "paper-smoke-sklearn-digits" / "status.json").read_text())
    assert all(v["complete"] for v in status["experiments"].values())
    assert set(r["files"]) == {"table1", "fig1", "fig2", "fig2c", "fig3"}


def test_cpu_sweep_smoke_ranks_candidates_on_validation(tmp_path):
    from seqimpute.runs import read_metrics

    r = reproduce("sweep", "cpu", runs=tmp_path / "runs", out=tmp_path / "results", smoke=True, smoke_updates=2,
                  data="sklearn-digits", quiet=True)
    rows = r["rows"]["sweep"]
    preset = Reproduction("cpu").preset
    assert [(x["model"], x["candidate"]) for x in rows] == [
        (m, c) for m, cands in preset["sweep"]["candidates"].items() for c in cands]
    for x in rows:
        valid = [v["valid_bound_paper_units"] for v in read_metrics(tmp_path / "runs" / "cpu-smoke-sklearn-digits" /
                                                                   x["run"]) if "valid_bound_paper_units" in v]
        assert x["run_complete"] and x["run_step"] == 2 and x["best_valid"] == min(valid)
        assert x["vs_best"] == pytest.approx(x["best_valid"] - min(y["best_valid"] for y in rows
                                                                    if y["model"] == x["model"]))
    for m in {x["model"] for x in rows}:
        mine = [x for x in rows if x["model"] == m]
        assert sum(x["best"] for x in mine) >= 1
        # the preset's own settings for a swept model are one of the candidates it measured
        assert sum(x["preset_choice"] for x in mine) == 1, m
    h = next(x for x in rows if x["model"] == "gpsi-add" and x["candidate"] == "h500")
    assert h["model_options"] == {"hidden": 500} and h["trained_on"] == "square:3-5"
    md = (tmp_path / "results" / "cpu-smoke-sklearn-digits" / "sweep.md").read_text()
    assert "The test split is never used to choose" in md and "SMOKE RUN" in md


def test_sweep_needs_a_sweep_section_and_runs_alone(tmp_path, capsys):
    assert main(["reproduce", "sweep", "--preset", "paper", "--smoke", "--data", "sklearn-digits",
                 "--runs", str(tmp_path), "--out", str(tmp_path), "--quiet"]) == 2
    assert "has no [sweep.candidates.<model>] tables" in capsys.readouterr().err
    with pytest.raises(SeqImputeError, match="run the sweep on its own"):
        Reproduction("cpu", runs=tmp_path, out=tmp_path).run(["table1", "sweep"])


def test_a_run_trained_under_other_settings_is_not_reused(tmp_path):
    kw = dict(runs=tmp_path / "runs", out=tmp_path / "results", smoke=True, smoke_updates=1, data="sklearn-digits",
              quiet=True)
    reproduce("fig1", "cpu", **kw)
    text = resources.files("seqimpute.experiments").joinpath("presets/cpu.toml").read_text()
    assert "\nbatch = 250\n" in text
    changed = tmp_path / "cpu.toml"
    changed.write_text(text.replace("\nbatch = 250\n", "\nbatch = 100\n", 1))
    with pytest.raises(SeqImputeError, match="was trained with batch=250, not batch=100; a run keeps the settings"):
        reproduce("fig1", str(changed), **kw)
