"""Mask samplers: rates, hole placement (docs/PAPER.md §9 (masks)), specs, aliases, seeding, devices and errors."""

from __future__ import annotations

import math

import pytest
import torch

from seqimpute import SeqImputeError
from seqimpute.data import mask_sampler, mask_set
from seqimpute.data.masks import canonical


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def hole_offsets(observed: torch.Tensor, H: int, W: int):
    """Per image: (first missing row, first missing col, #missing rows, #missing cols, #missing)."""
    missing = ~observed.view(-1, H, W)
    rows = missing.any(dim=2)
    cols = missing.any(dim=1)
    r0 = rows.float().argmax(dim=1)
    c0 = cols.float().argmax(dim=1)
    return r0, c0, rows.sum(1), cols.sum(1), missing.view(len(missing), -1).sum(1)


# ---------------------------------------------------------------------------------------------------- MCAR


@pytest.mark.parametrize("p", [0.0, 0.3, 0.8, 0.9, 1.0])
def test_mcar_rate_within_binomial_tolerance(p):
    n, D = 200, 784
    m = mask_sampler(f"mcar:{p}").sample(n, (28, 28), generator=gen(1))
    missing = int((~m).sum())
    N = n * D
    sigma = math.sqrt(N * p * (1 - p))
    assert abs(missing - N * p) <= 4 * sigma + 1e-9


def test_mcar_is_independent_per_image():
    m = mask_sampler("mcar:0.5").sample(500, dim=100, generator=gen(2))
    per_image = (~m).float().mean(1)
    # a shared mask would give identical rows; independent rows have binomial spread (sd 0.05)
    assert per_image.std() > 0.02
    assert not (m[0] == m[1]).all()


def test_mcar_range_draws_a_rate_per_image():
    m = mask_sampler("mcar:0.2-0.6").sample(2000, dim=784, generator=gen(3))
    rate = (~m).float().mean(1)
    tol = 4 * math.sqrt(0.25 / 784)
    assert rate.min() >= 0.2 - tol and rate.max() <= 0.6 + tol
    assert rate.min() < 0.25 and rate.max() > 0.55  # the whole range is used
    assert abs(rate.mean().item() - 0.4) < 0.01


# ---------------------------------------------------------------------------------------------------- squares


@pytest.mark.parametrize("spec,side,S,expected", [
    ("square:14", 28, 14, set(range(1, 13))),   # MNIST MAR-14 -> {1..12}
    ("MAR-16", 28, 16, set(range(1, 11))),      # MNIST MAR-16 -> {1..10}
    ("square:25", 48, 25, set(range(1, 22))),   # TFD MAR-25 -> {1..21}
    ("mar-17", 32, 17, set(range(1, 14))),      # SVHN MAR-17 -> {1..13}
    ("square:14:uniform", 28, 14, set(range(0, 15))),
    ("square:25:uniform", 48, 25, set(range(0, 24))),
])
def test_square_offsets_match_reference(spec, side, S, expected):
    m = mask_sampler(spec).sample(6000, (side, side), generator=gen(4))
    r0, c0, nrows, ncols, nmiss = hole_offsets(m, side, side)
    assert (nmiss == S * S).all() and (nrows == S).all() and (ncols == S).all()
    assert set(r0.tolist()) == expected
    assert set(c0.tolist()) == expected
    # rows and columns are drawn independently
    assert not (r0 == c0).all()


def test_square_placement_is_roughly_uniform():
    m = mask_sampler("square:14").sample(12000, (28, 28), generator=gen(5))
    r0 = hole_offsets(m, 28, 28)[0]
    counts = torch.bincount(r0, minlength=13)[1:13].float()
    expected = 12000 / 12
    sigma = math.sqrt(12000 * (1 / 12) * (11 / 12))
    assert ((counts - expected).abs() <= 4 * sigma).all()


def test_square_hole_is_contiguous():
    m = mask_sampler("square:5").sample(50, (12, 12), generator=gen(6))
    r0, c0, *_ = hole_offsets(m, 12, 12)
    for i in range(50):
        ref = torch.ones(12, 12, dtype=torch.bool)
        ref[r0[i]:r0[i] + 5, c0[i]:c0[i] + 5] = False
        assert torch.equal(m[i].view(12, 12), ref)


def test_square_size_range():
    m = mask_sampler("square:12-18").sample(4000, (28, 28), generator=gen(7))
    r0, c0, nrows, ncols, nmiss = hole_offsets(m, 28, 28)
    assert torch.equal(nrows, ncols)
    assert torch.equal(nmiss, nrows * nrows)
    assert set(nrows.tolist()) == set(range(12, 19))
    assert (r0 >= 1).all() and (r0 <= 28 - nrows - 2).all()
    assert (c0 >= 1).all() and (c0 <= 28 - ncols - 2).all()


