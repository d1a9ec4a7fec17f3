"""Score normalisation (SPEC 1d), against a plain NumPy reference that computes q per voxel in float64.

q = (p - min p) / (max p - min p) over every voxel of a volume (q = 0 when
max = min). Critical thresholds, FNR curves, masks and calibrations in q must
equal what that reference gives, exactly.
"""

import json
import math
import subprocess
import sys

import numpy as np
import pytest

import clskern
from clskern._normalize import minmax, score_cut
from clskern.calibration.record import Calibration
from clskern.volume import VolumeStats
from naive import critical_threshold as naive_critical_threshold

DTYPES = [np.float16, np.float32, np.float64]


def q_of(scores):
    """The reference: q per voxel, in float64, exactly as SPEC 1d writes it."""
    p = np.asarray(scores).astype(np.float64)
    low, high = p.min(), p.max()
    return np.zeros_like(p) if high == low else (p - low) / (high - low)


def volume(dtype, seed, *, shape=(9, 11, 13), order="C", logits=False, ties=False):
    rng = np.random.default_rng(seed)
    p = rng.standard_normal(shape) * 4 if logits else rng.beta(0.5, 2.0, shape)
    if ties:
        p = np.round(p * 16) / 16
    scores = np.asarray(p.astype(dtype), order=order)
    labels = np.asarray(rng.random(shape) < 0.3, order=order)
    return scores, labels


def thresholds_to_try(q):
    values = np.unique(q)
    near = np.concatenate([np.nextafter(values, -np.inf), np.nextafter(values, np.inf)])
    rng = np.random.default_rng(0)
    return np.concatenate([values[:: max(1, values.size // 40)], near[:: max(1, near.size // 40)],
                           rng.random(20), [-1.0, -0.0, 0.0, 1.0, 1.5, -np.inf, np.inf]])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["probabilities", "logits", "ties"])
@pytest.mark.parametrize("order", ["C", "F"])
def test_score_cut_mask_equals_q_per_voxel(dtype, kind, order):
    scores, _ = volume(dtype, 1, order=order, logits=kind == "logits", ties=kind == "ties")
    q = q_of(scores)
    low, high = clskern.score_range(scores)
    assert float(low) == float(scores.min()) and float(high) == float(scores.max())
    lesion_dtype = np.float64 if dtype == np.float64 else np.float32
    assert low.dtype == lesion_dtype
    for t in thresholds_to_try(q):
        cut = score_cut(t, low, high, lesion_dtype)
        np.testing.assert_array_equal(scores.astype(np.float64) >= cut, q >= t)
        mask = clskern.apply_threshold(scores, t, normalize="minmax")
        assert mask.flags.f_contiguous == (order == "F")
        np.testing.assert_array_equal(mask, (q >= t).astype(np.uint8))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["probabilities", "logits", "ties"])
def test_critical_thresholds_and_curves_in_q(dtype, kind):
    scores, labels = volume(dtype, 2, logits=kind == "logits", ties=kind == "ties")
    q = q_of(scores)
    stats = clskern.volume_stats(scores, labels, connectivity=None)
    eps = np.array([0.0, 0.05, 0.1, 0.29, 0.5, 0.9])
    expected = np.array([naive_critical_threshold(q, labels, e) for e in eps])
    np.testing.assert_array_equal(stats.critical_threshold(eps, normalize="minmax"), expected)
    np.testing.assert_array_equal(clskern.critical_threshold(scores, labels, eps, normalize="minmax"), expected)
    assert clskern.critical_threshold(scores, labels, 0.1, normalize="minmax") == expected[2]
    assert isinstance(stats.critical_threshold(0.1, normalize="minmax"), float)
    lesion_q, bg_q = q[labels], q[~labels]
    t = thresholds_to_try(q)
    np.testing.assert_array_equal(stats.fn(t, normalize="minmax"), [(lesion_q < x).sum() for x in t])
    np.testing.assert_array_equal(stats.tp(t, normalize="minmax"), [(lesion_q >= x).sum() for x in t])
    np.testing.assert_array_equal(stats.fnr(t, normalize="minmax"), [(lesion_q < x).sum() / lesion_q.size for x in t])
    # fp in q: exact where the score cut is a bin edge; within one bin's count otherwise
    fp = stats.fp(t, normalize="minmax")
    exact = np.array([(bg_q >= x).sum() for x in t])
    assert np.all(np.abs(fp - exact) <= np.max(stats.bg_counts))
    edge_t = np.array([0.0, 2.0, -1.0])  # cuts -inf, +inf: exact (t = 1 cuts at the maximum, inside its bin)
    np.testing.assert_array_equal(stats.fp(edge_t, normalize="minmax"), [(bg_q >= x).sum() for x in edge_t])
    for name in ("fpr", "dice", "pc"):
        assert np.shape(getattr(stats, name)(t, normalize="minmax")) == t.shape


