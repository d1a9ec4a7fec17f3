"""The paper's validation protocol (docs: checking the promise): ``evaluate``.

R random splits of the cases into calibration and test parts; per split and
method, calibrate on one part and measure on the other (ECR, V-FNR, P-FNR,
V-FPR, PC, Dice, and with lesion information L-FNR and L-ECR); report mean
and standard deviation over splits, and the sweeps of the paper's figures.
Everything works from ``VolumeStats``: no volume is read again.
``level="lesion"`` calibrates every method at lesion level (docs: lesions) and
makes the headline ECR lesion-level. Per group and per class:
``clskern.evaluation.sets``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .._lesions import check_level, check_overlap
from .._validate import check_fraction
from ..errors import ArgumentError
from .._version import __version__
from .cases import Cases
from .methods import DEFAULT_METHODS, USES_ALPHA, check_methods, fixed_cut, thresholds
from .metrics import LESION_METRICS, METRICS, ecr_only, split_metrics
from .splits import calibration_size, random_splits

if TYPE_CHECKING:  # annotations only
    from ..calibration.record import Level
    from ..volume import VolumeStats

SWEEP_ALPHAS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
SWEEP_FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
SWEEP_EPSILONS = (0.1, 0.3, 0.5)
SWEEP_EPSILON_FOR_ALPHA = None  # None: the epsilon that was asked (the paper used 0.4 for its figure)


def _mean_std(values):
    """Mean and standard deviation (ddof=1) over the certified splits; None if none."""
    ok = values[~np.isnan(values)]
    if ok.size == 0:
        return {"mean": None, "std": None}
    std = float(ok.std(ddof=1)) if ok.size > 1 else 0.0
    return {"mean": float(ok.mean()), "std": std}


class MethodResult:
    """One method's per-split results.

    Attributes
    ----------
    method : str
    cut : ndarray, shape (splits,)
        The calibrated threshold per split (NaN: not certifiable).
    metrics : dict of str -> ndarray, shape (splits,)
        ECR, V-FNR, P-FNR, V-FPR, PC and Dice over each split's test cases;
        with lesion information also L-FNR and L-ECR (and at lesion level
        V-ECR, the voxel coverage, ECR being L-ECR there).
    example : dict of str -> ndarray
        Per test case FNR and FPR in the first split (for the scatter plot).
    """

    def __init__(self, method: str, cut: np.ndarray, metrics: dict[str, np.ndarray],
                 example: dict[str, np.ndarray]) -> None:
        self.method = method
        self.cut = cut
        self.metrics = metrics
        self.example = example

    @property
    def n_uncertified(self) -> int:
        """Splits whose calibration set could not certify the request."""
        return int(np.isnan(self.cut).sum())

    def summary(self) -> dict[str, Any]:
        """Mean and std over splits of every metric and of the threshold."""
        names = [n for n in (*METRICS, *LESION_METRICS, "v_ecr") if n in self.metrics]
        out: dict[str, Any] = {name: _mean_std(self.metrics[name]) for name in names}
        out["threshold"] = _mean_std(self.cut)
        out["n_uncertified"] = self.n_uncertified
        return out


class Evaluation:
    """Result of ``evaluate``: per-method results, sweeps and the request.

    ``to_dict()`` is what ``summary.json`` holds; ``write_report`` (in
    ``clskern.evaluation.report``) writes the tables and plots.
    """

    def __init__(self, inputs: dict[str, Any], cases: Cases, results: dict[str, MethodResult],
                 sweeps: dict[str, Any], critical: list[float], seconds: float,
                 n_calibration: float | None = None) -> None:
        self.inputs = inputs
        self.n_calibration: float = (calibration_size(len(cases), inputs["cal_fraction"]) if n_calibration is None
                                     else n_calibration)
        self.case_ids: list[str] = cases.ids
        self.n_cases: int = len(cases)
        self.n_skipped: int = cases.n_skipped
        self.results = results
        self.sweeps = sweeps
        self.critical_thresholds = critical
        self.seconds = seconds

    def __getitem__(self, method: str) -> MethodResult:
        return self.results[method]

    def to_dict(self) -> dict[str, Any]:
        """Machine-readable summary (JSON-safe: NaN becomes None)."""
        return {
            "clskern_version": __version__,
            "inputs": self.inputs,
            "n_cases": self.n_cases,
            "n_skipped_empty": self.n_skipped,
            "n_calibration": self.n_calibration,
            "seconds": round(self.seconds, 3),
            "methods": {m: r.summary() for m, r in self.results.items()},
            "sweeps": self.sweeps,
            "case_ids": list(self.case_ids),
        }


def _check_request(epsilon, alpha, delta, splits, cal_fraction, methods):
    epsilon = check_fraction(epsilon, "epsilon")
    alpha = check_fraction(alpha, "alpha", closed_low=False)
    delta = check_fraction(delta, "delta", closed_low=False)
    if isinstance(splits, bool) or not isinstance(splits, (int, np.integer)) or splits < 1:
        raise ValueError(f"splits must be a positive integer, got {splits!r}")
    check_fraction(cal_fraction, "cal_fraction", closed_low=False)
    return epsilon, alpha, delta, int(splits), float(cal_fraction), check_methods(methods)


def levels(cases, level, overlap, methods=()):
    """``(calibrating, lesions)``: the cases the methods calibrate on, and the cases at lesion level.

    ``level="voxel"``: the cases themselves, and their lesion level at
    ``overlap`` when every case has lesion information of one connectivity
    (else None: no L-FNR). ``level="lesion"``: the lesion level both times
    (refused, naming a case, without lesion information).
    """
    level, overlap = check_level(level), check_overlap(overlap)
    if level == "voxel":
        return cases, (cases.at_lesion_level(overlap) if cases.connectivity is not None else None)
    if "authors" in methods:
        raise ArgumentError("method 'authors' is the authors' voxel-level procedure; it has no lesion level "
                            "(leave it out, or evaluate at level='voxel')")
    lesions = cases.at_lesion_level(overlap)
    return lesions, lesions


def _run_methods(cases, methods, cal_idx, test_mask, epsilon, alpha, delta, level="voxel", lesions=None):
    results = {}
    calibrating = lesions if level == "lesion" else cases
    for method in methods:
        tau, cut = thresholds(method, calibrating, cal_idx, epsilon, alpha, delta)
        metrics = split_metrics(cases, tau, test_mask, epsilon, lesions=lesions, level=level)
        example = _example(cases, tau, test_mask)
        results[method] = MethodResult(method, cut, metrics, example)
    return results


def _example(cases, tau, test_mask):
    """Per test case FNR and FPR in the first split."""
    test = np.flatnonzero(test_mask[0])
    t = tau[0] if np.ndim(tau) == 1 else tau[0][test]
    t = np.broadcast_to(np.asarray(t, dtype=np.float64), test.shape)
    if np.isnan(t).any():
        return {"fnr": [], "fpr": []}
    fnr = [float(cases.stats[i].fnr(x)) for i, x in zip(test, t)]
    fpr = [float(cases.stats[i].fpr(x)) for i, x in zip(test, t)]
    return {"fnr": fnr, "fpr": fpr}


def _ecr_sweep(cases, methods, grid, make, seed, n_splits):
    """ECR mean/std per method at each value of a swept parameter."""
    out = {m: {"mean": [], "std": [], "n_uncertified": []} for m in methods}
    for value in grid:
        cal_fraction, epsilon, alpha, delta = make(value)
        cal_idx, test_mask = random_splits(len(cases), n_splits, cal_fraction, seed)
        for m in methods:
            tau, _ = thresholds(m, cases, cal_idx, epsilon, alpha, delta)
            ecr = ecr_only(cases, tau, test_mask, epsilon)
            stats = _mean_std(ecr)
            out[m]["mean"].append(stats["mean"])
            out[m]["std"].append(stats["std"])
            out[m]["n_uncertified"].append(int(np.isnan(ecr).sum()))
    return out


def _sweeps(cases, methods, epsilon, alpha, delta, n_splits, cal_fraction, seed, grids, level, lesions):
    calibrating = lesions if level == "lesion" else cases
    alpha_methods = [m for m in methods if m in USES_ALPHA or fixed_cut(m) is not None]
    n_cal = calibration_size(len(cases), cal_fraction)
    sweeps = {
        "alpha": {
            "epsilon": grids["sweep_epsilon"],
            "values": list(grids["alphas"]),
            "n_test": len(cases) - n_cal,
            "methods": _ecr_sweep(
                calibrating, alpha_methods, grids["alphas"],
                lambda a: (cal_fraction, grids["sweep_epsilon"], a, delta), seed, n_splits,
            ),
        },
        "cal_fraction": {
            "epsilon": epsilon,
            "alpha": alpha,
            "values": list(grids["fractions"]),
            "methods": _ecr_sweep(
                calibrating, methods, grids["fractions"], lambda f: (f, epsilon, alpha, delta), seed, n_splits,
            ),
        },
    }
    eps_sweep = {"values": list(grids["epsilons"]), "methods": {m: {} for m in methods}}
    cal_idx, test_mask = random_splits(len(cases), n_splits, cal_fraction, seed)
    for eps in grids["epsilons"]:
        for m in methods:
            tau, _ = thresholds(m, calibrating, cal_idx, eps, alpha, delta)
            metrics = split_metrics(cases, tau, test_mask, eps, lesions=lesions, level=level)
            for name in ("ecr", "v_fnr", "p_fnr", "dice", "l_fnr"):
                if name not in metrics:
                    continue
                entry = eps_sweep["methods"][m].setdefault(name, {"mean": [], "std": []})
                stats = _mean_std(metrics[name])
                entry["mean"].append(stats["mean"])
                entry["std"].append(stats["std"])
    sweeps["epsilon"] = eps_sweep
    return sweeps


def evaluate(
    stats: Mapping[str, VolumeStats] | Sequence[VolumeStats] | Cases,
    *,
    epsilon: float,
    alpha: float,
    delta: float = 0.1,
    splits: int = 100,
    cal_fraction: float = 0.5,
    seed: int = 0,
    methods: Iterable[str] = DEFAULT_METHODS,
    sweeps: bool = True,
    sweep_alphas: Iterable[float] = SWEEP_ALPHAS,
    sweep_epsilon: float | None = SWEEP_EPSILON_FOR_ALPHA,
    sweep_fractions: Iterable[float] = SWEEP_FRACTIONS,
    sweep_epsilons: Iterable[float] = SWEEP_EPSILONS,
    level: Level = "voxel",
    overlap: float = 0.0,
) -> Evaluation:
    """Run the paper's validation protocol on per-volume statistics (docs: checking the promise).

    Parameters
    ----------
    stats : mapping of case id -> VolumeStats, or sequence of VolumeStats
        Cases without lesion voxels are left out of calibration and test
        alike (FNR is undefined there) and counted in ``n_skipped_empty``.
        A ``clskern.evaluation.cases.Cases`` built once may be passed
        instead, to reuse its cached critical thresholds across calls.
    epsilon : float
        Tolerated FNR, in [0, 1).
    alpha : float
        Miscoverage of ``cls``, ``cls-pac`` and ``authors``, in (0, 1).
    delta : float
        Confidence parameter of ``cls-pac`` and ``rcps``, in (0, 1).
    splits : int
        Random calibration/test splits (the paper: 100).
    cal_fraction : float
        Share of the cases that calibrates in each split (rounded, at least
        one case on each side).
    seed : int
        Seed of the splits: the same seed gives the same splits.
    methods : sequence of str
        Any of ``cls``, ``cls-pac``, ``crc``, ``rcps``, ``authors`` and
        ``fixed-T`` (a fixed cut at ``T``).
    sweeps : bool
        Also run the paper's sweeps: ECR against alpha (at ``sweep_epsilon``,
        by default the ``epsilon`` asked)
        and against the calibration fraction, and V-FNR, P-FNR and Dice
        against epsilon.
    level : {"voxel", "lesion"}
        ``"lesion"``: every method calibrates at lesion level (as
        ``calibrate(level="lesion", overlap=...)``) and ECR is lesion-level
        (L-ECR: share of test cases whose L-FNR, the share of their lesions
        missed, is at most epsilon); the voxel metrics are measured at the
        same thresholds. Needs statistics with lesion information
        (``volume_stats(connectivity=...)``, one connectivity); ``authors``
        is refused there.
    overlap : float
        In [0, 1]: a lesion is detected at ``t`` when at least ``max(1,
        ceil(overlap * size))`` of its voxels score ``>= t`` (docs: lesions). At
        ``level="voxel"`` it defines the L-FNR and L-ECR reported beside the
        voxel metrics when every case has lesion information.

    Returns
    -------
    Evaluation
        Per method the per-split metrics (``result[method].metrics``) and
        their means and standard deviations (``to_dict()``). A split whose
        calibration set cannot certify the request (``calibrate`` would
        raise ``CalibrationError``) has NaN metrics and counts in
        ``n_uncertified``; means are over the other splits.

    Notes
    -----
    Thresholds equal what ``clskern.calibrate`` returns on each split's
    calibration cases, bit for bit; FNR and ECR are exact, FPR, PC and Dice
    have the background histogram's resolution.
    """
    start = time.perf_counter()
    epsilon, alpha, delta, splits, cal_fraction, methods = _check_request(
        epsilon, alpha, delta, splits, cal_fraction, methods
    )
    cases = stats if isinstance(stats, Cases) else Cases(stats)
    level, overlap = check_level(level), check_overlap(overlap)
    calibrating, lesions = levels(cases, level, overlap, methods)
    cal_idx, test_mask = random_splits(len(cases), splits, cal_fraction, seed)
    results = _run_methods(cases, methods, cal_idx, test_mask, epsilon, alpha, delta, level, lesions)
    inputs = {
        "epsilon": epsilon, "alpha": alpha, "delta": delta, "splits": splits,
        "cal_fraction": cal_fraction, "seed": seed, "methods": list(methods),
        "level": level, "overlap": overlap, "connectivity": cases.connectivity,
        "lesion_metrics": lesions is not None,
    }
    sweep_results = {}
    if sweeps:
        grids = {
            "alphas": tuple(float(a) for a in sweep_alphas),
            "sweep_epsilon": float(epsilon if sweep_epsilon is None else sweep_epsilon),
            "fractions": tuple(float(f) for f in sweep_fractions),
            "epsilons": tuple(float(e) for e in sweep_epsilons),
        }
        sweep_results = _sweeps(cases, methods, epsilon, alpha, delta, splits, cal_fraction, seed, grids, level,
                                lesions)
    critical = calibrating.critical(epsilon).tolist()
    return Evaluation(inputs, cases, results, sweep_results, critical, time.perf_counter() - start)


def binomial_se(alpha: float, n_test: int) -> float:
    """Binomial standard error of one split's ECR at nominal coverage ``1 - alpha``."""
    return math.sqrt(alpha * (1 - alpha) / n_test)
