"""Several classes (SPEC 1c): class_stats, multi-class calibrate, family rules, the nnU-Net label map."""

import json

import numpy as np
import pytest

import clskern
from clskern.calibration.sets import CalibrationSet
from clskern.classes import apply_classes, class_bits, class_stats, classes_from_dataset_json, parse_classes
from clskern.errors import ArgumentError, CalibrationError, CalibrationFileError, InputError, NaNScoresError

BRATS = {"WT": (1, (1, 2, 3)), "TC": (2, (1, 3)), "ET": (3, (3,))}
BRATS_NAMES = ("whole tumor", "tumor core", "enhancing tumor")  # _write_brats's dataset.json


def _case(rng, shape=(9, 8, 7), n_channels=4, dtype=np.uint8, order="C"):
    labels = rng.integers(0, 4, shape).astype(dtype)
    labels[rng.random(shape) < 0.5] = 0
    scores = rng.random((n_channels, *shape), dtype=np.float32)
    return np.asarray(scores, order=order), np.asarray(labels, order=order)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.uint16, np.int32, np.int64, np.float32])
@pytest.mark.parametrize("order", ["C", "F"])
def test_class_stats_equals_volume_stats_on_isin_masks(dtype, order):
    rng = np.random.default_rng(1)
    scores, labels = _case(rng, dtype=dtype, order=order)
    got = class_stats(scores, labels, BRATS, name="c")
    assert list(got) == list(BRATS)
    for name, (channel, values) in BRATS.items():
        assert got[name] == clskern.volume_stats(scores[channel], np.isin(labels, values), name="c")


def test_class_bits_one_pass_matches_isin_and_handles_odd_values():
    rng = np.random.default_rng(2)
    labels = rng.integers(-3, 6, (30, 7)).astype(np.int8)
    classes = {"neg": (0, (-1, -3)), "big": (0, (5, 300)), "one": (0, 1)}  # 300 cannot occur in int8
    bits = class_bits(labels, classes)
    for i, (_, values) in enumerate(classes.values()):
        np.testing.assert_array_equal((bits >> i) & 1, np.isin(labels, values))
    assert class_bits(np.ones((3, 3), bool), {"a": (0, 1)}).sum() == 9
    view = np.arange(40, dtype=np.uint8).reshape(8, 5)[::2]  # strided labels
    np.testing.assert_array_equal(class_bits(view, {"a": (0, (4, 30))}).astype(bool), np.isin(view, (4, 30)))
    many = {f"k{i}": (0, i + 1) for i in range(20)}  # more than 8 classes: wider bits
    wide = class_bits(np.arange(25, dtype=np.uint8).reshape(5, 5), many)
    assert wide.dtype == np.uint32 and int(wide[0, 1]) == 1 and int(wide[4, 0]) == 1 << 19


def test_class_stats_refusals():
    rng = np.random.default_rng(3)
    scores, labels = _case(rng)
    with pytest.raises(InputError, match="channel 7, but the scores have 4"):
        class_stats(scores, labels, {"x": (7, 1)})
    with pytest.raises(InputError, match="not channel-first"):
        class_stats(scores[0], labels, {"x": (0, 1)})
    with pytest.raises(ArgumentError, match="background"):
        class_stats(scores, labels, {"x": (0, (0, 1))})
    with pytest.raises(ArgumentError, match="connectivity"):
        class_stats(scores, labels, {"x": (0, 1)}, connectivity=5)
    bad = scores.copy()
    bad[2, 0, 0, 0] = np.nan
    with pytest.raises(NaNScoresError):
        class_stats(bad, labels, BRATS)


def _cases(rng, n, lacking_et_every=5):
    out = {}
    for i in range(n):
        scores, labels = _case(rng)
        labels = labels.copy()
        if i % lacking_et_every == 0:
            labels[labels == 3] = 2  # a case whose ground truth lacks ET
        out[f"case{i:02d}"] = class_stats(scores, labels, BRATS, name=f"case{i:02d}")
    return out


