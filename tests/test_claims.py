"""`seqimpute reproduce claims`: the interval and verdict rules by hand, the paper's numbers each arm is shown beside,
and a smoke run on sklearn-digits (every claim measured, equal updates, the Markdown rendered from the JSON alone,
a re-run that trains nothing)."""

import json
import math

import numpy as np
import pytest

from seqimpute.cli import main
from seqimpute.experiments.claims import markdown as claims_markdown
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
            assert c["diff"] == pytest.approx(mean) and c["t95"] == [pytest.approx(lo), pytest.approx(hi)]
            # the interval the verdict uses spans both the t-interval and the bootstrap over images and seeds
            (blo, bhi), (clo, chi) = c["bootstrap95"], c["ci95"]
            assert clo == pytest.approx(min(lo, blo)) and chi == pytest.approx(max(hi, bhi))
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


def _records(scores, hidden, dim=10):
    return [{"score_nats": list(map(float, sc)), "hidden": list(map(float, hidden)), "dim": dim} for sc in scores]


def test_bootstrap_collapses_without_noise_and_matches_the_normal_interval_of_one_seed():
    from seqimpute.experiments.claims import bootstrap_interval

    hidden = np.full(500, 5.0)
    # no image or seed noise: A is 1 nat per image above B everywhere, i.e. dim * 1/5 = 2 paper units
    a, b = _records([np.full(500, 3.0)] * 3, hidden), _records([np.full(500, 2.0)] * 3, hidden)
    lo, hi = bootstrap_interval(a, b, draws=200)
    assert lo == pytest.approx(2.0) and hi == pytest.approx(2.0)
    # one seed, constant holes: the mean of per-image differences, whose 95% interval is mean +- 1.96 sd / sqrt(N)
    rng = np.random.default_rng(1)
    d = rng.normal(0.5, 2.0, 500)
    a, b = _records([2.0 + d], hidden), _records([np.full(500, 2.0)], hidden)
    lo, hi = bootstrap_interval(a, b, draws=4000)
    half = 1.96 * d.std(ddof=1) / math.sqrt(500) * 10 / 5
    centre = d.mean() * 10 / 5
    assert lo == pytest.approx(centre - half, abs=0.15 * half) and hi == pytest.approx(centre + half, abs=0.15 * half)
    assert bootstrap_interval(a, b, draws=300) == bootstrap_interval(a, b, draws=300)  # seeded


def test_results_with_per_image_scores_widen_the_interval_and_table_every_tolerance():
    from seqimpute.experiments.claims import TOLERANCES, bootstrap_interval

    cp = ClaimsPlan(Plan("cpu-long", smoke=True, data="sklearn-digits"))
    assert [c.id for c in cp.claims] == ["refinement"]  # cpu-long tests the refinement claim alone
    rng = np.random.default_rng(0)
    hidden = np.full(200, 6.0)
    base = rng.normal(20.0, 4.0, 200)  # the same images' difficulty for every arm and seed
    level = {1: 3.0, 5: 0.0, 10: 0.02, 15: 0.05}  # nats per image above the T=5 arm
    per_image, scores = {}, {}
    for a in cp.arms:
        for s in cp.seeds:
            sc = base + level[a.steps] + rng.normal(0, 0.5, 200) + 0.01 * s
            per_image[a, s] = _records([sc], hidden, dim=64)[0]
            scores[a, s] = 64 * sc.sum() / hidden.sum()
    out = results(cp, scores, per_image)
    assert out["settings"]["interval"] == "bootstrap" and out["settings"]["tolerances"] == list(TOLERANCES)
    row = out["rows"][0]
    for c in row["comparisons"]:
        arm = {x.label(): x for x in cp.arms}
        boot = bootstrap_interval([per_image[arm[c["a"]], s] for s in cp.seeds],
                                  [per_image[arm[c["b"]], s] for s in cp.seeds])
        assert c["bootstrap95"] == [pytest.approx(boot[0]), pytest.approx(boot[1])]
        assert c["ci95"][0] <= min(c["t95"][0], boot[0]) + 1e-9 and c["ci95"][1] >= max(c["t95"][1], boot[1]) - 1e-9
        assert c["by_tolerance"][TOLERANCES.index(0.01)] == c["verdict"]
        if c["kind"] == "not-higher":  # a larger allowance never turns a verdict against the claim
            order = [VERDICTS.index(v) for v in c["by_tolerance"]]
            assert c["by_tolerance"][-1] == HOLDS and order[0] >= order[-1]
    assert row["by_tolerance"][TOLERANCES.index(0.01)] == row["verdict"]
    md = "\n".join(claims_markdown(out))
    assert "## The verdicts at other tolerances" in md and "bootstrap over seeds and test images" in md


def test_a_preset_extends_another_and_claims_only_names_known_claims(tmp_path):
    from seqimpute.errors import SeqImputeError
    from seqimpute.experiments.plan import load_preset

    cpu, long = load_preset("cpu"), load_preset("cpu-long")
    assert long["name"] == "cpu-long" and long["claims"]["defaults"]["updates"] == 5000
    assert long["claims"]["defaults"]["batch"] == cpu["claims"]["defaults"]["batch"]  # the rest inherited
    assert long["defaults"] == cpu["defaults"] and long["claims"]["eval"]["n"] == 2000
    mine = tmp_path / "mine.toml"
    mine.write_text('extends = "cpu"\n[claims]\nonly = ["refinment"]\n')
    assert load_preset(str(mine))["name"] == "mine"
    with pytest.raises(SeqImputeError, match="only = .*refinment.* must name claims among refinement, "):
        ClaimsPlan(Plan(str(mine), smoke=True, data="sklearn-digits"))
    loop = tmp_path / "loop.toml"
    loop.write_text(f'extends = "{loop}"\n')
    with pytest.raises(SeqImputeError, match="extends itself"):
        load_preset(str(loop))
