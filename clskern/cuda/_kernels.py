"""numba-cuda kernels: the only GPU code that touches every voxel.

The volume (flat, in memory order, as on the CPU) is cut into tiles of
``TILE = TPB * ITEMS`` voxels; one thread block works on one tile at a time
(blocks loop over tiles, so a grid of a few blocks per SM covers any volume).

1. ``count_kernel`` reads only the labels and counts lesion voxels per tile;
   ``scan_kernel`` turns the counts into each tile's slot in the output
   (exclusive prefix sum, on the device: only the total comes back).
2. ``stats_kernel`` reads every score once. Background scores go to a
   histogram: a privatised window of bins in shared memory (flushed to global
   memory once per block), global atomics for bins outside it, and runs of
   equal bins in one thread are added at once. Lesion scores go to their
   tile's slot in memory order, so the gathered array equals the CPU's
   element for element (which makes the later sort or selection identical).
   ``gather_kernel`` does only the lesion part, and only in tiles that hold
   lesion voxels (the scores of lesion-free tiles are never read).
3. ``digit_kernel`` counts lesion scores per digit (10 to 12 bits) of an
   order key under a fixed prefix: a few passes select the k-th smallest
   exactly (radix selection).
4. ``mask_kernel`` writes ``scores >= threshold`` as uint8 in place.
5. ``range_kernel`` finds the exact minimum and maximum score (as order
   keys, a block reduction and one atomic per block); ``stats_kernel`` does
   the same in its pass.

Counting is exact: every lesion score is copied as is and every background
voxel adds exactly one to one bin. Only block barriers and atomics are used
(no warp intrinsics), so the simulator runs the same code.
"""

import numpy as np
from numba import config, cuda, types

from .._binning import EXP_LOW, MANTISSA_BITS, N_BINS
from ._bins import bin_index, order_key

_OCTAVE = 1 << MANTISSA_BITS  # bins per power of two
_BIN_OF_ONE = N_BINS // 2 + 1 + (-EXP_LOW) * _OCTAVE  # the bin [1, 1 + 2**-MANTISSA_BITS)
if config.ENABLE_CUDASIM:  # tiny blocks keep the simulator quick
    TPB, ITEMS, WINDOW, SCAN_TPB = 8, 2, 64, 8
    WINDOW_LO = _BIN_OF_ONE - _OCTAVE  # [0.5, 0.625): tests put scores there
else:
    TPB, ITEMS, WINDOW, SCAN_TPB = 256, 16, 33 * _OCTAVE, 1024
    WINDOW_LO = _BIN_OF_ONE + _OCTAVE - WINDOW  # the 33 octaves [2**-32, 2): 33 KB of shared memory
TILE = TPB * ITEMS
DIGITS_MAX = 1 << 12  # radix selection: digits of up to 12 bits
# The shared window of the histogram: WINDOW bins from ``window_lo`` (a kernel
# argument, WINDOW_LO by default: where probabilities that are not ~0 fall),
# plus one slot for the bin of 0.0 (and magnitudes below 2**-32).
ZERO_BIN = N_BINS // 2
WINDOW_SLOTS = WINDOW + 1

_I64 = types.int64
_U32 = types.uint32
_U64 = types.uint64
_KEY_TOP = np.uint64(0xFFFFFFFFFFFFFFFF)  # above every order key: the seed of a minimum
_KEY_BOTTOM = np.uint64(0)  # below every order key: the seed of a maximum


@cuda.jit(device=True, inline="always")
def is_lesion(value, target, use_target):
    return (value == target) if use_target else value > 0


@cuda.jit(device=True)
def block_exclusive_scan(buf, t, value):
    """Exclusive prefix sum of ``value`` over the block's threads, and the total.

    ``buf`` is a shared (2, blockDim) int64 array. Every thread must call it.
    """
    n = cuda.blockDim.x
    buf[0, t] = value
    cuda.syncthreads()
    src = 0
    d = 1
    while d < n:
        v = buf[src, t]
        if t >= d:
            v += buf[src, t - d]
        buf[1 - src, t] = v
        src = 1 - src
        d *= 2
        cuda.syncthreads()
    inclusive = buf[src, t]
    total = buf[src, n - 1]
    cuda.syncthreads()  # buf may be reused right away
    return inclusive - value, total


