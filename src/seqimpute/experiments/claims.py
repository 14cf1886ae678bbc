"""`seqimpute reproduce claims`: the paper's findings tested at equal update counts, over seeds, with a verdict.

The paper compared its models at equal numbers of updates; at fixed CPU-minutes a slower step buys fewer updates
and a finding can come out reversed for that reason alone. Here every run of a claim trains for the same number of
updates (the preset's ``[claims]``), with the same seeds, and is scored on the evaluator's fixed seeded test masks
from its last checkpoint. A comparison "A below B" is measured per seed (paired: same seed, same test holes) and
summarised by the mean difference A - B and a 95% interval: the t-interval over seeds and, where the runs' per-image
scores are at hand, the hull of it and a bootstrap over seeds and test images (one draw of the images for every
seed, since all seeds are scored on the same images), so that the images' sampling noise counts too. Verdicts:

- ``lower`` (A below B by more than ``margin`` of B): holds when the interval lies below -margin x |B|, reversed
  when it lies above 0;
- ``not-higher`` (A at most ``tolerance`` of B above B): holds when the interval lies below +tolerance x |B|,
  reversed when it lies above it;
- ``close`` (A within ``tolerance`` of B): holds when the interval lies inside +-tolerance x |B|, reversed when it
  lies wholly outside.

Otherwise the comparison is not resolved at this budget. A claim holds when all its comparisons hold, is reversed
when any is reversed, and is otherwise not resolved. Lower scores are better (paper units, docs/PAPER.md §10).
How the verdicts move with the tolerance is tabled at TOLERANCES.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..data.masks import canonical
from ..errors import SeqImputeError
from ..reporting import md_table
from ..models.registry import spec as model_spec
from .plan import ROLE_TITLE, Cell, Plan, RunPlan, generation_anchor, merge, tag, trainable

VERDICTS = ("holds", "reversed", "not resolved at this budget")
TOLERANCES = (0.0, 0.005, 0.01, 0.02, 0.05)  # the verdicts' sensitivity table: "not above" / "close" allowances
BOOTSTRAP_DRAWS = 4000


@dataclass(frozen=True)
class Arm:
    """One model trained on one mask (and, for Fig 2(c), one refinement-step count) on one dataset role."""
    model: str
    role: str
    mask: str
    steps: int | None = None

    @property
    def name(self) -> str:
        return self.model + (f" T={self.steps}" if self.steps is not None else "")

    def label(self) -> str:
        return f"{self.name} ({ROLE_TITLE[self.role]} {mask_label(self.mask)})"


@dataclass(frozen=True)
class Comparison:
    """A claimed relation between two arms' scores: ``a`` is ``kind`` than ``b`` (see the module docstring)."""
    a: Arm
    b: Arm
    kind: str  # "lower", "not-higher" or "close"
    margin: float = 0.0  # "lower": the share of |B| by which A must be below B


@dataclass(frozen=True)
class Claim:
    id: str
    title: str
    source: str  # where the paper makes it
    comparisons: tuple[Comparison, ...]


def mask_label(mask: str) -> str:
    """The paper's name of a mask: MCAR-80, MAR-14, or the spec itself."""
    m = canonical(mask)
    if m.startswith("mcar:") and "-" not in m:
        return f"MCAR-{round(float(m[5:]) * 100)}"
    if m.startswith("square:") and "-" not in m:
        return f"MAR-{m[7:]}"
    return "mask full" if m == "full" else m


