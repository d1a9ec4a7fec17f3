"""Numba CPU kernels over whole volumes: histogram, NaN count, threshold mask.

All kernels take flat (1-D) views of scores in memory order, so C-,
Fortran-ordered and nibabel volumes are read in place, cut into blocks of
``BLOCK`` voxels for the threads. The lesion gather lives in ``_gather``.

``histogram`` adds every score to its bin without looking at the labels; the
caller takes the lesion scores' bins back out afterwards, which leaves the
background histogram: exact, and no label branch in the hot loop.

Inner loops run over slices (``scores[lo:hi]``) with indices from 0: Numba
then knows they are never negative, skips its wraparound check, and LLVM
vectorises them.
"""

import numpy as np
from numba import njit, prange, types
from numba.extending import overload

from .._binning import N_BINS
from ._bins import score_bin
from ._scalars import score_value
from ._simd import COMPRESS_LANES, bins16_f32

BLOCK = 128  # voxels per unit of parallel work in the whole-volume kernels
HISTOGRAM_RUN = 256  # bins computed ahead of the scatter (fits L1 with the row)
assert N_BINS <= 1 << 16  # bin indices fit the uint16 buffer of ``histogram``


def fill_bins(scores, bins):
    """``bins[i] = score_bin(scores[i])`` (uint16 ``bins``); float32 16 lanes at a time."""
    for i in range(scores.size):
        bins[i] = score_bin(score_value(scores[i]))


@overload(fill_bins, inline="always")
def _fill_bins_overload(scores, bins):
    if scores.dtype == types.float32:

        def fill_float32(scores, bins):
            whole = scores.size - scores.size % COMPRESS_LANES
            for lo in range(0, whole, COMPRESS_LANES):
                bins16_f32(scores, lo, bins, lo)
            for i in range(whole, scores.size):
                bins[i] = score_bin(scores[i])

        return fill_float32

    def fill(scores, bins):
        for i in range(scores.size):
            bins[i] = score_bin(score_value(scores[i]))

    return fill


@njit(cache=True)
def _histogram_run(scores, row, bins):
    # Two loops: the bin arithmetic vectorises, the scatter cannot.
    fill_bins(scores, bins)
    for i in range(scores.size):
        row[bins[i]] += 1


@njit(cache=True)
def histogram(scores, row, bins):
    """Add scores to ``row``, ``bins.size`` at a time (twice as fast as one loop).

    ``bins`` is uint16 (every bin index fits): half the bytes of int32 made
    the scatter 1.3 x faster.
    """
    for lo in range(0, scores.size, bins.size):
        hi = min(scores.size, lo + bins.size)
        _histogram_run(scores[lo:hi], row, bins[: hi - lo])


@njit(cache=True)
def score_bins(values):
    """Histogram bin of each score of a 1-D array (uint16; the kernels' own path)."""
    out = np.empty(values.size, np.uint16)
    fill_bins(values, out)
    return out


@njit(parallel=True, cache=True)
def bin_counts(values, n_chunks):
    """Histogram of a 1-D array, one int32 row per chunk (the caller sums them)."""
    n = values.size
    hist = np.zeros((n_chunks, N_BINS), np.int32)
    for c in prange(n_chunks):
        bins = np.empty(HISTOGRAM_RUN, np.uint16)
        histogram(values[c * n // n_chunks : (c + 1) * n // n_chunks], hist[c], bins)
    return hist


@njit(cache=True)
def background_bins(all_rows, lesion_rows):
    """``(bins, counts)`` of the non-empty bins of all scores minus lesion scores.

    Both arguments are int32 histogram rows to be summed; ``bins`` ascending.
    """
    counts = np.zeros(all_rows.shape[1], np.int64)
    for c in range(all_rows.shape[0]):
        row = all_rows[c]
        for b in range(row.size):
            counts[b] += row[b]
    for c in range(lesion_rows.shape[0]):
        row = lesion_rows[c]
        for b in range(row.size):
            counts[b] -= row[b]
    n = 0
    for b in range(counts.size):
        n += counts[b] != 0
    bins = np.empty(n, np.uint32)
    nonzero = np.empty(n, np.int64)
    j = 0
    for b in range(counts.size):
        if counts[b] != 0:
            bins[j] = b
            nonzero[j] = counts[b]
            j += 1
    return bins, nonzero


@njit(cache=True)
def _nan_block(scores):
    k = 0
    for i in range(scores.size):
        x = score_value(scores[i])
        k += x != x
    return k


@njit(parallel=True, cache=True)
def count_nan(scores):
    """NaN scores in a flat array (run only when the end bins are not empty)."""
    n = scores.size
    n_blocks = max(1, (n + BLOCK - 1) // BLOCK)
    counts = np.empty(n_blocks, np.int64)
    for b in prange(n_blocks):
        counts[b] = _nan_block(scores[b * BLOCK : min(n, (b + 1) * BLOCK)])
    return counts.sum()


@njit(cache=True)
def _mask_block(scores, threshold, out):
    k = 0
    for i in range(scores.size):
        x = np.float64(score_value(scores[i]))
        out[i] = np.uint8(x >= threshold)
        k += x != x
    return k


@njit(parallel=True, cache=True)
def threshold_mask(scores, threshold, out):
    """``out[i] = scores[i] >= threshold`` as 0/1; returns the NaN count."""
    n = scores.size
    n_blocks = max(1, (n + BLOCK - 1) // BLOCK)
    nans = np.zeros(n_blocks, np.int64)
    for b in prange(n_blocks):
        lo, hi = b * BLOCK, min(n, (b + 1) * BLOCK)
        nans[b] = _mask_block(scores[lo:hi], threshold, out[lo:hi])
    return nans.sum()
