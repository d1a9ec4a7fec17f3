"""calibrate against direct computation of SPEC 2's formulas."""

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

import clskern
import naive
from clskern.calibration._binomial import binom_cdf_table, hoeffding_bentkus_pvalue


def random_cases(rng, n, lesion=(1, 40), size=200, quantise=False):
    cases = []
    for i in range(n):
        scores = rng.beta(rng.uniform(0.5, 3), rng.uniform(0.5, 3), size).astype(np.float32)
        if quantise:
            scores = np.round(scores * 10) / 10
        labels = np.zeros(size, np.uint8)
        labels[: rng.integers(*lesion)] = 1
        cases.append(clskern.volume_stats(scores, labels, name=f"case_{i:03d}"))
    return cases


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 60), st.floats(0.01, 0.99), st.integers(0, 2**32 - 1))
def test_cls_is_the_kth_order_statistic(n, alpha, seed):
    thresholds = np.random.default_rng(seed).random(n)
    expected, k = naive.cls_threshold(thresholds, alpha)
    if k == 0:
        with pytest.raises(clskern.CalibrationError, match=r"needs n >= (\d+)") as info:
            clskern.calibrate(list(thresholds), epsilon=0.2, alpha=alpha)
        need = int(info.value.args[0].split("needs n >= ")[1].split()[0])
        assert naive.cls_threshold(np.zeros(need), alpha)[1] == 1
        assert naive.cls_threshold(np.zeros(need - 1), alpha)[1] == 0
    else:
        result = clskern.calibrate(list(thresholds), epsilon=0.2, alpha=alpha)
        assert (result.threshold, result.k, result.n) == (expected, k, n)


def test_cls_rank_uses_exact_inequality():
    # alpha (n + 1) = 0.29 * 100 rounds to 28.999999999999996; k must still be 29.
    result = clskern.calibrate(list(range(99)), epsilon=0.1, alpha=0.29)
    assert result.k == 29 and result.threshold == 28.0


def test_cls_refuses_small_n_and_names_the_smallest():
    with pytest.raises(clskern.CalibrationError, match="needs n >= 19"):
        clskern.calibrate([0.5] * 18, epsilon=0.2, alpha=0.05)
    assert clskern.calibrate([0.5] * 19, epsilon=0.2, alpha=0.05).k == 1


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 80), st.floats(0.02, 0.6), st.floats(0.01, 0.5), st.integers(0, 2**32 - 1))
def test_cls_pac_against_scipy(n, alpha, delta, seed):
    thresholds = np.random.default_rng(seed).random(n)
    expected, k = naive.cls_pac_threshold(thresholds, alpha, delta)
    if k == 0:
        with pytest.raises(clskern.CalibrationError, match="needs n >= "):
            clskern.calibrate(thresholds.tolist(), epsilon=0.2, alpha=alpha, delta=delta, method="cls-pac")
    else:
        result = clskern.calibrate(thresholds.tolist(), epsilon=0.2, alpha=alpha, delta=delta, method="cls-pac")
        assert (result.threshold, result.k) == (expected, k)


@pytest.mark.parametrize("n,alpha,delta,k", [(3, 0.5, 0.5, 2), (65, 0.5, 0.5, 33)])
def test_cls_pac_rank_at_exact_ties(n, alpha, delta, k):
    # BinomCDF(k - 1; n, alpha) == delta exactly: j = k still qualifies (scipy's cdf says no for 65).
    assert naive.cls_pac_threshold(np.arange(n, dtype=float), alpha, delta)[1] == k
    assert clskern.calibrate(list(range(n)), epsilon=0.2, alpha=alpha, delta=delta, method="cls-pac").k == k


def test_cls_pac_exact_at_ties():
    # BinomCDF(1; 3, 0.5) = 0.5 exactly: j = 2 qualifies at delta = 0.5.
    result = clskern.calibrate([0.1, 0.2, 0.3], epsilon=0.2, alpha=0.5, delta=0.5, method="cls-pac")
    assert (result.k, result.threshold) == (2, 0.2)


