"""Figures: refinement trajectories (the paper's Fig 3 layout) and training curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def holes_rgb(x: np.ndarray, observed: np.ndarray, shape) -> np.ndarray:
    """Grey image with the missing values shown in a muted red."""
    img = np.repeat(np.nan_to_num(x).reshape(*shape, 1), 3, axis=2)
    img[~observed.reshape(shape)] = (0.75, 0.2, 0.2)
    return img


def trajectory_grid(rows: list[dict], shape, path: str | Path, step_labels: list[str], title: str = "") -> Path:
    """One row per (image, sample): the input with its holes, the composite after each step, and the truth when
    known. Each row dict: x (D,), observed (D,), steps (list of (D,) composites), truth (D,) or None."""
    plt = _plt()
    n_cols = 1 + len(step_labels) + int(any(r.get("truth") is not None for r in rows))
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(1.1 * n_cols, 1.1 * len(rows) + 0.4), squeeze=False)
    for i, r in enumerate(rows):
        panels = [holes_rgb(r["x"], r["observed"], shape)] + [s.reshape(shape) for s in r["steps"]]
        if n_cols > len(panels):
            panels.append(r["truth"].reshape(shape) if r.get("truth") is not None else np.zeros(shape))
        for j, (ax, img) in enumerate(zip(axes[i], panels)):
            ax.imshow(img, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                labels = ["input"] + step_labels + (["truth"] if n_cols > 1 + len(step_labels) else [])
                ax.set_title(labels[j], fontsize=7)
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout(pad=0.2, rect=(0, 0, 1, 0.96 if title else 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def training_curve(records: list[dict], path: str | Path, title: str = "", reference: dict | None = None) -> Path:
    """Validation bound (paper units) against images seen, with optional horizontal reference lines."""
    plt = _plt()
    pts = [(r["images"], r["valid_bound_paper_units"]) for r in records if "valid_bound_paper_units" in r]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    if pts:
        xs, ys = zip(*pts)
        ax.plot(xs, ys, "-", lw=1.5, label="validation bound")
    for name, value in (reference or {}).items():
        ax.axhline(value, ls="--", lw=1, color="gray")
        ax.text(ax.get_xlim()[1], value, f" {name}", va="center", fontsize=7, color="gray")
    ax.set_xlabel("training images seen")
    ax.set_ylabel("bound (paper units, lower is better)")
    if pts:
        lo, hi = min(ys + tuple((reference or {}).values())), np.percentile(ys, 90)
        ax.set_ylim(lo - 0.05 * (hi - lo), hi)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