@pytest.mark.parametrize("method,alpha,delta", [("cls", 0.3, None), ("cls-pac", 0.45, 0.45), ("rcps", None, 0.3),
                                                ("crc", None, None)])
@pytest.mark.parametrize("family", ["none", "bonferroni"])
def test_multi_class_calibrate_equals_each_class_by_hand(method, alpha, delta, family):
    cases = _cases(np.random.default_rng(4), 40)
    epsilon = {"WT": 0.2, "TC": 0.3, "ET": 0.25}
    if family == "bonferroni" and method == "crc":
        with pytest.raises(ArgumentError, match="nothing to share out with crc"):
            clskern.calibrate(cases, epsilon=epsilon, alpha=alpha, method=method, delta=delta, family=family)
        return
    got = clskern.calibrate(cases, epsilon=epsilon, alpha=alpha, method=method, delta=delta, family=family)
    assert list(got) == list(BRATS)
    share = 3 if family == "bonferroni" else 1
    for name in BRATS:
        own = {case: stats[name] for case, stats in cases.items()}
        expected = clskern.calibrate(own, epsilon=epsilon[name], method=method,
                                     alpha=None if alpha is None else alpha / share,
                                     delta=None if delta is None or method == "crc" else delta / share)
        assert got[name] == expected
    # the case lacking ET is skipped for ET only
    assert got["ET"].n_skipped == 8 and got["WT"].n_skipped == 0 and "case00" in got["WT"].case_ids


def test_multi_class_from_a_list_and_one_epsilon_and_refusals():
    cases = _cases(np.random.default_rng(5), 30)
    as_list = list(cases.values())
    got = clskern.calibrate(as_list, epsilon=0.2, alpha=0.2)
    assert got["TC"].threshold == clskern.calibrate([c["TC"] for c in as_list], epsilon=0.2, alpha=0.2).threshold
    with pytest.raises(ArgumentError, match="gives no value for class 'ET'"):
        clskern.calibrate(cases, epsilon={"WT": 0.1, "TC": 0.1}, alpha=0.2)
    with pytest.raises(ArgumentError, match="names class 'XX'"):
        clskern.calibrate(cases, epsilon={"WT": 0.1, "TC": 0.1, "ET": 0.1, "XX": 0.1}, alpha=0.2)
    broken = dict(cases)
    broken["case03"] = {k: v for k, v in cases["case03"].items() if k != "TC"}
    with pytest.raises(ArgumentError, match="case case03 lacks class 'TC'"):
        clskern.calibrate(broken, epsilon=0.2, alpha=0.2)
    # WT and TC (30 cases) certify alpha/3; ET (24 cases with ET) does not, and is named
    with pytest.raises(CalibrationError, match=r"class 'ET' \(family='bonferroni': 1/3 of the asked level\): "
                                               r"cls cannot certify alpha=0.0333333 with n=24 .* n >= 29"):
        clskern.calibrate(cases, epsilon=0.2, alpha=0.1, family="bonferroni")
    with pytest.raises(ArgumentError, match="needs several classes"):
        clskern.calibrate([c["WT"] for c in as_list], epsilon=0.2, alpha=0.2, family="bonferroni")


def test_class_set_file_round_trip_and_family_check():
    cases = _cases(np.random.default_rng(6), 40)
    cals = clskern.calibrate(cases, epsilon=0.2, alpha=0.3, family="bonferroni")
    s = CalibrationSet(by="class", calibrations=cals, family="bonferroni", alpha=0.3, classes=BRATS,
                       regions_class_order=[1, 2, 3])
    assert "P(every class meets its tolerance) >= 0.7" in s.guarantee
    back = CalibrationSet.from_json(s.to_json())
    assert back.calibrations == cals and back.classes == BRATS and back.regions_class_order == [1, 2, 3]
    d = json.loads(s.to_json())
    d["family"] = "none"  # the members were calibrated at alpha/3, not alpha
    with pytest.raises(CalibrationFileError, match="family 'none'"):
        CalibrationSet.from_dict(d)


