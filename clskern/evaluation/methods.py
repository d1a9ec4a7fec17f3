"""Per-split thresholds of every method the evaluation compares.

Method names: the four of ``calibrate`` (``cls``, ``cls-pac``, ``crc``,
``rcps``), ``authors`` (the paper's reference code, see ``authors.py``) and
``fixed-T`` for a fixed cut at ``T`` (``fixed-0.5`` is the usual baseline;
``T`` must be a finite number: ``fixed-nan`` and ``fixed-inf`` are refused).
"""

import math

import numpy as np

from ..calibration import _cls_pac_rank, _cls_rank
from . import authors
from .fast_calibration import order_statistic_thresholds, risk_controlled_thresholds

CALIBRATED = ("cls", "cls-pac", "crc", "rcps", "authors")
DEFAULT_METHODS = ("cls", "cls-pac", "crc", "rcps", "fixed-0.5")
USES_ALPHA = ("cls", "cls-pac", "authors")


def fixed_cut(method):
    """The threshold of a ``fixed-T`` method, or None for a calibrated one.

    Raises ValueError for a non-finite ``T`` (``fixed-nan``, ``fixed-inf``,
    ``fixed--inf``): NaN is no cut at all, and a cut at +-inf (flag no voxel,
    or every voxel) has no threshold a summary or plot could show.
    """
    if method.startswith("fixed-"):
        try:
            cut = float(method[len("fixed-"):])
        except ValueError:
            return None
        if not math.isfinite(cut):
            raise ValueError(f"method {method!r}: the fixed cut T of fixed-T must be a finite number")
        return cut
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
        tau = order_statistic_thresholds(cases.critical(epsilon), cal_idx, _cls_rank(n_cal, alpha))
    elif method == "cls-pac":
        tau = order_statistic_thresholds(cases.critical(epsilon), cal_idx, _cls_pac_rank(n_cal, alpha, delta))
    elif method in ("crc", "rcps"):
        tau = risk_controlled_thresholds(cases, cal_idx, method, epsilon, delta)
    else:
        cut, tau = authors.authors_thresholds(cases, cal_idx, epsilon, alpha)
        return tau, cut
    return tau, tau


def ragged_thresholds(method, cases, cal_rows, epsilon, alpha, delta):
    """``thresholds`` for splits whose calibration sets differ in size.

    ``cal_rows`` is a list of int arrays (one per split; a split may have no
    calibration case, which certifies nothing: NaN). Splits of one size go
    through ``thresholds`` together, so each equals ``calibrate`` on its own
    calibration cases as in the rectangular case.
    """
    n_splits = len(cal_rows)
    if fixed_cut(method) is not None:
        tau = np.full(n_splits, fixed_cut(method))
        return tau, tau
    lengths = np.array([len(r) for r in cal_rows], np.int64)
    per_case = method == "authors"
    tau = np.full((n_splits, len(cases)) if per_case else n_splits, np.nan)
    cut = np.full(n_splits, np.nan)
    for n in np.unique(lengths):
        rows = np.flatnonzero(lengths == n)
        if n == 0:
            continue
        matrix = np.stack([np.asarray(cal_rows[s], np.int64) for s in rows])
        t, c = thresholds(method, cases, matrix, epsilon, alpha, delta)
        tau[rows] = t
        cut[rows] = c
    return tau, cut

