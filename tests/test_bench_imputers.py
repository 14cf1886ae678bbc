"""benchmarks/imputers.py: the missingness mechanisms, the metrics, the ranking summary and resuming."""

from __future__ import annotations

import importlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "imputers.py"
_spec = importlib.util.spec_from_file_location("bench_imputers", _PATH)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)
tables = importlib.import_module("seqimpute.reporting.benchmarks")  # what renders the benchmark's records


def test_mcar_and_logistic_masks_hit_the_rate():
    Z = np.random.default_rng(0).random((4000, 10))
    for mech in ("mcar", "mar", "mnar", "mnar_self"):
        m = bench.make_mask(Z, mech, 0.4, np.random.default_rng(1))
        if mech == "mar":  # 3 of 10 columns (30%) stay complete, the other 7 are missing at the rate
            assert (m.sum(0) == 0).sum() == 3
            assert abs(m[:, m.any(0)].mean() - 0.4) < 0.02
        else:
            assert m.all(0).sum() == 0 and abs(m.mean() - 0.4) < 0.02, mech


def test_mar_depends_on_the_observed_column_and_self_masking_on_the_value_itself():
    rng = np.random.default_rng(2)
    x = rng.random(20000)
    Z = np.column_stack([x, rng.random(20000)])
    # MAR with d=2: one input column, complete; the other's missingness is a monotone logistic function of it
    m = bench.make_mask(Z, "mar", 0.3, np.random.default_rng(3))
    inp = int(np.where(~m.any(0))[0][0])
    low, high = Z[:, inp] < 0.5, Z[:, inp] >= 0.5
    assert abs(m[low, 1 - inp].mean() - m[high, 1 - inp].mean()) > 0.1
    # self-masking: a column's missingness differs between its own low and high values
    m = bench.make_mask(Z[:, :1], "mnar_self", 0.3, np.random.default_rng(4))
    assert abs(m[x < 0.5, 0].mean() - m[x >= 0.5, 0].mean()) > 0.1


def test_metrics_of_mean_imputation_by_hand():
    X = np.array([[0.0, 10.0], [2.0, 30.0], [4.0, 20.0], [6.0, 50.0]])
    mask = np.array([[True, False], [False, False], [False, True], [False, False]])
    rec = bench.run_one(X, mask, "mean", 0, quick=True)
    # column 0: filled with mean(2, 4, 6) = 4 where the truth is 0; range 0..6 -> scaled error 4/6
    # column 1: filled with mean(10, 30, 50) = 30 where the truth is 20; range 10..50 -> scaled error 10/40
    e0, e1 = 4 / 6, 10 / 40
    assert rec["rmse"] == pytest.approx(np.sqrt((e0 ** 2 + e1 ** 2) / 2))
    assert rec["wasserstein"] == pytest.approx((e0 + e1) / 2)  # one hidden value per column: |imputed - true|


def test_summary_ranks_by_seed_averaged_rmse_and_flags_worse_than_mean():
    def rec(imp, seed, rmse, rate=0.3):
        return {"dataset": "t", "mechanism": "mcar", "rate": rate, "seed": seed, "imputer": imp, "rmse": rmse,
                "wasserstein": 0.0, "seconds": 0.0, "realised_rate": rate}

    records = [rec("mean", 0, 1.0), rec("mean", 1, 1.0), rec("knn", 0, 0.5), rec("knn", 1, 1.7),  # knn mean 1.1
               rec("iterative", 0, 0.9), rec("iterative", 1, 0.9),
               rec("mean", 0, 1.0, 0.5), rec("knn", 0, 0.8, 0.5), rec("iterative", 0, 0.9, 0.5),
               rec("sequential", 0, 0.1, 0.5)]  # sequential ran in one cell only
    s = tables.summary(records)
    assert s["cells"] == 2 and s["complete_cells"] == 1  # only the 0.5 cell has all four imputers
    assert s["mean_rank"] == {"mean": 4.0, "knn": 2.0, "iterative": 3.0, "sequential": 1.0}
    assert s["ranks"][("t", "mcar", 0.3)] == {"mean": 2.0, "knn": 3.0, "iterative": 1.0}
    assert s["ranks"][("t", "mcar", 0.5)] == {"mean": 4.0, "knn": 2.0, "iterative": 3.0, "sequential": 1.0}
    assert s["worse_than_mean"]["knn"] == [["t", "mcar", 0.3]] and s["worse_than_mean"]["sequential"] == []
    s = tables.summary([r for r in records if r["imputer"] != "sequential"])
    assert s["complete_cells"] == 2  # mean ranks (2+3, 3+1, 1+2) / 2
    assert s["mean_rank"] == {"mean": 2.5, "knn": 2.0, "iterative": 1.5}


