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


def _critical_pool(rng, n_cases, confidence_range, epsilon, n_bg=50):
    """Critical thresholds at ``epsilon`` of simulated cases (lesion scores ~ Beta(confidence, 1))."""
    out = np.empty(n_cases)
    for i in range(n_cases):
        n_fg = int(rng.integers(20, 200))
        lesion = rng.beta(rng.uniform(*confidence_range), 1.0, n_fg).astype(np.float32)
        stats = clskern.volume_stats(np.r_[lesion, np.zeros(n_bg, np.float32)],
                                     np.r_[np.ones(n_fg, np.uint8), np.zeros(n_bg, np.uint8)])
        out[i] = stats.critical_threshold(epsilon)
    return out


def test_per_group_coverage():
    """Mondrian calibration: each group's coverage is >= 1 - alpha on its own test cases, while one
    threshold for the pooled cases over-covers one group and under-covers the other."""
    alpha, epsilon, splits = 0.2, 0.2, 1000
    rng = np.random.default_rng(31)
    pools = {"confident": _critical_pool(rng, 200, (2.0, 6.0), epsilon),
             "unsure": _critical_pool(rng, 200, (0.3, 1.0), epsilon)}
    n_cal = {"confident": 24, "unsure": 14}
    coverage = {g: np.empty(splits) for g in pools}
    pooled = {g: np.empty(splits) for g in pools}
    for r in range(splits):
        cal, groups, test = {}, {}, {}
        for g, pool in pools.items():
            order = rng.permutation(pool.size)
            for j in order[: n_cal[g]]:
                cal[f"{g}{j}"] = pool[j]
                groups[f"{g}{j}"] = g
            test[g] = pool[order[n_cal[g]:]]
        by_group = clskern.calibrate(cal, epsilon=epsilon, alpha=alpha, groups=groups)
        one = clskern.calibrate(cal, epsilon=epsilon, alpha=alpha).threshold
        for g in pools:
            coverage[g][r] = np.mean(test[g] >= by_group[g].threshold)
            pooled[g][r] = np.mean(test[g] >= one)
    for g in pools:
        se = coverage[g].std(ddof=1) / np.sqrt(splits)
        n = n_cal[g]
        assert 1 - alpha - 3 * se <= coverage[g].mean() <= 1 - alpha + 1 / (n + 1) + 3 * se, g
    assert pooled["unsure"].mean() < 1 - alpha - 0.05 < 1 - alpha + 0.05 < pooled["confident"].mean()


def test_family_wise_coverage_bonferroni_three_classes():
    """Three classes per case (correlated through a case-level confidence): with family='bonferroni' every
    class of a test case meets its tolerance at once with probability >= 1 - alpha; family='none' keeps
    each class's own 1 - alpha but not the family's."""
    alpha, splits, n = 0.2, 1000, 44
    epsilon = {"WT": 0.1, "TC": 0.2, "ET": 0.3}
    rng = np.random.default_rng(41)
    n_cases = 300
    case_confidence = rng.uniform(0.5, 3.0, n_cases)
    critical = {}
    for c, eps in epsilon.items():
        values = np.empty(n_cases)
        for i in range(n_cases):
            n_fg = int(rng.integers(20, 200))
            lesion = rng.beta(case_confidence[i] * rng.uniform(0.5, 2.0), 1.0, n_fg)
            values[i] = np.sort(lesion.astype(np.float32))[int(np.floor(eps * n_fg + 1e-9))]
        critical[c] = values
    joint = {"bonferroni": np.empty(splits), "none": np.empty(splits)}
    per_class_none = {c: np.empty(splits) for c in epsilon}
    for r in range(splits):
        order = rng.permutation(n_cases)
        cal = {f"case{i}": {c: critical[c][i] for c in epsilon} for i in order[:n]}
        test = order[n:]
        for family in joint:
            cals = clskern.calibrate(cal, epsilon=epsilon, alpha=alpha, family=family)
            met = np.ones(test.size, bool)
            for c in epsilon:
                ok = critical[c][test] >= cals[c].threshold
                met &= ok
                if family == "none":
                    per_class_none[c][r] = ok.mean()
            joint[family][r] = met.mean()
    se = joint["bonferroni"].std(ddof=1) / np.sqrt(splits)
    assert joint["bonferroni"].mean() >= 1 - alpha - 3 * se
    for c in epsilon:
        se_c = per_class_none[c].std(ddof=1) / np.sqrt(splits)
        assert per_class_none[c].mean() >= 1 - alpha - 3 * se_c
    assert joint["none"].mean() < 1 - alpha  # each class's promise alone does not cover the family


