"""Numba CPU kernels over whole volumes: histogram, extremes, NaN count, threshold mask.

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
from numba import prange, types
from numba.extending import overload

from .._binning import N_BINS
from .._jit import njit
from ._bins import score_bin
from ._scalars import score_value
from ._simd import COMPRESS_LANES, bins16_f32

BLOCK = 128  # voxels per unit of parallel work in the whole-volume kernels
HISTOGRAM_RUN = 256  # bins computed ahead of the scatter (fits L1 with the row)
RANGE_BLOCK = 1 << 15  # voxels per call of fold_extremes in ``extremes``
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
def fold_extremes(signed, unsigned, low_high, top, c):
    """Fold a block of raw score bit patterns into row ``c``: ``low_high[c]`` (signed min, max), ``top[c]`` (unsigned max).

    ``signed`` and ``unsigned`` are the int and uint views of the same scores
    (float16 bits, float32, float64) and ``low_high``/``top`` arrays of those
    dtypes: no arithmetic, only three min/max reductions that vectorise at the
    full width of the bit patterns. The scores' own minimum and maximum follow
    exactly from the three (``clskern.cpu._ops.extremes_of``).
    """
    smin, smax, umax = low_high[c, 0], low_high[c, 1], top[c]
    for i in range(signed.size):
        smin = min(smin, signed[i])
        smax = max(smax, signed[i])
        umax = max(umax, unsigned[i])
    low_high[c, 0], low_high[c, 1], top[c] = smin, smax, umax


@njit(parallel=True, cache=True)
def extremes(signed, unsigned, low_high, top):
    """``fold_extremes`` over a whole flat volume, one row per chunk (seeded by the caller, combined by it)."""
    n = signed.size
    n_chunks = top.size
    for c in prange(n_chunks):
        lo, hi = c * n // n_chunks, (c + 1) * n // n_chunks
        for b in range(lo, hi, RANGE_BLOCK):
            e = min(hi, b + RANGE_BLOCK)
            fold_extremes(signed[b:e], unsigned[b:e], low_high, top, c)


_VIEWS = {2: (np.int16, np.uint16), 4: (np.int32, np.uint32), 8: (np.int64, np.uint64)}


def extremes_buffers(flat, n_rows):
    """``(signed, unsigned, low_high, top)`` for ``fold_extremes`` over the flat scores ``flat``.

    The int and uint views of ``flat`` (float16 volumes arrive as uint16
    bits) and ``n_rows`` seeded rows: signed (max, min) and unsigned 0, so
    any score replaces them.
    """
    sint, uint = _VIEWS[flat.dtype.itemsize]
    low_high = np.empty((n_rows, 2), sint)
    low_high[:, 0], low_high[:, 1] = np.iinfo(sint).max, np.iinfo(sint).min
    return flat.view(sint), flat.view(uint), low_high, np.zeros(n_rows, uint)


def extremes_of(low_high, top, score_dtype, value_dtype):
    """The exact ``(min, max)`` of the folded scores, as ``value_dtype`` scalars (-0.0 as +0.0).

    Non-negative floats order as their signed bit patterns, negative ones in
    reverse, and every negative pattern is above every non-negative one as
    unsigned. So the maximum is the largest signed pattern when that is
    non-negative (else, all negative, the smallest), and the minimum is the
    largest unsigned pattern when that is negative (else the smallest
    signed). NaN would surface as the maximum (or minimum): callers have
    raised for it already. ``score_dtype``: the scores' float dtype
    (float16/32/64).
    """
    smin, smax, umax = low_high[:, 0].min(), low_high[:, 1].max(), top.max()
    sint = low_high.dtype.type
    negative_top = sint(np.array(umax).view(sint))
    high = smax if smax >= 0 else smin
    low = negative_top if negative_top < 0 else smin
    values = np.array([low, high], sint).view(score_dtype).astype(value_dtype) + value_dtype(0.0)
    return values[0], values[1]


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
