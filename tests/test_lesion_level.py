"""Lesion level end to end (SPEC 1b): statistics, thresholds, calibration, store, JSON and the CLI.

The plain reference is ``tests/test_components.py``'s: ``scipy.ndimage.label``
with the connectivity's structure, components ordered by their first C-order
voxel and each one's scores sorted; detection scores with ``r`` from
``fractions.Fraction``; a lesion-level threshold by trying every ``k``. The
calibration methods are checked against their definitions (SPEC 2) applied
to the reference's lesion-level critical thresholds and L-FNR curves.
"""

import json
import math

import nibabel as nib
import numpy as np
import pytest
from test_components import reference_detection, reference_lesions, reference_threshold

import clskern
from clskern.calibration import Calibration
from clskern.cli.main import main
from clskern.errors import ArgumentError, ArgumentTypeError, CalibrationFileError, InputError
from clskern.store import StatsStore

SHAPE = (12, 10, 9)
OVERLAPS = (0.0, 0.3, 0.5, 1.0)


def _case(rng, order="C", label=None):
    """A volume with a few box and diagonal lesions (some touching only by a corner or an edge)."""
    labels = np.zeros(SHAPE, np.uint8)
    for _ in range(int(rng.integers(1, 6))):
        lo = [int(rng.integers(0, s - 1)) for s in SHAPE]
        hi = [min(s, a + int(rng.integers(1, 4))) for a, s in zip(lo, SHAPE)]
        labels[tuple(slice(a, b) for a, b in zip(lo, hi))] = rng.integers(1, 3) if label else 1
    start = [int(rng.integers(0, s)) for s in SHAPE]
    for step in range(4):  # a corner chain: one lesion under 26, four under 6 and 18
        voxel = tuple(min(s - 1, a + step) for a, s in zip(start, SHAPE))
        labels[voxel] = label or 1
    scores = np.round(rng.random(SHAPE) * 16) / 16  # ties
    scores = scores.astype(np.float32)
    if order == "F":
        return np.asfortranarray(scores), np.asfortranarray(labels)
    return scores, labels


def _reference_d(scores, labels, label, connectivity, overlap):
    offsets, values = reference_lesions(scores, labels, label, connectivity)
    return reference_detection(offsets, values, overlap)


@pytest.fixture(scope="module")
def cases():
    rng = np.random.default_rng(12)
    return {f"c{i:02d}": _case(rng, "F" if i % 2 else "C") for i in range(30)}


# -- one volume ----------------------------------------------------------------------------


@pytest.mark.parametrize("connectivity", [6, 18, 26])
@pytest.mark.parametrize("label", [None, 2])
def test_volume_stats_keep_every_lesion_and_thresholds_equal_the_reference(connectivity, label):
    rng = np.random.default_rng(connectivity + (label or 0))
    for order in ("C", "F"):
        scores, labels = _case(rng, order, label)
        stats = clskern.volume_stats(scores, labels, label=label, connectivity=connectivity, name="v")
        offsets, values = reference_lesions(scores, labels, label, connectivity)
        assert stats.connectivity == connectivity and stats.n_lesions == offsets.size - 1
        np.testing.assert_array_equal(stats.lesion_offsets, offsets)
        np.testing.assert_array_equal(stats.lesion_groups.astype(np.float64), values)
        for overlap in OVERLAPS:
            d = reference_detection(offsets, values, overlap)
            view = stats.at_lesion_level(overlap)
            np.testing.assert_array_equal(view.lesion_scores.astype(np.float64), np.sort(d))
            for epsilon in (0.0, 0.2, 0.5, 0.9):
                want = reference_threshold(d, epsilon)
                fast = clskern.critical_threshold(scores, labels, epsilon, level="lesion", overlap=overlap,
                                                  connectivity=connectivity, label=label)
                assert fast == want == stats.critical_threshold(epsilon, level="lesion", overlap=overlap)
                # L-FNR at the threshold: the share of lesions whose detection score lies below it
                assert stats.fnr(want, level="lesion", overlap=overlap) == np.count_nonzero(d < want) / d.size


