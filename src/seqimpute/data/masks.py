"""Mask samplers. A mask is a bool tensor ``observed`` of x's shape (N, D): True = known, False = to impute.

Specs (case-insensitive):
  mcar:P            each value missing independently with probability P (the paper's MCAR-d is mcar:0.d)
  mcar:P1-P2        a rate drawn uniformly per image from [P1, P2]
  square:S          one SxS hole; top-left row/column drawn from {1..side-S-2} as the authors' code does (MAR-d)
  square:S1-S2      a side drawn uniformly per image from {S1..S2}
  square:S:uniform  plain uniform placement, offsets {0..side-S}
  full              everything missing (unconditional generation)
  half:top|bottom|left|right   that half missing
  nan               missing exactly where the data are NaN
  A|B|...           a mixture: each image draws one component (weights as 0.7*A|0.3*B)
  A&B               both: a value is missing if either hides it
Aliases: MCAR-80 = mcar:0.8, MAR-14 = square:14.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

import torch

from ..errors import SeqImputeError

_HELP = "e.g. mcar:0.8, square:14, square:12-18, full, half:top, nan, mcar:0.8|square:14 (see seqimpute.data.masks)"


def _bad(spec: str, why: str) -> SeqImputeError:
    return SeqImputeError(f"bad mask spec {spec!r}: {why}; {_HELP}.")


def _require_image(shape, spec):
    if shape is None:
        raise SeqImputeError(f"mask {spec!r} needs images (height x width); for tables use mcar:P or nan.")
    return shape


class MaskSampler:
    spec: str

    def sample(self, n: int, image_shape: tuple[int, int] | None = None, generator: torch.Generator | None = None,
               device=None, x: torch.Tensor | None = None, dim: int | None = None) -> torch.Tensor:
        """A bool tensor (n, D), True = observed. D = H*W, or ``dim`` for tables (or x.shape[1]).

        The mask lands on ``device`` (default: x's device, else the generator's, else the CPU); the random
        numbers are drawn on the generator's device, so a seeded CPU generator gives the same masks everywhere."""
        if x is not None:
            device = x.device if device is None else device
            dim = x.shape[1]
        target = None if device is None else torch.device(device)
        work = generator.device if generator is not None else (target or torch.device("cpu"))
        if dim is None:
            if image_shape is None:
                raise SeqImputeError("give image_shape (H, W) or dim to sample a mask.")
            dim = image_shape[0] * image_shape[1]
        if image_shape is not None and image_shape[0] * image_shape[1] != dim:
            raise SeqImputeError(f"image shape {image_shape} does not match {dim} values per example.")
        if int(n) < 0:
            raise SeqImputeError(f"cannot sample {n} masks; give n >= 0.")
        if int(n) == 0:  # nothing to draw (some samplers, e.g. mixtures, cannot draw zero rows)
            out = torch.zeros(0, int(dim), dtype=torch.bool, device=work)
            return out if target is None else out.to(target)
        out = self._sample(int(n), image_shape, int(dim), generator, work, x)
        return out if target is None or out.device == target else out.to(target)

    def _sample(self, n, shape, dim, gen, device, x) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self):
        return f"mask_sampler({self.spec!r})"


@dataclass(repr=False)
class MCAR(MaskSampler):
    lo: float
    hi: float
    spec: str = ""

    def _sample(self, n, shape, dim, gen, device, x):
        rate = self.lo + (self.hi - self.lo) * torch.rand(n, 1, generator=gen, device=device)
        return torch.rand(n, dim, generator=gen, device=device) >= rate


@dataclass(repr=False)
class Square(MaskSampler):
    lo: int
    hi: int
    uniform: bool = False
    spec: str = ""

    def _sample(self, n, shape, dim, gen, device, x):
        H, W = _require_image(shape, self.spec)
        side = self.lo + torch.randint(0, self.hi - self.lo + 1, (n, 1), generator=gen, device=device)
        # The authors' code: offset = randint(1, side_len - S - 1), i.e. {1..L-S-2}; uniform: {0..L-S}.
        first, slack = (0, 0) if self.uniform else (1, -2)
        for L in (H, W):
            if L - self.hi + slack < first:
                raise SeqImputeError(f"a {self.hi}x{self.hi} hole does not fit a {H}x{W} image with the paper's "
                                     f"placement; use a smaller square or square:{self.hi}:uniform.")
        r0 = first + (torch.rand(n, 1, generator=gen, device=device, dtype=torch.float64) * (H - side + slack - first + 1)).long()
        c0 = first + (torch.rand(n, 1, generator=gen, device=device, dtype=torch.float64) * (W - side + slack - first + 1)).long()
        rows = torch.arange(H, device=device).view(1, H, 1)
        cols = torch.arange(W, device=device).view(1, 1, W)
        r0, c0, s = r0.view(n, 1, 1), c0.view(n, 1, 1), side.view(n, 1, 1)
        hole = (rows >= r0) & (rows < r0 + s) & (cols >= c0) & (cols < c0 + s)
        return ~hole.view(n, H * W)


@dataclass(repr=False)
class Full(MaskSampler):
    spec: str = "full"

    def _sample(self, n, shape, dim, gen, device, x):
        return torch.zeros(n, dim, dtype=torch.bool, device=device)


