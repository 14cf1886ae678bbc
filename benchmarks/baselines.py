"""The paper's baselines on MNIST, beside the paper's numbers: mean, kNN, TM-hon, TM-orc (and VAE-imp from a trained
run folder), on MCAR-60/70/80/90 and MAR-14/16, scored by the shared evaluator on its fixed masks, in paper units.

    python benchmarks/baselines.py --out results/baselines            # writes baselines.json and baselines.md
    python benchmarks/baselines.py --vae-run runs/vae-imp-mnist       # adds VAE-imp (K=10) from that run
    python benchmarks/baselines.py --time-only                        # only the TM 10k x 50k timing

kNN's k is chosen per mask on the validation split (the run's rule). The paper evaluated TM and VAE-imp on the
10k MNIST *validation* split (docs/PAPER.md §8 (data)); --split valid reproduces that, the default is the test split.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from importlib import resources
from pathlib import Path

import torch

from seqimpute import load_dataset
from seqimpute.data.masks import mask_set
from seqimpute.reporting.benchmarks import baselines_markdown as markdown
from seqimpute.evaluate import evaluate
from seqimpute.models.baselines import KNNImputer, MeanImputer
from seqimpute.models.template import TemplateMatcher

MASKS = {"MCAR-60": "mcar:0.6", "MCAR-70": "mcar:0.7", "MCAR-80": "mcar:0.8", "MCAR-90": "mcar:0.9",
         "MAR-14": "square:14", "MAR-16": "square:16"}


def paper_values() -> dict:
    """{label: {paper model name: value}} for MNIST, from the anchors (Fig 2a for MCAR, Table 1 for MAR)."""
    anchors = json.loads(resources.files("seqimpute.anchors").joinpath("paper_results.json").read_text())
    out = {label: dict(anchors["table1"]["MNIST"].get(label, {})) for label in MASKS}
    fig = anchors["fig2_mnist_mcar"]
    for i, rate in enumerate(fig["drop_rates"]):
        label = f"MCAR-{round(rate * 100)}"
        for name, vals in fig.items():
            if name != "drop_rates":
                out[label][name] = vals[i]
    return out


def time_tm(train, test, mask: str) -> dict:
    """Wall-clock of choosing a template for every test image (both rules), the whole bank, in one call."""
    obs = mask_set(mask, test.name, test.split, len(test), test.image_shape, test.dim)
    res = {"mask": mask, "queries": len(test), "templates": len(train), "threads": torch.get_num_threads()}
    for oracle in (False, True):
        t0 = time.perf_counter()
        tm = TemplateMatcher(train.dim, oracle=oracle).fit(train)
        t1 = time.perf_counter()
        tm.choose(test.x, obs)
        t2 = time.perf_counter()
        res["tm-orc" if oracle else "tm-hon"] = {"fit_s": t1 - t0, "choose_s": t2 - t1}
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/baselines", help="folder for baselines.json and baselines.md")
    ap.add_argument("--split", default="test", choices=["valid", "test"])
    ap.add_argument("--masks", default=",".join(MASKS), help="comma-separated labels, default all")
    ap.add_argument("--models", default="mean,knn,tm-hon,tm-orc")
    ap.add_argument("--vae-run", help="a trained vae-imp run folder to add (evaluated with K=10)")
    ap.add_argument("--vae-n", type=int, help="VAE-imp: only the first N evaluation images")
    ap.add_argument("--time-only", action="store_true")
    ap.add_argument("--skip-timing", action="store_true", help="leave out the TM 10k x 50k timing")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    train, valid, test = (load_dataset("mnist", s) for s in ("train", "valid", args.split))
    evalset = valid if args.split == "valid" else test
    timing = None
    if not args.skip_timing:
        timing = time_tm(train, evalset, "mcar:0.8")
        print(f"TM {timing['queries']} x {timing['templates']}: honest {timing['tm-hon']['choose_s']:.1f} s, "
              f"oracle {timing['tm-orc']['choose_s']:.1f} s ({timing['threads']} threads)", flush=True)
    result = {"command": "python " + " ".join(["benchmarks/baselines.py", *(argv or sys.argv[1:])]),
              "dataset": "mnist", "split": args.split, "timing": timing, "scores": {}, "paper": paper_values()}
    if args.time_only:
        (out / "baselines.json").write_text(json.dumps(result, indent=2))
        return 0

    models = [m for m in args.models.split(",") if m]
    makers = {"mean": lambda: MeanImputer(train.dim), "tm-hon": lambda: TemplateMatcher(train.dim),
              "tm-orc": lambda: TemplateMatcher(train.dim, oracle=True)}
    built = {name: makers[name]().fit(train) for name in models if name in makers}
    knn = KNNImputer(train.dim).fit(train) if "knn" in models else None
    vae = None
    if args.vae_run:
        from seqimpute.runs import load_run_model

        vae, vae_cfg, _ = load_run_model(args.vae_run)
        result["vae_run"] = {"run": args.vae_run, "train": vae_cfg["train"], "model": vae_cfg["model"]}
    for label in args.masks.split(","):
        mask = MASKS[label]
        row = result["scores"].setdefault(label, {})
        for name in models:
            t0 = time.perf_counter()
            extra = {}
            if name == "knn":
                knn.tune(valid, mask)  # k chosen on the validation split under this mask
                model, extra = knn, {"k": knn.k, "k_grid": knn.k_grid, "valid_nll_per_k": knn.valid_nll}
            else:
                model = built[name]
            res = evaluate(model, evalset, mask, batch=1000)
            row[name] = {"score_paper_units": res["score_paper_units"], "nats_per_value": res["score_nats_per_value"],
                         "mse": res["mse"], "seconds": time.perf_counter() - t0, **extra}
            print(f"{label:8s} {name:8s} {res['score_paper_units']:8.2f}  ({row[name]['seconds']:.0f} s)"
                  + (f"  k={knn.k}" if name == "knn" else ""), flush=True)
        if vae is not None:
            t0 = time.perf_counter()
            # the validation-chosen step is the run's own (tuned on the run's mask); for other masks choose again
            vae.tune(valid, mask)
            res = evaluate(vae, evalset, mask, samples=10, n=args.vae_n, batch=1000)
            row["vae-imp"] = {"score_paper_units": res["score_paper_units"], "impute_step": vae.impute_step,
                              "oracle_best_step_nll_paper_units": res["oracle_best_step_nll_paper_units"],
                              "oracle_best_step": res["oracle_best_step"], "n_images": res["n_images"],
                              "per_step": res["per_step_unguided_nll_paper_units"],
                              "seconds": time.perf_counter() - t0}
            print(f"{label:8s} vae-imp  {res['score_paper_units']:8.2f} (step {vae.impute_step}, valid-chosen); "
                  f"oracle {res['oracle_best_step_nll_paper_units']:.2f} (step {res['oracle_best_step']})", flush=True)
        (out / "baselines.json").write_text(json.dumps(result, indent=2))
    (out / "baselines.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