def test_lesion_fn_tp_fnr_against_the_reference():
    scores, labels = _case(np.random.default_rng(3))
    stats = clskern.volume_stats(scores, labels)
    d = _reference_d(scores, labels, None, 26, 0.5)
    t = np.array([0.0, 0.25, 0.5, 0.75, 1.0, 2.0])
    missed = (d[None, :] < t[:, None]).sum(axis=1)
    np.testing.assert_array_equal(stats.fn(t, level="lesion", overlap=0.5), missed)
    np.testing.assert_array_equal(stats.tp(t, level="lesion", overlap=0.5), d.size - missed)
    np.testing.assert_array_equal(stats.fnr(t, level="lesion", overlap=0.5), missed / d.size)


def test_statistics_round_trip_and_old_format():
    scores, labels = _case(np.random.default_rng(4))
    stats = clskern.volume_stats(scores, labels, connectivity=18, name="r")
    back = clskern.VolumeStats.from_bytes(stats.to_bytes())
    assert back == stats and back.connectivity == 18
    assert back.critical_threshold(0.3, level="lesion", overlap=0.5) == stats.critical_threshold(0.3, level="lesion",
                                                                                                  overlap=0.5)
    plain = clskern.volume_stats(scores, labels, connectivity=None, name="r")
    assert plain.connectivity is None and plain.lesion_offsets is None and plain != stats
    assert clskern.VolumeStats.from_bytes(plain.to_bytes()) == plain
    # format 1 (before lesion level): no connectivity, no lesion members -> statistics without lesions
    import io

    buffer = io.BytesIO()
    meta = json.dumps({"format": 1, "n_voxels": plain.n_voxels, "n_fg": plain.n_fg, "name": "r"}).encode()
    np.savez(buffer, meta=np.frombuffer(meta, np.uint8), lesion_scores=plain.lesion_scores, bg_bins=plain.bg_bins,
             bg_counts=plain.bg_counts)
    old = clskern.VolumeStats.from_bytes(buffer.getvalue())
    assert old.connectivity is None and old.lesion_offsets is None and old.lesion_groups is None
    np.testing.assert_array_equal(old.lesion_scores, plain.lesion_scores)
    with pytest.raises(ArgumentError, match="statistics made without lesions"):
        plain.critical_threshold(0.2, level="lesion")
    with pytest.raises(ArgumentError, match="statistics made without lesions"):
        clskern.calibrate({"r": plain}, epsilon=0.2, alpha=0.5, level="lesion")


def test_inconsistent_lesion_information_is_refused():
    scores, labels = _case(np.random.default_rng(5))
    stats = clskern.volume_stats(scores, labels)
    assert stats.n_lesions >= 2
    base = dict(n_voxels=stats.n_voxels, n_fg=stats.n_fg, lesion_scores=stats.lesion_scores, bg_bins=stats.bg_bins,
                bg_counts=stats.bg_counts, connectivity=26)
    good = dict(lesion_offsets=stats.lesion_offsets, lesion_groups=stats.lesion_groups)
    assert clskern.VolumeStats(**base, **good) == stats.__class__(**base, **good)
    offsets, groups = stats.lesion_offsets, stats.lesion_groups
    big = int(np.argmax(np.diff(offsets)))
    reversed_groups = groups.copy()
    reversed_groups[offsets[big]:offsets[big + 1]] = groups[offsets[big]:offsets[big + 1]][::-1]
    other = groups.copy()
    other[0] = other[0] + 1
    bad = {
        "strictly": dict(lesion_offsets=np.r_[offsets[:1], offsets], lesion_groups=groups),
        "from 0": dict(lesion_offsets=offsets[1:], lesion_groups=groups),
        "sorted": dict(lesion_offsets=offsets, lesion_groups=reversed_groups) if np.diff(offsets).max() > 1
        and np.unique(groups[offsets[big]:offsets[big + 1]]).size > 1 else None,
        "not the lesion scores": dict(lesion_offsets=offsets, lesion_groups=np.sort(other)),
        "dtype": dict(lesion_offsets=offsets, lesion_groups=groups.astype(np.float64)),
    }
    for reason, fields in bad.items():
        if fields is None:
            continue
        with pytest.raises(InputError, match="inconsistent statistics"):
            clskern.VolumeStats(**base, **fields)
    with pytest.raises(InputError, match="come together"):
        clskern.VolumeStats(**base, lesion_offsets=offsets)
    with pytest.raises(ArgumentError, match="connectivity"):
        clskern.VolumeStats(**{**base, "connectivity": 8}, **good)