# -- lesion level (SPEC 1b) ----------------------------------------------------------------


@pytest.fixture(scope="module")
def lesion_pool():
    """300 cases of 3 to 8 separate box lesions (1 to 27 voxels) whose detection varies per lesion and per case."""
    rng = np.random.default_rng(1212)
    cases = []
    for i in range(300):
        labels = np.zeros((16, 16, 8), np.uint8)
        scores = rng.beta(1.0, 6.0, labels.shape)
        confidence = rng.uniform(0.5, 3.0)
        corners = rng.permutation([(a, b, c) for a in (0, 4, 8, 12) for b in (0, 4, 8, 12) for c in (0, 4)])
        for a, b, c in corners[: rng.integers(3, 9)]:  # cells 4 apart: lesions never touch
            box = tuple(slice(x, x + int(rng.integers(1, 4))) for x in (a, b, c))
            labels[box] = 1
            scores[box] = rng.beta(confidence * rng.uniform(0.3, 3.0), 1.0, labels[box].shape)
        cases.append(clskern.volume_stats(scores.astype(np.float32), labels, name=f"les{i}"))
    return cases


@pytest.mark.parametrize("n,alpha,epsilon,overlap", [(19, 0.2, 0.2, 0.0), (39, 0.1, 0.3, 0.5)])
def test_cls_marginal_coverage_at_lesion_level(lesion_pool, n, alpha, epsilon, overlap):
    """P(L-FNR <= eps) >= 1 - alpha over random splits, with tolerances from the binomial standard error."""
    rng = np.random.default_rng(n)
    critical = np.array([c.critical_threshold(epsilon, level="lesion", overlap=overlap) for c in lesion_pool])
    split = rng.permutation(critical.size)[:n]  # the statistics path gives the very threshold of the numbers
    whole = clskern.calibrate([lesion_pool[i] for i in split], epsilon=epsilon, alpha=alpha, level="lesion",
                              overlap=overlap)
    assert whole.threshold == clskern.calibrate(critical[split].tolist(), epsilon=epsilon, alpha=alpha).threshold
    coverage = np.empty(SPLITS)
    for r in range(SPLITS):
        order = rng.permutation(critical.size)
        threshold = clskern.calibrate(critical[order[:n]].tolist(), epsilon=epsilon, alpha=alpha).threshold
        coverage[r] = np.mean(critical[order[n:]] >= threshold)  # L-FNR <= eps  <=>  t <= lesion-level critical
    se = np.sqrt(alpha * (1 - alpha) / (critical.size - n) / SPLITS)  # binomial SE of the mean (splits alike)
    se = max(se, coverage.std(ddof=1) / np.sqrt(SPLITS))
    assert 1 - alpha - 3 * se <= coverage.mean() <= 1 - alpha + 1 / (n + 1) + 3 * se


def test_crc_mean_lesion_fnr(lesion_pool):
    """E[L-FNR] <= eps for crc at lesion level (overlap 0.5)."""
    n, epsilon, overlap, splits = 20, 0.2, 0.5, 1000
    rng = np.random.default_rng(13)
    views = [c.at_lesion_level(overlap) for c in lesion_pool]
    mean_fnr = np.empty(splits)
    for r in range(splits):
        order = rng.permutation(len(lesion_pool))
        threshold = clskern.calibrate([lesion_pool[i] for i in order[:n]], epsilon=epsilon, method="crc",
                                      level="lesion", overlap=overlap).threshold
        mean_fnr[r] = np.mean([views[i].fnr(threshold) for i in order[n:]])
    se = mean_fnr.std(ddof=1) / np.sqrt(splits)
    assert mean_fnr.mean() <= epsilon + 3 * se
    assert mean_fnr.mean() >= epsilon - 0.06  # and not wastefully conservative
