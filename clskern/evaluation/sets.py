"""The protocol per group and per class: ``evaluate_groups`` and ``evaluate_classes``.

- **Groups** (Mondrian, docs: groups): each group is split and calibrated on its own
  cases only, exactly as ``evaluate`` on that group's cases alone (same seed,
  same request), as ``calibrate(groups=...)`` calibrates each group on its
  own. The pooled result of split ``s`` is the union of every group's split
  ``s`` (a stratified split of all cases, each test case cut at its group's
  threshold): each metric is the groups' values weighted by their test
  cases, NaN where some group could not be certified.
- **Classes** (docs: several classes): each case is a mapping ``class -> VolumeStats``
  (``clskern.classes.class_stats``). The cases are split once, the same split
  for every class (as a calibration set of several classes is made); each
  class calibrates on the split's calibration cases that hold it (a case
  without that class follows the skip policy for that class only) at its own
  ``epsilon``, at ``alpha`` (``family="none"``) or ``alpha / C`` and
  ``delta / C`` (``"bonferroni"``; ``crc`` uses neither, so it is the same
  under both families). The **family-wise coverage** of a split is the share
  of its test cases in which every class present meets its epsilon, what
  ``bonferroni`` promises at ``1 - alpha``.

Both return an ``EvaluationSet``: per group or class an ``Evaluation`` (no
sweeps: run ``evaluate`` on one group's or class's statistics for those),
plus the pooled or family-wise results; ``write_report`` writes its tables.
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from .._lesions import check_level, check_overlap
from .._version import __version__
from ..calibration.families import FAMILIES, _by_class, per_class, split_by_group
from ..errors import ArgumentError, InputError
from .cases import Cases
from .methods import DEFAULT_METHODS, ragged_thresholds
from .metrics import split_metrics
from .protocol import Evaluation, MethodResult, _check_request, _example, _mean_std, evaluate, levels
from .splits import calibration_size, random_splits

if TYPE_CHECKING:  # annotations only
    from ..calibration.record import Level
    from ..volume import VolumeStats


class EvaluationSet:
    """Per-group or per-class evaluations, and what they give together.

    Attributes
    ----------
    by : {"group", "class"}
    members : dict of name -> Evaluation
    combined : dict of method -> dict of metric -> ndarray (splits,)
        Groups: every metric pooled over the groups' test cases (``"pooled"``);
        classes: ``{"family_ecr": ...}``, the share of test cases where every
        class meets its epsilon.
    inputs : dict
        The request (``family`` for classes).
    """

    def __init__(self, by: Literal["group", "class"], members: dict[Any, Evaluation],
                 combined: dict[str, dict[str, np.ndarray]], inputs: dict[str, Any], seconds: float, n_cases: int,
                 n_skipped: int) -> None:
        self.by = by
        self.members = members
        self.combined = combined
        self.inputs = inputs
        self.seconds = seconds
        self.n_cases = n_cases
        self.n_skipped = n_skipped

    def __getitem__(self, name: Any) -> Evaluation:
        return self.members[name]

    def combined_summary(self) -> dict[str, dict[str, Any]]:
        """Mean and std over splits of every combined metric, per method."""
        out = {}
        for method, metrics in self.combined.items():
            row: dict[str, Any] = {name: _mean_std(values) for name, values in metrics.items()}
            first = next(iter(metrics.values()))
            row["n_uncertified"] = int(np.isnan(first).sum())
            out[method] = row
        return out

    def to_dict(self) -> dict[str, Any]:
        """Machine-readable summary (``summary.json``)."""
        members = {}
        for name, member in self.members.items():
            d = member.to_dict()
            members[name] = {"n_cases": d["n_cases"], "n_skipped_empty": d["n_skipped_empty"],
                             "n_calibration": d["n_calibration"], "epsilon": d["inputs"]["epsilon"],
                             "alpha": d["inputs"]["alpha"], "delta": d["inputs"]["delta"],
                             "methods": d["methods"], "case_ids": d["case_ids"]}
        return {
            "clskern_version": __version__,
            "by": self.by,
            "inputs": self.inputs,
            "n_cases": self.n_cases,
            "n_skipped_empty": self.n_skipped,
            "seconds": round(self.seconds, 3),
            "members": members,
            ("pooled" if self.by == "group" else "family"): self.combined_summary(),
        }


def _request(epsilon, alpha, delta, splits, cal_fraction, seed, methods, level, overlap):
    return {"epsilon": epsilon, "alpha": alpha, "delta": delta, "splits": splits, "cal_fraction": cal_fraction,
            "seed": seed, "methods": list(methods), "level": check_level(level), "overlap": check_overlap(overlap)}


# -- groups -----------------------------------------------------------------------------------


def evaluate_groups(stats: Mapping[str, VolumeStats], groups: Mapping[str, Hashable], *, epsilon: float, alpha: float,
                    delta: float = 0.1, splits: int = 100, cal_fraction: float = 0.5, seed: int = 0,
                    methods: Iterable[str] = DEFAULT_METHODS, level: Level = "voxel",
                    overlap: float = 0.0) -> EvaluationSet:
    """The protocol per group (Mondrian): each group split and calibrated on its own cases.

    Parameters
    ----------
    stats : mapping of case id -> VolumeStats
    groups : mapping of case id -> group name
        Every case needs a group (refused, naming the case); groups may name
        other cases too.
    epsilon, alpha, delta, splits, cal_fraction, seed, methods, level, overlap
        As for ``evaluate``, for every group.

    Returns
    -------
    EvaluationSet
        ``members[group]`` equals ``evaluate`` on that group's cases alone
        (without sweeps); ``combined[method]`` the pooled metrics per split.
    """
    start = time.perf_counter()
    parts = split_by_group(stats, groups)
    members = {}
    for group, cases in parts.items():
        try:
            members[group] = evaluate(cases, epsilon=epsilon, alpha=alpha, delta=delta, splits=splits,
                                      cal_fraction=cal_fraction, seed=seed, methods=methods, sweeps=False,
                                      level=level, overlap=overlap)
        except (InputError, ArgumentError) as exc:
            raise type(exc)(f"group {group!r} ({len(cases)} case(s)): {exc}") from None
    pooled: dict[str, dict[str, Any]] = {}  # sum() starts at 0: mypy sees ndarray | float
    for method in members[next(iter(members))].results:
        names = set.intersection(*(set(m[method].metrics) for m in members.values()))
        weights = {g: m.n_cases - m.n_calibration for g, m in members.items()}
        total = sum(weights.values())
        pooled[method] = {
            name: sum(weights[g] * m[method].metrics[name] for g, m in members.items()) / total
            for name in (n for n in members[next(iter(members))][method].metrics if n in names)
        }
    inputs = {**_request(epsilon, alpha, delta, splits, cal_fraction, seed, methods, level, overlap),
              "groups": list(members)}
    n_cases = sum(m.n_cases for m in members.values())
    n_skipped = sum(m.n_skipped for m in members.values())
    return EvaluationSet("group", members, pooled, inputs, time.perf_counter() - start, n_cases, n_skipped)


# -- classes ----------------------------------------------------------------------------------


def evaluate_classes(stats: Mapping[str, Mapping[str, VolumeStats]], *, epsilon: float | Mapping[str, float],
                     alpha: float, family: str = "none", delta: float = 0.1, splits: int = 100,
                     cal_fraction: float = 0.5, seed: int = 0, methods: Iterable[str] = DEFAULT_METHODS,
                     level: Level = "voxel", overlap: float = 0.0) -> EvaluationSet:
    """The protocol per class, on one split of the cases shared by every class.

    Parameters
    ----------
    stats : mapping of case id -> mapping class -> VolumeStats
        Every case with the same classes (``clskern.classes.class_stats``).
    epsilon : float or mapping class -> float
    family : {"none", "bonferroni"}
        ``"bonferroni"``: each class at ``alpha / C`` (and ``delta / C``), so
        that every class meets its epsilon at once with probability ``>= 1 -
        alpha`` (for ``cls``).
    alpha, delta, splits, cal_fraction, seed, methods, level, overlap
        As for ``evaluate``.

    Returns
    -------
    EvaluationSet
        ``members[class]``: that class's metrics over the test cases holding
        it; ``combined[method]["family_ecr"]``: per split, the share of test
        cases in which every class present meets its epsilon.
    """
    start = time.perf_counter()
    if not isinstance(stats, Mapping):
        raise ArgumentError("evaluate_classes needs a mapping case id -> {class: VolumeStats}")
    if family not in FAMILIES:
        raise ArgumentError(f"family must be one of {', '.join(map(repr, FAMILIES))}, got {family!r}")
    names, by_class = _by_class(stats)
    epsilons = per_class(epsilon, names, "epsilon")
    checked = {n: _check_request(epsilons[n], alpha, delta, splits, cal_fraction, methods) for n in names}
    _, alpha, delta, splits, cal_fraction, methods = checked[names[0]]
    share = len(names) if family == "bonferroni" else 1
    alpha_c, delta_c = alpha / share, delta / share
    level, overlap = check_level(level), check_overlap(overlap)

    ids = [str(c) for c in stats]
    present = {n: np.array([by_class[n][c].n_fg > 0 for c in ids]) for n in names}
    kept = np.logical_or.reduce([present[n] for n in names])
    common = [c for c, k in zip(ids, kept) if k]
    if len(common) < 2:
        raise InputError(f"evaluation needs at least 2 cases with lesion voxels of some class, got {len(common)}")
    cal_idx, test_mask = random_splits(len(common), splits, cal_fraction, seed)

    members: dict[str, Evaluation] = {}
    covered_all: dict[str, np.ndarray] = {}
    failed_all: dict[str, np.ndarray] = {}
    for name in names:
        eps = checked[name][0]
        try:
            cases = Cases({c: by_class[name][c] for c in common})
            calibrating, lesions = levels(cases, level, overlap, methods)
        except (InputError, ArgumentError) as exc:
            raise type(exc)(f"class {name!r}: {exc}") from None
        position = np.full(len(common), -1, np.int64)
        held = np.array([by_class[name][c].n_fg > 0 for c in common])
        position[held] = np.arange(held.sum())
        rows = [position[r][position[r] >= 0] for r in cal_idx]
        test = test_mask[:, held]
        results = {}
        for method in methods:
            tau, cut = ragged_thresholds(method, calibrating, rows, eps, alpha_c, delta_c)
            metrics = split_metrics(cases, tau, test, eps, lesions=lesions, level=level)
            results[method] = MethodResult(method, cut, metrics, _example(cases, tau, test))
            t = tau[:, None] if np.ndim(tau) == 1 else tau
            ok = np.ones(test_mask.shape, bool)
            ok[:, held] = t <= calibrating.critical(eps)[None, :]
            covered_all[method] = covered_all.get(method, np.ones(test_mask.shape, bool)) & ok
            failed = np.isnan(tau) if np.ndim(tau) == 1 else np.isnan(tau).any(axis=1)
            failed_all[method] = failed_all.get(method, np.zeros(splits, bool)) | failed
        inputs = {**_request(eps, alpha_c, delta_c, splits, cal_fraction, seed, methods, level, overlap),
                  "connectivity": cases.connectivity, "lesion_metrics": lesions is not None}
        n_cal = float(np.mean([r.size for r in rows]))
        members[name] = Evaluation(inputs, cases, results, {}, calibrating.critical(eps).tolist(), 0.0,
                                   n_calibration=round(n_cal, 2))
        members[name].n_skipped = len(ids) - len(cases)
    n_test = test_mask.sum(axis=1)
    combined = {}
    for method in methods:
        ecr = (covered_all[method] & test_mask).sum(axis=1) / n_test
        ecr[failed_all[method]] = np.nan
        combined[method] = {"family_ecr": ecr}
    inputs = {**_request(epsilons, alpha, delta, splits, cal_fraction, seed, methods, level, overlap),
              "family": family, "classes": names, "n_calibration": calibration_size(len(common), cal_fraction)}
    return EvaluationSet("class", members, combined, inputs, time.perf_counter() - start, len(common),
                         len(ids) - len(common))
