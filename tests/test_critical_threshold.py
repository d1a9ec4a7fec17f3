"""critical_threshold and VolumeStats.critical_threshold against the sorted-order reference."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import clskern
import naive
from strategies import epsilons, volumes


def same_value(a, b):
    """Bit-level equality of thresholds, treating -0.0 and +0.0 as the same cut."""
    a, b = np.float64(a), np.float64(b)
    return a == b or (np.isnan(a) and np.isnan(b))


@settings(max_examples=300, deadline=None)
@given(volumes(), epsilons)
def test_matches_sorted_reference(volume, epsilon):
    scores, labels, label = volume
    expected = naive.critical_threshold(scores, labels, epsilon, label)
    assert same_value(clskern.critical_threshold(scores, labels, epsilon, label=label), expected)
    stats = clskern.volume_stats(scores, labels, label=label)
    assert same_value(stats.critical_threshold(epsilon), expected)


@settings(max_examples=100, deadline=None)
@given(volumes(), st.lists(epsilons, min_size=1, max_size=20))
def test_array_epsilon(volume, eps_list):
    scores, labels, label = volume
    eps = np.array(eps_list)
    expected = [naive.critical_threshold(scores, labels, e, label) for e in eps]
    fast = clskern.critical_threshold(scores, labels, eps, label=label)
    assert fast.shape == eps.shape and fast.dtype == np.float64
    assert all(same_value(a, b) for a, b in zip(fast, expected))
    stats = clskern.volume_stats(scores, labels, label=label)
    assert all(same_value(a, b) for a, b in zip(stats.critical_threshold(eps), expected))


def test_rank_from_inequality_not_product():
    # 0.29 * 100 = 28.999999999999996, but 29 / 100 <= 0.29: k must be 29.
    scores = np.arange(100, dtype=np.float32)
    labels = np.ones(100, np.uint8)
    assert clskern.critical_threshold(scores, labels, 0.29) == 29.0
    assert clskern.volume_stats(scores, labels).critical_threshold(0.29) == 29.0


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_single_lesion_voxel(dtype):
    scores = np.linspace(0, 1, 27, dtype=dtype).reshape(3, 3, 3)
    labels = np.zeros((3, 3, 3), bool)
    labels[1, 2, 0] = True
    assert clskern.critical_threshold(scores, labels, 0.5) == float(scores[1, 2, 0])


def test_all_lesion_volume():
    rng = np.random.default_rng(3)
    scores = rng.random((5, 6, 7)).astype(np.float32)
    labels = np.ones((5, 6, 7), np.int16)
    stats = clskern.volume_stats(scores, labels)
    assert stats.n_fg == 210 and stats.bg_counts.size == 0
    assert stats.critical_threshold(0.1) == naive.critical_threshold(scores, labels, 0.1)
    assert stats.fp(0.5) == 0 and stats.fpr(0.5) == 0


def test_ties_at_the_rank():
    scores = np.array([0.1, 0.5, 0.5, 0.5, 0.9], np.float32)
    labels = np.ones(5, np.uint8)
    assert clskern.critical_threshold(scores, labels, 0.4) == np.float32(0.5)


def test_zero_thresholds_are_positive_zero():
    # -0.0 == +0.0, and np.sort may order them either way: clskern keeps one bit pattern.
    scores = np.array([-0.0, 0.0, -0.0, 0.5], np.float32)
    labels = np.ones(4, np.uint8)
    assert not np.signbit(clskern.critical_threshold(scores, labels, 0.3))
    stats = clskern.volume_stats(scores, labels)
    assert not np.signbit(stats.lesion_scores).any()
    assert not np.signbit(stats.critical_threshold(0.3))


def test_result_is_float_for_scalar_epsilon():
    scores = np.array([0.2, 0.4], np.float32)
    result = clskern.critical_threshold(scores, np.ones(2, bool), 0.0)
    assert type(result) is float and result == float(np.float32(0.2))


def test_empty_ground_truth_policies():
    scores = np.random.default_rng(0).random((4, 4)).astype(np.float32)
    labels = np.zeros((4, 4), np.uint8)
    with pytest.raises(clskern.EmptyGroundTruthError, match="no lesion voxels"):
        clskern.critical_threshold(scores, labels, 0.1)
    assert clskern.critical_threshold(scores, labels, 0.1, empty="pass") == np.inf
    assert clskern.critical_threshold(scores, labels, 0.1, empty="skip") is None
    np.testing.assert_array_equal(clskern.critical_threshold(scores, labels, [0.1, 0.2], empty="pass"), [np.inf] * 2)
    stats = clskern.volume_stats(scores, labels, name="case_7")
    with pytest.raises(clskern.EmptyGroundTruthError, match="case_7"):
        stats.critical_threshold(0.1)
    assert stats.critical_threshold(0.1, empty="pass") == np.inf


@pytest.mark.parametrize("epsilon", [-0.1, 1.0, 1.5, float("nan")])
def test_epsilon_out_of_range(epsilon):
    with pytest.raises(ValueError, match="epsilon"):
        clskern.critical_threshold(np.ones(3, np.float32), np.ones(3, bool), epsilon)
