"""Exact sorting and rank selection of lesion scores, by radix on their bits.

A float's bit pattern, with the sign bit flipped for positives and every bit
flipped for negatives, is an unsigned integer in the same order as the floats
(-0.0 just below +0.0; the gather stores -0.0 as +0.0, and NaN never gets
here). Sorting those keys 11 bits at a time is linear and exact:

- ``sort_scores``: least-significant-digit radix sort (3 passes for float32,
  at most 6 for float64; a digit every key shares is skipped), every pass
  split over the threads. NumPy's sort has no SIMD path on the development
  machine (AMD Zen 4) and costs ~25 ns a float; this costs ~2 on 2 threads.
- ``select_ranks``: ``sorted(values)[k]`` without sorting: count the top
  digit, keep the bucket holding rank k, and narrow it digit by digit.

``sort_floats`` (an overload) is compiled into the gather's kernels, and
Numba's cache keys a compiled function on its own source file: after editing
this file, delete ``clskern/cpu/__pycache__`` so the callers recompile.
"""

import numba
import numpy as np
from numba import prange, types
from numba.extending import overload

from .._jit import njit

DIGIT_BITS = 11
_BUCKETS = 1 << DIGIT_BITS
_FEW = 64  # members left: sort them outright


@njit(cache=True, inline="always")
def _to_key(u, width):
    top = np.uint64(1) << np.uint64(width - 1)
    if u & top:
        return ~u & (top | (top - np.uint64(1)))
    return u | top


@njit(cache=True, inline="always")
def _from_key(k, width):
    top = np.uint64(1) << np.uint64(width - 1)
    if k & top:
        return k ^ top
    return ~k & (top | (top - np.uint64(1)))


@njit(cache=True, inline="always")
def _digit(k, shift):
    return np.intp((k >> np.uint64(shift)) & np.uint64(_BUCKETS - 1))


@njit(cache=True)
def _keys(bits, width):
    keys = np.empty_like(bits)
    for i in range(bits.size):
        keys[i] = _to_key(np.uint64(bits[i]), width)
    return keys


@njit(cache=True)
def _digit_counts(keys, shift, counts):
    for i in range(keys.size):
        counts[_digit(np.uint64(keys[i]), shift)] += 1


@njit(cache=True)
def _scatter(src, dst, shift, start):
    for i in range(src.size):
        b = _digit(np.uint64(src[i]), shift)
        dst[start[b]] = src[i]
        start[b] += 1


@njit(cache=True)
def _slots(counts, start, n):
    """Each (part, digit)'s first slot, parts in order (the sort stays stable).

    Returns True when one digit holds all ``n`` keys: the pass would not move
    anything and is skipped.
    """
    total = 0
    trivial = False
    for b in range(counts.shape[1]):
        in_bucket = 0
        for part in range(counts.shape[0]):
            start[part, b] = total + in_bucket
            in_bucket += counts[part, b]
        trivial = trivial or in_bucket == n
        total += in_bucket
    return trivial


@njit(cache=True)
def insertion_sort(keys):
    """Sort a short array in place, ascending (radix keys here, lesion scores in _components)."""
    for i in range(1, keys.size):
        k = keys[i]
        j = i - 1
        while j >= 0 and keys[j] > k:
            keys[j + 1] = keys[j]
            j -= 1
        keys[j + 1] = k


