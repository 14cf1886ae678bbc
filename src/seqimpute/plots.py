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


def training_curves(curves: dict[str, list[dict]], path: str | Path, title: str = "",
                    reference: dict | None = None, x: str = "images") -> Path:
    """Validation bound (paper units) against training images seen (``x="images"``) or the budget's seconds
    (``x="elapsed_s"``), one line per run, with optional horizontal reference lines (e.g. the paper's number,
    kNN)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    ys_all = []
    for i, (label, records) in enumerate(curves.items()):
        pts = [(r[x], r["valid_bound_paper_units"]) for r in records if "valid_bound_paper_units" in r]
        if pts:
            xs, ys = zip(*pts)
            style = ("-", "--", ":")[i // 10 % 3]  # the colour cycle has 10 colours
            ax.plot(xs, ys, style, marker="o", ms=2, lw=1.5, label=label)
            ys_all += ys
    for name, value in (reference or {}).items():
        ax.axhline(value, ls="--", lw=1, color="gray")
        ax.annotate(f"{name} {value:g}", (1, value), xycoords=("axes fraction", "data"), ha="right", va="bottom",
                    fontsize=7, color="dimgray")
    if ys_all:
        refs = list((reference or {}).values())
        lo = min(ys_all + refs)
        hi = max([float(np.percentile(ys_all, 95))] + refs)  # every reference line stays inside the axes
        ax.set_ylim(lo - 0.08 * (hi - lo), hi + 0.02 * (hi - lo))
    if x == "images":
        ax.set_xlabel("training images seen")
        ax.xaxis.set_major_formatter(lambda v, _: f"{v / 1e6:g}M" if v >= 1e6 else f"{v / 1e3:g}k")
    else:
        ax.set_xlabel("seconds of training (wall clock, validation included)")
    ax.set_ylabel("validation bound (paper units)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def tile(images: np.ndarray, shape, cols: int | None = None, pad: int = 1) -> np.ndarray:
    """(N, D) images in [0,1] -> one (rows*(H+pad)-pad, cols*(W+pad)-pad) mosaic, nearly square by default."""
    n = len(images)
    cols = cols or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    H, W = shape
    out = np.ones((rows * (H + pad) - pad, cols * (W + pad) - pad), dtype=np.float32)
    for i, img in enumerate(images):
        r, c = divmod(i, cols)
        out[r * (H + pad) : r * (H + pad) + H, c * (W + pad) : c * (W + pad) + W] = img.reshape(H, W)
    return out


def sample_grid(frames: np.ndarray, shape, path: str | Path, steps: list[int], title: str = "") -> Path:
    """The paper's Fig 1 layout: one mosaic of all samples per chosen step. ``frames``: (len(steps), N, D)."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(steps), figsize=(2.2 * len(steps), 2.5), squeeze=False)
    for ax, frame, t in zip(axes[0], frames, steps):
        ax.imshow(tile(frame, shape), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(f"t={t}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout(pad=0.3, rect=(0, 0, 1, 0.92 if title else 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
