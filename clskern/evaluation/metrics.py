"""Per-split test metrics (docs: checking the promise), from statistics only.

For each split ``s`` and test case ``i`` cut at ``tau[s, i]``:

- covered: ``FNR <= eps``, which holds exactly when ``tau <= lambda*_i(eps)``
  (FNR is a non-decreasing step function and ``lambda*`` its last point at
  or below eps), so ECR needs no curve at all;
- FNR (exact), missed (``FNR == 1``), FPR, Dice and PC (background at the
  histogram's resolution, see ``VolumeStats.fp``).

With lesion information (``lesions``: the cases at lesion level, see
``Cases.at_lesion_level``) also L-FNR (the share of a case's lesions
missed, exact from the sorted detection scores) and L-ECR (share of test
cases with L-FNR <= eps, exactly ``tau <= lambda*_lesion``). At
``level="lesion"`` the headline ``ecr`` is L-ECR and the voxel coverage is
kept as ``v_ecr``.

Each metric is averaged over the split's test cases. A method that shares
one threshold across cases (all but the authors' baseline) is evaluated at
its distinct thresholds only: one vectorised curve lookup per case.
"""

import numpy as np

METRICS = ("ecr", "v_fnr", "p_fnr", "v_fpr", "pc", "dice")
LESION_METRICS = ("l_fnr", "l_ecr")  # with lesion information; "v_ecr" too at level="lesion"


def _case_curves(stats, thresholds):
    """FNR, FPR, Dice and PC of one case at an array of thresholds."""
    fn = np.searchsorted(stats.lesion_scores, thresholds, side="left").astype(np.float64)
    tp = stats.n_fg - fn
    fp = np.asarray(stats.fp(thresholds), dtype=np.float64)
    fnr = fn / stats.n_fg
    fpr = fp / stats.n_bg if stats.n_bg else np.zeros_like(fp)
    denominator = 2 * tp + fp + fn
    dice = 2 * tp / np.where(denominator > 0, denominator, 1.0)
    pc = (tp + fp) / max(stats.n_voxels, 1)
    return fnr, fpr, dice, pc


def per_case_values(cases, tau):
    """Per-case metric matrices, each of shape (splits, n_cases).

    ``tau`` is (splits,) for a shared threshold or (splits, n_cases).
    """
    tau = np.asarray(tau, dtype=np.float64)
    n_splits, n = tau.shape[0], len(cases)
    out = {name: np.empty((n_splits, n)) for name in ("fnr", "fpr", "dice", "pc")}
    if tau.ndim == 1:
        distinct, inverse = np.unique(tau, return_inverse=True)
        for i, stats in enumerate(cases.stats):
            for name, values in zip(("fnr", "fpr", "dice", "pc"), _case_curves(stats, distinct)):
                out[name][:, i] = values[inverse]
        covered_tau = tau[:, None]
    else:
        for i, stats in enumerate(cases.stats):
            for name, values in zip(("fnr", "fpr", "dice", "pc"), _case_curves(stats, tau[:, i])):
                out[name][:, i] = values
        covered_tau = tau
    return out, covered_tau


def fnr_values(cases, tau):
    """Per-case FNR, shape (splits, n_cases), from the sorted scores alone (exact).

    At lesion level (``cases.at_lesion_level``) this is L-FNR: the sorted
    detection scores play the lesion scores' part.
    """
    tau = np.asarray(tau, dtype=np.float64)
    out = np.empty((tau.shape[0], len(cases)))
    if tau.ndim == 1:
        distinct, inverse = np.unique(tau, return_inverse=True)
        for i, stats in enumerate(cases.stats):
            out[:, i] = np.searchsorted(stats.lesion_scores, distinct, side="left")[inverse] / stats.n_fg
    else:
        for i, stats in enumerate(cases.stats):
            out[:, i] = np.searchsorted(stats.lesion_scores, tau[:, i], side="left") / stats.n_fg
    return out


def _weights(test_mask):
    """Each split's test cases weighted 1 / n_test, and the splits without test cases."""
    counts = test_mask.sum(axis=1, keepdims=True)
    return test_mask / np.where(counts > 0, counts, 1), counts[:, 0] == 0


def split_metrics(cases, tau, test_mask, epsilon, *, lesions=None, level="voxel"):
    """Mean of every metric over each split's test cases.

    Parameters
    ----------
    cases : Cases
    tau : ndarray, shape (splits,) or (splits, n_cases)
        Thresholds (mask ``p >= tau``); NaN marks a split whose calibration
        could not certify anything: its metrics are NaN.
    test_mask : bool ndarray, shape (splits, n_cases)
    epsilon : float
    lesions : Cases, optional
        The same cases at lesion level: adds ``l_fnr`` and ``l_ecr``.
    level : {"voxel", "lesion"}
        Which coverage ``ecr`` is; at ``"lesion"`` (needs ``lesions``) the
        voxel coverage is kept as ``v_ecr``.

    Returns
    -------
    dict of metric name -> float64 ndarray, shape (splits,)
        NaN for a split whose calibration failed or that has no test case.
    """
    tau = np.asarray(tau, dtype=np.float64)
    failed = np.isnan(tau) if tau.ndim == 1 else np.isnan(tau).any(axis=1)
    safe = np.where(np.isnan(tau), 0.0, tau)
    values, covered_tau = per_case_values(cases, safe)
    weights, no_test = _weights(test_mask)
    failed = failed | no_test
    critical = cases.critical(epsilon)
    out = {
        "ecr": ((covered_tau <= critical[None, :]) * weights).sum(axis=1),
        "v_fnr": (values["fnr"] * weights).sum(axis=1),
        "p_fnr": ((values["fnr"] == 1.0) * weights).sum(axis=1),
        "v_fpr": (values["fpr"] * weights).sum(axis=1),
        "pc": (values["pc"] * weights).sum(axis=1),
        "dice": (values["dice"] * weights).sum(axis=1),
    }
    if lesions is not None:
        out["l_fnr"] = (fnr_values(lesions, safe) * weights).sum(axis=1)
        out["l_ecr"] = ((covered_tau <= lesions.critical(epsilon)[None, :]) * weights).sum(axis=1)
        if level == "lesion":
            out["v_ecr"], out["ecr"] = out["ecr"], out["l_ecr"]
    for name in out:
        out[name][failed] = np.nan
    return out


def ecr_only(cases, tau, test_mask, epsilon):
    """Empirical coverage per split (NaN where the calibration failed); no curves needed.

    ``cases`` at lesion level (``Cases.at_lesion_level``) gives L-ECR.
    """
    tau = np.asarray(tau, dtype=np.float64)
    critical = cases.critical(epsilon)
    t = tau[:, None] if tau.ndim == 1 else tau
    covered = (t <= critical[None, :]) & test_mask
    counts = test_mask.sum(axis=1)
    ecr = covered.sum(axis=1) / np.where(counts > 0, counts, 1)
    failed = np.isnan(tau) if tau.ndim == 1 else np.isnan(tau).any(axis=1)
    failed = failed | (counts == 0)
    ecr[failed] = np.nan
    return ecr