def test_cls_pac_smallest_n():
    # (1 - 0.1)^n <= 0.05 first holds at n = 29.
    with pytest.raises(clskern.CalibrationError, match="needs n >= 29"):
        clskern.calibrate([0.5] * 28, epsilon=0.2, alpha=0.1, delta=0.05, method="cls-pac")


@pytest.mark.parametrize("n", [1, 10, 200, 3000])
@pytest.mark.parametrize("p", [0.01, 0.2, 0.5, 0.93])
def test_binomial_cdf_against_scipy(n, p):
    np.testing.assert_allclose(binom_cdf_table(n, p), sps.binom.cdf(np.arange(n + 1), n, p), rtol=1e-10, atol=1e-300)


def test_binomial_table_is_cached_read_only():
    table = binom_cdf_table(40, 0.2)
    assert binom_cdf_table(40, 0.2) is table
    with pytest.raises(ValueError):
        table[0] = 1.0


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("epsilon", [0.1, 0.2, 0.35])
def test_crc_against_brute_force(seed, epsilon):
    rng = np.random.default_rng(seed)
    cases = random_cases(rng, int(rng.integers(5, 30)), quantise=seed % 2 == 1)
    expected = naive.crc_threshold([c.lesion_scores for c in cases], epsilon)
    if expected is None:
        with pytest.raises(clskern.CalibrationError):
            clskern.calibrate(cases, epsilon=epsilon, method="crc")
    else:
        assert clskern.calibrate(cases, epsilon=epsilon, method="crc").threshold == expected


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("epsilon,delta", [(0.2, 0.1), (0.3, 0.05)])
def test_rcps_against_fixed_sequence_scan(seed, epsilon, delta):
    rng = np.random.default_rng(100 + seed)
    cases = random_cases(rng, int(rng.integers(20, 60)), quantise=seed % 2 == 1)
    expected = naive.rcps_threshold([c.lesion_scores for c in cases], epsilon, delta)
    result = clskern.calibrate(cases, epsilon=epsilon, delta=delta, method="rcps")
    assert result.threshold == expected


@pytest.mark.parametrize("loss_sum,n,eps", [(0.0, 30, 0.2), (3.2, 50, 0.2), (9.9, 50, 0.2), (1.0, 10, 0.5)])
def test_hoeffding_bentkus_pvalue(loss_sum, n, eps):
    assert hoeffding_bentkus_pvalue(loss_sum, n, eps) == pytest.approx(naive.hb_pvalue(loss_sum, n, eps), rel=1e-9)


def test_risk_methods_refuse_too_few_cases():
    cases = random_cases(np.random.default_rng(0), 3)
    with pytest.raises(clskern.CalibrationError, match=r"crc .* needs n >= 9"):
        clskern.calibrate(cases, epsilon=0.1, method="crc")
    with pytest.raises(clskern.CalibrationError, match=r"rcps .* needs n >= 29"):
        clskern.calibrate(cases, epsilon=0.1, delta=0.05, method="rcps")


def test_empty_cases_skip_pass_error():
    rng = np.random.default_rng(5)
    cases = random_cases(rng, 30)
    empty = clskern.volume_stats(np.zeros(10, np.float32), np.zeros(10, np.uint8), name="empty_case")
    with_empty = cases + [empty]
    skipped = clskern.calibrate(with_empty, epsilon=0.2, alpha=0.1)
    assert (skipped.n, skipped.n_skipped) == (30, 1)
    assert skipped.threshold == clskern.calibrate(cases, epsilon=0.2, alpha=0.1).threshold
    passed = clskern.calibrate(with_empty, epsilon=0.2, alpha=0.1, empty="pass")
    assert (passed.n, passed.n_skipped) == (31, 0) and passed.critical_thresholds[-1] == math.inf
    with pytest.raises(clskern.EmptyGroundTruthError, match="empty_case"):
        clskern.calibrate(with_empty, epsilon=0.2, alpha=0.1, empty="error")
    crc = clskern.calibrate(with_empty, epsilon=0.2, method="crc", empty="pass")
    expected = naive.crc_threshold([c.lesion_scores for c in with_empty], 0.2)
    assert crc.threshold == expected and crc.n == 31
    # Thresholds given directly: None marks an empty case.
    assert clskern.calibrate([0.3] * 20 + [None], epsilon=0.2, alpha=0.1).n_skipped == 1


