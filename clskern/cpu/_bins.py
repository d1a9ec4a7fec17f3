"""The bin of a score on the CPU (Numba): ``score_bin``, ``bin_index``, ``bin_index_f32``.

The grid itself (constants, edges) is ``clskern._binning``, shared with the
GPU twin ``clskern.cuda._bins``. The bin index is computed from the float64
bit pattern (float16/32 scores convert to float64 exactly), so every score
dtype lands in the same bins; float32 has its own 32-bit path, equal bin for
bin.

These functions are inlined into the kernels (``inline="always"``), and
Numba's cache keys a compiled function on its own source file: after editing
this file, delete ``clskern/cpu/__pycache__`` so the callers recompile.
"""

import numpy as np
from numba import types
from numba.extending import overload

from .._binning import _HALF, _LOW_BITS, _LOW_BITS32, _MAG_MASK, _SHIFT, _SHIFT32, _TOP
from .._jit import njit


@njit(cache=True, inline="always")
def _from_magnitude_bits(negative, magnitude_bin):
    """Bin of sign and magnitude bin; branch-free (the kernels' hot loop)."""
    m = min(max(magnitude_bin, 0), _TOP)
    return (_HALF + m) - negative * (2 * m + 1)


@njit(cache=True, inline="always")
def bin_index(x):
    """Histogram bin of the float64 value ``x`` (NaN lands in an end bin).

    A negative ``x`` (not -0.0) takes the magnitude bin of ``|x|`` one ulp
    lower: ``|x|`` in ``(lo, hi]`` means ``x`` in ``[-hi, -lo)``, so negative
    bins are half-open upwards like the positive ones.
    """
    u = np.float64(x).view(np.int64)
    magnitude = u & _MAG_MASK
    negative = np.int64((u < 0) & (magnitude != 0))
    shifted = (magnitude - negative - _LOW_BITS) >> _SHIFT  # arithmetic shift: < 0 below 2**EXP_LOW
    return _from_magnitude_bits(negative, shifted + 1)


@njit(cache=True, inline="always")
def bin_index_f32(x):
    """``bin_index`` for a float32 ``x``, on its 32-bit pattern (same result).

    All in int32 (every intermediate fits): 16 lanes a vector instead of 8,
    1.3 x faster in the histogram.
    """
    u = np.float32(x).view(np.int32)
    magnitude = u & np.int32(0x7FFFFFFF)
    negative = np.int32((u < 0) & (magnitude != 0))
    shifted = ((magnitude - negative - np.int32(_LOW_BITS32)) >> np.int32(_SHIFT32)) + np.int32(1)
    m = min(max(shifted, np.int32(0)), np.int32(_TOP))
    return (np.int32(_HALF) + m) - negative * (np.int32(2) * m + np.int32(1))


def score_bin(x):
    """Histogram bin of a score of any float dtype (Python reference)."""
    return int(bin_index(np.float64(x)))


@overload(score_bin, inline="always")
def _score_bin_overload(x):
    if isinstance(x, types.Float) and x.bitwidth == 32:
        return lambda x: bin_index_f32(x)
    if isinstance(x, types.Float):
        return lambda x: bin_index(x)
    return None
