"""Radix sort and rank selection of scores (clskern.cpu._radix) against np.sort, bit for bit."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clskern.cpu import _radix

SPECIALS = [0.0, 1.0, -1.0, np.inf, -np.inf, 1e-40, -1e-40, 1e-45, -1e-45, 0.5, 3.4e38, -3.4e38]  # all float32


def scores_arrays(dtype):
    width = 32 if dtype == np.float32 else 64
    floats = st.floats(allow_nan=False, width=width).map(lambda x: x + 0.0)  # -0.0 never reaches the sort
    specials = st.sampled_from([dtype(v) for v in SPECIALS] + [np.finfo(dtype).tiny, np.finfo(dtype).smallest_subnormal])
    return st.lists(st.one_of(floats, specials), max_size=300).map(lambda v: np.array(v, dtype))


def bits(values):
    return values.view(np.uint32 if values.dtype == np.float32 else np.uint64)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([np.float32, np.float64]).flatmap(scores_arrays), st.data())
def test_sort_and_select_equal_numpy(values, data):
    expected = np.sort(values)
    got = _radix.sort_scores(values.copy())
    np.testing.assert_array_equal(bits(got), bits(expected))
    if values.size:
        ranks = np.unique(data.draw(st.lists(st.integers(0, values.size - 1), min_size=1, max_size=8)))
        np.testing.assert_array_equal(bits(_radix.select_ranks(values, ranks)), bits(expected[ranks]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("style", ["uniform", "ties", "one value", "logits"])
def test_parallel_sort_of_many_scores(dtype, style):
    rng = np.random.default_rng(5)
    n = 3 * _radix._PARALLEL_ABOVE + 11
    if style == "uniform":
        values = rng.random(n)
    elif style == "ties":
        values = np.round(rng.random(n) * 20) / 20
    elif style == "one value":
        values = np.full(n, 0.75)
    else:
        values = rng.normal(0, 8, n) * 10.0 ** rng.integers(-6, 4, n)
    values = values.astype(dtype)
    expected = np.sort(values)
    np.testing.assert_array_equal(bits(_radix.sort_scores(values.copy())), bits(expected))
    ranks = np.array([0, n // 3, n // 3 + 1, n - 1])
    np.testing.assert_array_equal(bits(_radix.select_ranks(values, ranks)), bits(expected[ranks]))
