"""What clskern is measured against: the memory limit and what users write."""

import numpy as np
from numba import njit, prange


_BLOCK = 1 << 16


@njit(cache=True, fastmath=True)
def _stream_block(scores, labels):
    total = 0.0
    for i in range(scores.size):
        total += scores[i] * labels[i]
    return total


@njit(parallel=True, cache=True)
def _stream(scores, labels):
    # Blocks over slices, fastmath sums: vectorised, so memory is the limit.
    n = scores.size
    n_blocks = (n + _BLOCK - 1) // _BLOCK
    partial = np.empty(n_blocks)
    for b in prange(n_blocks):
        lo, hi = b * _BLOCK, min(n, (b + 1) * _BLOCK)
        partial[b] = _stream_block(scores[lo:hi], labels[lo:hi])
    return partial.sum()


def stream_pass(scores, labels):
    """One parallel Numba pass reading every score and label once: the memory limit."""
    order = "F" if scores.flags.f_contiguous and not scores.flags.c_contiguous else "C"
    return _stream(scores.ravel(order=order), labels.ravel(order=order))


def numpy_partition(scores, labels, epsilon):
    """What users write: boolean indexing, then a selection."""
    lesion = scores[labels > 0]
    n = lesion.size
    k = max(j for j in (int(np.floor(epsilon * n)) - 1, int(np.floor(epsilon * n)), int(np.floor(epsilon * n)) + 1) if 0 <= j < n and j / n <= epsilon)
    return float(np.partition(lesion, k)[k])


def authors_bisection(scores, labels, epsilon, tolerance=1e-4):
    """The authors' approach: bisect the threshold to 1e-4, one full pass per step."""
    y = labels > 0
    n = np.count_nonzero(y)
    low, high = float(scores.min()), float(scores.max())
    scaled = (scores - low) / (high - low)  # their per-case min-max rescaling
    lo, hi = 0.0, 1.0
    while hi - lo > tolerance:
        mid = (lo + hi) / 2
        if np.count_nonzero(y & (scaled < mid)) / n <= epsilon:
            lo = mid
        else:
            hi = mid
    return lo * (high - low) + low