def test_a_second_run_skips_the_records_it_has(tmp_path):
    args = ["--out", str(tmp_path), "--datasets", "iris", "--mechanisms", "mcar", "--rates", "0.3", "--seeds", "0",
            "--imputers", "mean", "knn"]
    bench.main(args)
    first = json.loads((tmp_path / "imputers.json").read_text())["records"]
    bench.main(args[:-2] + ["mean", "iterative"])  # mean is there: only iterative runs
    doc = json.loads((tmp_path / "imputers.json").read_text())
    assert [r["imputer"] for r in doc["records"]] == ["mean", "knn", "iterative"]
    assert doc["records"][:2] == first and len(doc["runs"]) == 2
    assert "| iris | " in (tmp_path / "imputers.md").read_text()


def test_mnist_table_is_the_first_2000_training_images_without_constant_pixels(tmp_path, monkeypatch):
    """Through the project's loader, offline: a stand-in MNIST cache of 2100 training images (uint8, k/256)."""
    from seqimpute.data import sources

    monkeypatch.setattr(sources, "fetch_from_wheel", lambda *a, **k: pytest.fail("no download expected"))
    v = np.random.default_rng(0).integers(0, 256, (2100, 784), dtype=np.uint8)
    v[:, 0], v[:, 1] = 0, 255  # every image spans 0..255: per-image min-max gives v / 255; both columns constant
    v[:2000, 2], v[2000:, 2] = 0, 7  # blank over the first 2000 images only (a border pixel): dropped too
    small = np.zeros((3, 784), np.uint8)
    sources._write_cache(sources.data_root() / "mnist" / "mnist.npz", train=v, valid=small, test=small)
    X = bench.load_table("mnist")
    assert X.dtype == np.float64 and X.shape == (2000, 781)
    np.testing.assert_allclose(X, v[:2000, 3:] / 255, rtol=1e-6)
    assert X.min() == 0.0 and X.max() == pytest.approx(1.0)


def test_wide_tables_bound_iterative_imputer_and_skip_the_missforest_recipe(tmp_path, monkeypatch):
    narrow, wide = bench.make_imputer("iterative", 0, False, 100), bench.make_imputer("iterative", 0, False, 101)
    assert (narrow.n_nearest_features, narrow.max_iter) == (None, 10)
    assert (wide.n_nearest_features, wide.max_iter) == (30, 3)
    assert bench.not_run("missforest", 100) is None and "more than 100 columns" in bench.not_run("missforest", 101)
    assert bench.not_run("sequential", 784) is None and bench.not_run("iterative", 784) is None
    # the grid on a wide table: mean runs, missforest is recorded as not run, and the Markdown says so
    X = np.random.default_rng(0).random((40, 120))
    monkeypatch.setattr(bench, "load_table", lambda name: X)
    bench.main(["--out", str(tmp_path), "--datasets", "mnist", "--mechanisms", "mcar", "--rates", "0.3", "--seeds",
                "0", "--imputers", "mean", "missforest"])
    doc = json.loads((tmp_path / "imputers.json").read_text())
    mean, mf = doc["records"]
    assert "rmse" in mean and set(mf) == {"dataset", "mechanism", "rate", "seed", "imputer", "realised_rate",
                                          "not_run"}
    assert doc["tables"] == {"mnist": [40, 120]}
    md = (tmp_path / "imputers.md").read_text()
    assert "### mnist (40 x 120)" in md and "| not run |" in md and "Not run: missforest (more than 100 columns" in md
    assert "| missforest | - | 0 / 0 | - | - |" in md  # the summary row of an imputer that never ran


def test_coverage90_by_hand():
    # 21 draws 0, 1, ..., 20 of every entry: numpy's linear percentiles are 5% -> 1.0 and 95% -> 19.0
    draws = np.broadcast_to(np.arange(21.0)[:, None, None], (21, 2, 3))
    X = np.array([[0.5, 1.0, 10.0], [19.0, 19.5, -3.0]])
    mask = np.array([[True, True, True], [True, True, False]])  # -3 is observed: not scored
    assert bench.coverage90(draws, X, mask) == pytest.approx(3 / 5)  # 1, 10 and 19 inside; 0.5 and 19.5 outside


