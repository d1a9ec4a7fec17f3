"""The ``authors`` baseline against a voxel-level port of the authors' code (GitHub binyutan/CLS).

The reference below follows ``utils/metrics.py`` of binyutan/CLS step by step
(``min_max_normalize``, ``find_threshold_for_loss_gpu`` with
``compute_fnr_loss_gpu``, ``compute_conformal_quantile``, ``apply_threshold``)
as ``calibration.py`` and ``test.py`` call them, in plain NumPy on voxel
arrays, with PyTorch's float32 semantics spelled out: the rescaled map is cast
to float32 (``.float()``), the Python float ``1 - mid`` is rounded to float32
when compared with it, and the loss is ``1 - float32(TP) / float32(#lesion)``
in float32, read back as a Python float (``.item()``).
"""

import numpy as np
import pytest

import clskern
from clskern import VolumeStats
from clskern.evaluation import evaluate
from clskern.evaluation.authors import (
    MAX_STEPS,
    TOLERANCE,
    authors_thresholds,
    clipped_rank,
    conformal_index,
    critical_expansions,
    score_cuts,
    volume_ranges,
)
from clskern.evaluation.cases import Cases
from clskern.evaluation.splits import random_splits

EPSILONS = (0.1, 0.2, 0.4)
ALPHAS = (0.1, 0.2, 0.5)


# -- the reference: the authors' functions, on voxels ----------------------------------


def ref_min_max_normalize(arr):
    low = np.min(arr)  # a NumPy scalar of arr's dtype: the arithmetic stays in that dtype
    high = np.max(arr)
    if high - low == 0:
        return np.zeros_like(arr)
    return (arr - low) / (high - low)


def ref_fnr_loss_float32(pred, label):
    """``compute_fnr_loss_gpu``: counts as int64, the ratio in float32."""
    positive = np.sum(label == 1)
    if positive == 0:
        return np.float32(0.0)
    tp = np.sum((pred == 1) & (label == 1))
    return np.float32(1.0) - np.float32(tp) / np.float32(positive)


def ref_find_threshold(mask, label, target, tol=1e-4, max_iter=200, exits=None):
    """``find_threshold_for_loss_gpu`` on ``torch.from_numpy(mask).float()``, ``label.int()``.

    ``exits``, a list, receives "hit" or "fallback" (which return was taken).
    """
    exits = [] if exits is None else exits
    mask = mask.astype(np.float32)
    label = label.astype(np.int32)
    low, high = 0.0, 1.0
    for _ in range(max_iter):
        mid = (low + high) / 2.0
        binarized = (mask > np.float32(1.0 - mid)).astype(np.int32)  # PyTorch: the scalar in float32
        loss = float(ref_fnr_loss_float32(binarized, label))  # ``loss.item()``
        if abs(loss - target) < tol:
            exits.append("hit")
            return mid
        elif loss > target:
            low = mid
        else:
            high = mid
    exits.append("fallback")
    return (low + high) / 2.0


def ref_conformal_quantile(scores, alpha):
    n = len(scores)
    ordered = sorted(scores)
    k = int(np.ceil((1.0 - alpha) * (1.0 + n)))
    k = min(k, n)
    return ordered[k - 1]


def ref_calibrate(volumes, epsilon, alpha):
    """``calibration.py``: per-case t_i on the rescaled maps, then the quantile."""
    ts = [ref_find_threshold(ref_min_max_normalize(scores), labels, epsilon) for scores, labels in volumes]
    return ref_conformal_quantile(ts, alpha), ts


def ref_test_mask(scores, t_hat):
    """``test.py``: ``apply_threshold(min_max_normalize(scores), t_hat)``.

    ``t_hat`` is a Python float there (read back from the calibration JSON), so NumPy compares
    in the scores' dtype; a NumPy float64 scalar would force a float64 comparison instead.
    """
    return ref_min_max_normalize(scores) >= 1.0 - float(t_hat)


# -- synthetic volumes ---------------------------------------------------------------------


def _blob(rng, shape, size):
    labels = np.zeros(shape, np.uint8)
    z, y = rng.integers(0, shape[0] - 2), rng.integers(0, shape[1] - 2)
    labels[z : z + 2, y : y + 2, : size] = 1
    return labels


