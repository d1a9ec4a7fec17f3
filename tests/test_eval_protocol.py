"""The evaluation protocol against a slow, obviously correct computation from the voxels."""

import math

import numpy as np
import pytest

import clskern
from clskern.errors import InputError
from clskern.evaluation import evaluate
from clskern.evaluation.authors import clipped_rank
from clskern.evaluation.cases import Cases
from clskern.evaluation.fast_calibration import risk_controlled_thresholds
from clskern.evaluation.methods import thresholds
from clskern.evaluation.splits import random_splits
from test_eval_authors import ref_calibrate, ref_test_mask  # the authors' code, ported to voxels

METHODS = ("cls", "cls-pac", "crc", "rcps", "authors", "fixed-0.5")
PARAMS = {"cls": {"alpha": 0.2}, "cls-pac": {"alpha": 0.2, "delta": 0.1}, "crc": {}, "rcps": {"delta": 0.1}}


def _volumes(n, seed, *, grid=512, shape=(6, 7, 8)):
    """Random cases whose scores are multiples of 1/grid (histogram bin edges: FP is exact)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        labels = np.zeros(shape, np.uint8)
        z, y = rng.integers(0, shape[0] - 2), rng.integers(0, shape[1] - 3)
        labels[z : z + rng.integers(1, 3), y : y + rng.integers(1, 4), : rng.integers(2, shape[2])] = 1
        quality = rng.uniform(0.2, 0.9)
        raw = np.clip(rng.normal(0.25 + quality * labels, 0.2), 0, 1)
        scores = (np.round(raw * grid) / grid).astype(np.float32)
        out.append((f"case{i:03d}", scores, labels))
    return out


def _naive_metrics(scores, labels, t, pred=None):
    lesion = labels > 0
    pred = scores >= t if pred is None else pred
    n_fg, n_bg = lesion.sum(), (~lesion).sum()
    tp = np.sum(pred & lesion)
    fn = n_fg - tp
    fp = np.sum(pred & ~lesion)
    return {"fnr": fn / n_fg, "fpr": fp / n_bg, "dice": 2 * tp / (2 * tp + fp + fn), "pc": (tp + fp) / scores.size}


@pytest.fixture(scope="module")
def small():
    volumes = _volumes(24, seed=7)
    stats = {name: clskern.volume_stats(s, l, name=name) for name, s, l in volumes}
    return volumes, stats


def test_every_metric_matches_the_voxels(small):
    volumes, stats = small
    eps, alpha = 0.25, 0.2
    result = evaluate(stats, epsilon=eps, alpha=alpha, delta=0.1, splits=6, cal_fraction=0.5, seed=3,
                      methods=METHODS, sweeps=False)
    cal_idx, test_mask = random_splits(len(volumes), 6, 0.5, 3)
    for method in METHODS:
        for s in range(6):
            cal = [volumes[i] for i in cal_idx[s]]
            test = [volumes[i] for i in np.flatnonzero(test_mask[s])]
            if method in PARAMS:
                t = clskern.calibrate([stats[v[0]] for v in cal], epsilon=eps, method=method, **PARAMS[method]).threshold
                cuts = [t] * len(test)
            elif method == "authors":
                t_hat, _ = ref_calibrate([(v[1], v[2]) for v in cal], eps, alpha)
                assert result[method].cut[s] == 1.0 - t_hat
                cuts = [None] * len(test)
            else:
                cuts = [0.5] * len(test)
            naive = [
                _naive_metrics(v[1], v[2], c, pred=ref_test_mask(v[1], t_hat) if c is None else None)
                for v, c in zip(test, cuts)
            ]
            expect = {
                "ecr": np.mean([m["fnr"] <= eps for m in naive]),
                "v_fnr": np.mean([m["fnr"] for m in naive]),
                "p_fnr": np.mean([m["fnr"] == 1 for m in naive]),
                "v_fpr": np.mean([m["fpr"] for m in naive]),
                "pc": np.mean([m["pc"] for m in naive]),
                "dice": np.mean([m["dice"] for m in naive]),
            }
            for name, value in expect.items():
                # The authors' per-case cuts fall inside histogram bins: FP is interpolated there.
                inexact = method == "authors" and name in ("v_fpr", "pc", "dice")
                tol = {"rel": 0.02, "abs": 1e-3} if inexact else {"rel": 1e-9, "abs": 1e-12}
                assert result[method].metrics[name][s] == pytest.approx(value, **tol), (method, s, name)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("grid", [16, 2048])  # 16: heavy ties across and within cases
def test_fast_thresholds_equal_calibrate(seed, grid):
    volumes = _volumes(24, seed=seed, grid=grid)
    stats = [clskern.volume_stats(s, l, name=n) for n, s, l in volumes]
    cases = Cases(stats)
    for eps in (0.05, 0.2, 0.5):
        for frac in (0.3, 0.7):
            cal_idx, _ = random_splits(len(stats), 8, frac, seed)
            for method, params in PARAMS.items():
                tau, _ = thresholds(method, cases, cal_idx, eps, params.get("alpha"), params.get("delta"))
                for s in range(cal_idx.shape[0]):
                    try:
                        want = clskern.calibrate([stats[i] for i in cal_idx[s]], epsilon=eps, method=method, **params)
                    except clskern.CalibrationError:
                        assert math.isnan(tau[s]), (method, eps, frac, s)
                    else:
                        assert tau[s] == want.threshold, (method, eps, frac, s)


def test_uncertifiable_splits_are_nan_and_counted(small):
    _, stats = small
    result = evaluate(stats, epsilon=0.2, alpha=0.05, splits=5, cal_fraction=0.5, methods=("cls", "authors"),
                      sweeps=False)
    assert result["cls"].n_uncertified == 5  # n_cal = 12 < 1/alpha - 1
    assert np.isnan(result["cls"].metrics["ecr"]).all()
    assert result.to_dict()["methods"]["cls"]["ecr"]["mean"] is None
    assert result["authors"].n_uncertified == 0  # the authors clip the rank instead
    assert clipped_rank(12, 0.05) == 1


def test_crc_cannot_certify_below_one_over_n_plus_one(small):
    _, stats = small
    cases = Cases(stats)
    cal_idx, _ = random_splits(len(cases), 3, 0.3, 0)  # 7 calibration cases: 1/(n+1) = 0.125
    assert np.isnan(risk_controlled_thresholds(cases, cal_idx, "crc", 0.12)).all()
    assert not np.isnan(risk_controlled_thresholds(cases, cal_idx, "crc", 0.6)).any()


def test_splits_are_reproducible_partitions():
    cal_a, test_a = random_splits(30, 20, 0.4, seed=11)
    cal_b, test_b = random_splits(30, 20, 0.4, seed=11)
    assert np.array_equal(cal_a, cal_b) and np.array_equal(test_a, test_b)
    assert cal_a.shape == (20, 12)
    for s in range(20):
        assert len(set(cal_a[s])) == 12
        assert not test_a[s, cal_a[s]].any() and test_a[s].sum() == 18
    assert not np.array_equal(random_splits(30, 20, 0.4, seed=12)[0], cal_a)


def test_empty_cases_are_skipped_and_counted(small):
    volumes, stats = small
    empty = clskern.volume_stats(np.zeros((3, 3, 3), np.float32), np.zeros((3, 3, 3), np.uint8), name="empty")
    result = evaluate({**stats, "empty": empty}, epsilon=0.2, alpha=0.2, splits=3, sweeps=False)
    assert result.n_skipped == 1 and result.n_cases == len(volumes)
    assert "empty" not in result.case_ids


@pytest.mark.parametrize(
    "kwargs",
    [{"methods": ("cls", "nope")}, {"methods": ()}, {"epsilon": 1.0}, {"alpha": 0.0}, {"splits": 0},
     {"cal_fraction": 1.0}, {"methods": ("cls", "cls")}],
)
def test_bad_requests_raise(small, kwargs):
    _, stats = small
    request = {"epsilon": 0.2, "alpha": 0.2, "splits": 3, "sweeps": False, **kwargs}
    with pytest.raises(ValueError):
        evaluate(stats, **request)


def test_too_few_cases_and_wrong_types():
    with pytest.raises(InputError, match="at least 2 cases"):
        evaluate({"a": clskern.volume_stats(np.ones(4, np.float32), np.ones(4, np.uint8))}, epsilon=0.2, alpha=0.2)
    with pytest.raises(TypeError, match="case x"):
        evaluate({"x": 0.3, "y": 0.4}, epsilon=0.2, alpha=0.2)


def test_sweeps_have_every_grid_point(small):
    _, stats = small
    result = evaluate(stats, epsilon=0.2, alpha=0.2, splits=4, methods=("cls", "crc", "fixed-0.5"),
                      sweep_alphas=(0.3, 0.5), sweep_fractions=(0.4, 0.6), sweep_epsilons=(0.1, 0.5))
    sweeps = result.to_dict()["sweeps"]
    assert sweeps["alpha"]["values"] == [0.3, 0.5] and set(sweeps["alpha"]["methods"]) == {"cls", "fixed-0.5"}
    assert len(sweeps["cal_fraction"]["methods"]["crc"]["mean"]) == 2
    assert len(sweeps["epsilon"]["methods"]["cls"]["dice"]["mean"]) == 2
    # the fixed cut's FNR does not depend on epsilon, its coverage does
    v_fnr = sweeps["epsilon"]["methods"]["fixed-0.5"]["v_fnr"]["mean"]
    assert v_fnr[0] == pytest.approx(v_fnr[1])


@pytest.mark.parametrize("method", ["fixed-nan", "fixed-NaN", "fixed-inf", "fixed--inf", "fixed-1e999"])
def test_non_finite_fixed_cuts_are_refused(small, method):
    from clskern.evaluation.methods import check_methods

    with pytest.raises(ValueError, match="must be a finite number"):
        check_methods(("cls", method))
    _, stats = small
    with pytest.raises(ValueError, match="finite"):
        evaluate(stats, epsilon=0.2, alpha=0.2, splits=3, sweeps=False, methods=("cls", method))
    assert check_methods(("fixed-0.5", "fixed-1e-3")) == ("fixed-0.5", "fixed-1e-3")


def test_huge_split_requests_are_refused_before_allocating(small):
    from clskern.evaluation.splits import MAX_SPLIT_CELLS

    # 10**12 cells would need ~16 TB: refused at once instead of OOM-killed
    with pytest.raises(ValueError, match="splits x cases"):
        random_splits(10**6, 10**6, 0.5, 0)
    with pytest.raises(ValueError, match="use fewer splits"):
        random_splits(1000, MAX_SPLIT_CELLS // 1000 + 1, 0.5, 0)
    _, stats = small
    with pytest.raises(ValueError, match="splits x cases"):
        evaluate(stats, epsilon=0.2, alpha=0.2, splits=100_000_000, sweeps=False)
    assert random_splits(10, 3, 0.5, 0)[0].shape == (3, 5)


def test_the_alpha_sweep_uses_the_epsilon_asked():
    rng = np.random.default_rng(5)
    stats = {f"c{i}": clskern.volume_stats(rng.random((6, 6, 6), dtype=np.float32),
                                           rng.random((6, 6, 6)) > 0.7, name=f"c{i}") for i in range(12)}
    summary = evaluate(stats, epsilon=0.15, alpha=0.2, splits=5, sweep_alphas=(0.3, 0.5)).to_dict()
    assert summary["sweeps"]["alpha"]["epsilon"] == 0.15
    summary = evaluate(stats, epsilon=0.15, alpha=0.2, splits=5, sweep_alphas=(0.3,), sweep_epsilon=0.4).to_dict()
    assert summary["sweeps"]["alpha"]["epsilon"] == 0.4
