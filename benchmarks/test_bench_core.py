"""pytest-benchmark: clskern against the memory limit and what users write.

Every benchmark asserts its result, so a fast wrong answer never looks good.
Run: ``python -m pytest benchmarks/test_bench_core.py`` (the test suite runs it
with ``--benchmark-disable`` on a small volume as a correctness check).
"""

import numpy as np
import pytest

import clskern
from baselines import authors_bisection, numpy_partition, stream_pass
from volumes import SHAPE, benchmark_volume

EPSILON = 0.2


@pytest.fixture(scope="module", params=["F", "C"])
def volume(request):
    timing = request.config.getoption("benchmark_enable") or not request.config.getoption("benchmark_disable")
    shape = SHAPE if timing else (64, 48, 32)
    scores, labels = benchmark_volume(shape, order=request.param)
    expected = float(np.sort(scores[labels > 0])[int(EPSILON * np.count_nonzero(labels))])
    clskern.volume_stats(scores[:2], labels[:2])  # compile or load the cache first
    clskern.critical_threshold(scores, labels, EPSILON)
    return scores, labels, expected


@pytest.mark.benchmark(group="critical-threshold")
def test_stream_pass(benchmark, volume):
    scores, labels, _ = volume
    assert benchmark(stream_pass, scores, labels) == pytest.approx(float(np.sum(scores * labels, dtype=np.float64)), rel=1e-6)


@pytest.mark.benchmark(group="critical-threshold")
def test_critical_threshold(benchmark, volume):
    scores, labels, expected = volume
    assert benchmark(clskern.critical_threshold, scores, labels, EPSILON) == expected


@pytest.mark.benchmark(group="critical-threshold")
def test_volume_stats(benchmark, volume):
    scores, labels, expected = volume
    assert benchmark(clskern.volume_stats, scores, labels).critical_threshold(EPSILON) == expected


@pytest.mark.benchmark(group="critical-threshold")
def test_numpy_partition(benchmark, volume):
    scores, labels, expected = volume
    assert benchmark(numpy_partition, scores, labels, EPSILON) == expected


@pytest.mark.benchmark(group="critical-threshold")
def test_authors_bisection(benchmark, volume):
    scores, labels, expected = volume
    assert abs(benchmark(authors_bisection, scores, labels, EPSILON) - expected) < 1e-3
