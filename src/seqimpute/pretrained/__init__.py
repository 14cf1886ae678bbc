"""Shipped pretrained policies: NAME.safetensors (half-precision weights) beside NAME.json (the model card: what it
was trained on and how, the exact command, its test scores and the SHA-256 of its weights).

Loading executes no code and needs no network: the weights are a safetensors file, checked against the card's
SHA-256 before they are read. `benchmarks/pretrain.py publish` writes both files.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import SeqImputeError
from ..files import atomic_write, sha256_of
from ..reporting import md_table

SHIPPED = Path(__file__).parent
CARD_VERSION = 1


def names(folder: Path | None = None) -> list[str]:
    """The shipped pretrained models, by name (model-data-mask family). ``folder``: another folder of cards and
    weights than the shipped one (every function here takes it; the tests use it)."""
    folder = Path(folder or SHIPPED)
    return sorted(p.stem for p in folder.glob("*.json") if (folder / f"{p.stem}.safetensors").exists())


def card(name: str, folder: Path | None = None) -> dict:
    """The model card of pretrained model ``name``."""
    folder = Path(folder or SHIPPED)
    path = folder / f"{name}.json"
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or not path.exists():
        known = ", ".join(names(folder)) or "none"
        raise SeqImputeError(f"{name!r} is not a pretrained model (shipped: {known}; see `seqimpute pretrained list`).")
    try:
        c = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise SeqImputeError(f"the card {path} is unreadable ({e}); reinstall seqimpute.") from None
    if not isinstance(c, dict) or c.get("card_version") != CARD_VERSION or "sha256" not in c:
        raise SeqImputeError(f"the card {path} is not a seqimpute model card; reinstall seqimpute.")
    return c


def load(name: str, device="cpu", folder: Path | None = None):
    """Pretrained model ``name`` (float32 parameters), its run config and its training record, shaped like
    runs.load_run_model's answer. The weights' SHA-256 must match the card's; a damaged or foreign file is one
    SeqImputeError."""
    from .. import runs

    folder = Path(folder or SHIPPED)
    c = card(name, folder)
    path = folder / c["weights"]
    if not path.exists():
        raise SeqImputeError(f"{path} is missing (the card {name}.json names it); reinstall seqimpute.")
    digest = sha256_of(path)
    if digest != c["sha256"]:
        raise SeqImputeError(f"{path} does not match its card (SHA-256 {digest[:12]}..., the card says "
                             f"{c['sha256'][:12]}...): the file is damaged or was replaced; reinstall seqimpute.")
    ck = runs.load_safetensors_checkpoint(path)
    model_name = c["config"]["model"]["name"]
    if ck.get("model_name") != model_name:
        raise SeqImputeError(f"{path} holds a {ck.get('model_name')} model, not the card's {model_name}.")
    model = runs.model_of_checkpoint(ck, model_name, path)  # the half-precision weights load as float32
    return model.to(device).eval(), c["config"], runs.weights_only(ck)


def load_model(run, checkpoint: str = "best", device="cpu"):
    """A run folder's model (its ``checkpoint``, runs.load_run_model) or, when no such folder exists, the shipped
    pretrained model of that name: (model, run config, checkpoint record)."""
    from ..runs import load_run_model

    if not Path(run).exists():
        if str(run) in names():
            if checkpoint not in ("best", "last"):
                raise SeqImputeError(f"a pretrained model has one set of weights; checkpoint {checkpoint!r} needs a "
                                     f"run folder.")
            return load(str(run), device)
        raise SeqImputeError(f"{run} is neither a run folder nor a pretrained model (shipped: "
                             f"{', '.join(names()) or 'none'}; `seqimpute pretrained list`).")
    return load_run_model(Path(run), checkpoint, device=device)


def load_pretrained(name: str, device="cpu"):
    """The shipped pretrained model ``name`` (see `seqimpute pretrained list`): a Policy in eval mode, float32.
    To fill images with it, give its name where a run folder goes: ``seqimpute.impute("gpsi-add-mnist-mcar", x)``."""
    return load(name, device)[0]


def write(name: str, ck: dict, config: dict, training: dict, folder: Path | None = None) -> dict:
    """Ship checkpoint ``ck`` as pretrained model ``name``: its weights in half precision and a card holding
    ``config`` (the run's config.toml), ``training`` and the SHA-256. Scores are added by add_scores."""
    import torch

    from .. import runs

    folder = Path(folder or SHIPPED)
    half = dict(runs.weights_only(ck), model={k: v.to(torch.float16) if v.is_floating_point() else v
                                              for k, v in ck["model"].items()})
    path = folder / f"{name}.safetensors"
    runs.save_safetensors_checkpoint(half, path)
    c = {"card_version": CARD_VERSION, "name": name, "weights": path.name, "sha256": sha256_of(path),
         "dtype": "float16", "size_bytes": path.stat().st_size, "config": config, "training": training,
         "scores": {}}
    _write_card(folder, c)
    return c


def add_scores(name: str, cell: str, scores: dict, folder: Path | None = None) -> None:
    """Record test scores of pretrained model ``name`` at mask ``cell`` in its card."""
    folder = Path(folder or SHIPPED)
    c = json.loads((folder / f"{name}.json").read_text())
    c["scores"][cell] = scores
    _write_card(folder, c)


def _write_card(folder: Path, c: dict) -> None:
    atomic_write(folder / f"{c['name']}.json", (json.dumps(c, indent=2) + "\n").encode())


def _score_text(c: dict) -> str:
    return ", ".join(f"{cell} {s['bound_paper_units']:.1f}" for cell, s in c["scores"].items()) or "not scored"


def render_list(folder: Path | None = None) -> str:
    """`seqimpute pretrained list`: one line per shipped model."""
    rows = []
    for name in names(folder):
        c = card(name, folder)
        t = c["training"]
        rows.append([name, c["config"]["train"]["data"], c["config"]["train"]["mask"], f"{t['updates']:,}",
                     f"{t['cpu_hours']:.2f}", t["precision"], _score_text(c)])
    if not rows:
        return "no pretrained models are shipped with this install."
    head = ["name", "data", "trained on mask", "updates", "CPU-hours", "precision", "test bound (paper units)"]
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    return "\n".join("  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip() for r in [head, *rows])


def render_card(c: dict) -> str:
    """A model card as Markdown (`seqimpute pretrained show NAME`)."""
    t, m, tr = c["training"], c["config"]["model"], c["config"]["train"]
    opts = ", ".join(f"{k}={v}" for k, v in sorted(m.items()) if k not in ("name", "dim"))
    lines = [f"# {c['name']}", "",
             f"{m['name']} trained on {tr['data']} under mask `{tr['mask']}` for {t['updates']:,} updates "
             f"({t['cpu_hours']:.2f} CPU-hours, {t['precision']} products, {t['threads']} thread(s) on {t['cpu']}).",
             "", f"- model: {opts}",
             f"- optimiser: {tr['optimizer']}, lr {tr['lr']:g}, warm-up {tr['warmup']}, batch {tr['batch']}, "
             f"seed {tr['seed']}",
             f"- trained with: `{t['command']}`" + (f" ({t['note']})" if t.get("note") else ""),
             f"- weights: `{c['weights']}`, {c['dtype']}, {c['size_bytes']:,} bytes, SHA-256 `{c['sha256']}` "
             f"(checked on every load)", "",
             *md_table(["test cell", "images", "samples K", "bound (paper units)", "MSE", "paper's GPSI-add"],
                       [[cell, s["n"], s["samples"], f"{s['bound_paper_units']:.1f}", f"{s['mse']:.4f}",
                         "" if s.get("paper") is None else f"{s['paper']:g}"] for cell, s in c["scores"].items()],
                       "lrrrrr")]
    if c["scores"]:
        lines += ["", f"Scored with: `{next(iter(c['scores'].values()))['command']}` (one call per cell)."]
    return "\n".join(lines)