def test_fp_exact_at_a_bin_edge_in_q():
    scores = np.array([0.0, 0.25, 0.5, 0.5, 0.75, 1.0, 1.0, 0.125], np.float32)  # min 0, max 1: q = p
    labels = np.array([0, 0, 0, 1, 0, 0, 1, 0], bool)
    stats = clskern.volume_stats(scores, labels, connectivity=None)
    for t in (0.0, 0.125, 0.25, 0.5, 0.75, 1.0):  # bin edges of p, and q = p here
        assert stats.fp(t, normalize="minmax") == np.count_nonzero(scores[~labels] >= t)


@pytest.mark.parametrize("dtype", DTYPES)
def test_constant_volume_q_is_zero(dtype):
    scores = np.full((4, 5, 6), 0.3, dtype)
    labels = np.zeros(scores.shape, bool)
    labels[1, 2, 3] = True
    stats = clskern.volume_stats(scores, labels, connectivity=None)
    assert stats.critical_threshold(0.2, normalize="minmax") == 0.0
    assert clskern.critical_threshold(scores, labels, 0.2, normalize="minmax") == 0.0
    for t, on in ((-1.0, 1), (0.0, 1), (1e-300, 0), (0.5, 0), (1.0, 0)):
        np.testing.assert_array_equal(clskern.apply_threshold(scores, t, normalize="minmax"), on)
        assert stats.fn(t, normalize="minmax") == 1 - on


def test_signed_zeros_infinities_nan_and_empty():
    scores = np.array([[-0.0, 0.0], [0.5, -0.0]], np.float32)
    low, high = clskern.score_range(scores)
    assert low.tobytes() == np.float32(0.0).tobytes() and high == 0.5
    stats = clskern.volume_stats(scores, scores > 0.1, connectivity=None)
    assert stats.score_min.tobytes() == np.float32(0.0).tobytes()
    with pytest.raises(clskern.InputError, match="finite"):
        clskern.apply_threshold(np.array([0.0, np.inf], np.float32), 0.5, normalize="minmax")
    with pytest.raises(clskern.NaNScoresError, match="1 NaN"):
        clskern.apply_threshold(np.array([0.0, np.nan, 1.0], np.float32), 0.5, normalize="minmax")
    with pytest.raises(clskern.NaNScoresError):  # normalisation reads every voxel, background included
        clskern.critical_threshold(np.array([np.nan, 0.2, 0.9]), np.array([0, 1, 1]), 0.1, normalize="minmax")
    assert clskern.apply_threshold(np.zeros(0, np.float32), 0.5, normalize="minmax").size == 0
    assert clskern.score_range(np.zeros((0, 3))) == (None, None)
    with pytest.raises(clskern.InputError, match="normalize must be"):
        clskern.apply_threshold(scores, 0.5, normalize="zscore")
    with pytest.raises(clskern.InputError, match="normalize must be"):
        stats.critical_threshold(0.1, normalize=None)


