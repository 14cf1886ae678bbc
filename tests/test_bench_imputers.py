"""benchmarks/imputers.py: the missingness mechanisms, the metrics, the ranking summary and resuming."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "imputers.py"
_spec = importlib.util.spec_from_file_location("bench_imputers", _PATH)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


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
    s = bench.summary(records)
    assert s["cells"] == 2 and s["complete_cells"] == 1  # only the 0.5 cell has all four imputers
    assert s["mean_rank"] == {"mean": 4.0, "knn": 2.0, "iterative": 3.0, "sequential": 1.0}
    assert s["ranks"][("t", "mcar", 0.3)] == {"mean": 2.0, "knn": 3.0, "iterative": 1.0}
    assert s["ranks"][("t", "mcar", 0.5)] == {"mean": 4.0, "knn": 2.0, "iterative": 3.0, "sequential": 1.0}
    assert s["worse_than_mean"]["knn"] == [["t", "mcar", 0.3]] and s["worse_than_mean"]["sequential"] == []
    s = bench.summary([r for r in records if r["imputer"] != "sequential"])
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