@njit(cache=True)
def _radix_sort_keys(keys, width):
    """Sort unsigned keys in place: LSD, ``DIGIT_BITS`` a pass (one thread)."""
    n = keys.size
    if n <= _FEW:  # the counting arrays would cost more than the keys
        insertion_sort(keys)
        return
    src, dst = keys, np.empty_like(keys)
    counts = np.zeros((1, _BUCKETS), np.int64)
    start = np.empty((1, _BUCKETS), np.int64)
    moved = 0
    for p in range((width + DIGIT_BITS - 1) // DIGIT_BITS):
        counts[:] = 0
        _digit_counts(src, p * DIGIT_BITS, counts[0])
        if not _slots(counts, start, n):
            _scatter(src, dst, p * DIGIT_BITS, start[0])
            src, dst = dst, src
            moved += 1
    if moved % 2:
        keys[:] = src


@njit(parallel=True, cache=True)
def _radix_sort_keys_parallel(keys, width, n_parts):
    """``_radix_sort_keys`` with every pass split into ``n_parts`` threads."""
    n = keys.size
    src, dst = keys, np.empty_like(keys)
    counts = np.zeros((n_parts, _BUCKETS), np.int64)
    start = np.empty((n_parts, _BUCKETS), np.int64)
    moved = 0
    for p in range((width + DIGIT_BITS - 1) // DIGIT_BITS):
        counts[:] = 0
        for part in prange(n_parts):
            _digit_counts(src[part * n // n_parts : (part + 1) * n // n_parts], p * DIGIT_BITS, counts[part])
        if _slots(counts, start, n):
            continue
        for part in prange(n_parts):
            _scatter(src[part * n // n_parts : (part + 1) * n // n_parts], dst, p * DIGIT_BITS, start[part])
        src, dst = dst, src
        moved += 1
    if moved % 2:
        keys[:] = src


@njit(cache=True)
def _sort_bits(bits, width):
    keys = _keys(bits, width)
    _radix_sort_keys(keys, width)
    for i in range(bits.size):
        bits[i] = _from_key(np.uint64(keys[i]), width)


@njit(parallel=True, cache=True)
def _sort_bits_parallel(bits, width, n_parts):
    keys = np.empty_like(bits)
    for i in prange(bits.size):
        keys[i] = _to_key(np.uint64(bits[i]), width)
    _radix_sort_keys_parallel(keys, width, n_parts)
    for i in prange(bits.size):
        bits[i] = _from_key(np.uint64(keys[i]), width)


@njit(cache=True)
def _select_bits(bits, ranks, width):
    """``sorted(bits as floats)[r]`` for each r in ``ranks``, as bit patterns."""
    keys = _keys(bits, width)
    top_shift = max(0, width - DIGIT_BITS)
    top_counts = np.zeros(_BUCKETS, np.int64)
    for i in range(keys.size):
        top_counts[_digit(np.uint64(keys[i]), top_shift)] += 1
    out = np.empty(ranks.size, bits.dtype)
    for j in range(ranks.size):
        r = ranks[j]
        members, shift, counts = keys, top_shift, top_counts
        while True:
            b = 0
            while r >= counts[b]:
                r -= counts[b]
                b += 1
            narrowed = np.empty(counts[b], keys.dtype)
            m = 0
            for i in range(members.size):
                if _digit(np.uint64(members[i]), shift) == b:
                    narrowed[m] = members[i]
                    m += 1
            members = narrowed
            if members.size <= _FEW or shift == 0:
                break
            shift = max(0, shift - DIGIT_BITS)
            counts = np.zeros(_BUCKETS, np.int64)
            for i in range(members.size):
                counts[_digit(np.uint64(members[i]), shift)] += 1
        _radix_sort_keys(members, width)
        out[j] = _from_key(np.uint64(members[r]), width)
    return out


def sort_floats(values):
    """Sort a float32/float64 array in place, from Numba code (see ``sort_scores``)."""
    sort_scores(values)


@overload(sort_floats)
def _sort_floats_overload(values):
    if values.dtype == types.float32:
        return lambda values: _sort_bits(values.view(np.uint32), 32)
    if values.dtype == types.float64:
        return lambda values: _sort_bits(values.view(np.uint64), 64)
    return None


def _bits(values):
    width = values.dtype.itemsize * 8
    return values.view(np.uint32 if width == 32 else np.uint64), width


_PARALLEL_ABOVE = 1 << 15  # fewer scores: one thread (a parallel pass costs ~5 us to start)


def sort_scores(values):
    """Sort a 1-D float32/float64 array of NaN-free scores in place (exact); returns it."""
    bits, width = _bits(values)
    if values.size > _PARALLEL_ABOVE and numba.get_num_threads() > 1:
        _sort_bits_parallel(bits, width, numba.get_num_threads())
    else:
        _sort_bits(bits, width)
    return values


def select_ranks(values, ranks):
    """``np.sort(values)[ranks]`` for NaN-free float32/float64 ``values`` (exact)."""
    bits, width = _bits(values)
    return _select_bits(bits, np.asarray(ranks, np.int64), width).view(values.dtype)