def claims(wide: float) -> list[Claim]:
    """The paper's five claims that a reproduction can test, each as comparisons of arms."""
    mcar90, mcar80, mar14 = "mcar:0.9", "mcar:0.8", "square:14"
    gpsi = lambda T, kind="add": Arm(f"gpsi-{kind}", "mnist", mcar90, T)
    T_add = {T: gpsi(T) for T in (1, 2, 5, 10, 15)}
    out = [Claim("refinement", "More refinement steps give better imputations: the bound falls from T=1 to T=5 "
                 "and does not rise after", "Fig 2(c)",
                 (Comparison(T_add[5], T_add[1], "lower"), Comparison(T_add[10], T_add[5], "not-higher"),
                  Comparison(T_add[15], T_add[5], "not-higher")))]
    pol = {(m, k): Arm(m, "mnist", k) for m in ("gpsi-add", "lstm-add", "lstm-jump", "vae-imp", "tm-hon")
           for k in (mar14, mcar80)}
    out.append(Claim("lstm-beats-gpsi", "LSTM-add imputes better than GPSI-add", "Table 1, Fig 2(a,b)",
                     tuple(Comparison(pol["lstm-add", k], pol["gpsi-add", k], "lower") for k in (mar14, mcar80))))
    out.append(Claim("add-vs-jump", "The add and jump variants are close for the LSTM policy; for GPSI, jump "
                     "degrades as T grows (and falls behind add)", "Fig 2(a,b,c)",
                     (Comparison(Arm("lstm-jump", "mnist", mar14), pol["lstm-add", mar14], "close"),
                      Comparison(gpsi(5, "jump"), gpsi(15, "jump"), "lower"),
                      Comparison(T_add[15], gpsi(15, "jump"), "lower"))))
    out.append(Claim("beats-baselines", f"The sequential policies beat VAE-imp and honest template matching by a "
                     f"wide margin (at least {wide:.0%} of the baseline's score)", "Table 1, Fig 2(a)",
                     tuple(Comparison(pol[p, k], pol[b, k], "lower", wide) for k in (mcar80, mar14)
                           for p in ("gpsi-add", "lstm-add") for b in ("vae-imp", "tm-hon"))))
    gen = lambda m: Arm(m, "binarized-mnist", "full")
    out.append(Claim("extended-beats-draw", "The extended model (Sec 2.5) has a lower bound than DRAW without "
                     "attention at equal updates and sizes", "Sec 2.5, Fig 1",
                     (Comparison(gen("draw-ext-add"), gen("draw"), "lower"),)))
    return out


def arms(cl: list[Claim]) -> list[Arm]:
    """Every arm the claims need, each once, in a stable order."""
    return list(dict.fromkeys(x for c in cl for cmp in c.comparisons for x in (cmp.a, cmp.b)))


# ---------------------------------------------------------------------------------------------------- planning


class ClaimsPlan:
    """The preset's ``[claims]`` applied to a Plan: one run per arm and seed (a model that is fitted, not trained,
    has one run for all seeds), every trained run with the same number of updates."""

    def __init__(self, plan: Plan):
        self.plan = plan
        c = plan.preset.get("claims")
        if not c:
            raise SeqImputeError(f"preset {plan.name} has no [claims] table; see the layout in "
                                 "seqimpute/experiments/presets/cpu.toml.")
        self.settings = c
        self.seeds = [int(s) for s in c.get("seeds", [0, 1, 2])]
        if plan.smoke:
            self.seeds = self.seeds[:2]
        if len(self.seeds) < 2 or len(set(self.seeds)) != len(self.seeds):
            raise SeqImputeError(f"preset {plan.name}: [claims] seeds must be at least two distinct integers (an "
                                 "interval over seeds needs two).")
        self.tolerance = float(c.get("tolerance", 0.01))
        self.wide = float(c.get("wide", 0.1))
        self.claims = claims(self.wide)
        only = c.get("only")
        if only is not None:  # a subset of the claims (e.g. one tested at a longer budget)
            known = [x.id for x in self.claims]
            unknown = [x for x in only if x not in known]
            if unknown or not only:
                raise SeqImputeError(f"preset {plan.name}: [claims] only = {only!r} must name claims among "
                                     f"{', '.join(known)}.")
            self.claims = [x for x in self.claims if x.id in only]
        self.arms = arms(self.claims)
        ev = dict(c.get("eval", {}))
        # a smoke run scores as every smoke run does (the plan's cut-down eval settings)
        self.n = plan.eval["n"] if plan.smoke else (int(ev.get("n", 0)) or None)
        self.samples = plan.eval["samples"] if plan.smoke else int(ev.get("samples", 10))
        self.label = (f"SMOKE RUN of the {plan.name} preset's claims: {plan.smoke_updates} updates per run and "
                      f"{self.n} test images; the numbers are meaningless (pipeline check only)" if plan.smoke
                      else c.get("label", f"{plan.name} preset's claims"))
        if plan.override:
            self.label += f"; every dataset replaced by {plan.override}"

    def _settings(self, arm: Arm) -> dict:
        c = self.settings
        s = merge(c.get("defaults", {}), c.get("models", {}).get(arm.model, {}))
        if arm.steps is not None:
            s["model_options"] = {**s.get("model_options", {}), "steps": arm.steps}
        return self.plan.smoked(s)

    def run(self, arm: Arm, seed: int) -> RunPlan:
        """The run of ``arm`` at ``seed`` (the seed's own run only for trained models)."""
        trained = trainable(arm.model)
        own = model_spec(arm.model).cls.train_mask  # a VAE trains on complete images: one run serves every mask
        mask = own or (self.plan.mask_for(arm.role, arm.mask) if arm.mask != "full" else "full")
        name = arm.model + (f"-T{arm.steps}" if arm.steps is not None else "")
        rid = f"claims/{arm.role}/{name}/{tag(mask)}" + (f"/seed{seed}" if trained else "")
        if rid not in self.plan.plans:
            s = self._settings(arm)
            if trained:
                s["seed"] = seed
            cfg = self.plan.config_for(rid, arm.role, arm.model, mask, s)
            self.plan.plans[rid] = RunPlan(rid, arm.role, arm.model, self.plan.runs_dir / rid, cfg,
                                           f"{mask}" + (f", seed {seed}" if trained else ""))
        return self.plan.plans[rid]

    def runs(self) -> list[RunPlan]:
        """Every run, the slowest models first so that a pool of workers ends together."""
        out = [self.run(a, s) for a in self.arms for s in self.seeds]
        out = list(dict.fromkeys(out))
        cost = lambda p: (p.model.startswith(("lstm", "draw")), p.cfg.model_options.get("steps", 0))
        return sorted(out, key=cost, reverse=True)

    def cell(self, arm: Arm) -> Cell:
        return Cell("claims", arm.role, mask_label(arm.mask), arm.mask, [arm.model], {})

    def available(self) -> None:
        for role in dict.fromkeys(a.role for a in self.arms):
            d = self.plan.data_for(role)
            if not d.available:
                raise SeqImputeError(f"the claims need {ROLE_TITLE[role]}: {d.reason}.")


