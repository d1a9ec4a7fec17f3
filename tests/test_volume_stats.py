"""VolumeStats: exact counts, the histogram, curves and serialisation."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import clskern
import naive
from clskern._binning import N_BINS, bin_lower_edges
from clskern.cpu._bins import bin_index
from clskern.cpu._kernels import score_bins
from strategies import volumes


@settings(max_examples=200, deadline=None)
@given(volumes())
def test_lesion_scores_and_histogram_match_reference(volume):
    scores, labels, label = volume
    stats = clskern.volume_stats(scores, labels, label=label)
    y = naive.lesion_mask(labels, label)
    expected_lesion = np.sort(np.asarray(scores, np.float64)[y])
    assert stats.n_voxels == scores.size and stats.n_fg == int(y.sum())
    np.testing.assert_array_equal(stats.lesion_scores.astype(np.float64), expected_lesion)
    dense = np.zeros(N_BINS, np.int64)
    dense[stats.bg_bins] = stats.bg_counts
    np.testing.assert_array_equal(dense, naive.background_histogram(scores, labels, label))


@settings(max_examples=150, deadline=None)
@given(volumes(), st.lists(st.floats(-5, 5, allow_nan=False, width=32), min_size=1, max_size=6))
def test_exact_lesion_counts(volume, thresholds):
    scores, labels, label = volume
    stats = clskern.volume_stats(scores, labels, label=label)
    t = np.array(thresholds + [0.0, 0.5, np.inf, -np.inf])
    expected_fn = [naive.fn(scores, labels, x, label) for x in t]
    np.testing.assert_array_equal(stats.fn(t), expected_fn)
    np.testing.assert_array_equal(stats.tp(t), stats.n_fg - np.array(expected_fn))
    np.testing.assert_array_equal(stats.fnr(t), np.array(expected_fn, np.float64) / stats.n_fg)


@settings(max_examples=150, deadline=None)
@given(volumes(), st.lists(st.floats(-5, 5, allow_nan=False), min_size=1, max_size=6))
def test_fp_exact_at_edges_and_bounded_inside_bins(volume, thresholds):
    scores, labels, label = volume
    stats = clskern.volume_stats(scores, labels, label=label)
    edges = bin_lower_edges()
    # Exact at bin edges, including the ones users meet most.
    for t in [0.0, 0.5, 0.75, 1.0, 2.0**-20, -1.0, -np.inf]:  # +inf shares the top bin: not an edge
        assert stats.fp(t) == naive.fp(scores, labels, t, label)
    # Inside a bin: between the exact counts at its two edges.
    for t in thresholds:
        j = np.searchsorted(edges, t, side="right") - 1
        low, high = edges[j], edges[j + 1]
        assert naive.fp(scores, labels, high, label) <= stats.fp(t) <= naive.fp(scores, labels, low, label)


def test_curves_against_counts():
    rng = np.random.default_rng(1)
    scores = rng.random((20, 20, 10)).astype(np.float32)
    labels = rng.random((20, 20, 10)) < 0.1
    stats = clskern.volume_stats(scores, labels)
    t = np.array([0.25, 0.5, 0.75])  # bin edges: every curve is exact here
    fp = np.array([naive.fp(scores, labels, x) for x in t])
    fn = np.array([naive.fn(scores, labels, x) for x in t])
    tp = labels.sum() - fn
    np.testing.assert_array_equal(stats.fp(t), fp)
    np.testing.assert_allclose(stats.dice(t), 2 * tp / (2 * tp + fp + fn), rtol=0, atol=0)
    np.testing.assert_allclose(stats.fpr(t), fp / (~labels).sum(), rtol=0, atol=0)
    np.testing.assert_allclose(stats.pc(t), (tp + fp) / labels.size, rtol=0, atol=0)
    assert isinstance(stats.dice(0.5), float)


def test_histogram_resolution_is_fine_for_probabilities():
    # 256 bins per power of two: in [0.5, 1) a bin is 2**-9 wide.
    edges = bin_lower_edges()
    inside = edges[(edges >= 0.5) & (edges <= 1.0)]
    np.testing.assert_allclose(np.diff(inside), 2.0**-9)


SPECIAL_VALUES = [-np.inf, -2.0**40, -2.0**32, -1.0, -1e-300, -0.0, 0.0, 1e-300, 2.0**-32, 0.5, 1.0, 2.0**32, np.inf]


def test_bin_index_edges_and_specials():
    edges = bin_lower_edges()
    assert np.all(np.diff(edges) > 0)
    for x in SPECIAL_VALUES + list(edges[1:-1:97]) + list(np.nextafter(edges[1:-1:97], -np.inf)):
        k = bin_index(x)
        assert edges[k] <= x < edges[k + 1] or (x == np.inf and k == N_BINS - 1), x


def test_float32_bins_equal_float64_bins():
    """float32 bins come from 16-lane int32 arithmetic, float64 ones from scalar int64."""
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2**32, 200_000, dtype=np.uint64).astype(np.uint32)
    every_4099th = np.arange(0, 2**32, 4099, dtype=np.uint64).astype(np.uint32)  # all exponents and signs
    values = np.concatenate([bits, every_4099th]).view(np.float32)
    values = np.concatenate([values[~np.isnan(values)], np.float32(SPECIAL_VALUES), bin_lower_edges()[1:-1].astype(np.float32)])
    np.testing.assert_array_equal(score_bins(values), score_bins(values.astype(np.float64)))
    half = np.clip(values, -65504, 65504).astype(np.float16)
    np.testing.assert_array_equal(score_bins(half.view(np.uint16)), score_bins(half.astype(np.float64)))


def test_smooth_maps_use_few_bytes():
    x = np.linspace(0, 1, 64)
    scores = (x[:, None, None] * x[None, :, None] * x[None, None, :]).astype(np.float32)
    labels = scores > 0.6
    stats = clskern.volume_stats(scores, labels)
    assert stats.nbytes < 0.1 * scores.nbytes


@settings(max_examples=50, deadline=None)
@given(st.booleans().flatmap(lambda w: volumes(with_lesion=w)))
def test_bytes_round_trip(volume):
    scores, labels, label = volume
    stats = clskern.volume_stats(scores, labels, label=label, name="case 1")
    again = clskern.VolumeStats.from_bytes(stats.to_bytes())
    assert again == stats
    assert again.lesion_scores.dtype == stats.lesion_scores.dtype


def test_from_bytes_rejects_garbage():
    with pytest.raises(clskern.InputError, match="not clskern volume statistics"):
        clskern.VolumeStats.from_bytes(b"definitely not an npz")
    with pytest.raises(clskern.InputError, match=r"not an \.npz archive\)$"):  # no allow_pickle advice
        clskern.VolumeStats.from_bytes(b'{"epsilon": 0.2, "threshold": 0.5}')


GOOD = dict(n_voxels=10, n_fg=2, lesion_scores=np.float32([0.1, 0.3]), bg_bins=[5, 9], bg_counts=[3, 5])


@pytest.mark.parametrize(
    "change,message",
    [
        (dict(lesion_scores=np.float32([0.1])), "lesion scores"),
        (dict(lesion_scores=np.float32([0.3, 0.1])), "sorted"),
        (dict(lesion_scores=np.float32([0.1, np.nan])), "NaN"),
        (dict(lesion_scores=np.array([1, 3])), "float32/float64"),
        (dict(n_voxels=1, n_fg=2), "n_voxels=1"),
        (dict(bg_bins=[5, N_BINS]), "in range"),
        (dict(bg_bins=[9, 5]), "increasing"),
        (dict(bg_counts=[9, -1]), "counts positive"),
        (dict(bg_counts=[3, 4]), "do not add up"),
        (dict(bg_bins=[5]), "one length"),
    ],
)
def test_inconsistent_statistics_refused(change, message):
    assert clskern.VolumeStats(**GOOD).n_bg == 8
    with pytest.raises(clskern.InputError, match=message):
        clskern.VolumeStats(**{**GOOD, **change})


def test_damaged_bytes_refused():
    stats = clskern.VolumeStats(**GOOD, name="c1")
    damaged = clskern.VolumeStats.__new__(clskern.VolumeStats)
    for slot in clskern.VolumeStats.__slots__:
        setattr(damaged, slot, getattr(stats, slot))
    damaged.lesion_scores = np.float32([0.3, 0.1])
    with pytest.raises(clskern.InputError, match="c1.*sorted"):
        clskern.VolumeStats.from_bytes(damaged.to_bytes())