@cuda.jit(device=True)
def compact_tile(scores, labels, target, use_target, base, n, slot, out, buf, t):
    """Copy the lesion scores of the tile at ``base`` to ``out[slot:]`` in memory order.

    During compaction thread t owns ITEMS consecutive voxels, so an
    exclusive scan of per-thread counts orders the writes like memory.
    Returns this thread's NaN count among the lesion voxels it copied.
    """
    first = base + t * ITEMS
    last = min(n, first + ITEMS)
    c = 0
    for i in range(first, last):
        if is_lesion(labels[i], target, use_target):
            c += 1
    before, total = block_exclusive_scan(buf, t, c)
    o = slot + before
    n_nan = 0
    for i in range(first, last):
        if is_lesion(labels[i], target, use_target):
            x = np.float64(scores[i])  # exact; see stats_kernel
            out[o] = x + 0.0  # -0.0 becomes +0.0, as on the CPU
            o += 1
            if x != x:
                n_nan += 1
    return n_nan


@cuda.jit(cache=True)
def count_kernel(labels, target, use_target, counts):
    """``counts[b]``: lesion voxels in tile b (reads only the labels)."""
    total = cuda.shared.array(1, _I64)
    t = cuda.threadIdx.x
    n = labels.size
    n_tiles = counts.size
    for b in range(cuda.blockIdx.x, n_tiles, cuda.gridDim.x):
        if t == 0:
            total[0] = 0
        cuda.syncthreads()
        c = 0
        base = b * TILE
        for v in range(ITEMS):
            i = base + v * TPB + t
            if i < n and is_lesion(labels[i], target, use_target):
                c += 1
        if c:
            cuda.atomic.add(total, 0, c)
        cuda.syncthreads()
        if t == 0:
            counts[b] = total[0]


@cuda.jit(cache=True)
def scan_kernel(counts, offsets):
    """``offsets[0] = 0``, ``offsets[b + 1] = counts[0] + ... + counts[b]`` (one block)."""
    buf = cuda.shared.array((2, SCAN_TPB), _I64)
    t = cuda.threadIdx.x
    n = counts.size
    per = (n + SCAN_TPB - 1) // SCAN_TPB
    first = t * per
    last = min(n, first + per)
    s = 0
    for i in range(first, last):
        s += counts[i]
    before, _ = block_exclusive_scan(buf, t, s)
    if t == 0:
        offsets[0] = 0
    for i in range(first, last):
        before += counts[i]
        offsets[i + 1] = before


@cuda.jit(device=True, inline="always")
def add_run(window, hist, window_lo, k, run):
    """Add ``run`` voxels to bin ``k``: in the shared window when it is there."""
    j = k - window_lo
    if 0 <= j < WINDOW:
        cuda.atomic.add(window, j, np.uint32(run))
    elif k == ZERO_BIN:
        cuda.atomic.add(window, WINDOW, np.uint32(run))
    else:
        cuda.atomic.add(hist, k, np.uint64(run))


@cuda.jit(device=True)
def merge_key_range(keys, t, low, high, key_range):
    """Block reduction of the threads' order-key extremes, then one atomic each into ``key_range``.

    ``keys`` is a shared (2, blockDim) uint64 array; every thread must call it.
    ``key_range[0]`` takes the smallest key, ``key_range[1]`` the largest.
    """
    keys[0, t] = low
    keys[1, t] = high
    cuda.syncthreads()
    step = cuda.blockDim.x // 2
    while step > 0:
        if t < step:
            keys[0, t] = min(keys[0, t], keys[0, t + step])
            keys[1, t] = max(keys[1, t], keys[1, t + step])
        cuda.syncthreads()
        step //= 2
    if t == 0:
        cuda.atomic.min(key_range, 0, keys[0, 0])
        cuda.atomic.max(key_range, 1, keys[1, 0])


@cuda.jit(cache=True)
def stats_kernel(scores, labels, target, use_target, offsets, window_lo, lesion_out, hist, n_nan, key_range):
    """One read of every voxel: background histogram plus ordered lesion gather.

    Each thread also keeps the smallest and largest order key of the scores
    it reads (NaN aside), merged per block into ``key_range``: the exact
    minimum and maximum of the volume (``merge_key_range``).
    """
    window = cuda.shared.array(WINDOW_SLOTS, _U32)  # a block sees < 2**32 voxels
    buf = cuda.shared.array((2, TPB), _I64)
    keys = cuda.shared.array((2, TPB), _U64)
    t = cuda.threadIdx.x
    for j in range(t, WINDOW_SLOTS, TPB):
        window[j] = 0
    cuda.syncthreads()
    n = labels.size
    n_tiles = offsets.size - 1
    previous = -1
    run = 0
    nans = 0
    low = _KEY_TOP
    high = _KEY_BOTTOM
    for b in range(cuda.blockIdx.x, n_tiles, cuda.gridDim.x):
        base = b * TILE
        for v in range(ITEMS):
            i = base + v * TPB + t
            if i < n:
                # Widened to float64 (exact) before any arithmetic: float16
                # comparisons would need numba-cuda's C++ fp16 shim at link time.
                x = np.float64(scores[i])
                if x != x:
                    nans += 1
                    continue
                key = order_key(x)
                low = min(low, key)
                high = max(high, key)
                if not is_lesion(labels[i], target, use_target):
                    k = bin_index(x)
                    if k == previous:
                        run += 1
                    else:
                        if run:
                            add_run(window, hist, window_lo, previous, run)
                        previous = k
                        run = 1
        slot = offsets[b]
        if offsets[b + 1] != slot:  # the same for every thread of the block
            compact_tile(scores, labels, target, use_target, base, n, slot, lesion_out, buf, t)
    if run:
        add_run(window, hist, window_lo, previous, run)
    if nans:
        cuda.atomic.add(n_nan, 0, nans)
    merge_key_range(keys, t, low, high, key_range)  # ends with every thread past a barrier
    cuda.syncthreads()
    for j in range(t, WINDOW, TPB):
        c = window[j]
        if c:
            cuda.atomic.add(hist, window_lo + j, np.uint64(c))
    if t == 0 and window[WINDOW]:
        cuda.atomic.add(hist, ZERO_BIN, np.uint64(window[WINDOW]))


