"""benchmarks/precision_quality.py rerun: the trained cells of two reproductions paired by cell, and the table
results_tables.py renders from the pairs. Synthetic JSON, checked by hand."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _module(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _row(model, mask, ours, step, steps=None):
    r = {"dataset": "MNIST", "mask": mask, "model": model, "paper": 100.0, "ours": ours, "run_step": step,
         "run_minutes": 15.0}
    if steps is not None:
        r["steps"] = steps
    return r


def test_rerun_pairs_trained_cells_only(tmp_path):
    old, new = tmp_path / "fp32", tmp_path / "bf16"
    old.mkdir(), new.mkdir()
    (old / "table1.json").write_text(json.dumps({"rows": [
        _row("gpsi-add", "MAR-14", 190.0, 4000), _row("knn", "MAR-14", 265.0, 0),  # kNN: not trained, left out
        _row("lstm-add", "MAR-14", 205.0, 900)]}))
    (new / "table1.json").write_text(json.dumps({"rows": [
        _row("gpsi-add", "MAR-14", 185.5, 7000), _row("knn", "MAR-14", 265.0, 0)]}))  # lstm-add not run yet
    (old / "fig2c.json").write_text(json.dumps({"rows": [_row("gpsi-add", "MCAR-90", 98.0, 2000, steps=5)]}))
    (new / "fig2c.json").write_text(json.dumps({"rows": [_row("gpsi-add", "MCAR-90", 97.0, 3000, steps=5)]}))
    doc = _module("precision_quality").rerun(old, new, tmp_path / "out" / "vs.json")
    assert json.loads((tmp_path / "out" / "vs.json").read_text()) == doc
    got = [(p["experiment"], p["model"], p["steps"], p["fp32"], p["bf16"], p["diff"], p["update_ratio"])
           for p in doc["rows"]]
    assert got == [("table1", "gpsi-add", None, 190.0, 185.5, -4.5, 1.75),
                   ("fig2c", "gpsi-add", 5, 98.0, 97.0, -1.0, 1.5)]
    assert doc["missing"] == ["table1 / MNIST / MAR-14 / lstm-add"]
    from seqimpute.reporting.docs import vs_fp32

    table = vs_fp32(doc)
    assert table[2] == "| table1 | MNIST | MAR-14 | gpsi-add | 190.0 | 4000 | 185.5 | 7000 | -4.5 | 1.75 |"
    assert table[3] == "| fig2c | MNIST | MCAR-90 | gpsi-add T=5 | 98.0 | 2000 | 97.0 | 3000 | -1.0 | 1.50 |"