def test_stats_carry_the_range_through_bytes_and_checks():
    scores, labels = volume(np.float32, 3, logits=True)
    stats = clskern.volume_stats(scores, labels, name="c", connectivity=None)
    again = VolumeStats.from_bytes(stats.to_bytes())
    assert again == stats and again.score_min.dtype == np.float32
    assert (again.score_min, again.score_max) == (scores.min(), scores.max())
    meta = {"format": 2, "n_voxels": stats.n_voxels, "n_fg": stats.n_fg, "name": "c", "connectivity": None}
    import io
    buffer = io.BytesIO()
    np.savez(buffer, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8), lesion_scores=stats.lesion_scores,
             bg_bins=stats.bg_bins, bg_counts=stats.bg_counts)
    old = VolumeStats.from_bytes(buffer.getvalue())  # written without a range: None
    assert old.score_min is None and old.score_max is None
    with pytest.raises(clskern.InputError, match="score_min and score_max"):
        old.critical_threshold(0.1, normalize="minmax")
    args = (stats.n_voxels, stats.n_fg, stats.lesion_scores, stats.bg_bins, stats.bg_counts)
    lesion = stats.lesion_scores
    for low, high, match in ((lesion[1], stats.score_max, "within"), (stats.score_min, lesion[-2], "within"),
                             (stats.score_min - 1, stats.score_max, "occupied"), (0.1, stats.score_max, "float32")):
        with pytest.raises(clskern.InputError, match=match):
            VolumeStats(*args, score_min=low, score_max=high)
    with pytest.raises(clskern.InputError, match="together"):
        VolumeStats(*args, score_min=stats.score_min)


def make_cases(n=24, dtype=np.float32, seed=7):
    rng = np.random.default_rng(seed)
    cases = {}
    for i in range(n):
        scores, labels = volume(dtype, seed * 100 + i, logits=i % 3 == 0, ties=i % 5 == 0)
        scores = (scores * rng.uniform(0.3, 2.0) + rng.uniform(-1, 1)).astype(dtype)
        cases[f"c{i:02d}"] = (scores, labels)
    return cases


@pytest.mark.parametrize("dtype", DTYPES)
def test_calibrate_in_q_equals_the_reference(dtype):
    cases = make_cases(dtype=dtype)
    stats = {k: clskern.volume_stats(s, y, name=k, connectivity=None) for k, (s, y) in cases.items()}
    eps, alpha = 0.2, 0.2
    critical = np.array([naive_critical_threshold(q_of(s), y, eps) for s, y in cases.values()])
    cal = clskern.calibrate(stats, epsilon=eps, alpha=alpha, method="cls", normalize="minmax")
    k = math.floor(alpha * (len(cases) + 1))
    assert cal.normalize == "minmax" and cal.threshold == np.sort(critical)[k - 1]
    assert cal.critical_thresholds == critical.tolist()
    assert "min-max normalised" in cal.guarantee
    assert Calibration.from_json(cal.to_json()) == cal
    # crc in q: the largest pooled lesion q with the crc inequality, by brute force
    crc = clskern.calibrate(stats, epsilon=eps, method="crc", normalize="minmax")
    qs = [np.sort(q_of(s)[y]) for s, y in cases.values()]
    n = len(qs)
    pooled = np.unique(np.concatenate(qs))

    def risk(t):
        return n / (n + 1) * math.fsum(np.searchsorted(v, t, side="left") / v.size for v in qs) / n + 1 / (n + 1)

    assert crc.threshold == max(t for t in pooled if risk(t) <= eps)
    # a new case cut at the calibrated threshold: the mask is q >= threshold
    scores, _ = volume(dtype, 999, logits=True)
    np.testing.assert_array_equal(clskern.apply_threshold(scores, cal.threshold, normalize=cal.normalize),
                                  (q_of(scores) >= cal.threshold).astype(np.uint8))


