"""clskern's crc and rcps against MAPIE's SemanticSegmentationController on the same 2-D slices."""

import warnings

import numpy as np
import pytest

import clskern
from clskern.evaluation.peers import MAPIE_DEFAULT_GRID, grid_risk_control, recall_risks, restrict_to_grid
from clskern.evaluation.slices import lesion_slices

mapie_ss = pytest.importorskip("mapie.risk_control", reason="MAPIE >= 1.3 not installed")
Controller = mapie_ss.SemanticSegmentationController

# (lesion type, backbone, epsilon, slices): the last one leaves rcps uncertified (MAPIE's extreme value)
CASES = [("liver", "calibrated", 0.25, 60), ("lymph_node", "overconfident", 0.35, 60),
         ("colon", "noisy_boundary", 0.4, 60), ("kidney", "underconfident", 0.15, 30)]
_MAPIE_CACHE = {}


def _mapie(scores, labels, *, epsilon, method, delta=None, bound=None, grid=MAPIE_DEFAULT_GRID):
    key = (id(scores), epsilon, method, delta, bound, grid.size)
    if key in _MAPIE_CACHE:
        return _MAPIE_CACHE[key]
    controller = Controller(
        predict_function=lambda x: x, risk="recall", method=method, target_level=1 - epsilon,
        confidence_level=None if delta is None else 1 - delta, rcps_bound=bound, predict_params=grid,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MAPIE warns when nothing on its grid is certified
        controller.calibrate(scores, labels)
    _MAPIE_CACHE[key] = float(controller.best_predict_param[0]), controller
    return _MAPIE_CACHE[key]


def _stats(scores, labels):
    return [clskern.volume_stats(s, l, name=f"slice{i}") for i, (s, l) in enumerate(zip(scores, labels))]


@pytest.fixture(scope="module", params=CASES, ids=lambda c: f"{c[0]}-{c[1]}")
def data(request):
    kind, backbone, epsilon, n_slices = request.param
    scores, labels = lesion_slices(kind, backbone, n_slices, seed=4)
    return scores, labels, _stats(scores, labels), epsilon


def test_exact_crc_on_mapies_grid_is_mapies_threshold(data):
    scores, labels, stats, eps = data
    exact = clskern.calibrate(stats, epsilon=eps, method="crc")
    expected, _ = _mapie(scores, labels, epsilon=eps, method="crc")
    assert restrict_to_grid(exact.threshold, MAPIE_DEFAULT_GRID) == expected


@pytest.mark.parametrize("method,bound", [("crc", None), ("rcps", "hoeffding"), ("rcps", "bernstein")])
def test_grid_risk_control_equals_mapie(data, method, bound):
    scores, labels, stats, eps = data
    delta = 0.1 if method == "rcps" else None
    expected, controller = _mapie(scores, labels, epsilon=eps, method=method, delta=delta, bound=bound)
    ours, certified = grid_risk_control(stats, epsilon=eps, method=method, delta=delta, bound=bound or "hoeffding")
    assert ours == expected
    assert certified == bool((controller.r_hat_plus < eps).any())  # MAPIE's own bound values
    if hasattr(controller, "_risks"):  # private in MAPIE 1.6; compare the per-image risks when present
        assert np.array_equal(recall_risks(stats, MAPIE_DEFAULT_GRID), controller._risks)


def test_fine_grid_converges_to_exact_crc(data):
    """On a grid of every lesion score's predecessor, MAPIE's convention recovers the exact threshold."""
    scores, labels, stats, eps = data
    exact = clskern.calibrate(stats, epsilon=eps, method="crc").threshold
    lesion = np.unique(np.concatenate([s.lesion_scores for s in stats]).astype(np.float64))
    grid = np.nextafter(lesion, -np.inf)  # p > nextafter(s) is p >= s
    chosen, certified = grid_risk_control(stats, grid, epsilon=eps, method="crc")
    assert certified
    assert np.nextafter(chosen, np.inf) <= exact  # MAPIE's strict "<" can only stop earlier
    assert np.nextafter(chosen, np.inf) >= lesion[max(np.searchsorted(lesion, exact) - 3, 0)]


def test_restrict_to_grid_edges():
    grid = np.array([0.0, 0.25, 0.5])
    assert restrict_to_grid(0.5, grid) == 0.25  # p > 0.25 is the largest grid mask inside p >= 0.5
    assert restrict_to_grid(0.50001, grid) == 0.5
    assert restrict_to_grid(0.0, grid) == 0.0 and restrict_to_grid(np.inf, grid) == 0.5


def test_grid_risk_control_refuses_bad_input(data):
    _, _, stats, eps = data
    with pytest.raises(ValueError, match="rcps needs delta"):
        grid_risk_control(stats, epsilon=eps, method="rcps")
    with pytest.raises(ValueError, match="method"):
        grid_risk_control(stats, epsilon=eps, method="cls")