def test_square_that_just_fits():
    m = mask_sampler("square:25").sample(20, (28, 28), generator=gen(8))  # offsets {1..1}
    r0, c0, *_ = hole_offsets(m, 28, 28)
    assert set(r0.tolist()) == {1} and set(c0.tolist()) == {1}
    m = mask_sampler("square:28:uniform").sample(3, (28, 28), generator=gen(8))
    assert not m.any()


def test_square_on_non_square_image():
    m = mask_sampler("square:4").sample(3000, (10, 16), generator=gen(9))
    r0, c0, *_ = hole_offsets(m, 10, 16)
    assert set(r0.tolist()) == set(range(1, 5)) and set(c0.tolist()) == set(range(1, 11))


# ---------------------------------------------------------------------------------------------------- others


def test_full_hides_everything():
    m = mask_sampler("full").sample(4, (5, 5))
    assert m.shape == (4, 25) and not m.any()
    assert not mask_sampler("FULL").sample(3, dim=7).any()


@pytest.mark.parametrize("side,region", [
    ("top", (slice(0, 4), slice(None))), ("bottom", (slice(4, 8), slice(None))),
    ("left", (slice(None), slice(0, 3))), ("right", (slice(None), slice(3, 6))),
])
def test_half(side, region):
    m = mask_sampler(f"half:{side}").sample(3, (8, 6))
    ref = torch.ones(8, 6, dtype=torch.bool)
    ref[region] = False
    assert m.shape == (3, 48)
    for row in m:
        assert torch.equal(row.view(8, 6), ref)


def test_nan_mask_marks_nans():
    x = torch.rand(6, 9)
    x[0, 3] = float("nan")
    x[5, :] = float("nan")
    m = mask_sampler("nan").sample(6, x=x)
    assert torch.equal(m, ~torch.isnan(x))
    with pytest.raises(SeqImputeError, match="x="):
        mask_sampler("nan").sample(6, dim=9)


def test_mixture_each_image_draws_one_component():
    m = mask_sampler("mcar:0.5|full").sample(1000, (28, 28), generator=gen(10))
    frac = (~m).float().mean(1)
    full = frac == 1.0
    assert ((frac > 0.35) & (frac < 0.65) | full).all()
    k = int(full.sum())
    assert abs(k - 500) <= 4 * math.sqrt(1000 * 0.25)


def test_mixture_weights():
    n = 4000
    m = mask_sampler("0.7*full|0.3*half:top").sample(n, (8, 8), generator=gen(11))
    full = (~m).all(1)
    top = (~m).sum(1) == 32
    assert (full | top).all()
    assert abs(int(full.sum()) - 0.7 * n) <= 4 * math.sqrt(n * 0.21)


def test_intersection_hides_the_union():
    m = mask_sampler("half:top&half:left").sample(2, (8, 8))
    ref = torch.zeros(8, 8, dtype=torch.bool)
    ref[4:, 4:] = True  # only the bottom-right quarter stays observed
    assert torch.equal(m[0].view(8, 8), ref) and torch.equal(m[1].view(8, 8), ref)
    m = mask_sampler("mcar:0.5&square:4").sample(200, (12, 12), generator=gen(12))
    assert ((~m).sum(1) >= 16).all()


def test_aliases_are_case_insensitive_and_give_the_same_masks():
    a = mask_sampler("MCAR-80").sample(10, (28, 28), generator=gen(13))
    b = mask_sampler("mcar:0.8").sample(10, (28, 28), generator=gen(13))
    c = mask_sampler("Mcar-80").sample(10, (28, 28), generator=gen(13))
    assert torch.equal(a, b) and torch.equal(a, c)
    d = mask_sampler("MAR-14").sample(10, (28, 28), generator=gen(14))
    e = mask_sampler("square:14").sample(10, (28, 28), generator=gen(14))
    f = mask_sampler("mar-14").sample(10, (28, 28), generator=gen(14))
    assert torch.equal(d, e) and torch.equal(d, f)
    assert canonical("MCAR-80") == canonical("mcar:0.80") == "mcar:0.8"
    assert canonical("MAR-14") == canonical("square:14:paper") == "square:14"
    assert canonical("0.7*MCAR-80|0.3*mar-14") == canonical("7*mcar:0.8|3*square:14")


