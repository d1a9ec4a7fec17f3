"""The value grid of the background-score histogram.

Scores may be probabilities or logits, so the grid is fixed in value, not fitted
to a range (no extra pass for min/max): each power of two holds 1024 equal bins
(relative width at most 2**-10, about 0.1 %) for magnitudes in [2**-32, 2**32),
and one bin per sign catches smaller and larger magnitudes (infinities too).
Every bin is half-open, ``[lower, upper)``, and -0.0 falls in the bin of +0.0,
so that ``p >= t`` counts are exact whenever ``t`` is a bin edge (0, 0.5, any
multiple of 2**-11 in [0.5, 1), ...).

The bin index is computed from the float64 bit pattern (float16/32 scores
convert to float64 exactly), so every score dtype lands in the same bins.
"""

import numpy as np
from numba import njit

MANTISSA_BITS = 10  # bins per power of two = 2**MANTISSA_BITS
EXP_LOW, EXP_HIGH = -32, 32  # magnitudes in [2**EXP_LOW, 2**EXP_HIGH) get fine bins

_SHIFT = 52 - MANTISSA_BITS
_LOW_BITS = (1023 + EXP_LOW) << 52
_HIGH_BITS = (1023 + EXP_HIGH) << 52
_TOP = ((_HIGH_BITS - _LOW_BITS) >> _SHIFT) + 1  # magnitude bin of |x| >= 2**EXP_HIGH
_HALF = _TOP + 1  # magnitude bins per sign
N_BINS = 2 * _HALF  # 131076
_MAG_MASK = (1 << 63) - 1


@njit(cache=True, inline="always")
def bin_index(x):
    """Histogram bin of the float64 value ``x`` (not NaN)."""
    u = np.float64(x).view(np.uint64)
    mag = u & np.uint64(_MAG_MASK)
    negative = (u >> np.uint64(63)) != 0 and mag != 0  # -0.0 counts as +0.0
    if negative:
        mag -= np.uint64(1)  # |x| in (lo, hi]  <=>  x in [-hi, -lo)
    if mag < np.uint64(_LOW_BITS):
        m = 0
    elif mag >= np.uint64(_HIGH_BITS):
        m = _TOP
    else:
        m = np.int64((mag - np.uint64(_LOW_BITS)) >> np.uint64(_SHIFT)) + 1
    if negative:
        return _HALF - 1 - m
    return _HALF + m


def _magnitude_edge(m):
    """Lower magnitude edge of magnitude bins ``m`` (array, 1.._TOP)."""
    bits = np.uint64(_LOW_BITS) + (np.asarray(m, np.uint64) - np.uint64(1) << np.uint64(_SHIFT))
    return bits.view(np.float64)


def bin_lower_edges():
    """Lower edge of every bin, ascending; float64 array of length ``N_BINS + 1``.

    The last entry is +inf, the upper end of the top bin (which includes +inf).
    """
    mags = np.empty(_HALF + 1, np.float64)  # magnitude edges 0, 2**-32, ..., 2**32, inf
    mags[0] = 0.0
    mags[1 : _TOP + 1] = _magnitude_edge(np.arange(1, _TOP + 1))
    mags[_TOP + 1] = np.inf
    edges = np.empty(N_BINS + 1, np.float64)
    edges[_HALF:] = mags
    # Negative bin HALF-1-m is [-upper_m, -lower_m): its lower edge is -mags[m + 1].
    edges[:_HALF] = -mags[1:][::-1]
    return edges
