"""Lesion-level evaluation (SPEC 1b, 3): L-FNR and L-ECR against a plain per-split reference.

The reference works from the voxels of each split's test cases:
``scipy.ndimage.label`` (26-connectivity) finds the lesions, a lesion is
detected at ``t`` when at least ``max(1, ceil(overlap * size))`` of its voxels
(``fractions.Fraction``) score ``>= t``, L-FNR is the share missed; the
thresholds are ``clskern.calibrate`` on the split's calibration cases.
"""

import fractions
import math

import numpy as np
import pytest
from scipy import ndimage

import clskern
from clskern.errors import ArgumentError
from clskern.evaluation import evaluate
from clskern.evaluation.splits import random_splits

SHAPE = (10, 9, 8)
PARAMS = {"cls": {"alpha": 0.2}, "cls-pac": {"alpha": 0.2, "delta": 0.1}, "crc": {}, "rcps": {"delta": 0.1}}
METHODS = (*PARAMS, "fixed-0.5")


def _case(rng, i):
    labels = np.zeros(SHAPE, np.uint8)
    for _ in range(int(rng.integers(1, 6))):
        lo = [int(rng.integers(0, s - 1)) for s in SHAPE]
        hi = [min(s, a + int(rng.integers(1, 4))) for a, s in zip(lo, SHAPE)]
        labels[tuple(slice(a, b) for a, b in zip(lo, hi))] = 1
    quality = rng.uniform(0.1, 0.8)
    scores = np.clip(rng.normal(0.3 + quality * labels, 0.25), 0, 1)
    return f"c{i:02d}", (np.round(scores * 64) / 64).astype(np.float32), labels  # ties, bin edges


def _lesion_fnr(scores, labels, t, overlap):
    """L-FNR at ``t`` from the voxels."""
    components, n = ndimage.label(labels > 0, structure=np.ones((3, 3, 3)))
    missed = 0
    for j in range(1, n + 1):
        voxels = scores[components == j]
        need = max(1, math.ceil(fractions.Fraction(overlap) * voxels.size))
        missed += int(np.sum(voxels >= t) < need)
    return missed / n


def _voxel_fnr(scores, labels, t):
    lesion = labels > 0
    return np.sum(lesion & (scores < t)) / lesion.sum()


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(4)
    volumes = [_case(rng, i) for i in range(26)]
    stats = {n: clskern.volume_stats(p, y, name=n) for n, p, y in volumes}
    return volumes, stats


@pytest.mark.parametrize("level,overlap", [("voxel", 0.0), ("voxel", 0.5), ("lesion", 0.0), ("lesion", 0.4)])
def test_lesion_metrics_match_the_voxels(data, level, overlap):
    volumes, stats = data
    eps, splits, seed = 0.3, 5, 2
    result = evaluate(stats, epsilon=eps, alpha=0.2, delta=0.1, splits=splits, seed=seed, methods=METHODS,
                      sweeps=False, level=level, overlap=overlap)
    cal_idx, test_mask = random_splits(len(volumes), splits, 0.5, seed)
    for method in METHODS:
        metrics = result[method].metrics
        assert set(metrics) >= {"ecr", "v_fnr", "l_fnr", "l_ecr"}
        for s in range(splits):
            cal = [stats[volumes[i][0]] for i in cal_idx[s]]
            test = [volumes[i] for i in np.flatnonzero(test_mask[s])]
            if method in PARAMS:
                at = {"level": "lesion", "overlap": overlap} if level == "lesion" else {}
                t = clskern.calibrate(cal, epsilon=eps, method=method, **at, **PARAMS[method]).threshold
            else:
                t = 0.5
            assert result[method].cut[s] == t
            l_fnr = [_lesion_fnr(p, y, t, overlap) for _, p, y in test]
            v_fnr = [_voxel_fnr(p, y, t) for _, p, y in test]
            expect = {"l_fnr": np.mean(l_fnr), "l_ecr": np.mean([f <= eps for f in l_fnr]),
                      "v_fnr": np.mean(v_fnr),
                      "ecr": np.mean([f <= eps for f in (l_fnr if level == "lesion" else v_fnr)])}
            if level == "lesion":
                expect["v_ecr"] = np.mean([f <= eps for f in v_fnr])
            for name, value in expect.items():
                assert metrics[name][s] == pytest.approx(value, rel=1e-12, abs=1e-15), (method, s, name)


def test_lesion_level_summary_and_sweeps(data):
    _, stats = data
    result = evaluate(stats, epsilon=0.3, alpha=0.2, splits=4, level="lesion", overlap=0.5,
                      sweep_alphas=(0.2, 0.5), sweep_fractions=(0.5,), sweep_epsilons=(0.3,))
    summary = result.to_dict()
    assert summary["inputs"]["level"] == "lesion" and summary["inputs"]["overlap"] == 0.5
    assert summary["inputs"]["connectivity"] == 26
    cls = summary["methods"]["cls"]
    assert cls["ecr"] == cls["l_ecr"] and "v_ecr" in cls
    # the sweep's point at the asked setting is the main table's
    assert summary["sweeps"]["alpha"]["methods"]["cls"]["mean"][0] == pytest.approx(cls["ecr"]["mean"])
    assert summary["sweeps"]["epsilon"]["methods"]["cls"]["l_fnr"]["mean"][0] == pytest.approx(cls["l_fnr"]["mean"])


def test_without_lesion_information(data):
    volumes, _ = data
    plain = {n: clskern.volume_stats(p, y, name=n, connectivity=None) for n, p, y in volumes}
    summary = evaluate(plain, epsilon=0.3, alpha=0.2, splits=3, sweeps=False).to_dict()
    assert "l_fnr" not in summary["methods"]["cls"] and summary["inputs"]["lesion_metrics"] is False
    with pytest.raises(ArgumentError, match="connectivity"):
        evaluate(plain, epsilon=0.3, alpha=0.2, splits=3, sweeps=False, level="lesion")


def test_authors_and_bad_levels_are_refused(data):
    _, stats = data
    with pytest.raises(ArgumentError, match="authors"):
        evaluate(stats, epsilon=0.3, alpha=0.2, splits=3, sweeps=False, level="lesion", methods=("authors",))
    with pytest.raises(ValueError):
        evaluate(stats, epsilon=0.3, alpha=0.2, splits=3, sweeps=False, level="lesions")
    with pytest.raises(ValueError):
        evaluate(stats, epsilon=0.3, alpha=0.2, splits=3, sweeps=False, overlap=1.5)


def test_empty_cases_are_skipped_at_lesion_level(data):
    volumes, stats = data
    empty = np.zeros(SHAPE, np.uint8)
    with_empty = {**stats, "empty": clskern.volume_stats(volumes[0][1], empty, name="empty")}
    a = evaluate(with_empty, epsilon=0.3, alpha=0.2, splits=3, sweeps=False, level="lesion").to_dict()
    b = evaluate(stats, epsilon=0.3, alpha=0.2, splits=3, sweeps=False, level="lesion").to_dict()
    assert a["n_skipped_empty"] == 1 and a["methods"] == b["methods"]
