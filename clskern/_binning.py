"""The value grid of the background-score histogram.

Scores may be probabilities or logits, so the grid is fixed in value, not fitted
to a range (no extra pass for min/max): each power of two holds 256 equal bins
(relative width at most 2**-8, about 0.4 %; 2**-9 = 0.002 in [0.5, 1)) for
magnitudes in [2**-32, 2**32), and one bin per sign catches smaller and larger
magnitudes (infinities, and NaN, which the kernels detect separately). Every
bin is half-open, ``[lower, upper)``, and -0.0 falls in the bin of +0.0, so
``p >= t`` counts are exact whenever ``t`` is a bin edge (0, 0.5, any multiple
of 2**-9 in [0.5, 1), ...).

Why 256: the 4-byte counters of the bins a typical volume touches then fit a
core's 32 KB L1 cache, and the scatter of one increment per voxel stays at
memory speed; 1024 bins per octave made it three times slower.

The bin index is computed from the float64 bit pattern (float16/32 scores
convert to float64 exactly), so every score dtype lands in the same bins.

This module is the grid's one definition and needs neither backend: the
constants and the edges (NumPy). The bin of a score is computed by each
backend from these constants: ``clskern.cpu._bins`` (Numba, CPU) and
``clskern.cuda._bins`` (numba-cuda), tested equal on edges, signed zeros,
subnormals and infinities.

Numba freezes these constants into the compiled kernels, and its cache keys
a kernel on its own source file only: after editing a constant here, delete
the ``__pycache__`` folders of ``clskern/cpu`` (and ``clskern``) so the
kernels recompile.
"""

import functools

import numpy as np

MANTISSA_BITS = 8  # bins per power of two = 2**MANTISSA_BITS
EXP_LOW, EXP_HIGH = -32, 32  # magnitudes in [2**EXP_LOW, 2**EXP_HIGH) get fine bins

_SHIFT = 52 - MANTISSA_BITS
_LOW_BITS = (1023 + EXP_LOW) << 52
_HIGH_BITS = (1023 + EXP_HIGH) << 52
_TOP = ((_HIGH_BITS - _LOW_BITS) >> _SHIFT) + 1  # magnitude bin of |x| >= 2**EXP_HIGH
_HALF = _TOP + 1  # magnitude bins per sign
N_BINS = 2 * _HALF  # 32772; the first and last also catch NaN
_MAG_MASK = (1 << 63) - 1


# float32 bit pattern: the same grid (it needs the top MANTISSA_BITS of 23).
_SHIFT32 = 23 - MANTISSA_BITS
_LOW_BITS32 = (127 + EXP_LOW) << 23


def _magnitude_edge(m):
    """Lower magnitude edge of magnitude bins ``m`` (array, 1.._TOP)."""
    bits = np.uint64(_LOW_BITS) + (np.asarray(m, np.uint64) - np.uint64(1) << np.uint64(_SHIFT))
    return bits.view(np.float64)


@functools.cache
def bin_lower_edges():
    """Lower edge of every bin, ascending; float64 array of length ``N_BINS + 1``.

    The last entry is +inf, the upper end of the top bin (which includes +inf).
    Built once (262 kB) and read-only.
    """
    mags = np.empty(_HALF + 1, np.float64)  # magnitude edges 0, 2**-32, ..., 2**32, inf
    mags[0] = 0.0
    mags[1 : _TOP + 1] = _magnitude_edge(np.arange(1, _TOP + 1))
    mags[_TOP + 1] = np.inf
    edges = np.empty(N_BINS + 1, np.float64)
    edges[_HALF:] = mags
    # Negative bin HALF-1-m is [-upper_m, -lower_m): its lower edge is -mags[m + 1].
    edges[:_HALF] = -mags[1:][::-1]
    edges.flags.writeable = False
    return edges