def _volume(kind, rng, shape=(5, 6, 7)):
    """One case whose minimum and maximum clskern's statistics know exactly.

    The extremes are lesion voxels or histogram bin edges (0.0, 1.0, -5.0, 8.0),
    except in the ``off_bin`` kind, whose background extremes fall inside bins.
    """
    labels = _blob(rng, shape, int(rng.integers(1, shape[2] + 1)))
    lesion = labels > 0
    quality = rng.uniform(0.1, 0.7)
    raw = rng.normal(0.3 + quality * lesion, 0.2)
    if kind == "unit":  # probabilities spanning [0, 1] exactly
        scores = np.clip(raw, 0, 1).astype(np.float32)
    elif kind == "narrow":  # [0.2, 0.7]: the extremes are lesion voxels
        scores = (0.45 + 0.05 * np.tanh(raw)).astype(np.float32)
        idx = np.flatnonzero(lesion)
        scores.flat[idx[0]], scores.flat[idx[-1]] = 0.2, 0.7
    elif kind == "ties":  # multiples of 1/16: heavy ties, within lesions too
        scores = (np.round(np.clip(raw, 0, 1) * 16) / 16).astype(np.float32)
    elif kind == "logits":  # a logit map in [-5, 8]
        scores = np.clip(raw * 12 - 4, -5, 8).astype(np.float32)
        scores.flat[0], scores.flat[1] = -5.0, 8.0
    elif kind == "float64":  # rescaled in float64, cast to float32 for the bisection
        scores = np.clip(raw, 0, 1)
    elif kind == "tiny":  # 2 lesion voxels: FNR in {0, 1/2, 1}, the bisection never meets |FNR - eps| < 1e-4
        labels = np.zeros(shape, np.uint8)
        labels.flat[[3, 40]] = 1
        scores = np.clip(rng.normal(0.4 + 0.3 * labels, 0.2), 0, 1).astype(np.float32)
    elif kind == "exact_eps":  # 10 lesion voxels: FNR = eps exactly is reachable (float32 0.2 > 0.2)
        labels = np.zeros(shape, np.uint8)
        labels.flat[rng.choice(labels.size, 10, replace=False)] = 1
        scores = np.clip(rng.normal(0.3 + 0.4 * labels, 0.2), 0, 1).astype(np.float32)
    elif kind == "boundary":  # 10000 lesion voxels, FN jumps 1998 -> 2001: only float64 would stop at 2001
        n_fg, n_bg = 10_000, 100
        lesion_scores = np.linspace(0.05, 0.95, n_fg).astype(np.float32)
        lesion_scores[1999:2001] = lesion_scores[1998]
        scores = np.concatenate([lesion_scores, rng.uniform(0, 1, n_bg).astype(np.float32)])
        labels = np.concatenate([np.ones(n_fg, np.uint8), np.zeros(n_bg, np.uint8)])
        order = rng.permutation(scores.size)
        scores, labels = scores[order].reshape(101, 100), labels[order].reshape(101, 100)
    elif kind == "constant":  # max == min: the authors rescale to zeros (loss 1 at every cut)
        scores = np.full(shape, 0.25, np.float32)
    elif kind == "off_bin":
        scores = (0.03 + 0.9 * np.clip(raw, 0, 1)).astype(np.float32)  # min 0.03, not a bin edge
        scores.flat[np.flatnonzero(~lesion)[0]] = np.float32(0.9731)  # background max inside a bin
        scores.flat[np.flatnonzero(lesion)] = np.minimum(scores.flat[np.flatnonzero(lesion)], 0.95)
    else:
        raise AssertionError(kind)
    if kind in ("unit", "float64", "tiny", "exact_eps", "boundary"):  # extremes 0.0 and 1.0, on background voxels
        bg = np.flatnonzero(labels == 0)
        scores.flat[bg[0]], scores.flat[bg[-1]] = 0.0, 1.0
    return scores, labels


EXACT_KINDS = ("unit", "narrow", "ties", "logits", "float64", "tiny", "exact_eps", "boundary", "constant")


def _dataset(kinds, copies, seed):
    rng = np.random.default_rng(seed)
    return [_volume(kind, rng) for _ in range(copies) for kind in kinds]


