"""The guarantees, by simulation over many random calibration/test splits.

A pool of synthetic cases stands in for the population. Random splits of the
pool are exchangeable, so ``cls`` coverage and ``crc`` mean FNR are exactly
as promised on average; ``cls-pac`` draws calibration sets with replacement
from the pool and measures conditional miscoverage on the whole pool.
Tolerances are 3 standard errors of the simulated means.
"""

import numpy as np
import pytest

import clskern

SPLITS = 2000


@pytest.fixture(scope="module")
def pool():
    """400 cases with case-level over/under-confidence and lesions of varied size."""
    rng = np.random.default_rng(2026)
    cases = []
    for i in range(400):
        n_fg = int(rng.integers(20, 300))
        confidence = rng.uniform(0.5, 4.0)
        lesion = rng.beta(confidence, 1.0, n_fg)
        background = rng.beta(1.0, 4.0 * confidence, 400)
        scores = np.concatenate([lesion, background]).astype(np.float32)
        labels = np.r_[np.ones(n_fg, np.uint8), np.zeros(400, np.uint8)]
        cases.append(clskern.volume_stats(scores, labels, name=f"sim{i}"))
    return cases


@pytest.mark.parametrize("n,alpha,epsilon", [(19, 0.2, 0.2), (50, 0.1, 0.3), (9, 0.5, 0.1)])
def test_cls_marginal_coverage(pool, n, alpha, epsilon):
    rng = np.random.default_rng(n)
    critical = np.array([c.critical_threshold(epsilon) for c in pool])
    coverage = np.empty(SPLITS)
    for r in range(SPLITS):
        order = rng.permutation(critical.size)
        threshold = clskern.calibrate(critical[order[:n]].tolist(), epsilon=epsilon, alpha=alpha).threshold
        coverage[r] = np.mean(critical[order[n:]] >= threshold)  # FNR <= eps  <=>  t <= critical
    se = coverage.std(ddof=1) / np.sqrt(SPLITS)
    assert 1 - alpha - 3 * se <= coverage.mean() <= 1 - alpha + 1 / (n + 1) + 3 * se


def test_cls_pac_violation_frequency(pool):
    n, alpha, delta, epsilon = 60, 0.2, 0.1, 0.2
    rng = np.random.default_rng(7)
    critical = np.array([c.critical_threshold(epsilon) for c in pool])
    violations = 0
    for _ in range(SPLITS):
        sample = critical[rng.integers(0, critical.size, n)]
        threshold = clskern.calibrate(sample.tolist(), epsilon=epsilon, alpha=alpha, delta=delta, method="cls-pac").threshold
        violations += np.mean(critical < threshold) > alpha
    frequency = violations / SPLITS
    assert frequency <= delta + 3 * np.sqrt(delta * (1 - delta) / SPLITS)


def test_crc_mean_fnr(pool):
    n, epsilon, splits = 20, 0.15, SPLITS
    rng = np.random.default_rng(11)
    mean_fnr = np.empty(splits)
    for r in range(splits):
        order = rng.permutation(len(pool))
        threshold = clskern.calibrate([pool[i] for i in order[:n]], epsilon=epsilon, method="crc").threshold
        mean_fnr[r] = np.mean([pool[i].fnr(threshold) for i in order[n:]])
    se = mean_fnr.std(ddof=1) / np.sqrt(splits)
    assert mean_fnr.mean() <= epsilon + 3 * se
    assert mean_fnr.mean() >= epsilon - 0.05  # and not wastefully conservative