# -- the label map, against a hand-written nnU-Net-style reference ---------------------------------------


def _nnunet_regions(probabilities, thresholds, regions_class_order):
    """nnU-Net's convert_probabilities_to_segmentation for regions, with a cut per region (>=)."""
    segmentation = np.zeros(probabilities.shape[1:], dtype=np.uint8)
    for i, c in enumerate(regions_class_order):
        segmentation[probabilities[i] >= thresholds[i]] = c
    return segmentation


def _argmax_reference(scores, channels, thresholds, values):
    """Highest-scoring class among those at or above their cut (first on ties), else 0."""
    stacked = np.stack([np.where(scores[c] >= t, scores[c], -np.inf) for c, t in zip(channels, thresholds)])
    reached = np.stack([scores[c] >= t for c, t in zip(channels, thresholds)]).any(axis=0)
    return np.where(reached, np.asarray(values)[stacked.argmax(axis=0)], 0)


def test_apply_classes_regions_match_nnunet():
    rng = np.random.default_rng(7)
    probs = rng.random((3, 10, 9, 8), dtype=np.float32)
    regions = {"WT": (0, (1, 2, 3)), "TC": (1, (2, 3)), "ET": (2, (3,))}
    thresholds = {"WT": 0.3, "TC": 0.6, "ET": 0.8}
    got = apply_classes(probs, thresholds, regions, regions_class_order=[1, 2, 3])
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, _nnunet_regions(probs, [0.3, 0.6, 0.8], [1, 2, 3]))
    by_name = apply_classes(probs, thresholds, regions, regions_class_order={"ET": 3, "WT": 1, "TC": 2})
    np.testing.assert_array_equal(by_name, got)
    with pytest.raises(ArgumentError, match="regions_class_order"):
        apply_classes(probs, thresholds, regions)
    with pytest.raises(ArgumentError, match="no calibration for class 'ET'"):
        apply_classes(probs, {"WT": 0.3, "TC": 0.5}, regions, regions_class_order=[1, 2, 3])


def test_apply_classes_plain_argmax_among_those_above_their_cut():
    rng = np.random.default_rng(8)
    probs = rng.random((4, 12, 11, 3), dtype=np.float32)
    probs[1, 0, 0, 0] = probs[2, 0, 0, 0] = 0.99  # a tie: the first class wins
    plain = {"liver": (1, 1), "tumour": (2, 2), "cyst": (3, 5)}
    thresholds = {"liver": 0.5, "tumour": 0.2, "cyst": 0.7}
    got = apply_classes(probs, thresholds, plain)
    np.testing.assert_array_equal(got, _argmax_reference(probs, [1, 2, 3], [0.5, 0.2, 0.7], [1, 2, 5]))
    assert got[0, 0, 0] == 1
    fortran = np.asfortranarray(probs)
    assert apply_classes(fortran[:, :, :, :], thresholds, plain).shape == (12, 11, 3)
    cals = clskern.calibrate(_cases(np.random.default_rng(9), 20), epsilon=0.2, alpha=0.2)
    s = CalibrationSet(by="class", calibrations=cals, alpha=0.2, classes=BRATS, regions_class_order=[1, 2, 3])
    four = rng.random((4, 5, 5, 5), dtype=np.float32)
    np.testing.assert_array_equal(
        apply_classes(four, s),
        _nnunet_regions(four[1:], [cals[n].threshold for n in BRATS], [1, 2, 3]))