@pytest.mark.parametrize("bad, match", [
    (dict(level="lesions"), "level"), (dict(level=1), "level"), (dict(level=None), "level"),
    (dict(level="lesion", overlap=1.5), "overlap"), (dict(level="lesion", overlap="0.5"), "overlap"),
    (dict(level="lesion", overlap=np.nan), "overlap"), (dict(overlap=0.5), "level='lesion'"),
    (dict(level="lesion", connectivity=8), "connectivity"), (dict(level="lesion", connectivity="26"), "connectivity"),
    (dict(level="lesion", connectivity=None), "connectivity"),
])
def test_arguments_are_checked_alike_everywhere(bad, match):
    scores, labels = _case(np.random.default_rng(6))
    stats = clskern.volume_stats(scores, labels, name="a")
    with pytest.raises(ArgumentError, match=match):
        clskern.critical_threshold(scores, labels, 0.2, **bad)
    if "connectivity" in bad:
        if bad["connectivity"] is not None:  # None is volume_stats' "no lesions"
            with pytest.raises(ArgumentError, match=match):
                clskern.volume_stats(scores, labels, connectivity=bad["connectivity"])
        return
    with pytest.raises(ArgumentError, match=match):
        stats.critical_threshold(0.2, **bad)
    with pytest.raises(ArgumentError, match=match):
        clskern.calibrate({"a": stats}, epsilon=0.2, alpha=0.5, **bad)


# -- calibration ------------------------------------------------------------------------


def _reference_thresholds(cases, connectivity, overlap, epsilon):
    return {c: reference_threshold(_reference_d(p, y, None, connectivity, overlap), epsilon) for c, (p, y) in cases.items()}


@pytest.mark.parametrize("overlap", [0.0, 0.5])
def test_cls_and_cls_pac_at_lesion_level_equal_the_order_statistic(cases, overlap):
    stats = {c: clskern.volume_stats(p, y, name=c) for c, (p, y) in cases.items()}
    reference = _reference_thresholds(cases, 26, overlap, 0.2)
    ordered = sorted(reference.values())
    cal = clskern.calibrate(stats, epsilon=0.2, alpha=0.2, level="lesion", overlap=overlap)
    k = math.floor(0.2 * 31)
    assert (cal.k, cal.threshold) == (k, ordered[k - 1])
    assert cal.critical_thresholds == [reference[c] for c in cal.case_ids]
    assert (cal.level, cal.overlap, cal.connectivity) == ("lesion", overlap, 26)
    assert "P(L-FNR <= 0.2) >= 0.8" in cal.guarantee and "26-connected" in cal.guarantee
    pac = clskern.calibrate(stats, epsilon=0.2, alpha=0.2, delta=0.3, method="cls-pac", level="lesion", overlap=overlap)
    assert pac.threshold == ordered[pac.k - 1]
    # floats are lesion-level critical thresholds only if one says so: VolumeStats are required
    with pytest.raises(ArgumentTypeError, match="needs VolumeStats"):
        clskern.calibrate(list(reference.values()), epsilon=0.2, alpha=0.2, level="lesion")


@pytest.mark.parametrize("overlap", [0.0, 0.5])
def test_crc_at_lesion_level_equals_a_brute_force_scan(cases, overlap):
    stats = {c: clskern.volume_stats(p, y, name=c) for c, (p, y) in cases.items()}
    ds = [_reference_d(p, y, None, 26, overlap) for p, y in cases.values()]
    n, epsilon = len(ds), 0.3
    candidates = np.unique(np.concatenate(ds))
    certified = [t for t in candidates
                 if n / (n + 1) * (math.fsum(np.count_nonzero(d < t) / d.size for d in ds) / n) + 1 / (n + 1) <= epsilon]
    cal = clskern.calibrate(stats, epsilon=epsilon, method="crc", level="lesion", overlap=overlap)
    assert cal.threshold == max(certified)
    assert "E[L-FNR] <= 0.3" in cal.guarantee
    rcps = clskern.calibrate(stats, epsilon=epsilon, method="rcps", delta=0.2, level="lesion", overlap=overlap)
    assert rcps.threshold <= cal.threshold and rcps.level == "lesion"


