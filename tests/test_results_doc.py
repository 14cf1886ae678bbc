"""docs/RESULTS.md and results/ agree: every generated table of the doc regenerates, unchanged, from the committed
JSON; every results/cpu/*.md is what `seqimpute reproduce` renders from its JSON; every results file the doc cites is
in the repository. Offline and fast: no run, no training."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from seqimpute.experiments.report import markdown

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "RESULTS.md"
CPU = ROOT / "results" / "cpu"
BF16 = ROOT / "results" / "bf16" / "cpu"  # the same preset re-run at the default precision (bf16 on this CPU)


def results_tables():
    from seqimpute.reporting import docs

    return docs


def test_generated_tables_match_the_json():
    rt = results_tables()
    text = DOC.read_text()
    names = [m.group(3) for m in rt.MARKED.finditer(text)]
    assert {"sweep", "fig2", "table1", "table1-runs", "fig2c", "fig1", "soak", "baselines", "imputers-summary",
            "imputers-cells", "imputers-timing"} <= set(names)
    # each block holds exactly its regenerated table: compare block by block, so a failure names the table
    regenerated = [m.group(4) for m in rt.MARKED.finditer(rt.regenerate(text, ROOT))]
    for m, new in zip(rt.MARKED.finditer(text), regenerated, strict=True):
        assert m.group(4) == new, f"docs/RESULTS.md's {m.group(3)} table differs from its JSON: run " \
            f"python benchmarks/results_tables.py --write docs/RESULTS.md"


def test_a_changed_number_is_caught(tmp_path):
    """The check can fail: one score moved by 0.1 in the JSON changes the regenerated doc."""
    rt = results_tables()
    shutil.copytree(ROOT / "results", tmp_path / "results", ignore=shutil.ignore_patterns("*.png"))
    d = json.loads((tmp_path / "results" / "cpu" / "fig2.json").read_text())
    d["rows"][0]["ours"] += 0.1
    (tmp_path / "results" / "cpu" / "fig2.json").write_text(json.dumps(d))
    text = DOC.read_text()
    assert rt.regenerate(text, ROOT) == text != rt.regenerate(text, tmp_path)


@pytest.mark.parametrize("folder, name", [(CPU, n) for n in ("table1", "fig1", "fig2", "fig2c", "fig3", "sweep")]
                         + [(BF16, n) for n in ("table1", "fig1", "fig2", "fig2c", "fig3")])
def test_results_markdown_is_rendered_from_its_json(folder, name):
    assert markdown(json.loads((folder / f"{name}.json").read_text())) == (folder / f"{name}.md").read_text()


def test_the_bf16_rerun_pairs_every_trained_cell():
    """vs-fp32.json holds each trained cell of both reproductions, and its numbers are those of their JSON."""
    doc = json.loads((BF16 / "vs-fp32.json").read_text())
    assert doc["rows"] and not doc["missing"]
    rows = {(folder, exp): json.loads((folder / f"{exp}.json").read_text())["rows"]
            for folder in (CPU, BF16) for exp in {r["experiment"] for r in doc["rows"]}}
    for r in doc["rows"]:
        for folder, key in ((CPU, "fp32"), (BF16, "bf16")):
            src = [x for x in rows[folder, r["experiment"]] if (x["dataset"], x["mask"], x["model"], x.get("steps"))
                   == (r["dataset"], r["mask"], r["model"], r["steps"])]
            assert len(src) == 1 and (src[0]["ours"], src[0]["run_step"]) == (r[key], r[f"{key}_updates"])


def test_every_cited_results_file_is_in_the_repository():
    cited = sorted(set(re.findall(r"\bresults/[A-Za-z0-9_.\-/]*[A-Za-z0-9_\-]", DOC.read_text())))
    assert cited
    missing = [c for c in cited if not (ROOT / c).exists()]
    assert not missing, f"docs/RESULTS.md cites results files that are not in the repository: {missing}"


def test_every_quality_json_records_its_training():
    """Updates, images seen and CPU time beside every published score; a value that was not recorded is null and
    a note says why, rather than a guess."""
    files = sorted((ROOT / "results" / "quality").glob("*.json"))
    assert files
    for f in files:
        t = json.loads(f.read_text())["training"]
        assert isinstance(t["updates"], int) and t["updates"] > 0, f.name
        assert isinstance(t["images_seen"], int) and t["images_seen"] >= t["updates"], f.name
        assert "cpu_s" in t and (t["cpu_s"] is not None or "not recorded" in t.get("note", "")), f.name


def _demo(precision: str) -> dict:
    return json.loads((ROOT / "results" / "demo" / precision / "eval.json").read_text())


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_readme_quotes_the_committed_demo_runs(precision):
    """README's demo numbers are those of results/demo/<precision>/eval.json, and the run records its CPU, threads,
    precision and recipe."""
    d, readme = _demo(precision), (ROOT / "README.md").read_text()
    assert d["precision"] == d["training"]["precision"] == precision and d["cpu"] and d["threads"] >= 1
    assert d["training"]["recipe"]["steps"] >= 1 and d["training"]["clock"] == "wall"
    quoted = (f"{d['demo_wall_s'] / 60:.1f} minutes wall", f"{d['training']['updates']:,} updates",
              f"bound {d['bound_paper_units']:.1f}", f"kNN's {d['knn_paper_units']:.1f}",
              f"MSE {d['mse']:.4f}", f"kNN's {d['knn_mse']:.4f}")
    line = next(p for p in readme.split("\n\n") if f"at {precision}" in p and "Measured" in p)
    for q in quoted:
        assert q in " ".join(line.split()), f"README does not quote {q!r} from results/demo/{precision}/eval.json"


def test_the_recipe_reading_quotes_the_recipe_json():
    text = " ".join(DOC.read_text().split())
    for prec in ("fp32", "bf16"):
        r = json.loads((ROOT / "results" / "recipe" / f"{prec}.json").read_text())["recipes"]
        before, after = (r[n]["best_valid_bound_paper_units"] for n in ("h500-T6-b250-lr1e-3", "h500-T2-b250-lr2e-3"))
        assert f"{before:.1f} -> {after:.1f}" in text


def test_the_step_share_reading_quotes_the_bench_json():
    text = " ".join(DOC.read_text().split())
    speed = ROOT / "results" / "speed"
    t6 = json.loads((speed / "bench-gpsi-add-fp32-T6.json").read_text())["models"][0]
    t2 = json.loads((speed / "bench-gpsi-add-fp32-T2.json").read_text())["models"][0]
    assert f"{t6['peak_share']:.2f} at the paper's MNIST sizes" in text
    assert f"{t2['peak_share']:.2f} for the demo's smaller recipe" in text and f"only {t2['gemm_share']:.2f}" in text
    ddp = json.loads((speed / "ddp-vs-threads.json").read_text())
    assert ddp["threads_over_ddp"] > 1 and "slower than one process with two threads" in text


def test_readme_quotes_the_imputers_benchmark():
    """README's comparison with scikit-learn's imputers: the mean ranks, the paired verdicts and the median CPU
    seconds are those of results/imputers/imputers.json."""
    from seqimpute.reporting.benchmarks import paired, summary

    records = json.loads((ROOT / "results" / "imputers" / "imputers.json").read_text())["records"]
    s, p = summary(records), paired(records)
    readme = " ".join((ROOT / "README.md").read_text().split())
    rank = {i: f"{v:.2f}" for i, v in s["mean_rank"].items()}
    assert (f"rank {rank['sequential']} on average against {rank['missforest']} for the MissForest recipe, "
            f"{rank['iterative']} for IterativeImputer, {rank['knn']} for KNNImputer (on standardised columns) and "
            f"{rank['mean']} for the mean") in readme
    for ref, name in (("iterative", "IterativeImputer"), ("missforest", "the MissForest recipe")):
        v = [x["verdict"] for x in p[ref].values()]
        said = re.search(rf"wins (\d+), ties (\d+) and loses (\d+)(?: cells?)? against {name}", readme)
        assert said and said.groups() == tuple(str(v.count(k)) for k in ("win", "tie", "loss")), ref
    lost = [cell for cell, x in p["missforest"].items() if x["verdict"] == "loss"]
    if f"all {len(lost)}" in readme or "all five on wine at 10-30% missing" in readme:
        assert len(lost) == 5 and all(t == "wine" and rate <= 0.3 for t, _, rate in lost)
    assert not s["worse_than_mean"]["sequential"] and "never worse than the mean" in readme
    cpu = {i: float(np.median([v[i]["cpu_seconds"] for v in s["means"].values() if i in v])) for i in s["imputers"]}
    assert (f"median {cpu['sequential']:.2f} CPU seconds per fit + transform on these tables, against "
            f"{cpu['missforest']:.2f} for the MissForest recipe and {cpu['iterative']:.2f} for IterativeImputer"
            ) in readme


def test_readme_quotes_the_thread_speedups():
    sp = json.loads((ROOT / "results" / "speed" / "threads.json").read_text())["speedup_vs_1_thread"]
    rounded = sorted(f"{v:.1f}" for v in sp.values())
    lo, hi = rounded[0], rounded[-1]
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert f"two threads trained the demo's recipe {lo}-{hi}x faster than one" in readme


def test_the_recipe_reading_quotes_the_gaps_at_t2():
    gaps = []
    for prec in ("fp32", "bf16"):
        r = json.loads((ROOT / "results" / "recipe" / f"{prec}.json").read_text())["recipes"]
        best = r["h500-T2-b250-lr2e-3"]["best_valid_bound_paper_units"]
        assert best == min(v["best_valid_bound_paper_units"] for v in r.values())  # ranked first at both
        gaps += [v["best_valid_bound_paper_units"] - best for k, v in r.items()
                 if "-T2-" in k and k != "h500-T2-b250-lr2e-3"]
    text = " ".join(DOC.read_text().split())
    assert f"they end {min(gaps):.1f}-{max(gaps):.1f} units behind hidden 500, batch 250" in text


def test_the_one_table_helper():
    from seqimpute.reporting import md_table

    assert md_table(["a", "b"], [[1, "x"], ["", 2.5]], "lr") == ["| a | b |", "|---|---:|", "| 1 | x |", "|  | 2.5 |"]
    with pytest.raises(ValueError, match="a row has 1 cells for 2 columns"):
        md_table(["a", "b"], [[1]], "lr")
    with pytest.raises(ValueError, match="align needs one of l/r per column"):
        md_table(["a", "b"], [], "l")


def test_the_pretrained_reading_quotes_the_reproduction_json():
    rows = {r["cell"]: r for r in json.loads((ROOT / "results" / "pretrained" / "reproduction.json").read_text())["rows"]}
    doc = " ".join(DOC.read_text().split())
    mar = [f"{rows[c]['bound_paper_units']:.1f} against {rows[c]['paper']:g}" for c in ("MAR-14", "MAR-16")]
    assert f"both MAR cells ({mar[0]}, {mar[1]})" in doc
    assert all(rows[c]["bound_paper_units"] < rows[c]["paper"] for c in ("MAR-14", "MAR-16"))
    mcar = ["MCAR-60", "MCAR-70", "MCAR-80", "MCAR-90"]
    gaps = [rows[c]["bound_paper_units"] - rows[c]["paper"] for c in mcar]
    assert f"by {min(gaps):.1f}-{max(gaps):.1f} units" in doc and min(gaps) > 0
    assert (" / ".join(f"{rows[c]['bound_paper_units']:.1f}" for c in mcar) + " against " +
            " / ".join(f"{rows[c]['paper']:g}" for c in mcar)) in doc
    assert {rows[c]["updates"] for c in ("MAR-14", "MAR-16")} == {30000} and "after 30,000 updates (1.2" in doc
    assert {rows[c]["updates"] for c in mcar} == {60000} and "made 60,000 updates in two stages (2.6" in doc
    from seqimpute import pretrained

    hours = {n: pretrained.card(n)["training"]["cpu_hours"] for n in pretrained.names()}
    assert f"{hours['gpsi-add-mnist-mar']:.1f}" == "1.2" and f"{hours['gpsi-add-mnist-mcar']:.1f}" == "2.6"
    curve = {q["updates"]: q["bound_paper_units"] for q in json.loads(
        (ROOT / "results" / "pretrained" / "curve-gpsi-add-mnist-mcar.json").read_text())["points"]}
    assert f"took MCAR-80 from {curve[30000]:.1f} to {curve[60000]:.1f}" in doc
    assert abs(curve[60000] - rows["MCAR-80"]["bound_paper_units"]) < 0.01  # the same weights, float32 and the shipped float16
    below = [rows[c]["cpu_preset"] - rows[c]["bound_paper_units"] for c in rows]
    assert f"Both models are {min(below):.0f}-{max(below):.0f} units below the `cpu` preset" in doc


def test_the_wide_table_reading_quotes_its_json():
    d = json.loads((ROOT / "results" / "imputers-wide" / "mnist-5000.json").read_text())["rows"]
    doc = " ".join(DOC.read_text().split())
    seq, knn = d["SequentialImputer"], d["KNNImputer"]
    assert "It fits in under 3 minutes of wall time on 2 cores" in doc and seq["wall_s"] < 180
    assert f"ended training after {seq['updates']:,} updates" in doc and seq["stopped_by"] == "early_stopping"
    assert f"better than kNN ({seq['rmse']:.4f} against {knn['rmse']:.4f})" in doc and seq["rmse"] < knn["rmse"]
    load = json.loads((ROOT / "results" / "imputers-wide" / "mnist-5000.json").read_text())["load_average"]
    assert f"(load average {load[0]:.1f}-{load[1]:.1f} before and after" in doc


def test_the_mixed_tables_reading_quotes_its_json():
    d = json.loads((ROOT / "results" / "imputers-mixed" / "mixed.json").read_text())
    recs = [r for r in d["records"] if "not_run" not in r]
    mean = lambda name, k: np.mean([np.mean([r[k] for r in recs if r["imputer"] == name and (r["table"], r["rate"])
                                             == c]) for c in {(r["table"], r["rate"]) for r in recs}])  # noqa: E731
    cpu = lambda name: [np.mean([r["cpu_s"] for r in recs if r["imputer"] == name and (r["table"], r["rate"]) == c])
                        for c in {(r["table"], r["rate"]) for r in recs}]  # noqa: E731
    text = " ".join((ROOT / "docs" / "RESULTS.md").read_text().split())
    assert ("(0.565 against MissForest's 0.596)" in text and f"{mean('sequential', 'rmse'):.3f}" == "0.565"
            and f"{mean('missforest', 'rmse'):.3f}" == "0.596")
    assert ("mean accuracy 0.718 against MissForest's 0.787" in text
            and f"{mean('sequential', 'accuracy'):.3f}" == "0.718" and f"{mean('missforest', 'accuracy'):.3f}" == "0.787")
    assert f"at {min(cpu('sequential')):.1f}-{max(cpu('sequential')):.1f} CPU-s per fit against MissForest's " \
           f"{min(cpu('missforest')):.1f}-{max(cpu('missforest')):.1f}" in text
    by_table = {t: [np.mean([r["rmse"] for r in recs if r["imputer"] == n and r["table"] == t])
                    for n in ("sequential", "missforest", "miceforest", "simple")] for t in d["tables"]}
    best = sorted(t for t, v in by_table.items() if v[0] == np.nanmin(v))
    assert best == ["iris", "penguins", "seattle-weather"]  # "best on penguins, seattle-weather and iris"
    assert "imputes the numbers best on penguins, seattle-weather and iris" in text


NUMBER = re.compile(r"(?<![\w.\-/])(\d+\.\d+)(?![\w.]|\d)")


def _prose_paragraphs(text: str) -> tuple[list[str], list[float]]:
    """A Markdown file's prose paragraphs (no code, commands, tables or link targets) and the numbers of its
    generated tables (which test_generated_tables_match_the_json ties to their JSON)."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    generated = " ".join(re.findall(r"<!-- generated.*?end generated -->", text, flags=re.S))
    text = re.sub(r"<!-- generated.*?end generated -->", "", text, flags=re.S)
    text = re.sub(r"\]\([^)]*\)", "]", text)
    paras = [" ".join(line for line in p.splitlines() if not line.startswith("    ") and not line.lstrip().startswith("|"))
             for p in re.split(r"\n\s*\n", text)]
    return paras, [float(x) for x in NUMBER.findall(generated)]


