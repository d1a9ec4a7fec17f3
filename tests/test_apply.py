"""apply_threshold against ``scores >= threshold``."""

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


def test_nan_scores_refused():
    with pytest.raises(clskern.NaNScoresError, match="1 NaN"):
        clskern.apply_threshold(np.array([0.1, np.nan], np.float32), 0.5, name="c")