def test_parse_classes_and_dataset_json(tmp_path):
    assert parse_classes("WT=1:1,2,3; TC=2:1,3;ET=3:3") == {"WT": (1, (1, 2, 3)), "TC": (2, (1, 3)), "ET": (3, (3,))}
    for bad, match in [("WT", "not NAME=CHANNEL:VALUES"), ("A=1:1;A=2:2", "named twice"), ("A=1:x", "numbers"),
                       ("A=1:0", "background"), ("", "empty")]:
        with pytest.raises(ArgumentError, match=match):
            parse_classes(bad)
    brats = {"labels": {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": 3},
             "regions_class_order": [1, 2, 3]}
    classes, order = classes_from_dataset_json(brats)
    assert classes == {"whole tumor": (0, (1, 2, 3)), "tumor core": (1, (2, 3)), "enhancing tumor": (2, (3,))}
    assert order == [1, 2, 3]
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps({"labels": {"background": 0, "liver": 1, "tumour": 2, "ignore": 3}}))
    assert classes_from_dataset_json(path) == ({"liver": (1, (1,)), "tumour": (2, (2,))}, None)
    del brats["regions_class_order"]
    with pytest.raises(InputError, match="regions_class_order"):
        classes_from_dataset_json(brats)


# -- the command line -----------------------------------------------------------------------------------