# ---------------------------------------------------------------------------------------------------- verdicts


def interval(diffs: list[float]) -> tuple[float, float, float]:
    """The mean of paired differences and its 95% t-interval over seeds."""
    from scipy import stats

    d = np.asarray(diffs, dtype=float)
    mean = float(d.mean())
    half = float(stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d)))
    return mean, mean - half, mean + half


def bootstrap_interval(a: list[dict], b: list[dict], draws: int = BOOTSTRAP_DRAWS,
                       seed: int = 0) -> tuple[float, float]:
    """The 95% percentile interval of the mean over seeds of A - B in paper units, resampling the seeds and the
    test images (with replacement; one image draw shared by every seed and both arms: the same images, paired).
    ``a``, ``b``: per seed, the evaluator's ``per_image`` record (score_nats, hidden) on the same images, with the
    data's values per image (dim)."""
    rng, dim = np.random.default_rng(seed), a[0]["dim"]
    S, N = len(a), len(a[0]["score_nats"])
    sa, sb = (np.array([r["score_nats"] for r in x], dtype=float) for x in (a, b))  # (S, N)
    ha, hb = (np.array([r["hidden"] for r in x], dtype=float) for x in (a, b))
    out = np.empty(draws)
    for i in range(draws):
        imgs, seeds = rng.integers(0, N, N), rng.integers(0, S, S)
        w = np.bincount(imgs, minlength=N).astype(float)  # each image's count in the draw
        per_seed = dim * ((sa @ w) / (ha @ w) - (sb @ w) / (hb @ w))
        out[i] = per_seed[seeds].mean()
    lo, hi = np.percentile(out, [2.5, 97.5])
    return float(lo), float(hi)


def verdict(kind: str, lo: float, hi: float, scale: float, tolerance: float, margin: float) -> str:
    """The verdict of a comparison from its interval (see the module docstring); ``scale`` is |B|."""
    if kind == "lower":
        return VERDICTS[0] if hi < -margin * scale else VERDICTS[1] if lo > 0 else VERDICTS[2]
    t = tolerance * scale
    if kind == "not-higher":
        return VERDICTS[0] if hi < t else VERDICTS[1] if lo > t else VERDICTS[2]
    if kind == "close":
        return VERDICTS[0] if -t < lo and hi < t else VERDICTS[1] if lo > t or hi < -t else VERDICTS[2]
    raise ValueError(kind)


def claim_verdict(verdicts: list[str]) -> str:
    if all(v == VERDICTS[0] for v in verdicts):
        return VERDICTS[0]
    return VERDICTS[1] if VERDICTS[1] in verdicts else VERDICTS[2]