def _committed_numbers() -> set[float]:
    import subprocess

    files = subprocess.run(["git", "ls-files", "results/*.json", "src/seqimpute/pretrained/*.json",
                            "src/seqimpute/anchors/*.json"], capture_output=True, text=True, cwd=ROOT).stdout.split()
    out: set[float] = set()

    def walk(o):
        if isinstance(o, dict):
            for v in o.values():
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)
        elif isinstance(o, (int, float)) and not isinstance(o, bool):
            out.add(float(o))
    for f in files:
        walk(json.loads((ROOT / f).read_text()))
    return out


def untraced_numbers(text: str, committed: set[float]) -> list[str]:
    """The numbers of three or more significant digits in ``text``'s prose that are neither a committed value nor a
    generated table's (to their printed precision) nor the difference of two numbers of their paragraph (a gap the
    text reads off)."""
    paras, generated = _prose_paragraphs(text)
    known = np.array(sorted(committed | set(generated)))

    def found(x: float, tol: float) -> bool:
        i = np.searchsorted(known, x - tol)
        return i < len(known) and known[i] <= x + tol

    out = []
    for p in paras:
        tokens = NUMBER.findall(p)
        values = [float(t) for t in tokens]
        for t in tokens:
            if len(t.replace(".", "").lstrip("0")) < 3:
                continue
            tol = 0.5 * 10 ** -len(t.split(".")[1]) + 1e-12
            x = float(t)
            if not (found(x, tol) or any(abs(abs(a - b) - x) <= 3 * tol for a in values for b in values)):
                out.append(f"{t} in: {p[:100]}...")
    return out


