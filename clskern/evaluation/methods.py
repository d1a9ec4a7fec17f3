"""Per-split thresholds of every method the evaluation compares.

Method names: the four of ``calibrate`` (``cls``, ``cls-pac``, ``crc``,
``rcps``), ``authors`` (the paper's reference code, see ``authors.py``) and
``fixed-T`` for a fixed cut at ``T`` (``fixed-0.5`` is the usual baseline).
"""

import numpy as np

from . import authors
from .fast_calibration import cls_pac_rank, cls_rank, order_statistic_thresholds, risk_controlled_thresholds

CALIBRATED = ("cls", "cls-pac", "crc", "rcps", "authors")
DEFAULT_METHODS = ("cls", "cls-pac", "crc", "rcps", "fixed-0.5")
USES_ALPHA = ("cls", "cls-pac", "authors")


def fixed_cut(method):
    """The threshold of a ``fixed-T`` method, or None for a calibrated one."""
    if method.startswith("fixed-"):
        try:
            return float(method[len("fixed-"):])
        except ValueError:
            pass
    return None


def check_methods(methods):
    """Validate method names; returns them as a tuple."""
    methods = tuple(methods)
    if not methods:
        raise ValueError("methods must not be empty")
    for m in methods:
        if m not in CALIBRATED and fixed_cut(m) is None:
            raise ValueError(
                f"unknown method {m!r}: choose from {', '.join(CALIBRATED)} or fixed-T (e.g. fixed-0.5)"
            )
    if len(set(methods)) != len(methods):
        raise ValueError(f"methods repeat: {methods}")
    return methods


def thresholds(method, cases, cal_idx, epsilon, alpha, delta):
    """Test-time thresholds for every split.

    Returns
    -------
    tau : ndarray
        (splits,) for methods with one cut, (splits, n_cases) for ``authors``;
        NaN where the calibration set cannot certify the request.
    cut : ndarray, shape (splits,)
        The calibrated value as the method reports it (the rescaled cut for
        ``authors``).
    """
    n_splits, n_cal = cal_idx.shape
    cut = fixed_cut(method)
    if cut is not None:
        tau = np.full(n_splits, cut)
        return tau, tau
    if method == "cls":
        tau = order_statistic_thresholds(cases.critical(epsilon), cal_idx, cls_rank(n_cal, alpha))
    elif method == "cls-pac":
        tau = order_statistic_thresholds(cases.critical(epsilon), cal_idx, cls_pac_rank(n_cal, alpha, delta))
    elif method in ("crc", "rcps"):
        tau = risk_controlled_thresholds(cases, cal_idx, method, epsilon, delta)
    else:
        cut, tau = authors.authors_thresholds(cases, cal_idx, epsilon, alpha)
        return tau, cut
    return tau, tau
