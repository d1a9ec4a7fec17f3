"""Binomial tail and the Hoeffding-Bentkus p-value, without SciPy.

Sums of log-space probabilities: accurate to a few ulps for the n of a
calibration set (tests compare with scipy.stats.binom). Where a decision
``cdf <= delta`` is closer than rounding can tell, ``cdf_at_most`` settles it
in exact rational arithmetic (a float ``p`` is a dyadic rational).
"""

import functools
import math
from fractions import Fraction

import numpy as np


@functools.lru_cache(maxsize=64)
def binom_cdf_table(n, p):
    """``P(Binom(n, p) <= i)`` for ``i = 0..n`` (read-only float64 array).

    Cached: rcps evaluates it at the same ``(n, epsilon)`` for every candidate
    threshold, and the evaluation for every split.
    """
    i = np.arange(n + 1, dtype=np.float64)
    if p <= 0.0:
        table = np.ones(n + 1)
    elif p >= 1.0:
        table = np.zeros(n + 1)
        table[n] = 1.0
    else:
        log_choose = math.lgamma(n + 1) - np.array([math.lgamma(k + 1) + math.lgamma(n - k + 1) for k in range(n + 1)])
        pmf = np.exp(log_choose + i * math.log(p) + (n - i) * math.log1p(-p))
        table = np.minimum(np.cumsum(pmf), 1.0)
    table.flags.writeable = False
    return table


def binom_cdf(k, n, p):
    """``P(Binom(n, p) <= k)``."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    return float(binom_cdf_table(n, p)[k])


def binom_cdf_exact(k, n, p):
    """``P(Binom(n, p) <= k)`` as an exact Fraction of the float ``p``."""
    q = Fraction(p)
    num, den = q.numerator, q.denominator
    total = sum(math.comb(n, i) * num**i * (den - num) ** (n - i) for i in range(k + 1))
    return Fraction(total, den**n)


_AMBIGUOUS = 1e-9  # relative gap under which the float sum cannot be trusted


def cdf_at_most(n, p, delta):
    """``[P(Binom(n, p) <= i) <= delta for i in 0..n]``, exactly (bool array)."""
    table = binom_cdf_table(n, p)
    decision = table <= delta
    for i in np.flatnonzero(np.abs(table - delta) <= _AMBIGUOUS * delta):
        decision[i] = binom_cdf_exact(int(i), n, p) <= Fraction(delta)
    return decision


def _kl_bernoulli(a, b):
    """``a log(a/b) + (1-a) log((1-a)/(1-b))`` with 0 log 0 = 0, for 0 <= a < b < 1."""
    first = a * math.log(a / b) if a > 0 else 0.0
    return first + (1 - a) * math.log((1 - a) / (1 - b))


def hoeffding_bentkus_pvalue(loss_sum, n, epsilon):
    """p-value of ``H0: E[loss] > epsilon`` from ``n`` losses in [0, 1] summing to ``loss_sum``.

    Bates et al. (2021): ``min(exp(-n h(r, eps)), e * P(Binom(n, eps) <= ceil(n r)))``
    with ``r = loss_sum / n``, and 1 when ``r >= epsilon``.
    """
    r = loss_sum / n
    if r >= epsilon:
        return 1.0
    hoeffding = math.exp(-n * _kl_bernoulli(r, epsilon))
    bentkus = math.e * binom_cdf(math.ceil(loss_sum), n, epsilon)
    return min(hoeffding, bentkus)
