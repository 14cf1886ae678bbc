"""seqimpute.impute: a user's image arrays filled in by a trained run folder, in one call."""

import numpy as np
import pytest

import seqimpute
from seqimpute import SeqImputeError, load_dataset
from seqimpute.train import TrainConfig, train


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("api") / "run"
    train(folder, TrainConfig(model="gpsi-add", data="sklearn-digits", mask="mcar:0.7", updates=3, batch=32,
                              model_options={"hidden": 16, "z": 4, "steps": 2}, valid_every=10, valid_size=50),
          progress_bar=False)
    return folder


@pytest.fixture
def digits():
    """Four 8x8 test digits in [0, 1] and a mask hiding the top half of each (True = known)."""
    x = load_dataset("sklearn-digits", "test").x[:4].numpy().reshape(4, 8, 8)
    known = np.ones_like(x, dtype=bool)
    known[:, :4] = False
    return x, known


def test_observed_values_are_kept_exactly_and_the_holes_filled_in_0_1(run, digits):
    x, known = digits
    holes = np.where(known, x, np.nan)
    out = seqimpute.impute(run, holes)  # NaN marks the missing values
    assert out.shape == x.shape and out.dtype == np.float32
    assert np.array_equal(out[known], x[known])
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    assert not np.array_equal(out[~known], x[~known])  # the truth under the holes was never given
    # the same holes given as a mask over the complete images: the same imputation (the hidden truth is unused)
    assert np.array_equal(seqimpute.impute(run, x, observed=known), out)
    assert np.array_equal(seqimpute.impute(run, holes, seed=0), out)  # seeded: repeatable


def test_float64_input_keeps_its_dtype_and_its_bits(run, digits):
    x, known = digits
    x64 = x.astype(np.float64) / 3 + 1 / 7  # values float32 cannot hold
    out = seqimpute.impute(run, np.where(known, x64, np.nan))
    assert out.dtype == np.float64 and np.array_equal(out[known], x64[known])


def test_uint8_input_is_scaled_by_255(run, digits):
    x, known = digits
    grey = np.rint(x * 255).astype(np.uint8)
    out = seqimpute.impute(run, grey, observed=known)
    assert out.dtype == np.float32
    assert np.array_equal(out[known], (grey.astype(np.float32) / 255)[known])
    # the scaled images are the model's input: the same imputation as for the floats k/255 themselves
    assert np.array_equal(out, seqimpute.impute(run, grey.astype(np.float32) / 255, observed=known))


def test_flat_rows_and_images_give_the_same_values(run, digits):
    x, known = digits
    out = seqimpute.impute(run, x, observed=known)
    flat = seqimpute.impute(run, x.reshape(4, 64), observed=known.reshape(4, 64))
    assert flat.shape == (4, 64) and np.array_equal(flat, out.reshape(4, 64))
    one = seqimpute.impute(run, x[0], observed=known[0])  # one (H, W) image
    assert one.shape == (8, 8) and np.array_equal(one[known[0]], x[0][known[0]])


def test_samples_stack_and_their_mean(run, digits):
    x, known = digits
    stack = seqimpute.impute(run, x, observed=known, samples=3, seed=5)
    assert stack.shape == (3, 4, 8, 8)
    for s in stack:
        assert np.array_equal(s[known], x[known])
    assert not np.array_equal(stack[0][~known], stack[1][~known])  # the policy is stochastic: the draws differ
    mean = seqimpute.impute(run, x, observed=known, samples=3, seed=5, mean=True)
    assert mean.shape == x.shape and np.array_equal(mean[known], x[known])
    np.testing.assert_allclose(mean[~known], stack.mean(0)[~known], rtol=0, atol=1e-6)


def test_nothing_missing_returns_the_input_and_an_all_missing_row_is_filled(run, digits):
    x, _ = digits
    assert np.array_equal(seqimpute.impute(run, x), x)
    assert seqimpute.impute(run, x, samples=2).shape == (2, 4, 8, 8)
    holes = x.copy()
    holes[1] = np.nan
    out = seqimpute.impute(run, holes)
    assert np.isfinite(out[1]).all() and 0 <= out[1].min() and out[1].max() <= 1
    assert np.array_equal(out[[0, 2, 3]], x[[0, 2, 3]])


@pytest.mark.parametrize("images, observed, message", [
    (np.zeros((2, 10, 10), np.float32), None, "trained on 8x8 images; give (N, 8, 8) or (N, 64)"),
    (np.zeros((2, 63), np.float32), None, "images of 63 values, but the model was trained on 8x8"),
    (np.zeros((2, 4, 16), np.float32), None, "images of 4x16"),
    (np.full((2, 8, 8), 2.0), None, "float values must lie in [0, 1] (found 2..2)"),
    (np.zeros((2, 8, 8)), np.ones((2, 64), bool), "observed must be a bool array of the images' shape (2, 8, 8)"),
    (np.zeros((2, 8, 8)), np.ones((2, 8, 8)), "observed must be a bool array"),
])
def test_bad_input_is_one_clear_error(run, images, observed, message):
    with pytest.raises(SeqImputeError) as e:
        seqimpute.impute(run, images, observed=observed)
    assert message in str(e.value)


def test_bad_counts_are_refused(run, digits):
    with pytest.raises(SeqImputeError, match="samples"):
        seqimpute.impute(run, digits[0], samples=0)
