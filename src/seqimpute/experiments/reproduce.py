"""`seqimpute reproduce`: train what an experiment of the paper needs, score it on fixed test masks, and write its
tables and figures beside the paper's numbers.

Experiments (Bachman & Precup, NIPS 2015):
  table1  Table 1: MNIST MAR-14/16, TFD MCAR-80/MAR-25, SVHN MCAR-80/MAR-17 (the models the paper lists per cell)
  fig2    Fig 2(a,b): MNIST MCAR-60..90 for TM-orc, TM-hon, VAE-imp, GPSI-add/jump, LSTM-add/jump (+ mean, kNN)
  fig2c   Fig 2(c): GPSI-add and GPSI-jump trained per refinement-step count T in {1,2,5,10,15} on MCAR-90
  fig3    Fig 3: refinement trajectories of every policy on a MAR mask of each dataset
  fig1    Fig 1: samples of the generative model (Sec 2.5, draw-ext-add) on binarized MNIST, and its test bound
  all     all of the above
  sweep   how the preset's settings were chosen: its [sweep] candidates trained for its budget, ranked on validation
  claims  the paper's findings tested at equal update counts over seeds, each with a verdict (claims.py)

A preset (presets/<name>.toml) says how each model is trained: sizes, budget (updates or minutes), optimiser, and
whether one model serves each cell (`train_per = "cell"`, the paper) or each mask family (`"family"`: one model per
family trained on a mixture of its sizes and scored at every cell). Runs live in ``<runs>/<preset>/<role>/<model>/
<training mask>``; a run is finished when its checkpoint's step or elapsed time reaches its budget; finished runs
are skipped and unfinished ones resume. Results go to ``<out>/<preset>/``: ``<experiment>.md`` and ``.json`` (ours,
the paper's number from the packaged anchors, and ours minus the paper's), the figures, and ``status.json`` (which
runs are complete, their training time, and the exact commands).

The paper's numbers come only from ``seqimpute/anchors/paper_results.json``; nothing here is typed in by hand.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import SeqImputeError
from .claims import ClaimsPlan
from .claims import results as claims_results
from .execute import Log, RunQueue, Scorer, Status, run_state
from .plan import EXPERIMENTS, Plan, RunPlan, adapt_mask, load_anchors, load_preset
from .report import Report, rank_sweep, row, sweep_row

__all__ = ["EXPERIMENTS", "Reproduction", "adapt_mask", "load_anchors", "load_preset", "reproduce"]


class Reproduction(Plan):
    """A plan carried out: train (or skip, or resume) its runs, score them at their cells, and write the results
    to ``<out>/<preset>/`` with status.json."""

    def __init__(self, preset: str = "cpu", runs: str | Path = "runs/reproduce", out: str | Path = "results",
                 smoke: bool = False, smoke_updates: int = 3, data: str | None = None, tfd_path: str | None = None,
                 svhn_path: str | None = None, binarized_path: str | None = None, device: str = "cpu",
                 quiet: bool = False, report_only: bool = False, command: str | None = None, jobs: int = 1):
        super().__init__(preset, runs, smoke, smoke_updates, data, tfd_path, svhn_path, binarized_path, device)
        self.out_dir = Path(out) / self.folder
        self.quiet, self.report_only = quiet, report_only
        if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
            raise SeqImputeError(f"--jobs must be a positive integer, got {jobs!r}.")
        self.jobs = jobs
        self.command = command
        self.log = Log(f"reproduce {self.name}{' smoke' if self.smoke else ''}", quiet)
        self.trainer = RunQueue(jobs, report_only, quiet, self.log)
        self.scorer = Scorer(self, jobs, self.log)
        self.report = Report(self, self.out_dir)

    def row(self, cell, model: str, plan: RunPlan | None, res: dict | None) -> dict:
        """The result row of ``model`` at ``cell`` (see report.row)."""
        return row(self, cell, model, plan, res)

    def run(self, experiments: list[str]) -> dict:
        for alone in ("sweep", "claims"):
            if alone in experiments:
                if experiments != [alone]:
                    raise SeqImputeError(f"run the {alone} on its own: seqimpute reproduce {alone} --preset NAME.")
                return self.run_sweep() if alone == "sweep" else self.run_claims()
        cells = {e: self.cells(e) for e in experiments}
        pairs = {e: self.pairs(cells[e]) for e in experiments}  # (cell, model, plan | None)
        plans = list(dict.fromkeys(p for ps in pairs.values() for *_, p in ps if p is not None))
        status = self._train_recorded(experiments, plans)
        rows = self._score_rows(experiments, pairs)
        writers = {"table1": self.report.write_table1, "fig2": self.report.write_fig2, "fig2c": self.report.write_fig2c,
                   "fig1": self.report.write_fig1, "fig3": self.report.write_fig3}
        written = {e: writers[e](rows[e], pairs[e]) for e in experiments}
        return self._finish(status, plans, rows, written)

    def _score_rows(self, experiments: list[str], pairs: dict) -> dict:
        """Every experiment's rows, scoring each run at its cells (grouped by run, so each model loads once; Fig 3
        draws and is not scored)."""
        order = sorted(((e, i) for e in experiments for i in range(len(pairs[e]))),
                       key=lambda ei: (pairs[ei[0]][ei[1]][2].id if pairs[ei[0]][ei[1]][2] else "",))
        results = self.scorer.score_all([(e, i, *pairs[e][i]) for e, i in order if e != "fig3" and pairs[e][i][2]])
        rows = {e: [self.row(c, m, p, results.get((e, i))) for i, (c, m, p) in enumerate(pairs[e])]
                for e in experiments}
        self.scorer.release()
        return rows

    def _train_recorded(self, experiments: list[str], plans: list[RunPlan]) -> Status:
        """Train (or skip) the plans, recording the invocation and every run's state in status.json, also when
        training stops with an error. Returns the status that `_finish` completes."""
        status = Status(self, self.out_dir, self.command, experiments)
        try:
            self.trainer.train_all(plans)
        finally:
            for p in plans:
                run_state(p)
            status.write(plans, finished=False)
        return status

    def _finish(self, status: Status, plans: list[RunPlan], rows: dict, written: dict) -> dict:
        status.write(plans, finished=True, written=written)
        self.log(f"wrote {self.out_dir}")
        return {"out": str(self.out_dir), "runs": str(self.runs_dir), "rows": rows, "files": written,
                "status": str(self.out_dir / "status.json")}

    def run_sweep(self) -> dict:
        """Train every sweep candidate for the preset's budget and rank them by their best validation bound (the
        evaluator's fixed seeded masks on the validation split; the test split is never used to choose)."""
        items = self.sweep_plans()
        plans = [p for *_, p in items]
        status = self._train_recorded(["sweep"], plans)
        rows = [sweep_row(self, *it) for it in items]
        rank_sweep(rows)
        return self._finish(status, plans, {"sweep": rows}, {"sweep": self.report.write_sweep(rows)})


    def run_claims(self) -> dict:
        """Train every run the paper's claims need for the same number of updates, score each from its last
        checkpoint on the fixed test masks, and write claims.md|json with a verdict per claim (claims.py)."""
        cp = ClaimsPlan(self)
        cp.available()
        plans = cp.runs()
        status = self._train_recorded(["claims"], plans)
        scorer = Scorer(self, self.jobs, self.log, checkpoint="last", n=cp.n, samples=cp.samples, per_image=True)
        todo = [(a, s, cp.cell(a), a.model, cp.run(a, s)) for a in cp.arms for s in cp.seeds]
        scored = {k: v or {} for k, v in scorer.score_all(todo).items()}
        scores = {k: v.get("score_paper_units") for k, v in scored.items()}
        per_image = {k: {**v["per_image"], "dim": v["dim"]} for k, v in scored.items() if "per_image" in v}
        payload = claims_results(cp, scores, per_image)
        return self._finish(status, plans, {"claims": payload["rows"]}, {"claims": self.report.write_claims(payload)})


def reproduce(experiment: str, preset: str = "cpu", **options) -> dict:
    """Run one experiment (or ``all``); see the module docstring. Returns a summary with the rows written."""
    exps = list(EXPERIMENTS) if experiment == "all" else [experiment]
    for e in exps:
        if e not in EXPERIMENTS + ("sweep", "claims"):
            raise SeqImputeError(f"unknown experiment {e!r}; choose {', '.join(EXPERIMENTS)}, all, sweep or claims.")
    return Reproduction(preset, **options).run(exps)
