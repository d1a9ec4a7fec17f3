"""Calibrated thresholds for many splits at once, equal to ``calibrate`` bit for bit.

``clskern.calibrate`` is built for one calibration set; the evaluation asks
for hundreds. The order-statistic methods (``cls``, ``cls-pac``) become one
``np.partition`` over a (splits x n_cal) matrix of precomputed critical
thresholds, with the ranks ``calibrate`` itself uses. ``crc`` and ``rcps``
keep ``calibrate``'s exact predicate (a correctly rounded ``math.fsum`` of the
per-case FNR terms, then the method's own formula) but search the sorted
distinct lesion scores of the whole data set by index (about 20 evaluations
instead of 64) with a kernel that reads only the calibration cases. The
predicate is monotone in the threshold, so any exact search lands on the same
largest certified lesion score; tests compare every split with ``calibrate``.

A split that cannot be certified (too few cases for ``alpha``, ``epsilon`` or
``delta``) gets a NaN threshold; ``calibrate`` raises ``CalibrationError``
there.
"""

import math

import numpy as np

from .._jit import njit
from ..calibration._risk_search import _fnr_terms
from ..calibration import risk_predicate


def order_statistic_thresholds(critical, cal_idx, rank):
    """``l_(rank)`` of ``critical[cal_idx[s]]`` for every split ``s`` (NaN if rank is 0)."""
    n_splits = cal_idx.shape[0]
    if rank == 0:
        return np.full(n_splits, np.nan)
    values = critical[cal_idx]
    return np.partition(values, rank - 1, axis=1)[:, rank - 1].copy()


@njit(cache=True)
def _gather(scores, offsets, cases):
    """The lesion scores of ``cases`` in one contiguous array, with their offsets."""
    sub_offsets = np.zeros(cases.size + 1, np.int64)
    for j in range(cases.size):
        i = cases[j]
        sub_offsets[j + 1] = sub_offsets[j] + offsets[i + 1] - offsets[i]
    sub_scores = np.empty(sub_offsets[-1], np.float64)
    for j in range(cases.size):
        i = cases[j]
        sub_scores[sub_offsets[j] : sub_offsets[j + 1]] = scores[offsets[i] : offsets[i + 1]]
    return sub_scores, sub_offsets


@njit(cache=True)
def _largest_at_or_below(boundary, scores, offsets, cases):
    """Largest lesion score ``<= boundary`` over the given cases (-inf if none)."""
    best = -np.inf
    for j in range(cases.size):
        i = cases[j]
        case = scores[offsets[i] : offsets[i + 1]]
        k = np.searchsorted(case, boundary, side="right")
        if k > 0 and case[k - 1] > best:
            best = case[k - 1]
    return best


def risk_controlled_threshold(cases, cal, certified):
    """Largest lesion score of the calibration cases whose FNR sum is certified (NaN if none)."""
    cal = np.ascontiguousarray(cal, dtype=np.int64)
    cal_scores, cal_offsets = _gather(cases.scores, cases.offsets, cal)
    terms = np.empty(cal.size, np.float64)

    def holds(t):
        _fnr_terms(t, cal_scores, cal_offsets, terms)  # the exact terms of ``calibrate``
        return certified(math.fsum(terms))

    lowest = cases.lowest[cal].min()
    highest = cases.highest[cal].max()
    if not holds(lowest):
        return math.nan
    if holds(highest):
        return float(highest)
    pooled = cases.pooled
    lo = int(np.searchsorted(pooled, lowest))  # holds(pooled[lo])
    hi = int(np.searchsorted(pooled, highest))  # not holds(pooled[hi])
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if holds(pooled[mid]):
            lo = mid
        else:
            hi = mid
    return float(_largest_at_or_below(pooled[lo], cases.scores, cases.offsets, cal))


def risk_controlled_thresholds(cases, cal_idx, method, epsilon, delta=None):
    """``crc`` / ``rcps`` thresholds for every split (rows of ``cal_idx``)."""
    n = cal_idx.shape[1]
    out = np.full(cal_idx.shape[0], np.nan)
    if epsilon <= 0:
        return out
    certified = risk_predicate(method, n, epsilon, delta)
    for s in range(cal_idx.shape[0]):
        out[s] = risk_controlled_threshold(cases, cal_idx[s], certified)
    return out