def test_record_checks_normalize():
    cal = clskern.calibrate({f"c{i}": 0.1 * i for i in range(1, 10)}, epsilon=0.1, alpha=0.2, normalize="minmax")
    d = json.loads(cal.to_json())
    assert d["normalize"] == "minmax"
    edited = dict(d, normalize="none")
    with pytest.raises(clskern.CalibrationFileError, match="guarantee|digest"):
        Calibration.from_dict(edited)
    edited = dict(d, normalize="zscore")
    with pytest.raises(clskern.CalibrationFileError, match="normalize must be"):
        Calibration.from_dict(edited)
    older = clskern.calibrate({f"c{i}": 0.1 * i for i in range(1, 10)}, epsilon=0.1, alpha=0.2)
    d = json.loads(older.to_json())
    del d["normalize"], d["sha256"]
    from clskern.calibration.record import digest_of
    d["sha256"] = digest_of(d)
    assert Calibration.from_dict(d).normalize == "none"  # written before the field: none
    with pytest.raises(clskern.CalibrationFileError, match=r"\[0, 1\]"):
        Calibration.build("cls", 2.0, 0.1, 0.5, None, 1, 0, 1, critical_thresholds=[2.0], case_ids=["a"],
                          normalize="minmax").to_dict() and Calibration.from_dict(
            Calibration.build("cls", 2.0, 0.1, 0.5, None, 1, 0, 1, critical_thresholds=[2.0], case_ids=["a"],
                              normalize="minmax").to_dict())


def test_cli_stats_calibrate_apply_minmax(tmp_path):
    nib = pytest.importorskip("nibabel")
    cases = make_cases(n=12, seed=11)
    (tmp_path / "s").mkdir()
    (tmp_path / "l").mkdir()
    (tmp_path / "t").mkdir()
    affine = np.eye(4)
    for k, (s, y) in cases.items():
        nib.save(nib.Nifti1Image(s, affine), tmp_path / "s" / f"{k}.nii.gz")
        nib.save(nib.Nifti1Image(y.astype(np.uint8), affine), tmp_path / "l" / f"{k}.nii.gz")
    test_scores, _ = volume(np.float32, 4242, logits=True)
    nib.save(nib.Nifti1Image(test_scores, affine), tmp_path / "t" / "new.nii.gz")

    def cli(*args):
        done = subprocess.run([sys.executable, "-m", "clskern", *args], capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    store, cal_path, out = tmp_path / "st.sqlite", tmp_path / "cal.json", tmp_path / "masks"
    cli("stats", "--scores", str(tmp_path / "s"), "--labels", str(tmp_path / "l"), "-o", str(store), "--quiet")
    cli("calibrate", "--store", str(store), "--epsilon", "0.2", "--alpha", "0.2", "--normalize", "minmax",
        "-o", str(cal_path), "--quiet")
    cal = Calibration.read(cal_path)
    stats = {k: clskern.volume_stats(s, y, name=k, connectivity=None) for k, (s, y) in cases.items()}
    assert cal.normalize == "minmax"
    assert cal.threshold == clskern.calibrate(stats, epsilon=0.2, alpha=0.2, normalize="minmax").threshold
    cli("apply", "--calibration", str(cal_path), "--scores", str(tmp_path / "t"), "-o", str(out), "--quiet")
    mask = np.asanyarray(nib.load(out / "new.nii.gz").dataobj)
    np.testing.assert_array_equal(mask, (q_of(test_scores) >= cal.threshold).astype(np.uint8))


def test_minmax_helper_is_the_spec_formula():
    x = np.array([1.0, 2.0, 4.0], np.float32)
    np.testing.assert_array_equal(minmax(x, 1.0, 4.0), (x.astype(np.float64) - 1.0) / 3.0)
    np.testing.assert_array_equal(minmax(x, 2.0, 2.0), 0.0)