def test_stats_and_thresholds_give_the_same_cls():
    cases = random_cases(np.random.default_rng(9), 40)
    direct = [c.critical_threshold(0.25) for c in cases]
    a = clskern.calibrate(cases, epsilon=0.25, alpha=0.1)
    b = clskern.calibrate(direct, epsilon=0.25, alpha=0.1)
    assert a.threshold == b.threshold and a.k == b.k == 4


def test_mapping_keys_are_case_ids():
    cases = random_cases(np.random.default_rng(2), 20)
    result = clskern.calibrate({f"id{i}": c for i, c in enumerate(cases)}, epsilon=0.2, alpha=0.2)
    assert result.case_ids == [f"id{i}" for i in range(20)]


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(method="cls"), "needs alpha"),
        (dict(method="cls-pac", alpha=0.1), "needs delta"),
        (dict(method="crc", alpha=0.1), "takes no alpha"),
        (dict(method="rcps", delta=0.1, alpha=0.1), "takes no alpha"),
        (dict(method="bisect", alpha=0.1), "method must be one of"),
        (dict(alpha=0.0), "alpha must lie in"),
        (dict(alpha=1.0), "alpha must lie in"),
        (dict(alpha=0.1, empty="drop"), "empty must be one of"),
    ],
)
def test_bad_requests(kwargs, message):
    with pytest.raises(ValueError, match=message):
        clskern.calibrate([0.5] * 30, epsilon=0.2, **kwargs)


def test_crc_needs_statistics():
    with pytest.raises(TypeError, match="crc and rcps need VolumeStats"):
        clskern.calibrate([0.5] * 30, epsilon=0.2, method="crc")


@pytest.mark.parametrize("method,kwargs", [("cls", dict(alpha=0.1)), ("cls-pac", dict(alpha=0.2, delta=0.1)), ("crc", {}), ("rcps", dict(delta=0.1))])
def test_json_round_trip(method, kwargs):
    cases = random_cases(np.random.default_rng(4), 60)
    cases.append(clskern.volume_stats(np.zeros(3, np.float32), np.zeros(3, np.uint8), name="e"))
    result = clskern.calibrate(cases, epsilon=0.2, method=method, empty="pass", **kwargs)
    text = result.to_json()
    assert "Infinity" not in text and json.loads(text)["method"] == method
    record = json.loads(text)
    assert record["format_version"] == 2 and len(record["sha256"]) == 64  # the digest travels with the record
    again = clskern.Calibration.from_json(text)
    assert again == result
    assert again.guarantee and str(result.n) in again.guarantee


@pytest.mark.parametrize("drop", ["threshold", "critical_thresholds", "method"])
def test_json_with_missing_fields_refused(drop):
    d = clskern.calibrate([0.5] * 30, epsilon=0.2, alpha=0.1).to_dict()
    del d[drop]
    with pytest.raises(clskern.InputError, match="missing or unexpected"):
        clskern.Calibration.from_dict(d)


def test_json_of_another_format_refused():
    result = clskern.calibrate([0.5] * 30, epsilon=0.2, alpha=0.1)
    d = result.to_dict()
    d["format_version"] = 99
    with pytest.raises(clskern.InputError, match="format version 99"):
        clskern.Calibration.from_json(json.dumps(d))