def _cases(volumes):
    return Cases([clskern.volume_stats(s, l, name=f"c{i}") for i, (s, l) in enumerate(volumes)])


class _WithRange(VolumeStats):
    """Statistics that also carry the exact minimum and maximum over every voxel."""

    __slots__ = ("score_max", "score_min")


def _with_range(scores, labels, name):
    s = clskern.volume_stats(scores, labels, name=name)
    out = _WithRange(s.n_voxels, s.n_fg, s.lesion_scores, s.bg_bins, s.bg_counts, name=name)
    out.score_min, out.score_max = scores.min(), scores.max()
    return out


@pytest.fixture(scope="module")
def exact():
    volumes = _dataset(EXACT_KINDS, 3, seed=11)
    return volumes, _cases(volumes)


@pytest.fixture(scope="module")
def reference_t(exact):
    """The authors' t_i of every fixed case at every epsilon (they do not depend on the split)."""
    volumes, _ = exact
    return {eps: [ref_find_threshold(ref_min_max_normalize(s), l, eps) for s, l in volumes] for eps in EPSILONS}


# -- the reference itself --------------------------------------------------------------------


def test_reference_float32_semantics_match_pytorch():
    """The reference's float32 steps are what PyTorch does (skipped without PyTorch)."""
    torch = pytest.importorskip("torch")
    x = torch.tensor([np.float32(0.1), np.float32(0.3)])
    assert not (x > 0.1)[0].item()  # the Python float is rounded to float32 first
    assert (x > 0.1 + 1e-12)[0].item() is False
    for tp, n in ((7, 9), (8, 10), (3, 10), (123457, 16777217)):
        got = (1.0 - torch.tensor(tp).float() / torch.tensor(n).float()).item()
        assert got == float(np.float32(1.0) - np.float32(tp) / np.float32(n))
    assert (np.array([0.1], np.float32) >= np.float64(0.1) + 1e-12)[0]  # NumPy too rounds the cut


def test_reference_properties():
    rng = np.random.default_rng(0)
    scores, labels = _volume("tiny", rng)
    t = ref_find_threshold(ref_min_max_normalize(scores), labels, 0.2)
    assert 0 < t < 1
    empty = ref_find_threshold(scores, np.zeros_like(labels), 0.2)
    assert empty == 2.0**-201  # no lesion: loss 0 at every step, 200 halvings of high
    assert ref_conformal_quantile([0.3, 0.1, 0.2], 0.1) == 0.3  # k = ceil(3.6) = 4, clipped to 3


# -- clskern against the reference -------------------------------------------------------------


def test_exact_ranges_are_recognised(exact):
    volumes, cases = exact
    low, high, _ = volume_ranges(cases)
    for (scores, _), lo, hi in zip(volumes, low, high):
        assert lo.dtype == hi.dtype == (np.float64 if scores.dtype == np.float64 else np.float32)
        assert lo == scores.min() and hi == scores.max()


@pytest.mark.parametrize("epsilon", EPSILONS)
def test_critical_expansions_equal_the_reference(exact, reference_t, epsilon):
    _, cases = exact
    assert critical_expansions(cases, epsilon).tolist() == reference_t[epsilon]


def test_loss_is_float32():
    """At FNR = eps + 1e-4 exactly, the float32 loss misses the stopping window where float64 would hit."""
    rng = np.random.default_rng(1)
    volumes = [_volume("boundary", rng), _volume("unit", rng)]
    cases = _cases(volumes)
    exit_ = []
    t = ref_find_threshold(ref_min_max_normalize(volumes[0][0]), volumes[0][1], 0.2, exits=exit_)
    assert exit_ == ["fallback"]
    assert abs((1.0 - 7999 / 10_000) - 0.2) < TOLERANCE  # float64: a hit at FN = 2001
    assert not abs(float(np.float32(1.0) - np.float32(7999) / np.float32(10_000)) - 0.2) < TOLERANCE
    assert critical_expansions(cases, 0.2)[0] == t