def test_one_connectivity_per_calibration(cases):
    items = list(cases.items())
    stats = {c: clskern.volume_stats(p, y, name=c, connectivity=6 if i == 3 else 26) for i, (c, (p, y)) in
             enumerate(items)}
    with pytest.raises(ArgumentError, match="different connectivities"):
        clskern.calibrate(stats, epsilon=0.2, alpha=0.2, level="lesion")
    voxel = clskern.calibrate(stats, epsilon=0.2, alpha=0.2)
    assert voxel.connectivity is None and voxel.level == "voxel"  # mixed at voxel level: not one to record


def test_calibration_json_round_trip_and_checks(cases):
    stats = {c: clskern.volume_stats(p, y, name=c, connectivity=18) for c, (p, y) in cases.items()}
    cal = clskern.calibrate(stats, epsilon=0.2, alpha=0.2, level="lesion", overlap=0.5)
    text = cal.to_json()
    back = Calibration.from_json(text)
    assert back == cal and (back.level, back.overlap, back.connectivity) == ("lesion", 0.5, 18)
    d = json.loads(text)

    def resigned(**changes):
        from clskern.calibration.record import digest_of

        e = {k: v for k, v in d.items() if k != "sha256"}
        e.update(changes)
        e = {k: v for k, v in e.items() if v is not ...}
        e["sha256"] = digest_of(e)
        return e

    for changes, match in [
        (dict(overlap=0.3), "guarantee"),  # the sentence names the overlap
        (dict(level="voxel"), "overlap"),
        (dict(connectivity=None), "connectivity"),
        (dict(connectivity=8), "connectivity"),
        (dict(level="instances"), "level"),
        (dict(overlap=1.5), "overlap"),
        (dict(overlap="0.5"), "overlap"),
    ]:
        with pytest.raises(CalibrationFileError, match=match):
            Calibration.from_dict(resigned(**changes))
    with pytest.raises(CalibrationFileError, match="digest"):
        Calibration.from_dict({**d, "case_ids": ["renamed", *d["case_ids"][1:]]})
    # a record written before lesion level (no level, overlap, connectivity) reads as voxel level
    voxel = json.loads(clskern.calibrate(stats, epsilon=0.2, alpha=0.2).to_json())
    old = {k: v for k, v in voxel.items() if k not in ("level", "overlap", "connectivity", "sha256")}
    from clskern.calibration.record import digest_of

    old["sha256"] = digest_of(old)
    read = Calibration.from_dict(old)
    assert (read.level, read.overlap, read.connectivity) == ("voxel", 0.0, None)


# -- store ---------------------------------------------------------------------------------


def test_store_round_trip_and_fast_path(cases, tmp_path):
    stats = {c: clskern.volume_stats(p, y, name=c) for c, (p, y) in cases.items()}
    with StatsStore(tmp_path / "s.sqlite") as store:
        store.check_reading(label=None, channel=None, connectivity=26)
        for c, s in stats.items():
            store.put(c, "f", s)
        assert store.load() == stats
        fast = store.lesion_stats()
        assert store.connectivity() == 26 and store.reading() == {"label": None, "channel": None}
        with pytest.raises(InputError, match="connectivity"):
            store.check_reading(label=None, channel=None, connectivity=6)
    for c, s in stats.items():
        np.testing.assert_array_equal(fast[c].lesion_groups, s.lesion_groups)
        assert fast[c].critical_threshold(0.2, level="lesion", overlap=0.5) == s.critical_threshold(
            0.2, level="lesion", overlap=0.5)
    assert clskern.calibrate(fast, epsilon=0.2, method="crc", level="lesion", overlap=0.5) == clskern.calibrate(
        stats, epsilon=0.2, method="crc", level="lesion", overlap=0.5)


