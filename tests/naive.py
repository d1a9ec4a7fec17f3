"""Slow, obviously correct NumPy references for every clskern kernel.

Each function follows SPEC.md word for word, with sorting and brute force
instead of anything clever; the fast paths are tested against these.
"""

import math
from fractions import Fraction

import numpy as np
from scipy import stats

from clskern._binning import bin_lower_edges


def lesion_mask(labels, label=None):
    labels = np.asarray(labels)
    return labels == label if label is not None else labels > 0


def largest_rank(fraction, denominator, top):
    """Largest j in 0..top with j / denominator <= fraction, by trying every j."""
    return max((j for j in range(top + 1) if j / denominator <= fraction), default=-1)


def critical_threshold(scores, labels, epsilon, label=None):
    s = np.sort(np.asarray(scores)[lesion_mask(labels, label)])
    return s[largest_rank(epsilon, s.size, s.size - 1)]


def fn(scores, labels, t, label=None):
    y = lesion_mask(labels, label)
    return int(np.count_nonzero(y & (np.asarray(scores, np.float64) < t)))


def fp(scores, labels, t, label=None):
    y = lesion_mask(labels, label)
    return int(np.count_nonzero(~y & (np.asarray(scores, np.float64) >= t)))


def background_histogram(scores, labels, label=None):
    """Dense counts per histogram bin, by binary search in the bin edges."""
    y = lesion_mask(labels, label)
    background = np.asarray(scores, np.float64)[~y]
    edges = bin_lower_edges()
    index = np.searchsorted(edges, background, side="right") - 1
    index[background == np.inf] = edges.size - 2  # the top bin holds +inf
    return np.bincount(index, minlength=edges.size - 1)


def cls_threshold(thresholds, alpha):
    ordered = np.sort(np.asarray(thresholds, np.float64))
    k = largest_rank(alpha, ordered.size + 1, ordered.size)
    return (ordered[k - 1], k) if k >= 1 else (None, 0)


def exact_binom_cdf(k, n, p):
    """P(Binom(n, p) <= k) for the float p, as an exact Fraction (sum of the pmf)."""
    p = Fraction(p)
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k + 1))


def cls_pac_threshold(thresholds, alpha, delta):
    ordered = np.sort(np.asarray(thresholds, np.float64))
    n = ordered.size
    # Exact arithmetic: at ties (BinomCDF(32; 65, 0.5) = 0.5) scipy's rounding decides wrongly.
    valid = [j for j in range(1, n + 1) if exact_binom_cdf(j - 1, n, alpha) <= Fraction(delta)]
    return (ordered[max(valid) - 1], max(valid)) if valid else (None, 0)


def mean_fnr(lesion_sets, t):
    """fsum of per-case FNR(t) (cases without lesions add 0)."""
    return math.fsum(np.count_nonzero(s < t) / s.size for s in lesion_sets if s.size)


def crc_threshold(lesion_sets, epsilon):
    """Scan every lesion score of every case; keep the largest that passes."""
    n = len(lesion_sets)
    candidates = np.unique(np.concatenate([np.asarray(s, np.float64) for s in lesion_sets]))
    passing = [t for t in candidates if (n / (n + 1)) * (mean_fnr(lesion_sets, t) / n) + 1 / (n + 1) <= epsilon]
    return max(passing) if passing else None


def hb_pvalue(loss_sum, n, epsilon):
    r = loss_sum / n
    if r >= epsilon:
        return 1.0
    h = (r * math.log(r / epsilon) if r > 0 else 0.0) + (1 - r) * math.log((1 - r) / (1 - epsilon))
    return min(math.exp(-n * h), math.e * stats.binom.cdf(math.ceil(loss_sum), n, epsilon))


def rcps_threshold(lesion_sets, epsilon, delta):
    """Fixed-sequence scan from the smallest lesion score up; stop at the first failure."""
    n = len(lesion_sets)
    candidates = np.unique(np.concatenate([np.asarray(s, np.float64) for s in lesion_sets]))
    best = None
    for t in candidates:
        if hb_pvalue(mean_fnr(lesion_sets, t), n, epsilon) > delta:
            break
        best = t
    return best