def _write_brats(root, n, seed=0):
    """nnU-Net-style region outputs as 4-D NIfTI (x, y, z, 3 regions) with BraTS-like label maps."""
    import nibabel as nib

    rng = np.random.default_rng(seed)
    s, l = root / "scores", root / "labels"
    s.mkdir()
    l.mkdir()
    cases = {}
    shape = (8, 7, 6)
    for i in range(n):
        labels = np.zeros(shape, np.uint8)
        labels[1:7, 1:6, 1:5] = 1
        labels[2:6, 2:5, 2:4] = 2
        if i % 4:
            labels[3:5, 3:4, 2:3] = 3
        regions = np.stack([np.isin(labels, v) for v in ((1, 2, 3), (2, 3), (3,))])
        probs = np.clip(regions * rng.uniform(0.3, 0.9) + rng.random((3, *shape)) * 0.5, 0, 1).astype(np.float32)
        nib.save(nib.Nifti1Image(np.moveaxis(probs, 0, -1), np.eye(4)), s / f"b{i:02d}.nii.gz")
        nib.save(nib.Nifti1Image(labels, np.eye(4)), l / f"b{i:02d}.nii.gz")
        cases[f"b{i:02d}"] = (probs, labels)
    dataset = {"labels": {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": [3]},
               "regions_class_order": [1, 2, 3]}
    (root / "dataset.json").write_text(json.dumps(dataset))
    return cases


def test_cli_stats_calibrate_apply_several_classes(tmp_path, capsys):
    import nibabel as nib

    from clskern.calibration.sets import read_calibration
    from clskern.class_store import ClassStatsStore
    from clskern.cli.main import main

    def cli(*argv):
        code = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    cases = _write_brats(tmp_path, 30)
    store, cal, masks = tmp_path / "st.sqlite", tmp_path / "cal.json", tmp_path / "masks"
    dj = tmp_path / "dataset.json"
    code, out, err = cli("stats", "--scores", tmp_path / "scores", "--labels", tmp_path / "labels", "-o", store,
                         "--dataset-json", dj)
    assert code == 0, err
    classes, order = classes_from_dataset_json(dj)
    expected = {c: class_stats(p, y, classes, name=c) for c, (p, y) in cases.items()}
    with ClassStatsStore(store, create=False) as st:
        assert st.load() == expected
    code, out, err = cli("stats", "--scores", tmp_path / "scores", "--labels", tmp_path / "labels", "-o", store,
                         "--dataset-json", dj)
    assert code == 0 and "30 already stored" in out, (out, err)

    code, out, err = cli("calibrate", "--store", store, "--dataset-json", dj, "--epsilon", 0.2, "--alpha", 0.3,
                         "--family", "bonferroni", "--class-epsilon", "enhancing tumor=0.3", "-o", cal)
    assert code == 0, err
    reference = clskern.calibrate(expected, epsilon={"whole tumor": 0.2, "tumor core": 0.2, "enhancing tumor": 0.3},
                                  alpha=0.3, family="bonferroni")
    written = read_calibration(cal)
    assert written.family == "bonferroni" and written.regions_class_order == [1, 2, 3]
    assert {n: c.threshold for n, c in written.calibrations.items()} == {n: c.threshold for n, c in reference.items()}
    assert written.calibrations["enhancing tumor"].n_skipped == 8  # the cases lacking ET, for ET only

    spec = "WT=0:1,2,3;TC=1:2,3;ET=2:3"  # the same classes, named on the command line, from folders
    cal2 = tmp_path / "cal2.json"
    code, _, err = cli("calibrate", "--scores", tmp_path / "scores", "--labels", tmp_path / "labels",
                       "--classes", spec, "--regions-class-order", "1,2,3", "--epsilon", 0.2, "--alpha", 0.3,
                       "-o", cal2, "-q")
    assert code == 0, err
    by_spec = read_calibration(cal2)
    none = clskern.calibrate(expected, epsilon=0.2, alpha=0.3)
    assert [c.threshold for c in by_spec.calibrations.values()] == [c.threshold for c in none.values()]

    code, out, err = cli("apply", "--calibration", cal, "--scores", tmp_path / "scores", "-o", masks)
    assert code == 0, err
    t = [reference[n].threshold for n in ("whole tumor", "tumor core", "enhancing tumor")]
    for c, (p, _) in cases.items():
        got = np.asanyarray(nib.load(masks / f"{c}.nii.gz").dataobj)
        np.testing.assert_array_equal(got, _nnunet_regions(p, t, [1, 2, 3]))

    code, _, err = cli("calibrate", "--store", store, "--classes", "WT=0:1,2,3", "--regions-class-order", "1",
                       "--epsilon", 0.2, "--alpha", 0.3, "-o", tmp_path / "x.json")
    assert code == 1 and "st.sqlite: the store holds classes" in err and len(err.splitlines()) == 1
    code, _, err = cli("calibrate", "--store", store, "--dataset-json", dj, "--epsilon", 0.2, "--alpha", 0.1,
                       "--family", "bonferroni", "-o", tmp_path / "x.json")
    assert code == 1 and "class 'enhancing tumor'" in err and "n=22" in err and len(err.splitlines()) == 1
    code, _, err = cli("calibrate", "--store", store, "--classes", "WT=0:1,2,3", "--epsilon", 0.2, "-o",
                       tmp_path / "x.json")
    assert code == 1 and "--regions-class-order" in err


def test_resumed_class_stats_apply_the_empty_policy_to_stored_cases(tmp_path):
    """A stored case lacking a class is refused under empty="error" as a read one is, and a stored
    case lacking every class counts as empty, as on the first run."""
    from clskern.class_store import ClassStatsStore
    from clskern.errors import EmptyGroundTruthError
    from clskern.io.cases import pair_cases
    from clskern.io.class_batch import collect_class_stats

    _write_brats(tmp_path, 8)  # b00 and b04 lack enhancing tumour
    classes, order = classes_from_dataset_json(tmp_path / "dataset.json")
    pairs, _ = pair_cases(tmp_path / "scores", tmp_path / "labels")
    with ClassStatsStore(tmp_path / "st.sqlite") as store:
        first = collect_class_stats(pairs, classes, regions_class_order=order, store=store)
        again = collect_class_stats(pairs, classes, regions_class_order=order, store=store)
        assert (first.read, again.read, again.reused) == (8, 0, 8)
        assert again.stats == first.stats and again.empty == first.empty == []
        with pytest.raises(EmptyGroundTruthError, match=r"b00 \(class 'enhancing tumor'\)"):
            collect_class_stats(pairs, classes, regions_class_order=order, store=store, empty="error")


def test_apply_classes_cuts_minmax_calibrations_on_each_channels_range():
    """A class calibrated on min-max normalised scores is cut as apply_threshold(normalize="minmax")
    cuts its channel; before, the q-scale threshold was compared with raw scores (every voxel on)."""
    rng = np.random.default_rng(3)
    classes = parse_classes("A=0:1;B=1:2")
    cases = []
    for i in range(30):
        p = rng.random((2, 8, 8, 8), dtype=np.float32) * 3 + 1  # scores in [1, 4): q differs from p
        y = np.zeros((8, 8, 8), np.uint8)
        y[2:5, 2:5, 2:5], y[5:7, 5:7, 5:7] = 1, 2
        cases.append(class_stats(p, y, classes, name=str(i)))
    cals = clskern.calibrate(cases, epsilon=0.2, alpha=0.2, normalize="minmax")
    test = rng.random((2, 8, 8, 8), dtype=np.float32) * 3 + 1
    got = apply_classes(test, cals, classes)
    on = [clskern.apply_threshold(test[c], cals[n].threshold, normalize="minmax").astype(bool)
          for n, c in (("A", 0), ("B", 1))]
    expected = np.where(on[0] & (~on[1] | (test[0] >= test[1])), 1, np.where(on[1], 2, 0))
    np.testing.assert_array_equal(got, expected)
    assert 0 < np.count_nonzero(got) < got.size


def test_calibrate_a_per_class_store_reads_its_recorded_classes(tmp_path, capsys):
    """``calibrate --store`` on the store ``stats --dataset-json`` made needs no --dataset-json again
    (it said "the store holds no cases")."""
    from clskern.calibration.sets import read_calibration
    from clskern.cli.main import main

    _write_brats(tmp_path, 20)
    store, dj = tmp_path / "st.sqlite", tmp_path / "dataset.json"
    assert main(["stats", "--scores", str(tmp_path / "scores"), "--labels", str(tmp_path / "labels"),
                 "-o", str(store), "--dataset-json", str(dj), "-q"]) == 0
    common = ["calibrate", "--store", str(store), "--epsilon", "0.2", "--alpha", "0.3", "-q"]
    assert main(common + ["-o", str(tmp_path / "a.json")]) == 0
    assert main(common + ["--dataset-json", str(dj), "-o", str(tmp_path / "b.json")]) == 0
    a, b = read_calibration(tmp_path / "a.json"), read_calibration(tmp_path / "b.json")
    assert list(a.calibrations) == ["whole tumor", "tumor core", "enhancing tumor"]
    assert a.to_dict() == b.to_dict()
    capsys.readouterr()
    assert main(common + ["--regions-class-order", "1,2,3", "-o", str(tmp_path / "c.json")]) == 1
    assert "the classes and their order are known already (" in capsys.readouterr().err


def test_calibrate_a_per_class_store_at_lesion_level(tmp_path, capsys):
    """``calibrate --level lesion`` on the per-class store ``stats --dataset-json`` makes calibrates each class's
    L-FNR from the statistics ``evaluate --level lesion`` reads there (it said "not available yet")."""
    from clskern.class_store import ClassStatsStore
    from clskern.cli.main import main

    cases = _write_brats(tmp_path, 20)
    store, dj, cal = tmp_path / "st.sqlite", tmp_path / "dataset.json", tmp_path / "lesions.json"
    assert main(["stats", "--scores", str(tmp_path / "scores"), "--labels", str(tmp_path / "labels"),
                 "-o", str(store), "--dataset-json", str(dj), "-q"]) == 0
    capsys.readouterr()
    code = main(["calibrate", "--store", str(store), "--epsilon", "0.2", "--alpha", "0.3", "--family", "bonferroni",
                 "--level", "lesion", "--overlap", "0.2", "-q", "-o", str(cal)])
    assert code == 0, capsys.readouterr().err
    classes, _ = classes_from_dataset_json(dj)
    expected = {c: class_stats(p, y, classes, name=c) for c, (p, y) in cases.items()}
    with ClassStatsStore(store, create=False) as st:
        assert st.load() == expected  # what evaluate reads
    reference = clskern.calibrate(expected, epsilon=0.2, alpha=0.3, family="bonferroni", level="lesion", overlap=0.2)
    written = clskern.read_calibration(cal)
    assert written.names == list(BRATS_NAMES) == list(reference)
    for name, member in written.calibrations.items():
        assert (member.level, member.overlap, member.connectivity) == ("lesion", 0.2, 26)
        assert member.threshold == reference[name].threshold and "L-FNR" in member.guarantee
        assert member.reading == {"label": None, "channel": classes[name][0]}
    voxel = clskern.calibrate(expected, epsilon=0.2, alpha=0.3, family="bonferroni")
    assert [c.threshold for c in written.calibrations.values()] != [c.threshold for c in voxel.values()]
    assert main(["evaluate", "--store", str(store), "--epsilon", "0.2", "--alpha", "0.3", "--level", "lesion",
                 "--splits", "2", "--no-sweeps", "--no-plots", "-q", "-o", str(tmp_path / "report")]) == 0


def test_read_calibration_reads_what_the_file_holds(tmp_path, capsys):
    """``clskern.read_calibration`` returns a per-class file's set and a plain file's ``Calibration``;
    ``Calibration.read`` on a set file says what it holds (it said "format version 1 ... calibrate again")."""
    from clskern.cli.main import main

    _write_brats(tmp_path, 20)
    store, dj, cal = tmp_path / "st.sqlite", tmp_path / "dataset.json", tmp_path / "classes.json"
    assert main(["stats", "--scores", str(tmp_path / "scores"), "--labels", str(tmp_path / "labels"),
                 "-o", str(store), "--dataset-json", str(dj), "-q"]) == 0
    assert main(["calibrate", "--store", str(store), "--epsilon", "0.2", "--alpha", "0.3", "-q", "-o", str(cal)]) == 0
    held = clskern.read_calibration(cal)
    assert isinstance(held, CalibrationSet) and held.by == "class" and held.names == list(BRATS_NAMES)
    with pytest.raises(CalibrationFileError) as info:
        clskern.Calibration.read(cal)
    message = str(info.value)
    assert message.startswith(f"{cal}: a calibration set by 'class'") and "\n" not in message, message
    assert "clskern.read_calibration(path)" in message and "format version" not in message, message
    one = tmp_path / "one.json"
    one.write_text(held["tumor core"].to_json())
    assert clskern.read_calibration(one) == clskern.Calibration.read(one) == held["tumor core"]
    one.write_text(held["tumor core"].to_json().replace('"n_skipped"', '"n_skipped_"'))
    with pytest.raises(CalibrationFileError, match=f"^{one}: not a clskern calibration"):
        clskern.read_calibration(one)
    with pytest.raises(OSError, match="missing.json"):
        clskern.read_calibration(tmp_path / "missing.json")
    assert "read_calibration" in clskern.__all__


def test_per_class_stats_say_labels_without_scores_once(tmp_path, capsys):
    import shutil

    from clskern.cli.main import main

    _write_brats(tmp_path, 6)
    shutil.copy(tmp_path / "labels" / "b00.nii.gz", tmp_path / "labels" / "other.nii.gz")
    argv = ["stats", "--scores", str(tmp_path / "scores"), "--labels", str(tmp_path / "labels"),
            "-o", str(tmp_path / "st.sqlite"), "--dataset-json", str(tmp_path / "dataset.json")]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert err.count("stats: 1 label file(s) without scores not used") == 1
    assert main(argv + ["-q"]) == 0 and capsys.readouterr().err == ""


def test_per_class_statistics_read_each_file_once(tmp_path, monkeypatch):
    """A case of 3 classes reads its label file and its score file once each (it read both once per
    channel), and gives the statistics class_stats gives."""
    import os

    import clskern.io.cases as cases_module
    from clskern.io.cases import pair_cases
    from clskern.io.class_batch import collect_class_stats

    cases = _write_brats(tmp_path, 4)
    classes, order = classes_from_dataset_json(tmp_path / "dataset.json")
    pairs, _ = pair_cases(tmp_path / "scores", tmp_path / "labels")
    reads = []
    real = cases_module._read_nifti

    def counting(path, **options):
        reads.append(os.path.basename(os.path.dirname(path)) + "/" + os.path.basename(path))
        return real(path, **options)

    monkeypatch.setattr(cases_module, "_read_nifti", counting)
    result = collect_class_stats(pairs, classes, regions_class_order=order)
    assert sorted(reads) == sorted(f"{d}/b{i:02d}.nii.gz" for i in range(4) for d in ("labels", "scores"))
    assert result.stats == {c: class_stats(p, y, classes, name=c) for c, (p, y) in cases.items()}


def test_dataset_json_of_nnunet_v1_reads_value_to_name():
    v1 = {"labels": {"0": "background", "1": "edema", "2": "non-enhancing", "3": "enhancing"}}
    assert classes_from_dataset_json(v1) == ({"edema": (1, (1,)), "non-enhancing": (2, (2,)),
                                              "enhancing": (3, (3,))}, None)
    with pytest.raises(InputError, match="two label values share a name"):
        classes_from_dataset_json({"labels": {"0": "background", "1": "a", "2": "a"}})


def test_a_store_holding_both_kinds_is_not_guessed(tmp_path, capsys):
    """One file with cases of one class and per-class cases: calibrate --store took the per-class ones
    silently; it now asks which (naming the classes still picks the per-class ones)."""
    from clskern.cli.main import main

    _write_brats(tmp_path, 12)
    store, dj = tmp_path / "st.sqlite", tmp_path / "dataset.json"
    reading = ["--scores", str(tmp_path / "scores"), "--labels", str(tmp_path / "labels"), "-o", str(store), "-q"]
    assert main(["stats", *reading, "--dataset-json", str(dj)]) == 0
    dj.rename(tmp_path / "kept.json")  # so that the next run reads one class, as given
    assert main(["stats", *reading, "--channel", "0", "--label", "1"]) == 0
    capsys.readouterr()
    common = ["calibrate", "--store", str(store), "--epsilon", "0.2", "--alpha", "0.3", "-q"]
    assert main(common + ["-o", str(tmp_path / "a.json")]) == 1
    err = capsys.readouterr().err
    assert "12 case(s) of one class and 12 case(s) per class" in err and len(err.splitlines()) == 1
    assert main(common + ["--dataset-json", str(tmp_path / "kept.json"), "-o", str(tmp_path / "b.json")]) == 0


@pytest.mark.parametrize("command", ["stats", "calibrate"])
@pytest.mark.parametrize("connectivity", ["6", "none"])
def test_connectivity_other_than_26_is_refused_for_classes_not_ignored(tmp_path, capsys, command, connectivity):
    """Per-class statistics keep 26-connected lesions: --connectivity 6 (or none) with --dataset-json was
    silently ignored; it is refused in one line, before anything is written."""
    from clskern.cli.main import main

    _write_brats(tmp_path, 4)
    out = tmp_path / ("st.sqlite" if command == "stats" else "cal.json")
    extra = [] if command == "stats" else ["--epsilon", "0.2"]
    code = main([command, "--scores", str(tmp_path / "scores"), "--labels", str(tmp_path / "labels"), "-o", str(out),
                 "--dataset-json", str(tmp_path / "dataset.json"), "--connectivity", connectivity, *extra])
    err = capsys.readouterr().err
    assert code == 1 and err.strip() == (
        f"clskern {command}: error: --connectivity {connectivity}: statistics per class "
        "(--classes, --dataset-json, several classes from nnU-Net) keep lesions with 26 neighbours only; leave "
        "--connectivity out, or pick one class with --label/--channel")
    assert not out.exists()