def test_a_store_made_before_lesion_level_reads_as_connectivity_none(tmp_path):
    with StatsStore(tmp_path / "old.sqlite") as store:
        store._query("INSERT INTO meta VALUES ('reading', ?)", (json.dumps({"label": None, "channel": None}),))
        assert store.connectivity() is None and store.reading() == {"label": None, "channel": None}
        store.check_reading(label=None, channel=None, connectivity=None)  # resumes with --connectivity none
        with pytest.raises(InputError, match=r"read with no lesions \(stored before lesion level\), this run asks --connectivity 26"):
            store.check_reading(label=None, channel=None, connectivity=26)


# -- the command line ------------------------------------------------------------------------


def _write(root, cases):
    s, l = root / "scores", root / "labels"
    s.mkdir()
    l.mkdir()
    for c, (p, y) in cases.items():
        nib.save(nib.Nifti1Image(np.asarray(p), np.eye(4)), s / f"{c}.nii.gz")
        nib.save(nib.Nifti1Image(np.asarray(y), np.eye(4)), l / f"{c}.nii.gz")
    return s, l


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_stats_calibrate_apply_at_lesion_level(cases, tmp_path, capsys):
    s, l = _write(tmp_path, cases)
    store = tmp_path / "st.sqlite"
    assert _run(capsys, "stats", "--scores", s, "--labels", l, "-o", store, "--connectivity", "18", "-q")[0] == 0
    cal = tmp_path / "cal.json"
    code, out, err = _run(capsys, "calibrate", "--store", store, "--epsilon", 0.2, "--alpha", 0.2,
                          "--level", "lesion", "--overlap", 0.5, "-o", cal)
    assert code == 0, err
    assert "L-FNR" in out
    written = Calibration.read(cal)
    reference = _reference_thresholds(cases, 18, 0.5, 0.2)
    assert written.threshold == sorted(reference.values())[math.floor(0.2 * 31) - 1]
    assert (written.level, written.overlap, written.connectivity) == ("lesion", 0.5, 18)
    # from folders: the same calibration
    cal2 = tmp_path / "cal2.json"
    code, _, err = _run(capsys, "calibrate", "--scores", s, "--labels", l, "--connectivity", "18", "--epsilon", 0.2,
                        "--alpha", 0.2, "--level", "lesion", "--overlap", 0.5, "-o", cal2, "-q")
    assert code == 0, err
    assert Calibration.read(cal2).threshold == written.threshold
    code, out, err = _run(capsys, "apply", "--calibration", cal, "--scores", s, "-o", tmp_path / "masks")
    assert code == 0, err
    assert "lesion level, overlap 0.5, connectivity 18" in out
    # refusals, each one line
    for argv, match in [
        (["calibrate", "--store", store, "--epsilon", 0.2, "--overlap", 0.5, "-o", tmp_path / "x.json"], "--level lesion"),
        (["calibrate", "--store", store, "--epsilon", 0.2, "--connectivity", "6", "-o", tmp_path / "x.json"],
         "--connectivity applies to --scores"),
        (["stats", "--scores", s, "--labels", l, "-o", store, "--connectivity", "26"], "connectivity 18"),
    ]:
        code, _, err = _run(capsys, *argv)
        assert code == 1 and match in err, err
    with pytest.raises(SystemExit) as usage:
        main(["stats", "--scores", str(s), "--labels", str(l), "-o", str(store), "--connectivity", "8"])
    assert usage.value.code == 2 and "6, 18, 26 or none" in capsys.readouterr().err
    voxel_store = tmp_path / "voxel.sqlite"
    assert _run(capsys, "stats", "--scores", s, "--labels", l, "-o", voxel_store, "--connectivity", "none", "-q")[0] == 0
    code, _, err = _run(capsys, "calibrate", "--store", voxel_store, "--epsilon", 0.2, "--level", "lesion",
                        "-o", tmp_path / "y.json")
    assert code == 1 and "statistics made without lesions" in err