def _rec(imp, seed, rmse, rate=0.3, **extra):
    return {"dataset": "t", "mechanism": "mcar", "rate": rate, "seed": seed, "imputer": imp, "rmse": rmse,
            "wasserstein": 0.0, "seconds": 1.0, "cpu_seconds": 0.5, "realised_rate": rate, **extra}


def test_summary_leaves_out_imputers_that_did_not_run_and_shows_coverage_where_recorded():
    records = [_rec("mean", 0, 1.0), _rec("knn", 0, 0.5),
               {"dataset": "t", "mechanism": "mcar", "rate": 0.3, "seed": 0, "imputer": "missforest",
                "realised_rate": 0.3, "not_run": "too wide"},
               _rec("sequential", 0, 0.7, coverage90=0.8), _rec("sequential", 1, 0.7, coverage90=0.9),
               _rec("mean", 1, 1.0), _rec("knn", 1, 0.5),
               _rec("mean", 0, 1.0, 0.5), _rec("sequential", 0, 2.0, 0.5)]  # an older record: no coverage90
    s = tables.summary(records)
    assert s["ranks"][("t", "mcar", 0.3)] == {"mean": 3.0, "knn": 1.0, "sequential": 2.0}
    assert s["not_run"] == {("t", "mcar", 0.3): {"missforest": "too wide"}}
    assert s["complete_cells"] == 0 and s["mean_rank"]["sequential"] is None  # missforest is missing everywhere
    assert s["means"][("t", "mcar", 0.3)]["sequential"]["coverage90"] == pytest.approx(0.85)
    lines = tables.summary_lines({"records": records})
    assert "| sequential | - | 1 / 2 | 1.00 / 0.50 | 0.85 |" in lines  # worse than mean at 0.5 only
    assert "| missforest | - | 0 / 0 | - | - |" in lines
    assert "Not run: missforest in 1 cell(s) (too wide)." in lines
    cells = tables.cell_lines({"records": records, "tables": {"t": [10, 3]}})
    assert "| mcar | 0.3 | 0.30 | 2 | 1.0000 / 0.0000 | **0.5000** / 0.0000 | not run | 0.7000 / 0.0000 | 0.85 |" in cells
    assert "| mcar | 0.5 | 0.50 | 1 | **1.0000** / 0.0000 |  |  | 2.0000 / 0.0000 | - |" in cells


def test_timing_table_by_hand():
    def rec(rows, cols, imp, wall, cpu, load, **extra):
        return {"rows": rows, "cols": cols, "rate": 0.3, "seed": 0, "imputer": imp, "realised_rate": 0.3,
                "load_average": load, "rmse": 0.1, "wasserstein": 0.1, "seconds": wall, "cpu_seconds": cpu, **extra}

    doc = {"records": [rec(2000, 10, "sequential", 150.4, 99.5, 3.0, updates=800), rec(2000, 10, "mean", 0.011, 0.004, 2.5),
                       rec(500, 10, "mean", 0.5, 0.25, 4.0)]}
    assert tables.timing_lines(doc) == [
        "| rows | columns | mean: wall / CPU s | sequential: wall / CPU s | sequential updates | load average |",
        "|---:|---:|---:|---:|---:|---:|",
        "| 500 | 10 | 0.50 / 0.25 | - |  | 4.0-4.0 |",
        "| 2000 | 10 | 0.01 / 0.00 | 150 / 99.50 | 800 | 2.5-3.0 |"]


def test_timing_runs_on_synthetic_tables_and_resumes(tmp_path):
    args = ["--timing", "--out", str(tmp_path), "--rows", "40", "--cols", "3", "--imputers", "mean"]
    bench.main(args)
    bench.main(args[:-1] + ["mean", "knn"])  # mean is there: only knn runs
    doc = json.loads((tmp_path / "timing.json").read_text())
    assert [(r["rows"], r["cols"], r["rate"], r["seed"], r["imputer"]) for r in doc["records"]] == [
        (40, 3, 0.3, 0, "mean"), (40, 3, 0.3, 0, "knn")]
    assert "| 40 | 3 | " in (tmp_path / "timing.md").read_text()


def test_synthetic_table_is_seeded_and_low_rank_plus_noise():
    X = bench.synthetic_table(2000, 20, 0)
    np.testing.assert_array_equal(X, bench.synthetic_table(2000, 20, 0))
    s = np.linalg.svd(X - X.mean(0), compute_uv=False) ** 2 / 2000  # variance along each principal direction
    assert s[4] > 0.5 and s[5] < 0.15  # five signal directions; the rest is the 0.3^2 = 0.09 noise
