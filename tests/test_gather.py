"""The lesion gather (clskern.cpu._gather) against NumPy, overflowing rows included."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import clskern
import naive
from clskern._binning import N_BINS
from clskern.cpu import _bins, _gather
from clskern._validate import prepare
from clskern.errors import NaNScoresError
from strategies import volumes


def gathered(scores, labels, label=None, **options):
    flat_s, flat_l, target, use_target = prepare(scores, labels, label)
    lesion_dtype = np.float64 if flat_s.dtype == np.float64 else np.float32
    return _gather.gather(flat_s, flat_l, target, use_target, **options), lesion_dtype


def expected_in_memory_order(scores, labels, label=None):
    order = "F" if scores.flags.f_contiguous and not scores.flags.c_contiguous else "C"
    y = naive.lesion_mask(labels, label).ravel(order=order)
    values = np.asarray(scores).ravel(order=order)[y].astype(np.float64)
    return values + 0.0  # -0.0 is stored as +0.0


def dense_histogram(values):
    hist = np.zeros(N_BINS, np.int64)
    np.add.at(hist, [_bins.score_bin(v) for v in values], 1)
    return hist


@settings(max_examples=150, deadline=None)
@given(volumes(), st.sampled_from([0, 1, 7, 64, _gather.CAPACITY]), st.booleans())
def test_rows_hold_the_lesion_scores_in_memory_order(volume, capacity, every_score):
    scores, labels, label = volume
    g, lesion_dtype = gathered(scores, labels, label, every_score=every_score, capacity=capacity)
    lesion, n_nan = _gather.assemble_lesions(g, lesion_dtype)
    expected = expected_in_memory_order(scores, labels, label)
    assert n_nan == 0 and lesion.dtype == lesion_dtype
    np.testing.assert_array_equal(lesion.astype(np.float64), expected)
    assert not np.signbit(lesion[lesion == 0]).any()
    assert g.complete == (expected.size <= min(capacity, scores.size))
    if g.complete:
        np.testing.assert_array_equal(g.lesion_hist.sum(axis=0), dense_histogram(expected))
    else:
        assert g.lesion_hist is None
    if every_score:
        np.testing.assert_array_equal(g.all_hist.sum(axis=0), dense_histogram(np.asarray(scores, np.float64).ravel()))
    else:
        assert g.all_hist.shape[0] == 0


@settings(max_examples=100, deadline=None)
@given(volumes(), st.lists(st.floats(0, 1), min_size=1, max_size=5))
def test_select_in_rows_equals_sorted_scores(volume, fractions):
    scores, labels, label = volume
    g, lesion_dtype = gathered(scores, labels, label)
    n_fg = int(g.counts.sum())
    ranks = np.unique([min(n_fg - 1, int(f * n_fg)) for f in fractions])
    values, n_nan = _gather.select_in_rows(g, ranks, lesion_dtype)
    expected = np.sort(expected_in_memory_order(scores, labels, label))[ranks]
    assert n_nan == 0
    np.testing.assert_array_equal(values.astype(np.float64), expected)


def several_tasks(order, lesion_fraction, seed=0):
    """A volume of 3.5 tasks; its second task in memory order all lesion (that row overflows)."""
    rng = np.random.default_rng(seed)
    shape = (7, 128, 128)
    scores = rng.random(shape, dtype=np.float32)
    scores[rng.random(shape) < 0.01] = 0.25  # ties across tasks
    labels = (rng.random(shape) < lesion_fraction).astype(np.uint8)
    if order == "F":
        scores, labels = np.asfortranarray(scores), np.asfortranarray(labels)
    flat = labels.reshape(-1, order="A")  # a view in memory order
    assert np.shares_memory(flat, labels)
    flat[_gather.TASK : 2 * _gather.TASK] = 1
    return scores, labels


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("lesion_fraction", [0.0, 0.02, 0.5])
def test_overflowing_tasks_are_gathered_again(order, lesion_fraction):
    scores, labels = several_tasks(order, lesion_fraction)
    g, lesion_dtype = gathered(scores, labels)
    assert not g.complete and (g.extra_start >= 0).sum() >= 1
    lesion, _ = _gather.assemble_lesions(g, lesion_dtype)
    np.testing.assert_array_equal(lesion, expected_in_memory_order(scores, labels))
    eps = np.array([0.0, 0.1, 0.29, 0.5, 0.9])
    expected = [naive.critical_threshold(scores, labels, e) for e in eps]
    np.testing.assert_array_equal(clskern.critical_threshold(scores, labels, eps), expected)
    stats = clskern.volume_stats(scores, labels)
    np.testing.assert_array_equal(stats.lesion_scores, np.sort(scores[labels > 0]))
    dense = np.zeros(N_BINS, np.int64)
    dense[stats.bg_bins] = stats.bg_counts
    np.testing.assert_array_equal(dense, naive.background_histogram(scores, labels))


@pytest.mark.parametrize("capacity", [3, _gather.CAPACITY])
def test_nan_lesion_scores_are_counted_on_both_paths(capacity):
    rng = np.random.default_rng(3)
    scores = rng.random(5000).astype(np.float32)
    labels = (rng.random(5000) < 0.2).astype(np.uint8)
    lesion_positions = np.flatnonzero(labels)
    scores[lesion_positions[[1, 50, 400]]] = np.nan
    scores[np.flatnonzero(labels == 0)[:5]] = np.nan  # background NaN: not read by the gather
    g, lesion_dtype = gathered(scores, labels, capacity=capacity)
    _, n_nan = _gather.assemble_lesions(g, lesion_dtype)
    assert n_nan == 3
    if g.complete:
        assert _gather.select_in_rows(g, np.array([10]), lesion_dtype) == (None, 3)
    with pytest.raises(NaNScoresError, match="3 NaN scores among its"):
        clskern.critical_threshold(scores, labels, 0.1)


def test_float16_rows_are_decoded():
    rng = np.random.default_rng(4)
    scores = rng.random(3000).astype(np.float16)
    scores[:10] = np.float16(-0.0)
    labels = np.ones(3000, np.uint8)
    for capacity in (5, _gather.CAPACITY):
        g, lesion_dtype = gathered(scores, labels, capacity=capacity)
        lesion, _ = _gather.assemble_lesions(g, lesion_dtype)
        assert lesion.dtype == np.float32
        np.testing.assert_array_equal(lesion, scores.astype(np.float32) + np.float32(0.0))
        assert not np.signbit(lesion[:10]).any()


def test_members_never_overrun_a_histogram_that_disagrees():
    rng = np.random.default_rng(6)
    scores = np.full(300, 0.5, np.float32)
    labels = (rng.random(300) < 0.5).astype(np.uint8)
    g, _ = gathered(scores, labels)
    b = _bins.score_bin(0.5)
    wrong = g.lesion_hist.copy()
    wrong[:, b] = 1  # fewer than the rows hold
    with pytest.raises(RuntimeError, match="stale Numba cache"):
        _gather._bin_members_by_chunk(g.rows, g.counts, wrong, b)
