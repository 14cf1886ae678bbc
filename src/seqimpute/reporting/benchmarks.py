"""The benchmarks' tables, rendered from their JSON: benchmarks/imputers.py (the grid's ranks and paired
intervals, the per-cell tables, the timing), benchmarks/baselines.py and benchmarks/mixed_tables.py. The scripts
write their Markdown with these, and the docs' generated tables (seqimpute.reporting.docs) are these."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from . import md_table

# the imputers in the order every table lists them
IMPUTERS = ("mean", "knn", "iterative", "missforest", "sequential")
MIXED_IMPUTERS = ("simple", "missforest", "miceforest", "sequential")
MECHANISMS = ("mcar", "mar", "mnar", "mnar_self")
PAPER_NAMES = {"tm-orc": "TM-orc", "tm-hon": "TM-hon", "vae-imp": "VAE-imp"}  # benchmarks/baselines.py's models


# ------------------------------------------------------------------------------------- benchmarks/imputers.py

METRICS = ("rmse", "wasserstein", "seconds", "cpu_seconds", "coverage90")


def _order(names) -> list[str]:
    return sorted(set(names), key=lambda i: IMPUTERS.index(i) if i in IMPUTERS else 99)


def cell_means(records: list[dict]) -> dict:
    """{(dataset, mechanism, rate): {imputer: {metric: mean over the seeds every imputer that ran in the cell has}}}.
    Records of imputers that were not run are left out; a metric a record lacks (coverage90 of older records)
    averages to NaN."""
    cells: dict = {}
    for r in records:
        if "not_run" not in r:
            cells.setdefault((r["dataset"], r["mechanism"], float(r["rate"])), {}).setdefault(r["imputer"], {})[
                int(r["seed"])] = r
    out = {}
    for c, by_imp in cells.items():
        seeds = set.intersection(*(set(s) for s in by_imp.values()))
        if not seeds:
            continue
        out[c] = {imp: {m: float(np.mean([by_seed[s].get(m, np.nan) for s in seeds])) for m in METRICS}
                  | {"n_seeds": len(seeds), "realised_rate": float(np.mean([by_seed[s]["realised_rate"]
                                                                           for s in seeds]))}
                  for imp, by_seed in by_imp.items()}
    return out


def not_run_cells(records: list[dict]) -> dict:
    """{(dataset, mechanism, rate): {imputer: reason}} for the imputers recorded as not run."""
    out: dict = {}
    for r in records:
        if "not_run" in r:
            out.setdefault((r["dataset"], r["mechanism"], float(r["rate"])), {})[r["imputer"]] = r["not_run"]
    return out


def summary(records: list[dict]) -> dict:
    """Ranks per cell by mean RMSE among the imputers that ran, mean ranks over the cells where every imputer ran,
    never-worse-than-mean."""
    means = cell_means(records)
    imputers = _order(r["imputer"] for r in records)
    ranks, worse = {}, {}
    for c, by_imp in means.items():
        names = list(by_imp)
        ranks[c] = dict(zip(names, rankdata([by_imp[i]["rmse"] for i in names]).tolist()))
        if "mean" in by_imp:
            worse[c] = [i for i in names if by_imp[i]["rmse"] > by_imp["mean"]["rmse"]]
    full = [c for c in ranks if set(ranks[c]) == set(imputers)]
    mean_rank = {i: float(np.mean([ranks[c][i] for c in full])) if full else None for i in imputers}
    worse_than_mean = {i: [list(c) for c in worse if i in worse[c]] for i in imputers}
    return {"imputers": imputers, "cells": len(ranks), "complete_cells": len(full), "mean_rank": mean_rank,
            "worse_than_mean": worse_than_mean, "means": means, "ranks": ranks, "not_run": not_run_cells(records)}


def paired(records: list[dict], a: str = "sequential") -> dict:
    """For each reference b and each cell where both ran: the RMSE difference b - a over their shared seeds, its
    mean and 95% paired t-interval, and the verdict for ``a``: "win" when the interval lies above 0, "loss" below,
    "tie" when it holds 0 (or fewer than 2 seeds)."""
    from scipy.stats import t as student

    by: dict = {}
    for r in records:
        if "not_run" not in r:
            by.setdefault((r["dataset"], r["mechanism"], float(r["rate"])), {}).setdefault(r["imputer"], {})[
                int(r["seed"])] = r["rmse"]
    out: dict = {}
    for c, imps in by.items():
        if a not in imps:
            continue
        for b in imps:
            seeds = sorted(set(imps[a]) & set(imps[b]))
            if b == a or not seeds:
                continue
            d = np.array([imps[b][s] - imps[a][s] for s in seeds])
            half = student.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else np.inf
            lo, hi = d.mean() - half, d.mean() + half
            out.setdefault(b, {})[c] = {"mean": float(d.mean()), "ci95": [float(lo), float(hi)], "seeds": len(d),
                                        "verdict": "win" if lo > 0 else "loss" if hi < 0 else "tie"}
    return out


def paired_lines(doc: dict, a: str = "sequential") -> list[str]:
    """SequentialImputer against each reference: cells won, tied and lost by the paired intervals."""
    p = paired(doc["records"], a)
    if not p:
        return []
    body = []
    for b in _order(p):
        v = [x["verdict"] for x in p[b].values()]
        body.append([b, v.count("win"), v.count("tie"), v.count("loss")])
    return md_table([f"{a} against", "cells won", "tied", "lost"], body, "lrrr")


def _cov(v) -> str:
    return "-" if v is None or np.isnan(v) else f"{v:.2f}"


def header(doc: dict, title: str) -> list[str]:
    """Title, the commands that made the JSON, the machine and the load."""
    L = [f"# {title}", "", "Made by `benchmarks/imputers.py` (its docstring gives the protocol). Command(s):", ""]
    runs = doc.get("runs", [])
    L += [f"    {run['command']}" for run in runs]
    loads = [run["load_average"] for run in runs if run.get("load_average") is not None]
    # each run's machine (older files hold one for the whole file)
    machines = [run.get("machine") or doc.get("machine", {}) for run in runs] or [doc.get("machine", {})]
    cpus = " and ".join(dict.fromkeys(m.get("cpu", "?") for m in machines))
    m = machines[-1]
    return L + ["", f"Machine (each run's CPU is in the JSON): {cpus}, {m.get('cores', '?')} cores, "
                f"{m.get('platform', '?')}; Python "
                f"{m.get('python', '?')}, numpy {m.get('numpy', '?')}, scikit-learn {m.get('scikit-learn', '?')}, "
                f"torch {m.get('torch', '?')}. One BLAS thread and one torch thread per method. Seconds: wall-clock "
                f"and the process's CPU time"
                + (f"; load average {min(loads):.1f}-{max(loads):.1f} when the runs started (the machine was shared)"
                   if loads else "") + ".", ""]


def summary_lines(doc: dict) -> list[str]:
    """The summary table: mean rank, cells worse than mean, median seconds and 90% coverage per imputer."""
    s = summary(doc["records"])
    body = []
    for i in s["imputers"]:
        mr = s["mean_rank"][i]
        ran = [v[i] for v in s["means"].values() if i in v]
        n_cells = sum(1 for v in s["means"].values() if i in v and "mean" in v)
        secs = (f"{np.median([x['seconds'] for x in ran]):.2f} / {np.median([x['cpu_seconds'] for x in ran]):.2f}"
                if ran else "-")
        covs = [x["coverage90"] for x in ran if not np.isnan(x["coverage90"])]
        body.append([i, "-" if mr is None else f"{mr:.2f}", f"{len(s['worse_than_mean'][i])} / {n_cells}", secs,
                     _cov(float(np.median(covs)) if covs else None)])
    L = md_table(["imputer", "mean rank", "cells worse than mean", "median seconds (wall / CPU)",
                  "median 90% coverage"], body, "lrrrr")
    skipped = {}
    for c, by_imp in s["not_run"].items():
        for i, why in by_imp.items():
            skipped.setdefault((i, why), set()).add(c)
    L += [""] + [f"Not run: {i} in {len(cs)} cell(s) ({why})." for (i, why), cs in skipped.items()] if skipped else []
    return L


def cell_lines(doc: dict) -> list[str]:
    """Per table: RMSE / Wasserstein per cell and imputer (and SequentialImputer's 90% coverage), then seconds."""
    s = summary(doc["records"])
    imps, shapes = s["imputers"], doc.get("tables", {})
    cov = ["90% coverage (sequential)"] if "sequential" in imps else []
    datasets = list(dict.fromkeys(c[0] for c in list(s["means"]) + list(s["not_run"])))
    L = []
    for ds in datasets:
        n, d = shapes[ds]
        body = []
        for c in sorted((c for c in s["means"] if c[0] == ds), key=lambda c: (MECHANISMS.index(c[1]), c[2])):
            v, skipped = s["means"][c], s["not_run"].get(c, {})
            best = min(x["rmse"] for x in v.values())
            any_v = next(iter(v.values()))
            cellstr = []
            for i in imps:
                if i not in v:
                    cellstr.append("not run" if i in skipped else "")
                    continue
                r = f"{v[i]['rmse']:.4f}"
                cellstr.append(f"{'**' + r + '**' if v[i]['rmse'] == best else r} / {v[i]['wasserstein']:.4f}")
            if cov:
                cellstr.append(_cov(v["sequential"]["coverage90"]) if "sequential" in v else "")
            body.append([c[1], f"{c[2]:g}", f"{any_v['realised_rate']:.2f}", any_v["n_seeds"], *cellstr])
        L += [f"### {ds} ({n} x {d})", "", *md_table(["mechanism", "rate", "missing", "seeds", *imps, *cov], body,
                                                      "lrrr" + "r" * len(imps + cov))]
        reasons = {f"{i} ({why})" for c, by_imp in s["not_run"].items() if c[0] == ds for i, why in by_imp.items()}
        L += [""] + [f"Not run: {r}." for r in sorted(reasons)] + [""] if reasons else [""]
    L += ["Seconds (fit + transform, wall / CPU, mean over the cells of each table):", ""]
    body = []
    for ds in datasets:
        row = []
        for i in imps:
            secs = [(v[i]["seconds"], v[i]["cpu_seconds"]) for c, v in s["means"].items() if c[0] == ds and i in v]
            skipped = any(i in by_imp for c, by_imp in s["not_run"].items() if c[0] == ds)
            row.append(f"{np.mean([w for w, _ in secs]):.2f} / {np.mean([c for _, c in secs]):.2f}" if secs
                       else "not run" if skipped else "")
        body.append([ds, *row])
    return L + md_table(["table", *imps], body, "l" + "r" * len(imps))


def markdown(doc: dict) -> str:
    s = summary(doc["records"])
    L = header(doc, "Imputers on real tables: MCAR, MAR, MNAR")
    L += ["## Summary", "",
          f"Mean rank by RMSE (1 = best) over the {s['complete_cells']} cell(s) (table x mechanism x rate) where every "
          f"imputer ran ({s['cells']} cells in all); RMSE averaged over the seeds first. 'Worse than mean': cells "
          f"where the imputer's mean RMSE exceeds mean imputation's. 90% coverage: SequentialImputer's intervals "
          f"('-' where the records lack it).", ""]
    L += summary_lines(doc)
    verdicts = paired_lines(doc)
    if verdicts:
        L += ["", "Mean ranks can hide noise: per cell, the RMSE difference (reference - sequential) over the shared "
              "seeds with its 95% paired t-interval; a cell counts as won or lost only when the interval excludes "
              "0.", ""] + verdicts
    L += ["", "## Per cell", "",
          "RMSE / mean per-column Wasserstein distance on the hidden entries of min-max scaled columns (means over "
          "seeds; the best RMSE of the row in bold). 'rate': the asked rate; 'missing': the realised share of missing "
          "entries (MAR leaves 30% of the columns complete).", ""]
    return "\n".join(L + cell_lines(doc)) + "\n"


def _secs(x: float) -> str:
    return f"{x:.2f}" if x < 100 else f"{x:.0f}"


def timing_lines(doc: dict) -> list[str]:
    """One row per synthetic table size: each imputer's fit+transform seconds (wall / CPU), SequentialImputer's
    updates and the load average when the size's first record started."""
    recs = doc["records"]
    imps = _order(r["imputer"] for r in recs)
    sizes = sorted({(r["rows"], r["cols"]) for r in recs})
    body = []
    for size in sizes:
        by_imp = {r["imputer"]: r for r in recs if (r["rows"], r["cols"]) == size}
        cells = ["-" if i not in by_imp else "not run" if "not_run" in by_imp[i] else
                 f"{_secs(by_imp[i]['seconds'])} / {_secs(by_imp[i]['cpu_seconds'])}" for i in imps]
        upd = by_imp.get("sequential", {}).get("updates")
        loads = [r["load_average"] for r in by_imp.values() if r.get("load_average") is not None]
        body.append([*size, *cells, "" if upd is None else upd, f"{min(loads):.1f}-{max(loads):.1f}" if loads else "-"])
    return md_table(["rows", "columns", *(f"{i}: wall / CPU s" for i in imps), "sequential updates", "load average"],
                    body, "r" * (len(imps) + 4))


def timing_markdown(doc: dict) -> str:
    L = header(doc, "Imputers: time against table size")
    L += ["Synthetic low-rank Gaussian tables plus noise, MCAR; fit + transform seconds, one thread per method.", ""]
    return "\n".join(L + timing_lines(doc)) + "\n"


# ------------------------------------------------------------------------------------- benchmarks/baselines.py


def baselines_markdown(result: dict) -> str:
    cols = ["mean", "knn", "tm-hon", "tm-orc", "vae-imp", "vae-imp oracle"]
    have = {n for row in result["scores"].values() for n in row}
    cols = [c for c in cols if c in have or (c == "vae-imp oracle" and "vae-imp" in have)]
    head = ["mask", *(f"{c} (ours / paper)" if PAPER_NAMES.get(c.split()[0]) else f"{c} (ours)" for c in cols)]
    body = []
    for label, row in result["scores"].items():
        paper = result["paper"].get(label, {})
        cells = []
        for c in cols:
            base = c.split()[0]
            r = row.get(base)
            if r is None:
                cells.append("-")
                continue
            v = r["oracle_best_step_nll_paper_units"] if c.endswith("oracle") else r["score_paper_units"]
            cell = f"{v:.1f}"
            if c == "knn":
                cell += f" (k={r['k']})"
            if c == "vae-imp":
                cell += f" (step {r['impute_step']})"
            if c == "vae-imp oracle":
                cell += f" (step {r['oracle_best_step']})"
            pname = PAPER_NAMES.get(base)
            if pname and c != "vae-imp":  # the paper's VAE-imp number is the oracle one
                cell += f" / {paper[pname]}" if pname in paper else " / -"
            cells.append(cell)
        body.append([label, *cells])
    return "\n".join(md_table(head, body, "l" * len(head))) + "\n"


# ---------------------------------------------------------------------------------- benchmarks/mixed_tables.py


def mixed_cell_lines(doc: dict) -> list[str]:
    """Per table and rate, each imputer's mean RMSE / accuracy over seeds (and its mean CPU seconds); then each
    imputer's accuracy and RMSE averaged over every cell, with the cells where it beats the most frequent
    category."""
    recs = [r for r in doc["records"] if "not_run" not in r]
    names = [n for n in MIXED_IMPUTERS if any(r["imputer"] == n for r in doc["records"])]
    cells = list(dict.fromkeys((r["table"], r["rate"]) for r in doc["records"]))
    mean = lambda rs, k: float(np.mean([r[k] for r in rs])) if rs else None  # noqa: E731
    at = {(t, rate, n): [r for r in recs if (r["table"], r["rate"], r["imputer"]) == (t, rate, n)]
          for t, rate in cells for n in names}
    body = []
    for t, rate in cells:
        row = [t, f"{rate:.0%}"]
        for n in names:
            rs = at[t, rate, n]
            row.append(f"{mean(rs, 'rmse'):.3f} / {mean(rs, 'accuracy'):.3f} ({mean(rs, 'cpu_s'):.1f} s)" if rs else
                       "not run")
        body.append(row)
    out = md_table(["table", "MCAR", *(f"{n}: RMSE / accuracy (CPU s)" for n in names)], body, "lr" + "r" * len(names))
    summary = []
    for n in names:
        ran = [c for c in cells if at[(*c, n)]]
        acc = [mean(at[(*c, n)], "accuracy") for c in ran]
        above = sum(mean(at[(*c, n)], "accuracy") > mean(at[(*c, "simple")], "accuracy") for c in ran) \
            if "simple" in names else None
        summary.append([n, f"{len(ran)} of {len(cells)}", f"{np.mean([mean(at[(*c, n)], 'rmse') for c in ran]):.3f}",
                        f"{np.mean(acc):.3f}", "-" if n == "simple" or above is None else f"{above} of {len(ran)}"])
    return out + ["", *md_table(["imputer", "cells run", "mean RMSE", "mean accuracy",
                                 "cells above the most frequent category"], summary, "lrrrr")]
