"""Exact search for the largest certified threshold of ``crc`` and ``rcps``.

Both methods certify ``t`` from the mean FNR over the calibration cases,
``R(t) = fsum_i(FN_i(t) / n_fg_i) / n``, which only grows with ``t``, so the
certified set is ``(-inf, t*]`` and ``t*`` is a lesion score (R is constant
between consecutive lesion scores and jumps just after each). The search
bisects the float64 order-preserving bit pattern between the smallest and the
largest lesion score (at most 64 evaluations of R, each a binary search per
case), then snaps to the largest lesion score below the boundary. The sum is
``math.fsum`` (correctly rounded, so independent of case order) and the
predicate is the method's own formula, so the result equals a brute-force scan
over every lesion score.
"""

import math

import numpy as np

from .._jit import njit

_SIGN = 1 << 63
_ALL = (1 << 64) - 1


@njit(cache=True)
def _fnr_terms(t, scores, offsets, out):
    """``out[i] = #{s in case i : s < t} / n_fg_i``; cases are slices of ``scores``."""
    for i in range(out.size):
        case = scores[offsets[i] : offsets[i + 1]]
        out[i] = np.searchsorted(case, t, side="left") / case.size


def _key(x):
    bits = int(np.float64(x).view(np.uint64))
    return (~bits & _ALL) if bits & _SIGN else bits | _SIGN


def _value(key):
    bits = (key & ~_SIGN) if key & _SIGN else (~key & _ALL)
    return float(np.uint64(bits).view(np.float64))


def largest_certified_score(cases, certified):
    """Largest lesion score ``t`` with ``certified(fsum of FNR_i(t))``, or None.

    ``cases`` are VolumeStats; those without lesion voxels (kept under
    ``empty="pass"``) add 0 to the sum. ``certified`` must be monotone: true
    up to some ``t``, false beyond.
    """
    sets = [np.asarray(c.lesion_scores, dtype=np.float64) for c in cases if c.n_fg]
    if not sets:
        return math.inf if certified(0.0) else None
    offsets = np.zeros(len(sets) + 1, np.int64)
    np.cumsum([s.size for s in sets], out=offsets[1:])
    scores = np.concatenate(sets)
    terms = np.empty(len(sets), np.float64)

    def holds(t):
        _fnr_terms(t, scores, offsets, terms)
        return certified(math.fsum(terms))

    lowest = min(s[0] for s in sets)
    highest = max(s[-1] for s in sets)
    if not holds(lowest):
        return None
    if holds(highest):
        return float(highest)
    lo, hi = _key(lowest), _key(highest)  # holds(lo) and not holds(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if holds(_value(mid)):
            lo = mid
        else:
            hi = mid
    boundary = _value(lo)
    below = [s[np.searchsorted(s, boundary, side="right") - 1] for s in sets if s[0] <= boundary]
    return float(max(below))
