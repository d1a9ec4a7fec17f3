"""Numba CPU kernels: the only code that touches every voxel.

All kernels take flat (1-D) views of scores and labels in the same memory
order, so C-, Fortran-ordered and nibabel volumes are read in place. The
volume is cut into blocks of ``BLOCK`` voxels:

1. ``lesion_counts`` reads only the labels (a fifth of the bytes of a float32
   volume) and counts lesion voxels per block.
2. A prefix sum of those counts gives each block its slot in the output, so
   the gather runs in parallel without atomics and keeps memory order, and
   ``gather_lesion_scores`` can skip lesion-free blocks: the scores of a sparse
   lesion are read only where the lesion is.
3. ``stats_pass`` reads every score once: lesion scores go to their slots,
   background scores into a per-thread histogram (``_binning``).

Counting is exact: every lesion score is copied as is, and the k-th order
statistic is selected from those copies afterwards.
"""

import numpy as np
from numba import njit, prange

from ._binning import bin_index
from ._scalars import is_lesion, score_value

BLOCK = 1 << 14


@njit(parallel=True, cache=True)
def lesion_counts(labels, target, use_target):
    """Lesion voxels in each block of ``BLOCK`` labels (int64 array)."""
    n = labels.size
    n_blocks = (n + BLOCK - 1) // BLOCK
    counts = np.empty(n_blocks, np.int64)
    for b in prange(n_blocks):
        c = 0
        for i in range(b * BLOCK, min(n, (b + 1) * BLOCK)):
            if is_lesion(labels[i], target, use_target):
                c += 1
        counts[b] = c
    return counts


@njit(parallel=True, cache=True)
def gather_lesion_scores(scores, labels, target, use_target, offsets, out):
    """Copy the lesion scores of block b to ``out[offsets[b]:offsets[b+1]]``.

    Blocks without lesion voxels are skipped, so their scores are never read.
    """
    n = labels.size
    n_blocks = offsets.size - 1
    for b in prange(n_blocks):
        o = offsets[b]
        if offsets[b + 1] == o:
            continue
        for i in range(b * BLOCK, min(n, (b + 1) * BLOCK)):
            if is_lesion(labels[i], target, use_target):
                out[o] = score_value(scores[i])
                o += 1


@njit(parallel=True, cache=True)
def stats_pass(scores, labels, target, use_target, offsets, lesion_out, hist):
    """Gather lesion scores and histogram background scores in one read.

    ``hist`` has one row per chunk (the rows are summed by the caller), so
    threads never share a counter. Runs of voxels in one bin (smooth score
    maps have long ones) are added at once. Returns the NaN count per chunk.
    """
    n = labels.size
    n_blocks = offsets.size - 1
    n_chunks = hist.shape[0]
    nans = np.zeros(n_chunks, np.int64)
    for c in prange(n_chunks):
        b0 = c * n_blocks // n_chunks
        b1 = (c + 1) * n_blocks // n_chunks
        o = offsets[b0]
        row = hist[c]
        previous = -1
        run = 0
        n_nan = 0
        for i in range(b0 * BLOCK, min(n, b1 * BLOCK)):
            x = score_value(scores[i])
            if is_lesion(labels[i], target, use_target):
                lesion_out[o] = x
                o += 1
                if x != x:
                    n_nan += 1
            elif x != x:
                n_nan += 1
            else:
                k = bin_index(x)
                if k == previous:
                    run += 1
                else:
                    if run:
                        row[previous] += run
                    previous = k
                    run = 1
        if run:
            row[previous] += run
        nans[c] = n_nan
    return nans


@njit(parallel=True, cache=True)
def threshold_mask(scores, threshold, out):
    """``out[i] = scores[i] >= threshold`` as 0/1; returns the NaN count."""
    n = scores.size
    n_chunks = max(1, (n + BLOCK - 1) // BLOCK)
    nans = np.zeros(n_chunks, np.int64)
    for c in prange(n_chunks):
        k = 0
        for i in range(c * BLOCK, min(n, (c + 1) * BLOCK)):
            x = np.float64(score_value(scores[i]))
            out[i] = np.uint8(x >= threshold)
            if x != x:
                k += 1
        nans[c] = k
    return nans.sum()
