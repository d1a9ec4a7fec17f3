"""clskern's risk control restricted to a threshold grid, in MAPIE's conventions.

MAPIE (>= 1.3, ``mapie.risk_control.SemanticSegmentationController``)
controls the recall risk ``1 - TP / n_fg`` of each image on a grid of
thresholds ``lambda`` (default ``np.arange(0, 1, 0.01)``), predicting
lesion where ``p > lambda`` (strict), and picks the largest grid value
whose bound, and every smaller one's, stays strictly below the target:

- ``crc``: ``n/(n+1) * mean risk + 1/(n+1) < eps``;
- ``rcps``: an upper confidence bound (``hoeffding``: mean +
  ``sqrt(log(1/delta) / (2n))``; ``bernstein``: empirical Bernstein; its
  default ``wsr`` is not reproduced here) ``< eps``.
  clskern's own ``rcps`` uses the Hoeffding-Bentkus bound instead, which
  MAPIE does not offer for recall.

clskern's exact thresholds translate to that convention: the mask
``p >= t`` certified by ``calibrate`` is certified for every ``t' <= t``,
and ``p > lambda`` is the mask ``p >= nextafter(lambda)``, so MAPIE's grid
answer is the largest grid value strictly below clskern's exact threshold
(``restrict_to_grid``), up to MAPIE's strict ``<`` in place of ``<=``.
``grid_risk_control`` computes MAPIE's answer from ``VolumeStats`` alone,
so the two can be compared on the same calibration set without MAPIE's
(cases x pixels x grid) intermediate arrays.
"""

import numpy as np

MAPIE_DEFAULT_GRID = np.arange(0, 1, 0.01)


def restrict_to_grid(threshold, grid):
    """Largest grid value strictly below ``threshold`` (a ``p >= t`` cut as a ``p > lambda`` cut).

    Returns ``grid[0]`` when none is below (MAPIE's answer when nothing is
    certified). ``grid`` must be sorted ascending.
    """
    grid = np.asarray(grid, dtype=np.float64)
    j = int(np.searchsorted(grid, threshold, side="left")) - 1
    return float(grid[max(j, 0)])


def recall_risks(stats, grid):
    """Per-case recall risk ``1 - TP / n_fg`` with ``TP = #{lesion, p > lambda}``: (cases, grid)."""
    grid = np.asarray(grid, dtype=np.float64)
    risks = np.empty((len(stats), grid.size))
    for i, s in enumerate(stats):
        scores = np.asarray(s.lesion_scores, dtype=np.float64)
        tp = (s.n_fg - np.searchsorted(scores, grid, side="right")).astype(np.float64)
        risks[i] = 1 - tp / s.n_fg
    return risks


def _upper_bound(risks, method, delta, bound):
    n = risks.shape[0]
    mean = risks.mean(axis=0)
    if method == "crc":
        return (n / (n + 1)) * mean + (1 / (n + 1))
    if bound == "hoeffding":
        return mean + np.sqrt((1 / (2 * n)) * np.log(1 / delta))
    if bound == "bernstein":
        variance = np.var(risks, axis=0, ddof=1)
        return mean + np.sqrt((variance * 2 * np.log(2 / delta)) / n) + (7 * np.log(2 / delta)) / (3 * (n - 1))
    raise ValueError(f"bound must be 'hoeffding' or 'bernstein', got {bound!r}")


def grid_risk_control(stats, grid=MAPIE_DEFAULT_GRID, *, epsilon, method="crc", delta=None, bound="hoeffding"):
    """MAPIE's recall-risk threshold, computed from clskern statistics.

    Parameters
    ----------
    stats : sequence of VolumeStats
        One per calibration image (every one with lesion voxels).
    grid : array_like
        Candidate thresholds, ascending (MAPIE's ``predict_params``).
    epsilon : float
        Target risk (MAPIE's ``1 - target_level``).
    method : {"crc", "rcps"}
    delta : float, optional
        ``1 - confidence_level`` for ``rcps``.
    bound : {"hoeffding", "bernstein"}
        The ``rcps`` upper bound (MAPIE's ``rcps_bound``).

    Returns
    -------
    threshold : float
        The chosen grid value; predict lesion where ``p > threshold``.
    certified : bool
        False when no grid value meets the target (MAPIE then warns and
        returns the extreme value by the same rule).
    """
    if method not in ("crc", "rcps"):
        raise ValueError(f"method must be 'crc' or 'rcps', got {method!r}")
    if method == "rcps" and delta is None:
        raise ValueError("rcps needs delta")
    if any(s.n_fg == 0 for s in stats):
        raise ValueError("every calibration image needs lesion voxels (MAPIE refuses unlabelled images)")
    grid = np.asarray(grid, dtype=np.float64)
    upper = _upper_bound(recall_risks(stats, grid), method, delta, bound)
    invalid = upper >= epsilon
    increasing = bool(upper[0] < upper[-1])
    order = invalid if increasing else invalid[::-1]
    run = np.cumsum(order)
    last_valid = int(np.where(run == 0, np.arange(grid.size), 0).max())
    index = last_valid if increasing else grid.size - 1 - last_valid
    return float(grid[index]), bool(not invalid.all())
