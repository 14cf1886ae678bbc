"""`seqimpute reproduce claims`: the interval and verdict rules by hand, the paper's numbers each arm is shown beside,
and a smoke run on sklearn-digits (every claim measured, equal updates, the Markdown rendered from the JSON alone,
a re-run that trains nothing)."""

import json
import math

import pytest

from seqimpute.cli import main
from seqimpute.experiments.claims import (VERDICTS, Arm, ClaimsPlan, claim_verdict, interval, paper_value,
                                          results, verdict)
from seqimpute.experiments.plan import Plan, load_anchors
from seqimpute.experiments.report import markdown
from seqimpute.runs import load_checkpoint

HOLDS, REVERSED, OPEN = VERDICTS


def test_interval_is_the_t_interval_of_the_paired_differences():
    # diffs 1, 2, 3: mean 2, sample sd 1; t(0.975, 2 dof) = 4.302653 (tables)
    mean, lo, hi = interval([1.0, 2.0, 3.0])
    half = 4.302653 / math.sqrt(3)
    assert mean == pytest.approx(2.0)
    assert (lo, hi) == (pytest.approx(2 - half, abs=1e-5), pytest.approx(2 + half, abs=1e-5))
    # two seeds: t(0.975, 1) = 12.706205; diffs 0 and 2: sd sqrt(2)
    mean, lo, hi = interval([0.0, 2.0])
    assert hi - mean == pytest.approx(12.706205 * math.sqrt(2) / math.sqrt(2), abs=1e-5)


@pytest.mark.parametrize("kind, lo, hi, margin, expected", [
    ("lower", -3.0, -1.0, 0.0, HOLDS), ("lower", 1.0, 2.0, 0.0, REVERSED), ("lower", -1.0, 1.0, 0.0, OPEN),
    ("lower", -3.0, -1.0, 0.02, OPEN),  # below, but not by 2% of 100
    ("lower", -5.0, -2.5, 0.02, HOLDS),
    ("not-higher", -2.0, 0.5, 0.0, HOLDS),  # within the 1% tolerance of 100
    ("not-higher", 1.5, 3.0, 0.0, REVERSED), ("not-higher", 0.0, 1.5, 0.0, OPEN),
    ("close", -0.5, 0.5, 0.0, HOLDS), ("close", 1.5, 2.0, 0.0, REVERSED), ("close", -3.0, -1.5, 0.0, REVERSED),
    ("close", 0.5, 1.5, 0.0, OPEN),
])
def test_verdict_rules(kind, lo, hi, margin, expected):
    assert verdict(kind, lo, hi, scale=100.0, tolerance=0.01, margin=margin) == expected


def test_claim_verdict_needs_every_comparison():
    assert claim_verdict([HOLDS, HOLDS]) == HOLDS
    assert claim_verdict([HOLDS, OPEN]) == OPEN
    assert claim_verdict([OPEN, REVERSED, HOLDS]) == REVERSED


def test_each_arm_is_shown_beside_the_papers_number():
    a = load_anchors()
    assert paper_value(a, Arm("gpsi-add", "mnist", "mcar:0.9", 5)) == 86.2
    assert paper_value(a, Arm("gpsi-jump", "mnist", "mcar:0.9", 15)) == 93.1
    assert paper_value(a, Arm("lstm-add", "mnist", "square:14")) == 170
    assert paper_value(a, Arm("gpsi-add", "mnist", "mcar:0.8")) == 80.5
    assert paper_value(a, Arm("tm-hon", "mnist", "mcar:0.8")) == 240
    assert paper_value(a, Arm("tm-hon", "mnist", "square:14")) is None  # Table 1 does not list it
    assert paper_value(a, Arm("draw", "binarized-mnist", "full")) == 87.4
    assert paper_value(a, Arm("draw-ext-add", "binarized-mnist", "full")) == 85.5


def t_interval(diffs: list[float]) -> tuple[float, float, float]:
    """Mean and 95% Student-t interval of paired differences, computed here with scipy (not the claims code)."""
    from scipy import stats

    n, mean = len(diffs), sum(diffs) / len(diffs)
    half = stats.t.ppf(0.975, n - 1) * stats.tstd(diffs) / math.sqrt(n)
    return mean, mean - half, mean + half


