"""Conformal calibration of a score threshold (docs: methods): ``calibrate``.

Four methods, each certifying a different promise about a new case's FNR:

- ``cls``: ``P(FNR <= eps) >= 1 - alpha`` (marginal), threshold ``l_(k)`` with
  ``k = floor(alpha (n + 1))``.
- ``cls-pac``: with probability ``>= 1 - delta`` over the calibration draw,
  ``P(FNR > eps | calibration) <= alpha``.
- ``crc``: ``E[FNR] <= eps`` (conformal risk control).
- ``rcps``: with probability ``>= 1 - delta``, ``E[FNR] <= eps``
  (Hoeffding-Bentkus upper confidence bound).

When the calibration set cannot certify the promise, ``calibrate`` raises
``CalibrationError`` naming the smallest set that could; it never clips.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, overload

import numpy as np

from .._lesions import check_level_overlap
from .._normalize import check_normalize, check_range, minmax
from .._validate import check_empty_policy, check_fraction, empty_error
from ..errors import ArgumentError, ArgumentTypeError, CalibrationError
from ..volume import VolumeStats
from ._binomial import hoeffding_bentkus_pvalue
from ._risk_search import largest_certified_score
from . import families as _families
from .record import (METHODS, Calibration, EmptyPolicy, Level, Method, Normalize, cls_pac_rank, cls_rank, kth_smallest,
                     risk_predicate)
from .record import NEEDS as _NEEDS

# The rules live with the record, which re-checks every file it reads with them.
_cls_rank, _cls_pac_rank = cls_rank, cls_pac_rank
__all__ = ["METHODS", "EmptyPolicy", "Level", "Method", "Normalize", "calibrate", "risk_predicate"]


def _case_names(volumes):
    """``(items, names)`` from a sequence or a mapping of case id -> item."""
    if isinstance(volumes, Mapping):
        return list(volumes.values()), [str(k) for k in volumes.keys()]
    if isinstance(volumes, (VolumeStats, str, bytes)) or not hasattr(volumes, "__iter__"):
        raise ArgumentTypeError("volumes must be a sequence (or mapping) of VolumeStats or critical thresholds")
    items = list(volumes)
    names = [getattr(v, "name", None) for v in items]
    return items, [str(n) if n is not None else f"#{i}" for i, n in enumerate(names)]


def _check_distinct(names):
    """Case ids must tell cases apart (the calibration record lists them, and refuses repeats)."""
    if len(set(names)) != len(names):
        seen = set()
        for name in names:
            if name in seen:
                raise ArgumentError(f"case id {name!r} appears twice among the volumes; give each case its own name")
            seen.add(name)


def _critical_thresholds(items, names, epsilon, empty, normalize="none"):
    """Per-case critical thresholds, with empty cases skipped, passed or refused (in ``normalize``'s scale;
    numbers are taken as given)."""
    kept, kept_names, skipped = [], [], 0
    for item, name in zip(items, names):
        if isinstance(item, VolumeStats):
            value = None if item.n_fg == 0 else item.critical_threshold(epsilon, normalize=normalize)
        elif item is None:
            value = None
        elif isinstance(item, (int, float, np.floating, np.integer)) and not isinstance(item, bool):
            try:
                value = float(item)
            except OverflowError:
                raise ArgumentError(f"case {name}: critical threshold {item} is too large for float64") from None
            if math.isnan(value):
                raise ArgumentError(f"case {name}: critical threshold is NaN")
        else:
            raise ArgumentTypeError(f"case {name}: expected VolumeStats or a critical threshold, got {type(item).__name__}")
        if value is None:
            if empty == "error":
                raise empty_error(name)
            if empty == "skip":
                skipped += 1
                continue
            value = math.inf
        kept.append(value)
        kept_names.append(name)
    return np.asarray(kept, dtype=np.float64), kept_names, skipped


def _in_q(stats):
    """Lesion-side statistics in min-max normalised scores: the sorted ``q`` of the lesion scores (float64)."""
    low, high = check_range(stats.score_min, stats.score_max, stats.name)
    q = minmax(stats.lesion_scores, low, high)
    return VolumeStats(q.size, q.size, q, [], [], stats.name)


def _lesion_sets(items, names, empty):
    """Sorted lesion scores per kept case; ``pass`` cases keep an empty set (FNR 0)."""
    kept, kept_names, skipped = [], [], 0
    for item, name in zip(items, names):
        if not isinstance(item, VolumeStats):
            raise ArgumentTypeError(f"case {name}: crc and rcps need VolumeStats, not {type(item).__name__}")
        if item.n_fg == 0:
            if empty == "error":
                raise empty_error(name)
            if empty == "skip":
                skipped += 1
                continue
        kept.append(item)
        kept_names.append(name)
    return kept, kept_names, skipped


NEED_LIMIT = 10**12  # beyond any calibration set: "needs more than" is the honest answer


def _smallest_n(condition, start=1):
    """Smallest ``n >= start`` for which ``condition(n)`` holds (it is monotone); None beyond ``NEED_LIMIT``."""
    hi = max(start, 1)
    while not condition(hi):
        if hi > NEED_LIMIT:
            return None
        hi *= 2
    lo = start - 1  # condition(lo) is false or lo is below the range
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if condition(mid):
            hi = mid
        else:
            lo = mid
    return hi


EXACT_NEED_LIMIT = 10**6  # the exact binomial tables grow with n: above this, the closed form's estimate


def _cls_pac_need(alpha, delta):
    """Smallest n whose cls-pac rank is >= 1: (1 - alpha)^n <= delta, i.e. BinomCDF(0; n, alpha) <= delta.

    Exact (the very predicate ``calibrate`` uses, searched near the closed form)
    up to ``EXACT_NEED_LIMIT``; beyond it the closed form, as a float.
    """
    return _need_near(math.log(delta) / math.log1p(-alpha), lambda m: _cls_pac_rank(m, alpha, delta) >= 1)


def _need_near(estimate, condition):
    """Smallest n with ``condition(n)``, searched from the closed form's ``estimate`` (exact up to
    ``EXACT_NEED_LIMIT``, the estimate as a float above it, None above ``NEED_LIMIT``)."""
    if not math.isfinite(estimate) or estimate > NEED_LIMIT:
        return None
    if estimate > EXACT_NEED_LIMIT:
        return float(math.ceil(estimate))
    return _smallest_n(condition, start=max(1, math.floor(estimate) - 2))


def _needs(n):
    if n is None:
        return f"more than {NEED_LIMIT:.0e} cases"
    return f"n >= about {n:.4g}" if isinstance(n, float) else f"n >= {n}"


def _order_statistic(method, thresholds, names, epsilon, alpha, delta, skipped, **recorded):
    n = thresholds.size
    if method == "cls":
        k = _cls_rank(n, alpha)
        if k == 0:
            need = _smallest_n(lambda m: _cls_rank(m, alpha) >= 1)
            raise CalibrationError(
                f"cls cannot certify alpha={alpha:g} with n={n} calibration cases: "
                f"it needs {_needs(need)} (n + 1 >= 1/alpha)"
            )
    else:
        k = _cls_pac_rank(n, alpha, delta)
        if k == 0:
            need = _cls_pac_need(alpha, delta)
            raise CalibrationError(
                f"cls-pac cannot certify alpha={alpha:g}, delta={delta:g} with n={n} calibration cases: "
                f"it needs {_needs(need)} ((1 - alpha)^n <= delta)"
            )
    threshold = kth_smallest(thresholds, k)
    return Calibration.build(
        method, threshold, epsilon, alpha, delta, n, skipped, k,
        critical_thresholds=thresholds.tolist(), case_ids=names, **recorded,
    )


def _risk_controlled(method, cases, names, epsilon, delta, skipped, **recorded):
    n = len(cases)
    if method == "crc":
        def need():
            return _smallest_n(lambda m: 1 / (m + 1) <= epsilon)
        rule = f"crc needs 1/(n+1) <= epsilon={epsilon:g}"
    else:
        def need():
            return _need_near(math.log(delta) / math.log1p(-epsilon),
                              lambda m: hoeffding_bentkus_pvalue(0.0, m, epsilon) <= delta)
        rule = f"rcps needs (1 - epsilon)^n <= delta={delta:g}"
    certified = risk_predicate(method, n, epsilon, delta)
    threshold = largest_certified_score(cases, certified) if n and epsilon > 0 else None
    if threshold is None:
        if epsilon == 0:
            raise CalibrationError(f"{method} cannot certify epsilon=0: no finite calibration set bounds E[FNR] by 0")
        raise CalibrationError(
            f"{method} cannot certify epsilon={epsilon:g} with n={n} calibration cases: "
            f"it needs {_needs(need())} ({rule})"
        )
    critical = [c.critical_threshold(epsilon) if c.n_fg else math.inf for c in cases]
    return Calibration.build(
        method, threshold, epsilon, None, delta, n, skipped, None,
        critical_thresholds=critical, case_ids=names, **recorded,
    )


@overload
def calibrate(volumes: Sequence[VolumeStats | float | None] | Mapping[str, VolumeStats | float | None], *,
              epsilon: float, alpha: float | None = ..., method: Method = ..., delta: float | None = ...,
              empty: EmptyPolicy = ..., level: Level = ..., overlap: float = ..., family: None = ...,
              groups: None = ..., normalize: Normalize = ...) -> Calibration: ...
@overload
def calibrate(volumes: Sequence[Mapping[str, VolumeStats]] | Mapping[str, Mapping[str, VolumeStats]], *,
              epsilon: float | Mapping[str, float], alpha: float | None = ..., method: Method = ...,
              delta: float | None = ..., empty: EmptyPolicy = ..., level: Level = ..., overlap: float = ...,
              family: str | None = ..., groups: Mapping[str, Hashable] | None = ...,
              normalize: Normalize = ...) -> dict[str, Calibration]: ...
@overload
def calibrate(volumes: Sequence[VolumeStats | float | None] | Mapping[str, VolumeStats | float | None], *,
              epsilon: float, alpha: float | None = ..., method: Method = ..., delta: float | None = ...,
              empty: EmptyPolicy = ..., level: Level = ..., overlap: float = ..., family: str | None = ...,
              groups: Mapping[str, Hashable], normalize: Normalize = ...) -> dict[Any, Calibration]: ...


def calibrate(volumes: Any, *, epsilon: float | Mapping[str, float], alpha: float | None = None, method: Method = "cls",
              delta: float | None = None, empty: EmptyPolicy = "skip", level: Level = "voxel", overlap: float = 0.0,
              family: str | None = None, groups: Mapping[str, Hashable] | None = None,
              normalize: Normalize = "none") -> Calibration | dict[Any, Calibration]:
    """Calibrate a score threshold on held-out volumes (docs: methods).

    Parameters
    ----------
    volumes : sequence or mapping
        ``VolumeStats`` (every method) or critical thresholds at ``epsilon``
        (``cls``, ``cls-pac``; None marks a case without lesion voxels). A
        mapping's keys are the case ids.
    epsilon : float
        Tolerated FNR, in [0, 1).
    alpha : float, optional
        Miscoverage for ``cls`` and ``cls-pac``, in (0, 1).
    method : {"cls", "cls-pac", "crc", "rcps"}
    delta : float, optional
        Confidence for ``cls-pac`` and ``rcps``, in (0, 1).
    empty : {"skip", "pass", "error"}
        Cases without lesion voxels: left out (counted in ``n_skipped``),
        satisfied by any threshold, or an error.
    normalize : {"none", "minmax"}
        ``"minmax"`` (docs: min-max normalisation): calibrate in each case's min-max normalised
        scores ``q = (p - min p) / (max p - min p)`` (float64, every voxel),
        from the exact ``score_min``/``score_max`` the statistics carry;
        critical thresholds and the threshold are then in ``q``, recorded as
        ``Calibration.normalize``, and ``apply_threshold(..., normalize=
        "minmax")`` normalises each new case the same way. A per-case
        transform keeps the cases exchangeable: every guarantee holds
        unchanged. Numbers passed instead of ``VolumeStats`` are taken as
        critical thresholds already in ``q``.
    level : {"voxel", "lesion"}
        ``"lesion"``: every method certifies lesion-level FNR (L-FNR, the
        share of a case's lesions missed; docs: lesions) instead, from
        ``VolumeStats`` made with a connectivity (all the same one), at
        ``overlap``; no voxel is read again (``VolumeStats.at_lesion_level``).
    overlap : float
        In [0, 1], lesion level only: a lesion is detected at ``t`` when at
        least ``max(1, ceil(overlap * size))`` of its voxels score ``>= t``.

    Returns
    -------
    Calibration
        ``threshold`` is the test-time cut (mask ``p >= threshold``) and
        ``guarantee`` the promise it carries.

    Several classes or groups (``clskern.calibration.families``): per-case
    dicts ``class name -> VolumeStats`` (``clskern.classes.class_stats``)
    give ``{class: Calibration}``, with ``epsilon`` a number or a per-class
    dict and ``family`` ``"none"`` (each class at ``alpha``) or
    ``"bonferroni"`` (``alpha / C`` each: every class at once w.p. ``1 - alpha``);
    ``groups`` (a mapping case id -> group) gives ``{group: Calibration}``,
    each group calibrated on its own cases only.

    Raises
    ------
    CalibrationError
        When no threshold can be certified; the message names the smallest
        calibration set that would do (and the class or group).
    """
    if groups is not None or family is not None or _families.holds_classes(volumes):
        return _families.calibrate_many(calibrate, volumes, groups=groups, family=family, epsilon=epsilon,
                                        alpha=alpha, method=method, delta=delta, empty=empty, level=level,
                                        overlap=overlap, normalize=normalize)
    if method not in METHODS:
        raise ArgumentError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    check_empty_policy(empty)
    epsilon = check_fraction(epsilon, "epsilon")
    given = {"alpha": alpha, "delta": delta}
    for parameter, value in given.items():
        if parameter in _NEEDS[method]:
            if value is None:
                raise ArgumentError(f"method {method!r} needs {parameter}")
            given[parameter] = check_fraction(value, parameter, closed_low=False)
        elif value is not None:
            raise ArgumentError(f"method {method!r} takes no {parameter}: its guarantee does not involve one")
    alpha, delta = given["alpha"], given["delta"]
    level, overlap = check_level_overlap(level, overlap)
    items, names = _case_names(volumes)
    _check_distinct(names)
    connectivity = _connectivity(items, names, level)
    if level == "lesion":  # every method, unchanged, on the lesions' detection scores
        items = [item.at_lesion_level(overlap) for item in items]
    recorded = {"level": level, "overlap": overlap, "connectivity": connectivity}
    recorded["normalize"] = check_normalize(normalize)
    if method in ("cls", "cls-pac"):
        thresholds, kept_names, skipped = _critical_thresholds(items, names, epsilon, empty, normalize)
        return _order_statistic(method, thresholds, kept_names, epsilon, alpha, delta, skipped, **recorded)
    cases, kept_names, skipped = _lesion_sets(items, names, empty)
    if normalize != "none":  # crc and rcps search the lesion scores: search their q instead (q is monotone)
        cases = [_in_q(case) for case in cases]
    return _risk_controlled(method, cases, kept_names, epsilon, delta, skipped, **recorded)


def _connectivity(items, names, level):
    """The one connectivity of the statistics calibrated together (None at voxel level unless all share one).

    Lesion level needs ``VolumeStats`` with lesion information, all found
    with one connectivity: a calibration certifies one definition of a lesion.
    """
    found = {}
    for item, name in zip(items, names):
        if isinstance(item, VolumeStats):
            found.setdefault(item.connectivity, name)
        elif level == "lesion":
            raise ArgumentTypeError(f"case {name}: level='lesion' needs VolumeStats (made with a connectivity), "
                                    f"not {type(item).__name__}")
        else:
            found.setdefault(None, name)
    if level == "voxel":
        return next(iter(found)) if len(found) == 1 else None
    if None in found:
        raise ArgumentError(f"case {found[None]}: statistics made without lesions (connectivity=None); run "
                            "volume_stats with connectivity=6, 18 or 26 (clskern stats --connectivity) for lesion level")
    if len(found) > 1:
        (a, case_a), (b, case_b) = sorted(found.items())[:2]
        raise ArgumentError(f"statistics of different connectivities cannot be calibrated together at lesion level: "
                            f"case {case_a} has {a}, case {case_b} has {b}")
    return next(iter(found), None)