def test_an_untraced_number_is_caught_and_a_read_off_gap_is_not():
    text = ("Intro.\n\nThe bound is 85.92 against kNN's 100.2, 14.3 below it; the run took 7.3 minutes.\n\n"
            "    seqimpute demo --minutes 123.4\n\n| 555.5 | table |\n")
    assert untraced_numbers(text, {85.9213, 100.21}) == []  # 14.3 = 100.2 - 85.92; 7.3 has two digits only
    caught = untraced_numbers(text.replace("14.3", "14.9"), {85.9213, 100.21})
    assert len(caught) == 1 and caught[0].startswith("14.9 in: The bound is")


@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="needs the git checkout to list the committed results")
@pytest.mark.parametrize("doc", ["README.md", "docs/RESULTS.md"])
def test_every_measured_number_in_the_prose_is_in_a_committed_file(doc):
    untraced = untraced_numbers((ROOT / doc).read_text(), _committed_numbers())
    assert not untraced, "numbers without a committed source:\n" + "\n".join(untraced)


def test_the_refinement_reading_quotes_the_cpu_long_claims():
    d = json.loads((ROOT / "results" / "cpu-long" / "claims.json").read_text())
    status = json.loads((ROOT / "results" / "cpu-long" / "status.json").read_text())
    doc = " ".join(DOC.read_text().split())
    row = d["rows"][0]
    t5_t1, t10_t5, t15_t5 = row["comparisons"]
    assert row["claim"] == "refinement" and row["verdict"] == "holds"
    assert f"T=5 is {-t5_t1['diff']:.1f} below T=1, T=10 is {-t10_t5['diff']:.1f} below T=5" in doc
    lo, hi = t15_t5["ci95"]
    assert f"is now {-t15_t5['diff']:.1f} below it, with an interval of [{lo:+.1f}, {hi:+.1f}]" in doc
    assert f"the 1% allowance ({0.01 * t15_t5['b_mean']:.2f} units)" in doc and 0.005 * t15_t5["b_mean"] < hi
    assert row["by_tolerance"][:2] == ["not resolved at this budget"] * 2 and "holds" == row["by_tolerance"][2]
    sds = [a["sd"] for a in d["arms"]]
    assert f"spread by {min(sds):.2f}-{max(sds):.2f} units" in doc
    assert all(c["t95"][1] - c["t95"][0] > c["bootstrap95"][1] - c["bootstrap95"][0] for c in row["comparisons"])
    hours = sum(r["training_minutes"] for r in status["runs"].values()) / 60
    assert f"The 12 runs trained for {hours:.1f} hours in all" in doc and len(status["runs"]) == 12
    before = json.loads((ROOT / "results" / "cpu" / "claims.json").read_text())["rows"][0]["comparisons"][2]
    assert f"which ended {before['diff']:.1f} above T=5 at 1,000 updates" in doc