def paper_value(anchors: dict, arm: Arm) -> float | None:
    """The paper's number for an arm, where it reports one (Table 1, Fig 2, Fig 2(c), the generation bounds)."""
    # the anchors name models as the paper prints them ("GPSI-add"); the registry's names are their lower case
    name = next((k for t in ("fig2_mnist_mcar", "fig2c_gpsi_mnist_mcar90_refinement_steps") for k in anchors[t]
                 if k.lower() == arm.model), None)
    if arm.role == "binarized-mnist":
        return generation_anchor(anchors, arm.model)
    if arm.steps is not None:
        fig = anchors["fig2c_gpsi_mnist_mcar90_refinement_steps"]
        return fig[name][fig["steps"].index(arm.steps)] if name in fig and arm.steps in fig["steps"] else None
    label = mask_label(arm.mask)
    if label.startswith("MCAR-"):
        fig = anchors["fig2_mnist_mcar"]
        rate = int(label[5:]) / 100
        return fig[name][fig["drop_rates"].index(rate)] if name in fig and rate in fig["drop_rates"] else None
    return anchors["table1"]["MNIST"].get(label, {}).get(name)


def results(cp: ClaimsPlan, scores: dict[tuple[Arm, int], float | None], per_image: dict | None = None) -> dict:
    """claims.json's content from every (arm, seed) score: the arms' rows and one row per claim. ``per_image``: by
    (arm, seed), the evaluator's per-image record with its data's values per image (``dim``), for the bootstrap
    over images (without them, the t-interval over seeds alone)."""
    per_image = per_image or {}
    arm_rows = []
    for a in cp.arms:
        per_seed = {s: scores.get((a, s)) for s in cp.seeds}
        run = cp.run(a, cp.seeds[0])
        got = [v for v in per_seed.values() if v is not None][:None if trainable(a.model) else 1]  # fitted: one run
        arm_rows.append({"arm": a.name, "model": a.model, "dataset": ROLE_TITLE[a.role],
                         "data_used": cp.plan.data_for(a.role).name, "mask": mask_label(a.mask),
                         "mask_spec": cp.plan.mask_for(a.role, a.mask) if a.mask != "full" else "full", "steps": a.steps, "trained": trainable(a.model),
                         "updates": run.cfg.updates if trainable(a.model) else None,
                         "scores": {str(s): v for s, v in per_seed.items()},
                         "mean": float(np.mean(got)) if got else None,
                         "sd": float(np.std(got, ddof=1)) if len(got) > 1 else None,
                         "paper": paper_value(cp.plan.anchors, a)})
    rows = []
    for c in cp.claims:
        comps = []
        for cmp in c.comparisons:
            pairs = [(scores.get((cmp.a, s)), scores.get((cmp.b, s))) for s in cp.seeds]
            pairs = [(x, y) for x, y in pairs if x is not None and y is not None]
            row = {"a": cmp.a.label(), "b": cmp.b.label(), "kind": cmp.kind, "margin": cmp.margin,
                   "seeds": len(pairs), "a_mean": None, "b_mean": None, "diff": None, "ci95": None,
                   "verdict": "not run"}
            if len(pairs) >= 2:
                a_s, b_s = zip(*pairs)
                mean, lo, hi = interval([x - y for x, y in pairs])
                row.update({"a_mean": float(np.mean(a_s)), "b_mean": float(np.mean(b_s)), "diff": mean,
                            "t95": [lo, hi]})
                images = [(per_image.get((cmp.a, s)), per_image.get((cmp.b, s))) for s in cp.seeds]
                if all(x is not None and y is not None for x, y in images):
                    boot = bootstrap_interval(*zip(*images))
                    row["bootstrap95"] = list(boot)
                    lo, hi = min(lo, boot[0]), max(hi, boot[1])
                scale = abs(row["b_mean"])
                row.update({"ci95": [lo, hi], "verdict": verdict(cmp.kind, lo, hi, scale, cp.tolerance, cmp.margin),
                            "by_tolerance": [verdict(cmp.kind, lo, hi, scale, t, cmp.margin) for t in TOLERANCES]})
            comps.append(row)
        vs = [r["verdict"] for r in comps]
        by_t = [claim_verdict([r["by_tolerance"][i] for r in comps]) if all("by_tolerance" in r for r in comps)
                else "not run" for i in range(len(TOLERANCES))]
        rows.append({"claim": c.id, "title": c.title, "source": c.source, "comparisons": comps,
                     "verdict": "not run" if "not run" in vs else claim_verdict(vs), "by_tolerance": by_t})
    return {"label": cp.label, "rows": rows, "arms": arm_rows,
            "settings": {"seeds": cp.seeds, "tolerance": cp.tolerance, "wide": cp.wide, "test_images": cp.n,
                         "samples": cp.samples, "tolerances": list(TOLERANCES),
                         "interval": "bootstrap" if per_image else "t",
                         "claims": {k: v for k, v in cp.settings.items() if k != "eval"}}}


