"""Numba CPU kernels: the only code that touches every voxel.

All kernels take flat (1-D) views of scores and labels in the same memory
order, so C-, Fortran-ordered and nibabel volumes are read in place. The
volume is cut into blocks of ``BLOCK`` voxels, dealt to threads in groups of
``GROUP`` blocks:

1. ``lesion_counts`` reads only the labels (a fifth of the bytes of a float32
   volume) and counts lesion voxels per block.
2. A prefix sum of those counts gives each block its slot in the output, so
   the gather runs in parallel without atomics and keeps memory order, and
   ``gather_lesion_scores`` visits only blocks holding lesion voxels: the
   scores of a sparse lesion are read only near the lesion (blocks are small,
   128 voxels, so a lesion drags few background scores along).
3. ``stats_pass`` reads every score once and adds one to its bin in its
   chunk's histogram row, without looking at the labels; then it copies the
   lesion scores of the group's lesion blocks, still in cache. The caller
   takes the lesion scores' bins back out of the histogram, which leaves the
   background histogram: exact, and no label branch in the hot loop.

Counting is exact: every lesion score is copied as is (but for -0.0, copied
as +0.0: equal values then share one bit pattern, so sorted lesion scores and
thresholds are the same bits whatever the sort), and the k-th order statistic
is selected from those copies afterwards.

Inner loops run over slices (``labels[lo:hi]``) with indices from 0: Numba
then knows they are never negative, skips its wraparound check, and LLVM
vectorises them (an order of magnitude on the label count).
"""

import numpy as np
from numba import njit, prange

from ._binning import N_BINS, score_bin
from ._scalars import score_value

BLOCK = 128  # gather granularity: lesion-free blocks are never read again
GROUP = 16  # blocks per unit of parallel work (2048 voxels)
HISTOGRAM_RUN = 256  # bins computed ahead of the scatter (fits L1 with the row)


@njit(cache=True, inline="always")
def _count_block(labels, target, use_target):
    # int32 lanes: a block holds far fewer than 2**31 voxels, and narrow
    # accumulators vectorise wider (1.6x over int64 on the label count).
    c = np.int32(0)
    if use_target:
        for i in range(labels.size):
            c += np.int32(labels[i] == target)
    else:
        for i in range(labels.size):
            c += np.int32(labels[i] > 0)
    return c


@njit(parallel=True, cache=True)
def lesion_counts(labels, target, use_target):
    """Lesion voxels in each block of ``BLOCK`` labels (int32 array)."""
    n = labels.size
    n_blocks = (n + BLOCK - 1) // BLOCK
    counts = np.empty(n_blocks, np.int32)
    for g in prange((n_blocks + GROUP - 1) // GROUP):
        for b in range(g * GROUP, min(n_blocks, (g + 1) * GROUP)):
            counts[b] = _count_block(labels[b * BLOCK : min(n, (b + 1) * BLOCK)], target, use_target)
    return counts


@njit(cache=True)
def _gather_block(scores, labels, target, use_target, out):
    """Copy a block's lesion scores to ``out`` (exactly their number of slots).

    -0.0 is copied as +0.0 (``+ 0.0``): one bit pattern per value.
    """
    o = 0
    if use_target:
        for i in range(labels.size):
            if labels[i] == target:
                out[o] = score_value(scores[i]) + 0.0
                o += 1
    else:
        for i in range(labels.size):
            if labels[i] > 0:
                out[o] = score_value(scores[i]) + 0.0
                o += 1


@njit(cache=True)
def _gather_blocks(scores, labels, target, use_target, offsets, out, first, last):
    """Gather the lesion blocks among blocks ``first..last-1``."""
    n = labels.size
    for b in range(first, last):
        if offsets[b + 1] > offsets[b]:
            lo, hi = b * BLOCK, min(n, (b + 1) * BLOCK)
            _gather_block(scores[lo:hi], labels[lo:hi], target, use_target, out[offsets[b] : offsets[b + 1]])


@njit(parallel=True, cache=True)
def gather_lesion_scores(scores, labels, target, use_target, offsets, out):
    """Copy the lesion scores of block b to ``out[offsets[b]:offsets[b+1]]``.

    Blocks without lesion voxels are skipped, so their scores are never read.
    """
    n_blocks = offsets.size - 1
    for g in prange((n_blocks + GROUP - 1) // GROUP):
        _gather_blocks(scores, labels, target, use_target, offsets, out, g * GROUP, min(n_blocks, (g + 1) * GROUP))


@njit(cache=True)
def _histogram_run(scores, row, bins):
    # Two loops: the bin arithmetic vectorises on its own, the scatter cannot.
    for i in range(scores.size):
        bins[i] = score_bin(score_value(scores[i]))
    for i in range(scores.size):
        row[bins[i]] += 1


@njit(cache=True)
def _histogram(scores, row, bins):
    """Add scores to ``row``, ``bins.size`` at a time (twice as fast as one loop)."""
    for lo in range(0, scores.size, bins.size):
        hi = min(scores.size, lo + bins.size)
        _histogram_run(scores[lo:hi], row, bins[: hi - lo])


@njit(parallel=True, cache=True)
def stats_pass(scores, labels, target, use_target, offsets, lesion_out, hist):
    """Histogram every score and gather the lesion scores, in one read.

    ``hist`` has one row per chunk of consecutive groups (the caller sums the
    rows), so threads never share a counter. NaN scores land in the first or
    last bin (see ``count_nan``).
    """
    n = labels.size
    n_blocks = offsets.size - 1
    n_groups = (n_blocks + GROUP - 1) // GROUP
    n_chunks = hist.shape[0]
    for c in prange(n_chunks):
        row = hist[c]
        bins = np.empty(HISTOGRAM_RUN, np.int32)
        for g in range(c * n_groups // n_chunks, (c + 1) * n_groups // n_chunks):
            first, last = g * GROUP, min(n_blocks, (g + 1) * GROUP)
            _histogram(scores[first * BLOCK : min(n, last * BLOCK)], row, bins)
            _gather_blocks(scores, labels, target, use_target, offsets, lesion_out, first, last)


@njit(cache=True)
def score_bins(values):
    """Histogram bin of each score in a (small) 1-D array."""
    out = np.empty(values.size, np.int64)
    for i in range(values.size):
        out[i] = score_bin(score_value(values[i]))
    return out


@njit(cache=True)
def select_ranks(values, ranks):
    """``sorted(values)[k]`` for each k in ``ranks``, without sorting ``values``.

    One pass counts the values per histogram bin (bins are disjoint value
    ranges in order), so the bin holding rank k is known; only that bin's
    members are then copied out and partitioned. Exact: every value below that
    bin is smaller, every value above it larger. ``values`` hold no NaN.
    """
    bins = score_bins(values)
    start = np.zeros(N_BINS + 1, np.int64)
    for i in range(bins.size):
        start[bins[i] + 1] += 1
    for b in range(N_BINS):
        start[b + 1] += start[b]
    out = np.empty(ranks.size, values.dtype)
    for j in range(ranks.size):
        b = np.searchsorted(start, ranks[j], side="right") - 1
        members = np.empty(start[b + 1] - start[b], values.dtype)
        m = 0
        for i in range(bins.size):
            if bins[i] == b:
                members[m] = values[i]
                m += 1
        out[j] = np.partition(members, ranks[j] - start[b])[ranks[j] - start[b]]
    return out


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