def test_results_pair_the_seeds_and_give_each_claim_its_verdict():
    cp = ClaimsPlan(Plan("cpu", smoke=True, data="sklearn-digits"))
    assert cp.seeds == [0, 1]
    # every arm scores 100 + its index, seed 1 one unit higher; then T=5 made clearly better than T=1
    scores = {(a, s): 100.0 + i + s for i, a in enumerate(cp.arms) for s in cp.seeds}
    t = {a.steps: a for a in cp.arms if a.model == "gpsi-add" and a.steps is not None}
    scores[t[5], 0], scores[t[5], 1] = 80.0, 81.5
    i1 = cp.arms.index(t[1])  # T=1 scores 100 + i1 and 101 + i1
    for T in (10, 15):
        scores[t[T], 0], scores[t[T], 1] = 80.0, 81.5  # equal to T=5: not higher
    out = results(cp, scores)
    refinement = out["rows"][0]
    assert refinement["claim"] == "refinement" and refinement["verdict"] == HOLDS
    first = refinement["comparisons"][0]
    mean, lo, hi = t_interval([80.0 - (100 + i1), 81.5 - (101 + i1)])
    assert first["diff"] == pytest.approx(mean) and first["ci95"] == [pytest.approx(lo), pytest.approx(hi)]
    assert first["a_mean"] == pytest.approx(80.75) and first["seeds"] == 2
    # a missing score leaves its comparison unmeasured and the claim "not run"
    del scores[t[15], 1], scores[t[15], 0]
    assert results(cp, scores)["rows"][0]["verdict"] == "not run"


def test_claims_smoke_measures_every_claim_at_equal_updates_and_resumes(tmp_path, capsys):
    runs, out = tmp_path / "runs", tmp_path / "results"
    argv = ["reproduce", "claims", "--preset", "cpu", "--smoke", "--smoke-updates", "2", "--data", "sklearn-digits",
            "--runs", str(runs), "--out", str(out), "--quiet"]
    assert main(argv) == 0
    res = out / "cpu-smoke-sklearn-digits"
    payload = json.loads((res / "claims.json").read_text())
    assert [r["claim"] for r in payload["rows"]] == ["refinement", "lstm-beats-gpsi", "add-vs-jump",
                                                      "beats-baselines", "extended-beats-draw"]
    for r in payload["rows"]:
        assert r["verdict"] in VERDICTS
        for c in r["comparisons"]:  # each difference and interval recomputed from the arms' own seed scores
            label = {f"{x['arm']} ({x['dataset']} {x['mask']})": x for x in payload["arms"]}
            a, b = label[c["a"]], label[c["b"]]
            seeds = sorted(set(a["scores"]) & set(b["scores"]))
            mean, lo, hi = t_interval([a["scores"][s] - b["scores"][s] for s in seeds])
            assert c["seeds"] == len(seeds) == 2
            assert c["diff"] == pytest.approx(mean) and c["ci95"] == [pytest.approx(lo), pytest.approx(hi)]
    for a in payload["arms"]:
        assert all(v is not None and math.isfinite(v) for v in a["scores"].values())
    assert (res / "claims.md").read_text() == markdown(payload)
    # equal updates: every trained run stopped at the same step
    steps = {load_checkpoint(p)["step"] for p in (runs / "cpu-smoke-sklearn-digits" / "claims").rglob("last.pt")
             if "tm-hon" not in str(p)}
    assert steps == {2}
    stamps = {p: p.stat().st_mtime_ns for p in runs.rglob("last.pt")}
    capsys.readouterr()
    assert main(argv[:-1]) == 0  # resumable: a second invocation trains nothing
    assert {p: p.stat().st_mtime_ns for p in runs.rglob("last.pt")} == stamps
    assert "training claims/" not in capsys.readouterr().out


def test_claims_runs_alone_and_needs_a_claims_table(tmp_path):
    from seqimpute.errors import SeqImputeError
    from seqimpute.experiments.reproduce import Reproduction

    r = Reproduction("cpu", runs=tmp_path, out=tmp_path, smoke=True, data="sklearn-digits", quiet=True)
    with pytest.raises(SeqImputeError, match="run the claims on its own"):
        r.run(["claims", "fig2"])
    preset = tmp_path / "nc.toml"
    preset.write_text('name = "nc"\n[defaults]\nupdates = 1\n')
    with pytest.raises(SeqImputeError, match=r"no \[claims\] table"):
        ClaimsPlan(Plan(str(preset), smoke=True, data="sklearn-digits"))