def test_same_seed_same_masks_different_seed_different():
    for spec in ("mcar:0.8", "square:14", "square:10-16:uniform", "mcar:0.5|square:14", "mcar:0.3&half:left"):
        s = mask_sampler(spec)
        a = s.sample(16, (28, 28), generator=gen(21))
        b = s.sample(16, (28, 28), generator=gen(21))
        c = s.sample(16, (28, 28), generator=gen(22))
        assert torch.equal(a, b), spec
        assert not torch.equal(a, c), spec


def test_masks_are_bool_on_the_requested_device():
    for spec in ("mcar:0.5", "square:3", "full", "half:top", "mcar:0.5|square:3"):
        m = mask_sampler(spec).sample(4, (8, 8), generator=gen(0), device="cpu")
        assert m.dtype == torch.bool and m.device.type == "cpu" and m.shape == (4, 64)
        # the requested device wins over the generator's (drawn on the generator's device, then moved)
        m = mask_sampler(spec).sample(4, (8, 8), generator=gen(0), device="meta")
        assert m.dtype == torch.bool and m.device.type == "meta"
        m = mask_sampler(spec).sample(4, (8, 8), device="meta")
        assert m.device.type == "meta"
    x = torch.zeros(3, 64, device="meta")
    assert mask_sampler("mcar:0.5").sample(3, (8, 8), generator=gen(0), x=x).device.type == "meta"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_masks_on_cuda():
    g = torch.Generator(device="cuda").manual_seed(0)
    m = mask_sampler("mcar:0.5|square:14").sample(8, (28, 28), generator=g)
    assert m.is_cuda and m.dtype == torch.bool
    m = mask_sampler("square:14").sample(8, (28, 28), generator=gen(0), device="cuda")
    assert m.is_cuda


def test_mask_set_is_deterministic_and_alias_stable():
    a = mask_set("MAR-14", "mnist", "test", 50, (28, 28), 784)
    b = mask_set("square:14", "mnist", "test", 50, (28, 28), 784)
    c = mask_set("square:14", "mnist", "valid", 50, (28, 28), 784)
    assert a.dtype == torch.bool and a.shape == (50, 784)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert torch.equal(mask_set("MCAR-80", "svhn", "test", 20, (32, 32), 1024),
                       mask_set("mcar:0.8", "svhn", "test", 20, (32, 32), 1024))
    assert torch.equal(mask_set("0.5*MCAR-80|0.5*MAR-14", "mnist", "test", 40, (28, 28), 784),
                       mask_set("mcar:0.8|square:14", "mnist", "test", 40, (28, 28), 784))
    assert not torch.equal(a, mask_set("square:14", "mnist", "test", 50, (28, 28), 784, seed=1))
    table = mask_set("mcar:0.3", "own.csv", "test", 30, None, 7)
    assert table.shape == (30, 7)


# ---------------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("spec,match", [
    ("blob", "unknown kind"),
    ("mcar:1.5", "probability"),
    ("mcar:abc", "not a number"),
    ("mcar:0.6-0.2", "backwards"),
    ("half:middle", "top, bottom, left or right"),
    ("half", "top, bottom, left or right"),
    ("square:0", "at least 1"),
    ("square:14:diagonal", "uniform"),
    ("square:1.5", "int"),
    ("", "empty"),
    ("mcar:0.5|", "empty"),
    ("-1*full|mcar:0.5", "weight"),
    ("x*full|mcar:0.5", "weight"),
])
def test_bad_specs_raise_a_helpful_error(spec, match):
    with pytest.raises(SeqImputeError, match=match) as e:
        mask_sampler(spec)
    assert "mcar:0.8" in str(e.value)  # every message shows examples of good specs


def test_square_too_big_for_the_image():
    with pytest.raises(SeqImputeError, match="does not fit"):
        mask_sampler("square:26").sample(2, (28, 28))
    with pytest.raises(SeqImputeError, match="does not fit"):
        mask_sampler("square:29:uniform").sample(2, (28, 28))
    with pytest.raises(SeqImputeError, match="does not fit"):
        mask_sampler("square:10-30").sample(2, (28, 28))


@pytest.mark.parametrize("spec", ["square:3", "half:top", "mcar:0.2|square:3"])
def test_image_masks_on_a_table_raise(spec):
    with pytest.raises(SeqImputeError, match="needs images"):
        mask_sampler(spec).sample(4, None, dim=10)


def test_shape_mismatch_raises():
    with pytest.raises(SeqImputeError, match="does not match"):
        mask_sampler("mcar:0.5").sample(2, (8, 8), dim=65)
    with pytest.raises(SeqImputeError, match="image_shape"):
        mask_sampler("mcar:0.5").sample(2)
