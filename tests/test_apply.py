"""apply_threshold against ``scores >= threshold``."""

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import clskern
from strategies import volumes


@settings(max_examples=100, deadline=None)
@given(volumes(), st.floats(-10, 10, allow_nan=False) | st.sampled_from([0.0, 0.5, np.inf, -np.inf]))
def test_matches_numpy(volume, threshold):
    scores, _, _ = volume
    mask = clskern.apply_threshold(scores, threshold)
    expected = (np.asarray(scores, np.float64) >= threshold).astype(np.uint8)
    assert mask.dtype == np.uint8 and mask.shape == scores.shape
    np.testing.assert_array_equal(mask, expected)
    if scores.flags.f_contiguous and not scores.flags.c_contiguous:
        assert mask.flags.f_contiguous


def test_threshold_from_float32_scores_keeps_its_meaning():
    scores = np.array([0.1, 0.2, 0.3], np.float32)
    t = clskern.critical_threshold(scores, np.ones(3, bool), 0.34)  # float32 0.2 as a float64
    np.testing.assert_array_equal(clskern.apply_threshold(scores, t), [0, 1, 1])


def test_out_is_written_in_place():
    scores = np.asfortranarray(np.random.default_rng(0).random((4, 5, 6)))
    out = np.empty((4, 5, 6), np.uint8, order="F")
    assert clskern.apply_threshold(scores, 0.5, out=out) is out
    np.testing.assert_array_equal(out, scores >= 0.5)


def test_bad_out_and_threshold():
    scores = np.zeros((3, 4), np.float32)
    with pytest.raises(clskern.InputError, match="uint8"):
        clskern.apply_threshold(scores, 0.5, out=np.empty((3, 4), bool))
    with pytest.raises(clskern.InputError, match="C-contiguous"):
        clskern.apply_threshold(scores, 0.5, out=np.empty((3, 4), np.uint8, order="F"))
    with pytest.raises(ValueError, match="threshold"):
        clskern.apply_threshold(scores, float("nan"))


def _read_only(shape, order="C"):
    out = np.empty(shape, np.uint8, order=order)
    out.flags.writeable = False
    return out


@pytest.mark.parametrize(
    "make_out,error,match",
    [
        (lambda s: _read_only(s.shape), clskern.errors.ArgumentError, "out is read-only"),
        (lambda s: np.zeros(s.shape, np.uint8).tolist(), clskern.errors.ArgumentTypeError, "out must be a uint8 NumPy array"),
        (lambda s: memoryview(np.zeros(s.shape, np.uint8)), clskern.errors.ArgumentTypeError, "got memoryview"),
        (lambda s: np.zeros(s.shape, np.int8), clskern.errors.ArgumentError, "got dtype int8"),
        (lambda s: np.zeros(s.shape, np.float32), clskern.errors.ArgumentError, "got dtype float32"),
        (lambda s: np.zeros(s.shape[::-1], np.uint8), clskern.errors.ArgumentError, "got shape (4, 3)"),
        (lambda s: np.zeros(s.size, np.uint8), clskern.errors.ArgumentError, "got shape (12,)"),
        (lambda s: np.zeros((3, 8), np.uint8)[:, ::2], clskern.errors.ArgumentError, "C-contiguous"),
        (lambda s: s.view(np.uint8).reshape(-1)[: s.size].reshape(s.shape), clskern.errors.ArgumentError, "shares memory with the scores"),
    ],
)
def test_out_that_cannot_take_the_mask(make_out, error, match):
    scores = np.zeros((3, 4), np.float32)
    scores.flat[:] = np.linspace(0, 1, 12)
    before = scores.copy()
    with pytest.raises(error, match=re.escape(match)) as info:
        clskern.apply_threshold(scores, 0.5, out=make_out(scores))
    assert "out" in str(info.value) and isinstance(info.value, clskern.InputError)
    np.testing.assert_array_equal(scores, before)


def test_read_only_out_is_not_a_numba_error():
    with pytest.raises(ValueError, match="read-only") as info:
        clskern.apply_threshold(np.zeros(10, np.float32), 0.5, out=_read_only(10))
    assert "numba" not in type(info.value).__module__


def test_nan_scores_refused():
    with pytest.raises(clskern.NaNScoresError, match="1 NaN"):
        clskern.apply_threshold(np.array([0.1, np.nan], np.float32), 0.5, name="c")