def test_stopping_rules_are_both_exercised(exact):
    """The fixed cases reach both exits of the bisection: an early hit and the 200-step fallback."""
    volumes, cases = exact
    exits = set()
    for epsilon in EPSILONS:
        got = critical_expansions(cases, epsilon)
        for (scores, labels), t in zip(volumes, got):
            exit_ = []
            assert t == ref_find_threshold(ref_min_max_normalize(scores), labels, epsilon, exits=exit_)
            exits.add(exit_[0])
    assert exits == {"hit", "fallback"}
    constant = [i for i, (s, _) in enumerate(volumes) if s.min() == s.max()]
    assert constant and all(critical_expansions(cases, 0.2)[i] == 1.0 for i in constant)  # loss 1: t creeps to 1


@pytest.mark.parametrize("epsilon", EPSILONS)
@pytest.mark.parametrize("alpha", ALPHAS)
@pytest.mark.parametrize("n_cal", [3, 5, 12])  # 3 and 5: the rank is clipped for small alpha
def test_thresholds_and_masks_equal_the_reference(exact, reference_t, epsilon, alpha, n_cal):
    volumes, cases = exact
    cal_idx, _ = random_splits(len(volumes), 4, n_cal / len(volumes), seed=5)
    assert cal_idx.shape[1] == n_cal
    cut, tau = authors_thresholds(cases, cal_idx, epsilon, alpha)
    for s in range(cal_idx.shape[0]):
        t_hat = ref_conformal_quantile([reference_t[epsilon][i] for i in cal_idx[s]], alpha)
        assert cut[s] == 1.0 - t_hat
        for i, (scores, labels) in enumerate(volumes):
            np.testing.assert_array_equal(scores >= tau[s, i], ref_test_mask(scores, t_hat), err_msg=f"{s} {i}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("span", [(0.0, 1.0), (0.013, 0.77), (-5.0, 8.0), (0.5, 0.5000153)])
def test_test_time_cut_is_the_authors_mask(dtype, span):
    """``p >= tau`` equals ``min_max_normalize(p) >= 1 - t_hat`` voxel for voxel, at the cut's rounding.

    Scores are swept ulp by ulp around where the rescaled value meets the cut, for arbitrary t_hat.
    """
    rng = np.random.default_rng(7)
    low, high = dtype(span[0]), dtype(span[1])
    t_hats = np.concatenate([rng.uniform(0, 1, 40), [0.5, 0.25, 2.0**-30, 1 - 2.0**-30, 1.0]]).tolist()
    near = []
    for t_hat in t_hats:
        centre = dtype(low + (1.0 - t_hat) * (float(high) - float(low)))
        near.append(centre)
        for direction in (-np.inf, np.inf):
            v = centre
            for _ in range(40):
                v = np.nextafter(v, dtype(direction))
                near.append(v)
    inside = np.clip(np.array(near, dtype), low, high)
    scores = np.concatenate([[low, high], inside, rng.uniform(float(low), float(high), 20).astype(dtype)])
    labels = np.zeros(scores.shape, np.uint8)
    labels[:2] = 1
    # Background scores share the lesion minimum's histogram bin: only score_min/max make the range exact.
    cases = Cases([_with_range(scores, labels, "a"), _with_range(scores[::-1].copy(), labels[::-1].copy(), "b")])
    tau = score_cuts(cases, np.array([1.0 - t for t in t_hats]))  # one split per t_hat
    for s, t_hat in enumerate(t_hats):
        want = ref_test_mask(scores, t_hat)
        np.testing.assert_array_equal(scores >= tau[s, 0], want, err_msg=str(t_hat))
        np.testing.assert_array_equal(scores[::-1] >= tau[s, 1], want[::-1], err_msg=str(t_hat))


def test_conformal_index_clips_like_the_authors():
    for n in range(1, 40):
        for alpha in ALPHAS + (0.05, 0.3, 0.7, 0.9):
            k = conformal_index(n, alpha)
            assert k == min(int(np.ceil((1.0 - alpha) * (1.0 + n))), n)
            assert clipped_rank(n, alpha) == n + 1 - k
    assert conformal_index(9, 0.1) == 9 and conformal_index(3, 0.1) == 3


def test_off_bin_extremes_with_exact_range_are_exact():
    """Background extremes inside histogram bins: exact once the statistics carry min and max."""
    volumes = _dataset(("off_bin", "unit", "narrow"), 4, seed=3)
    cases = Cases([_with_range(s, l, f"c{i}") for i, (s, l) in enumerate(volumes)])
    assert volume_ranges(cases)[2].all()
    for epsilon in EPSILONS:
        want = [ref_find_threshold(ref_min_max_normalize(s), l, epsilon) for s, l in volumes]
        assert critical_expansions(cases, epsilon).tolist() == want
        cal_idx, _ = random_splits(len(volumes), 3, 0.5, seed=1)
        cut, tau = authors_thresholds(cases, cal_idx, epsilon, 0.2)
        for s in range(3):
            t_hat, _ = ref_calibrate([volumes[i] for i in cal_idx[s]], epsilon, 0.2)
            assert cut[s] == 1.0 - t_hat
            for i, (scores, _) in enumerate(volumes):
                np.testing.assert_array_equal(scores >= tau[s, i], ref_test_mask(scores, t_hat))


def test_off_bin_extremes_from_the_histogram_are_bounded():
    """Without exact min and max (statistics written before clskern recorded them), the range is
    the documented bin estimate, and the procedure is exactly the authors' run on that range;
    ``volume_stats`` now records ``score_min``/``score_max``, which makes the same cases exact."""
    from clskern._binning import bin_lower_edges

    edges = bin_lower_edges()
    volumes = _dataset(("off_bin",), 6, seed=4)
    recorded = _cases(volumes)
    assert volume_ranges(recorded)[2].all()
    for epsilon in EPSILONS:
        truth = [ref_find_threshold(ref_min_max_normalize(s), l, epsilon) for s, l in volumes]
        assert critical_expansions(recorded, epsilon).tolist() == truth
    cases = Cases([VolumeStats(s.n_voxels, s.n_fg, s.lesion_scores, s.bg_bins, s.bg_counts, name=s.name)
                   for s in recorded.stats])  # as read from statistics without a range
    low, high, exact_flags = volume_ranges(cases)
    assert not exact_flags.any()
    for (scores, labels), lo, hi in zip(volumes, low, high):
        true_lo, true_hi = scores.min(), scores.max()
        upper_of = lambda v: edges[np.searchsorted(edges, v, side="right")]
        assert lo <= true_lo < upper_of(lo) and hi <= true_hi < upper_of(hi)
        assert (true_lo - lo) <= 2.0**-8 * abs(true_lo) and (true_hi - hi) <= 2.0**-8 * abs(true_hi)
    for epsilon in EPSILONS:
        got = critical_expansions(cases, epsilon)
        rescaled = [((s - lo) / (hi - lo)) for (s, _), lo, hi in zip(volumes, low, high)]  # float32 scalars
        want = [ref_find_threshold(q, l, epsilon) for q, (_, l) in zip(rescaled, volumes)]
        assert got.tolist() == want
        truth = [ref_find_threshold(ref_min_max_normalize(s), l, epsilon) for s, l in volumes]
        assert np.allclose(got, truth, atol=0.02)  # close to the authors' exact run, not equal


def test_evaluate_runs_the_authors_method(exact, reference_t):
    volumes, _ = exact
    stats = {f"c{i}": clskern.volume_stats(s, l) for i, (s, l) in enumerate(volumes)}
    result = evaluate(stats, epsilon=0.2, alpha=0.2, splits=5, cal_fraction=0.5, seed=2,
                      methods=("authors", "cls"), sweeps=False)
    cal_idx, test_mask = random_splits(len(volumes), 5, 0.5, 2)
    for s in range(5):
        t_hat = ref_conformal_quantile([reference_t[0.2][i] for i in cal_idx[s]], 0.2)
        assert result["authors"].cut[s] == 1.0 - t_hat
        fnr = []
        for i in np.flatnonzero(test_mask[s]):
            scores, labels = volumes[i]
            pred = ref_test_mask(scores, t_hat)
            lesion = labels > 0
            fnr.append(np.sum(lesion & ~pred) / lesion.sum())
        assert result["authors"].metrics["v_fnr"][s] == pytest.approx(np.mean(fnr), rel=1e-12, abs=1e-15)
    assert TOLERANCE == 1e-4 and MAX_STEPS == 200