# ---------------------------------------------------------------------------------------------------- Markdown

KIND_TEXT = {"lower": "below", "not-higher": "not above", "close": "close to"}
INTERVAL_TEXT = {"t": "its 95% t-interval over seeds",
                 "bootstrap": "a 95% interval that counts the test images' sampling noise too: the hull of the "
                              "t-interval over seeds and a bootstrap over seeds and test images (one image draw "
                              f"for all seeds, {BOOTSTRAP_DRAWS} draws)"}


def _num(v, fmt="{:.1f}") -> str:
    return "-" if v is None else fmt.format(v)


def markdown(payload: dict) -> list[str]:
    """The body of claims.md, rendered from claims.json alone."""
    s = payload["settings"]
    md = [f"Every trained run makes the same number of updates (the table of runs below), one run per seed "
          f"({', '.join(map(str, s['seeds']))}); each is scored from its last checkpoint on the evaluator's fixed "
          f"seeded test masks ({s['test_images'] or 'all'} test images, {s['samples']} rollouts each). A comparison "
          f"is the mean over seeds of the paired difference A - B with {INTERVAL_TEXT[s.get('interval', 't')]}; "
          f"lower is better. `not above` and `close to` allow {s['tolerance']:.0%} of B's score.", ""]
    comparisons = []
    for r in payload["rows"]:
        for i, c in enumerate(r["comparisons"]):
            ci = "-" if c["ci95"] is None else f"[{c['ci95'][0]:+.1f}, {c['ci95'][1]:+.1f}]"
            margin = f" by {c['margin']:.0%}" if c["margin"] else ""
            head = [f"{r['claim']}: {r['title']}", r["source"], f"**{r['verdict']}**"] if i == 0 else ["", "", ""]
            comparisons.append(head + [f"{c['a']} {KIND_TEXT[c['kind']]}{margin} {c['b']}", c["seeds"],
                                       _num(c["a_mean"]), _num(c["b_mean"]), _num(c["diff"], "{:+.1f}"), ci,
                                       c["verdict"]])
    md += md_table(["claim", "paper", "verdict", "comparison (A vs B)", "seeds", "A", "B", "A - B", "95% interval",
                    "comparison verdict"], comparisons, "llllrrrrll")
    runs = []
    for a in payload["arms"]:
        per = [_num(a["scores"].get(str(x))) for x in s["seeds"]]
        if not a["trained"]:
            per = [_num(a["mean"])] + ["(same)"] * (len(per) - 1)
        data = a["dataset"] + (f" ({a['data_used']})" if a["data_used"] != a["dataset"].lower().replace(" ", "-")
                               else "")
        runs.append([a["arm"], data, a["mask"], a["updates"] or "fitted", *per, _num(a["mean"]),
                     _num(a["sd"], "{:.2f}"), _num(a["paper"])])
    tols = tolerance_table(payload)
    md += ["", "## The verdicts at other tolerances", "", "The allowance of `not above` and `close to` as a share of "
           "B's score (`below` does not use it); the interval is the one above.", "", *tols] if tols else []
    md += ["", "## The runs", "", *md_table(["model", "dataset", "mask", "updates", *(f"seed {x}" for x in s["seeds"]),
                                             "mean", "sd", "paper"], runs, "lllr" + "r" * (len(s["seeds"]) + 3))]
    md += ["", "The paper's numbers come from runs of 200,000-250,000 updates; they are shown for scale, not "
           "compared: the verdicts rest on the runs above alone."]
    return md


def tolerance_table(payload: dict) -> list[str]:
    """How each verdict moves with the allowance of `not above` and `close to` (none in older claims.json)."""
    tols = payload["settings"].get("tolerances")
    if not tols:
        return []
    rows = []
    for r in payload["rows"]:
        rows.append([f"**{r['claim']}**", *(f"**{v}**" for v in r["by_tolerance"])])
        for c in r["comparisons"]:
            rows.append([f"{c['a']} {KIND_TEXT[c['kind']]} {c['b']}", *c.get("by_tolerance", ["not run"] * len(tols))])
    return md_table(["claim / comparison", *(f"{t:.1%}" for t in tols)], rows, "l" * (len(tols) + 1))