@dataclass(repr=False)
class Half(MaskSampler):
    side: str
    spec: str = ""

    def _sample(self, n, shape, dim, gen, device, x):
        H, W = _require_image(shape, self.spec)
        rows = torch.arange(H, device=device).view(H, 1).expand(H, W)
        cols = torch.arange(W, device=device).view(1, W).expand(H, W)
        hole = {"top": rows < H // 2, "bottom": rows >= H - H // 2,
                "left": cols < W // 2, "right": cols >= W - W // 2}[self.side]
        return (~hole).reshape(1, H * W).expand(n, H * W).clone()


@dataclass(repr=False)
class NaNMask(MaskSampler):
    spec: str = "nan"

    def _sample(self, n, shape, dim, gen, device, x):
        if x is None:
            raise SeqImputeError("mask 'nan' marks the NaN entries of your data as missing: pass the data (x=...).")
        if x.shape[0] != n:
            raise SeqImputeError(f"mask 'nan' needs one row of data per mask ({x.shape[0]} rows for {n} masks).")
        return ~torch.isnan(x).to(device)


@dataclass(repr=False)
class Mixture(MaskSampler):
    parts: list
    weights: list
    spec: str = ""

    def _sample(self, n, shape, dim, gen, device, x):
        w = torch.tensor(self.weights, dtype=torch.float, device=device)
        choice = torch.multinomial(w / w.sum(), n, replacement=True, generator=gen)
        out = torch.empty(n, dim, dtype=torch.bool, device=device)
        for k, part in enumerate(self.parts):  # every part samples all rows: the draw stays seed-stable
            out = torch.where((choice == k).view(n, 1), part._sample(n, shape, dim, gen, device, x), out)
        return out


@dataclass(repr=False)
class Both(MaskSampler):
    parts: list
    spec: str = ""

    def _sample(self, n, shape, dim, gen, device, x):
        out = self.parts[0]._sample(n, shape, dim, gen, device, x)
        for part in self.parts[1:]:
            out = out & part._sample(n, shape, dim, gen, device, x)
        return out


def _number_range(text: str, spec: str, cast):
    m = re.fullmatch(r"\s*([0-9.]+)\s*(?:-\s*([0-9.]+))?\s*", text)
    if not m:
        raise _bad(spec, f"{text!r} is not a number or a range A-B")
    try:
        lo = cast(m.group(1))
        hi = cast(m.group(2)) if m.group(2) else lo
    except ValueError:
        raise _bad(spec, f"{text!r} is not a valid {cast.__name__}") from None
    if hi < lo:
        raise _bad(spec, f"the range {text!r} runs backwards")
    return lo, hi


def _parse_one(spec: str) -> MaskSampler:
    s = spec.strip().lower()
    alias = re.fullmatch(r"(mcar|mar)-(\d+)", s)
    if alias:
        kind, d = alias.groups()
        s = f"mcar:{int(d) / 100:g}" if kind == "mcar" else f"square:{int(d)}"
    kind, _, arg = s.partition(":")
    if kind == "mcar":
        lo, hi = _number_range(arg, spec, float)
        if hi > 1:
            raise _bad(spec, "a missing rate is a probability in [0, 1] (MCAR-80 is mcar:0.8)")
        return MCAR(lo, hi, spec=f"mcar:{lo:g}" + (f"-{hi:g}" if hi != lo else ""))
    if kind == "square":
        size, _, placement = arg.partition(":")
        if placement not in ("", "uniform", "paper"):
            raise _bad(spec, f"placement {placement!r} is neither 'paper' nor 'uniform'")
        lo, hi = _number_range(size, spec, int)
        if lo < 1:
            raise _bad(spec, "a square needs a side of at least 1")
        uniform = placement == "uniform"
        return Square(lo, hi, uniform, spec=f"square:{lo}" + (f"-{hi}" if hi != lo else "") + (":uniform" if uniform else ""))
    if s == "full":
        return Full()
    if kind == "half":
        if arg not in ("top", "bottom", "left", "right"):
            raise _bad(spec, "half takes top, bottom, left or right")
        return Half(arg, spec=s)
    if s == "nan":
        return NaNMask()
    raise _bad(spec, "unknown kind")


def mask_sampler(spec: str) -> MaskSampler:
    """Parse a mask spec (see the module docstring) into a sampler with ``.sample(n, image_shape, generator)``."""
    if not isinstance(spec, str) or not spec.strip():
        raise _bad(str(spec), "empty")
    if "|" in spec:
        parts, weights = [], []
        for item in spec.split("|"):
            w, star, rest = item.partition("*")
            if star:
                try:
                    weights.append(float(w))
                except ValueError:
                    raise _bad(spec, f"weight {w!r} is not a number") from None
                if weights[-1] <= 0:
                    raise _bad(spec, "mixture weights must be positive")
            else:
                weights.append(1.0)
                rest = item
            parts.append(mask_sampler(rest))
        total = sum(weights)
        if all(w == weights[0] for w in weights):
            canon = "|".join(p.spec for p in parts)
        else:
            canon = "|".join(f"{w / total:g}*{p.spec}" for w, p in zip(weights, parts))
        return Mixture(parts, weights, spec=canon)
    if "&" in spec:
        parts = [_parse_one(p) for p in spec.split("&")]
        return Both(parts, spec="&".join(p.spec for p in parts))
    return _parse_one(spec)


def canonical(spec: str) -> str:
    """A normal form of a spec, so aliases name the same evaluation mask set (MAR-14 == square:14)."""
    return mask_sampler(spec).spec


def mask_set(spec: str, name: str, split: str, n: int, image_shape, dim: int, x: torch.Tensor | None = None,
             seed: int = 0) -> torch.Tensor:
    """The fixed evaluation masks for (dataset, split, spec): seeded by their names, so every model, run and
    machine scores on the same holes. Generated on the CPU."""
    key = f"{name}/{split}/{canonical(spec)}/{seed}"
    gen = torch.Generator().manual_seed(zlib.crc32(key.encode()))
    return mask_sampler(spec).sample(n, image_shape, generator=gen, dim=dim, x=None if x is None else x.cpu())
