"""Binomial tail and the Hoeffding-Bentkus p-value, without SciPy.

Sums of log-space probabilities: accurate to a few ulps for the n of a
calibration set (tests compare with scipy.stats.binom).
"""

import math

import numpy as np


def binom_cdf_table(n, p):
    """``P(Binom(n, p) <= i)`` for ``i = 0..n`` (float64 array)."""
    i = np.arange(n + 1, dtype=np.float64)
    if p <= 0.0:
        return np.ones(n + 1)
    if p >= 1.0:
        table = np.zeros(n + 1)
        table[n] = 1.0
        return table
    log_choose = math.lgamma(n + 1) - np.array([math.lgamma(k + 1) + math.lgamma(n - k + 1) for k in range(n + 1)])
    pmf = np.exp(log_choose + i * math.log(p) + (n - i) * math.log1p(-p))
    return np.minimum(np.cumsum(pmf), 1.0)


def binom_cdf(k, n, p):
    """``P(Binom(n, p) <= k)``."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    return float(binom_cdf_table(n, p)[k])


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