@cuda.jit(cache=True)
def range_kernel(scores, key_range, n_nan):
    """The smallest and largest order key of every score into ``key_range`` (NaN counted, not keyed)."""
    keys = cuda.shared.array((2, TPB), _U64)
    t = cuda.threadIdx.x
    low = _KEY_TOP
    high = _KEY_BOTTOM
    nans = 0
    for i in range(cuda.grid(1), scores.size, cuda.gridsize(1)):
        x = np.float64(scores[i])
        if x != x:
            nans += 1
        else:
            key = order_key(x)
            low = min(low, key)
            high = max(high, key)
    if nans:
        cuda.atomic.add(n_nan, 0, nans)
    merge_key_range(keys, t, low, high, key_range)


@cuda.jit(cache=True)
def gather_kernel(scores, labels, target, use_target, offsets, lesion_out, n_nan):
    """Ordered lesion gather that reads scores only in tiles holding lesion voxels."""
    buf = cuda.shared.array((2, TPB), _I64)
    t = cuda.threadIdx.x
    n = labels.size
    n_tiles = offsets.size - 1
    nans = 0
    for b in range(cuda.blockIdx.x, n_tiles, cuda.gridDim.x):
        slot = offsets[b]
        if offsets[b + 1] != slot:
            nans += compact_tile(scores, labels, target, use_target, b * TILE, n, slot, lesion_out, buf, t)
    if nans:
        cuda.atomic.add(n_nan, 0, nans)


@cuda.jit(cache=True)
def digit_kernel(values, prefix, prefix_mask, shift, digit_mask, counts):
    """``counts[d]`` += values whose order key has high bits ``prefix`` and digit ``d`` at ``shift``.

    Digits are ``(key >> shift) & digit_mask``, with ``counts.size`` = ``digit_mask + 1`` <= DIGITS_MAX.
    """
    local = cuda.shared.array(DIGITS_MAX, types.int32)  # a block counts < 2**31 values
    t = cuda.threadIdx.x
    n_digits = counts.size
    for j in range(t, n_digits, cuda.blockDim.x):
        local[j] = 0
    cuda.syncthreads()
    for i in range(cuda.grid(1), values.size, cuda.gridsize(1)):
        key = order_key(values[i])
        if (key & prefix_mask) == prefix:
            cuda.atomic.add(local, np.int64((key >> shift) & digit_mask), np.int32(1))
    cuda.syncthreads()
    for j in range(t, n_digits, cuda.blockDim.x):
        if local[j]:
            cuda.atomic.add(counts, j, np.int64(local[j]))


@cuda.jit(cache=True)
def widen_kernel(narrow, wide):
    """``wide[i] = narrow[i]``: float16 labels to float32 (a conversion, no float16 arithmetic)."""
    for i in range(cuda.grid(1), narrow.size, cuda.gridsize(1)):
        wide[i] = np.float32(narrow[i])


@cuda.jit(cache=True)
def zero_kernel(values):
    """``values[:] = 0`` (histograms and counters start from zero on the device)."""
    for i in range(cuda.grid(1), values.size, cuda.gridsize(1)):
        values[i] = 0


@cuda.jit(cache=True)
def mask_kernel(scores, threshold, out, n_nan):
    """``out[i] = scores[i] >= threshold`` (compared in float64) as 0/1; counts NaN."""
    nans = 0
    for i in range(cuda.grid(1), scores.size, cuda.gridsize(1)):
        x = np.float64(scores[i])
        out[i] = np.uint8(1) if x >= threshold else np.uint8(0)
        if x != x:
            nans += 1
    if nans:
        cuda.atomic.add(n_nan, 0, nans)
