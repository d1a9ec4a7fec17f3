"""nnU-Net as users have it: a results folder of 5 folds, one fold against the full labelsTr, masks named once."""

import dataclasses
import json
import os
import shutil

import nibabel as nib
import numpy as np
import pytest
from nnunet_files import write_nnunet_case

import clskern
from clskern.adapters._threshold import load_calibration
from clskern.adapters.nnunet import (
    apply_folder,
    calibrate_folder,
    default_output,
    results_folder,
)
from clskern.calibration.record import Calibration
from clskern.calibration.sets import CalibrationSet, read_calibration
from clskern.class_store import ClassStatsStore
from clskern.cli.main import main
from clskern.io.errors import PairingError
from clskern.store import StatsStore
from clskern.synthetic import synthetic_case

SHAPE = (16, 14, 10)
AFFINE = np.diag([0.8, 0.8, 2.0, 1.0])
MODEL = "nnUNetTrainer__nnUNetPlans__3d_fullres"


@pytest.fixture
def tree(tmp_path, monkeypatch):
    """nnUNet_results with 5 folds of 2 validation cases each; nnUNet_raw's labelsTr holds 13 cases."""
    results, raw = tmp_path / "nnUNet_results", tmp_path / "nnUNet_raw"
    model = results / "Dataset042_Lesion" / MODEL
    labels_tr = raw / "Dataset042_Lesion" / "labelsTr"
    labels_tr.mkdir(parents=True)
    rng = np.random.default_rng(11)
    cases = {}
    for i in range(13):
        case_id = f"LES_{i:03d}"
        scores, labels = synthetic_case(rng, SHAPE, lesion_free=i == 3)
        nib.save(nib.Nifti1Image(labels, AFFINE), labels_tr / f"{case_id}.nii.gz")
        if i < 10:
            validation = model / f"fold_{i % 5}" / "validation"
            validation.mkdir(parents=True, exist_ok=True)
            write_nnunet_case(validation, case_id, scores, AFFINE, segmentation=True)
            cases[case_id] = (scores.astype(np.float32), labels)
    (model / "fold_0" / "validation" / "summary.json").write_text("{}")
    (model / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "lesion": 1},
                                                     "file_ending": ".nii.gz"}))
    monkeypatch.setenv("nnUNet_raw", str(raw))
    return results, labels_tr, cases


def expected_stats(cases):
    return {c: clskern.volume_stats(s, y, name=c) for c, (s, y) in cases.items()}


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_results_folder_pools_every_fold(tree):
    results, labels_tr, cases = tree
    cv = results_folder(results, 42, "3d_fullres")
    assert sorted(cv.folds) == [0, 1, 2, 3, 4] and sorted(cv.cases) == sorted(cases)
    assert cv.fold_of["LES_007"] == 2 and cv.dataset == "Dataset042_Lesion"
    assert cv.labels_folder() == str(labels_tr)  # from $nnUNet_raw
    assert results_folder(results, "Dataset042_Lesion", "3d_fullres", folds=[1, 3]).folds.keys() == {1, 3}
    calibration = calibrate_folder(cv, epsilon=0.2, alpha=0.3)
    expected = clskern.calibrate(expected_stats(cases), epsilon=0.2, alpha=0.3)
    assert calibration.threshold == expected.threshold and calibration.n == expected.n
    assert calibration.reading == {"label": None, "channel": 1}  # the binary dataset: channel 1, every label > 0, as the CLI reads it
    with pytest.raises(FileNotFoundError, match="nnUNetTrainer__nnUNetPlans__2d"):
        results_folder(results, 42, "2d")
    with pytest.raises(clskern.InputError, match="Dataset007_"):
        results_folder(results, 7, "3d_fullres")


def test_cli_stats_on_the_results_folder(tree, tmp_path, capsys):
    results, _, cases = tree
    store = tmp_path / "cv.sqlite"
    code, _, err = run_cli(capsys, "stats", "--nnunet-results", results, "--dataset", 42,
                           "--configuration", "3d_fullres", "-o", store)
    assert code == 0, err
    assert "3 label file(s) without scores not used" in err and "fold(s) 0, 1, 2, 3, 4" in err
    with StatsStore(store) as s:
        assert s.load() == expected_stats(cases)
    code, _, err = run_cli(capsys, "stats", "--nnunet-results", results, "--dataset", 42,
                           "--configuration", "3d_fullres", "--folds", 0, 1, "-o", tmp_path / "two.sqlite", "-q")
    assert code == 0 and err == ""
    with StatsStore(tmp_path / "two.sqlite") as s:
        assert len(s) == 4
    code, _, err = run_cli(capsys, "stats", "--dataset", 42, "--scores", results, "--labels", results, "-o", store)
    assert code == 1 and "--dataset: only with --nnunet-results" in err
    code, _, err = run_cli(capsys, "stats", "--nnunet-results", results, "--dataset", 42, "-o", store)
    assert code == 1 and "needs --configuration" in err


def test_one_fold_against_the_full_labels_tr(tree, tmp_path, capsys):
    results, labels_tr, _ = tree
    validation = results / "Dataset042_Lesion" / MODEL / "fold_0" / "validation"
    code, _, err = run_cli(capsys, "stats", "--scores", validation, "--labels", labels_tr, "-o", tmp_path / "f0.sqlite")
    assert code == 0, err
    assert "11 label file(s) without scores not used" in err and "unmatched" not in err
    with StatsStore(tmp_path / "f0.sqlite") as s:
        assert sorted(s.load()) == ["LES_000", "LES_005"]
    code, _, err = run_cli(capsys, "stats", "-q", "--scores", validation, "--labels", labels_tr,
                           "-o", tmp_path / "q.sqlite")
    assert code == 0 and err == ""


def test_a_prediction_without_label_is_an_error(tree, tmp_path, capsys):
    results, labels_tr, _ = tree
    validation = results / "Dataset042_Lesion" / MODEL / "fold_3" / "validation"
    write_nnunet_case(validation, "STRAY", np.zeros(SHAPE, np.float32), AFFINE)
    with pytest.raises(PairingError, match="STRAY.npz"):
        calibrate_folder(results_folder(results, 42, "3d_fullres"), labels_tr, epsilon=0.2, alpha=0.3)
    code, _, err = run_cli(capsys, "stats", "--scores", validation, "--labels", labels_tr, "-o", tmp_path / "s.sqlite")
    assert code == 1 and "STRAY.npz" in err and "without a label" in err


def test_a_case_in_two_folds_is_refused(tree, tmp_path, capsys):
    results, _, _ = tree
    model = results / "Dataset042_Lesion" / MODEL
    for ext in (".npz", ".pkl"):
        shutil.copy(model / "fold_0" / "validation" / f"LES_005{ext}", model / "fold_4" / "validation")
    with pytest.raises(PairingError, match=r"'LES_005' is in fold 0 and fold 4"):
        results_folder(results, 42, "3d_fullres")
    code, _, err = run_cli(capsys, "stats", "--nnunet-results", results, "--dataset", 42,
                           "--configuration", "3d_fullres", "-o", tmp_path / "s.sqlite")
    lines = [x for x in err.splitlines() if x.strip()]
    assert code == 1 and len(lines) == 1 and "fold 0 and fold 4" in lines[0]
    assert not (tmp_path / "s.sqlite").exists()


def _three_classes(tree):
    """The tree's model as a 3-class softmax dataset (core = label 1, rim = label 2): ``{case: (probs, labels)}``."""
    results, labels_tr, cases = tree
    model = results / "Dataset042_Lesion" / MODEL
    (model / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "core": 1, "rim": 2}}))
    out = {}
    for case_id, (scores, labels) in cases.items():  # three softmax channels; label 2 a part of each lesion
        validation = model / f"fold_{int(case_id[-3:]) % 5}" / "validation"
        probabilities = np.stack([1 - scores, scores * 0.6, scores * 0.4])
        np.savez_compressed(validation / f"{case_id}.npz", probabilities=probabilities.transpose(0, 3, 2, 1))
        rim = labels.copy()
        rim[: SHAPE[0] // 2][rim[: SHAPE[0] // 2] > 0] = 2
        nib.save(nib.Nifti1Image(rim, AFFINE), labels_tr / f"{case_id}.nii.gz")
        out[case_id] = (probabilities, rim)
    return model, out


def test_dataset_json_with_several_labels_gathers_every_class(tree, tmp_path, capsys):
    results, _, _ = tree
    model, _ = _three_classes(tree)
    store = tmp_path / "classes.sqlite"
    code, _, err = run_cli(capsys, "stats", "--nnunet-results", results, "--dataset", 42,
                           "--configuration", "3d_fullres", "-o", store)
    assert code == 0, err
    assert "2 classes (core, rim)" in err
    with ClassStatsStore(store) as s:
        assert len(s) == 10
    calibration = tmp_path / "classes.json"
    code, _, err = run_cli(capsys, "calibrate", "--store", store, "--dataset-json", model / "dataset.json",
                           "--epsilon", 0.3, "--alpha", 0.5, "-o", calibration)
    assert code == 0, err
    validation = model / "fold_2" / "validation"  # one input with 2 channels where 3 are read: no label map written
    np.savez_compressed(validation / "LES_007.npz", probabilities=np.ones((2, 10, 14, 16), np.float32))
    code, _, err = run_cli(capsys, "apply", "--calibration", calibration, "--scores", validation, "-o", tmp_path / "maps")
    assert code == 1 and "LES_007.npz: channel 2 does not exist" in err, err
    assert not (tmp_path / "maps").exists()
    (validation / "LES_007.npz").unlink()
    (validation / "LES_007.pkl").unlink()
    (validation / "LES_007.nii.gz").unlink()
    code, _, err = run_cli(capsys, "apply", "--calibration", calibration, "--scores", validation, "-o", tmp_path / "maps")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "maps").iterdir()) == ["LES_002.nii.gz"]


def _masks(folder):
    return {p.name: np.asarray(nib.load(p).dataobj) for p in sorted(folder.iterdir())} if folder.exists() else {}


def test_mask_names_equal_between_cli_and_python(tree, tmp_path, capsys):
    results, labels_tr, _ = tree
    validation = results / "Dataset042_Lesion" / MODEL / "fold_1" / "validation"
    calibration = calibrate_folder(results_folder(results, 42, "3d_fullres"), labels_tr, epsilon=0.2, alpha=0.3)
    path = tmp_path / "cal.json"
    path.write_text(calibration.to_json())
    code, _, err = run_cli(capsys, "apply", "--calibration", path, "--scores", validation, "-o", tmp_path / "cli", "-q")
    assert code == 0, err
    written = apply_folder(path, validation, output=tmp_path / "python")
    cli, python = _masks(tmp_path / "cli"), _masks(tmp_path / "python")
    assert sorted(cli) == sorted(python) == ["LES_001.nii.gz", "LES_006.nii.gz"]
    assert all(np.array_equal(cli[n], python[n]) for n in cli)
    assert sorted(written) == ["LES_001", "LES_006"]
    with pytest.raises(clskern.InputError, match="inside nnU-Net's results tree"):  # no default guessed there
        apply_folder(path, validation)
    assert not (validation.parent / "validation_clskern").exists()


BAD = {
    "integer scores": lambda folder: np.savez_compressed(
        folder / "LES_006.npz", probabilities=np.ones((2, 10, 14, 16), np.uint8)),
    "shape": lambda folder: np.savez_compressed(
        folder / "LES_006.npz", probabilities=np.ones((2, 10, 14, 15), np.float32)),
    "unreadable": lambda folder: (folder / "LES_006.npz").write_bytes(b"PK\x03\x04 not a zip"),
    "channel": lambda folder: np.savez_compressed(
        folder / "LES_006.npz", probabilities=np.ones((1, 10, 14, 16), np.float32)),
}


@pytest.mark.parametrize("bad", sorted(BAD))
def test_apply_with_one_bad_input_writes_nothing(tree, tmp_path, capsys, bad):
    results, _, _ = tree
    validation = results / "Dataset042_Lesion" / MODEL / "fold_1" / "validation"  # LES_001 (good), LES_006
    BAD[bad](validation)
    code, _, err = run_cli(capsys, "apply", "--calibration", _threshold_file(tmp_path), "--scores", validation,
                           "-o", tmp_path / "cli")
    lines = [x for x in err.splitlines() if x.strip()]
    assert code == 1 and len(lines) == 1 and "LES_006" in lines[0], err
    assert not (tmp_path / "cli").exists()
    with pytest.raises((clskern.InputError, ValueError, OSError)):
        apply_folder(0.5, validation, output=tmp_path / "python")
    assert not (tmp_path / "python").exists()


def _threshold_file(tmp_path):
    rng = np.random.default_rng(0)
    stats = {f"c{i}": clskern.volume_stats(*synthetic_case(rng, SHAPE), name=f"c{i}") for i in range(8)}
    path = tmp_path / "cal.json"
    path.write_text(clskern.calibrate(stats, epsilon=0.3, alpha=0.5).to_json())
    return path


def test_calibrate_folder_calibrates_each_class_of_dataset_json(tree, tmp_path, capsys):
    """Several classes in dataset.json: each class on its own channel and label, as the CLI does; not channel 1
    against every label > 0."""
    results, _, _ = tree
    model, cases = _three_classes(tree)
    cv = results_folder(results, 42, "3d_fullres")
    calibrations = calibrate_folder(cv, epsilon=0.3, alpha=0.5)
    assert isinstance(calibrations, CalibrationSet) and calibrations.names == ["core", "rim"]
    assert calibrations.classes == {"core": (1, (1,)), "rim": (2, (2,))}
    rim = {c: clskern.volume_stats(p[2], y, label=2, name=c) for c, (p, y) in cases.items()}
    assert calibrations["rim"].threshold == clskern.calibrate(rim, epsilon=0.3, alpha=0.5).threshold
    assert calibrations["rim"].reading == {"label": None, "channel": 2}
    assert calibrations["core"].reading == {"label": None, "channel": 1}
    store = tmp_path / "classes.sqlite"  # the CLI's calibration per class is the same
    assert run_cli(capsys, "stats", "--nnunet-results", results, "--dataset", 42, "--configuration", "3d_fullres",
                   "-o", store, "-q")[0] == 0
    assert run_cli(capsys, "calibrate", "--store", store, "--dataset-json", model / "dataset.json", "--epsilon", 0.3,
                   "--alpha", 0.5, "-o", tmp_path / "cli.json", "-q")[0] == 0
    cli = read_calibration(tmp_path / "cli.json")
    assert {n: c.threshold for n, c in cli.calibrations.items()} == {
        n: c.threshold for n, c in calibrations.calibrations.items()}
    assert CalibrationSet.from_json(calibrations.to_json()).names == ["core", "rim"]  # a file clskern apply reads
    one = calibrate_folder(cv, epsilon=0.3, alpha=0.5, label=2)  # one class picked: its channel, not channel 1
    assert isinstance(one, Calibration) and one.reading == {"label": 2, "channel": 2}
    assert one.threshold == calibrations["rim"].threshold
    assert calibrate_folder(cv, epsilon=0.3, alpha=0.5, channel=1).reading == {"label": 1, "channel": 1}
    with pytest.raises(clskern.InputError, match="no class with channel=3"):
        calibrate_folder(cv, epsilon=0.3, alpha=0.5, channel=3)


def test_apply_folder_cuts_the_calibrated_channel_with_its_normalize(tree, tmp_path, capsys):
    model, cases = _three_classes(tree)
    validation = model / "fold_1" / "validation"  # LES_001, LES_006
    rim = {c: clskern.volume_stats(p[2], y, label=2, name=c) for c, (p, y) in cases.items()}
    for normalize in ("none", "minmax"):
        calibration = dataclasses.replace(clskern.calibrate(rim, epsilon=0.3, alpha=0.5, normalize=normalize),
                                          reading={"label": 2, "channel": 2})
        path = tmp_path / f"{normalize}.json"
        path.write_text(calibration.to_json())
        written = apply_folder(path, validation, output=tmp_path / f"py_{normalize}")
        for case_id in ("LES_001", "LES_006"):
            expected = clskern.apply_threshold(cases[case_id][0][2], calibration.threshold, normalize=normalize)
            assert np.array_equal(np.asarray(nib.load(written[case_id]).dataobj), expected), (normalize, case_id)
        code, _, err = run_cli(capsys, "apply", "--calibration", path, "--scores", validation,
                               "-o", tmp_path / f"cli_{normalize}", "-q")
        assert code == 0, err
        cli, python = _masks(tmp_path / f"cli_{normalize}"), _masks(tmp_path / f"py_{normalize}")
        assert sorted(cli) == sorted(python) and all(np.array_equal(cli[n], python[n]) for n in cli)
    assert apply_folder(calibration, validation, output=tmp_path / "again", channel=2)  # the same channel: fine
    with pytest.raises(clskern.InputError, match="calibrated on channel 2, but channel=1"):
        apply_folder(calibration, validation, output=tmp_path / "other", channel=1)
    assert not (tmp_path / "other").exists()


def test_apply_folder_writes_the_label_map_of_a_calibration_per_class(tree, tmp_path, capsys):
    results, _, _ = tree
    model, _ = _three_classes(tree)
    validation = model / "fold_1" / "validation"
    calibrations = calibrate_folder(results_folder(results, 42, "3d_fullres"), epsilon=0.3, alpha=0.5)
    path = tmp_path / "classes.json"
    path.write_text(calibrations.to_json())
    code, _, err = run_cli(capsys, "apply", "--calibration", path, "--scores", validation, "-o", tmp_path / "cli", "-q")
    assert code == 0, err
    for given in (calibrations, path):
        out = tmp_path / f"py_{type(given).__name__}"
        written = apply_folder(given, validation, output=out)
        cli, python = _masks(tmp_path / "cli"), _masks(out)
        assert sorted(written) == ["LES_001", "LES_006"] and sorted(cli) == sorted(python)
        assert all(np.array_equal(cli[n], python[n]) for n in cli)
        assert set(np.unique(python["LES_001.nii.gz"])) <= {0, 1, 2}
    with pytest.raises(clskern.InputError, match="a calibration per class .* channel= does not apply"):
        apply_folder(path, validation, output=tmp_path / "x", channel=2)
    with pytest.raises(clskern.InputError, match=r"classes.json: a calibration per class \(core, rim\)"):
        load_calibration(path)  # the adapters that take one threshold refuse a set by name, not "format version 1"


def _flip_a_data_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the deflated member: found only when the voxels are read
    path.write_bytes(bytes(data))


CORRUPT = {
    "NaN": lambda f: np.savez_compressed(f, probabilities=np.full((2, 10, 14, 16), np.nan, np.float32)),
    "CRC": _flip_a_data_byte,
}


@pytest.mark.parametrize("damage", sorted(CORRUPT))
def test_apply_folder_writes_every_mask_or_none(tree, tmp_path, damage):
    results, _, _ = tree
    validation = results / "Dataset042_Lesion" / MODEL / "fold_1" / "validation"  # LES_001 (good), then LES_006
    out = tmp_path / "masks"
    first = apply_folder(0.5, validation, output=out)
    before = {n: p.read_bytes() for n, p in ((n, out / n) for n in os.listdir(out))}
    CORRUPT[damage](validation / "LES_006.npz")
    with pytest.raises((clskern.InputError, OSError)):
        apply_folder(0.3, validation, output=out, overwrite=True)
    assert {n: (out / n).read_bytes() for n in os.listdir(out)} == before  # older masks kept, nothing new
    with pytest.raises((clskern.InputError, OSError)):
        apply_folder(0.3, validation, output=tmp_path / "fresh")
    assert not (tmp_path / "fresh").exists()
    assert sorted(first) == ["LES_001", "LES_006"]


def test_a_case_with_only_nnunets_segmentation_is_refused(tree, tmp_path):
    results, _, _ = tree
    validation = results / "Dataset042_Lesion" / MODEL / "fold_1" / "validation"
    (validation / "LES_006.npz").unlink()
    (validation / "LES_006.pkl").unlink()  # LES_006.nii.gz stays: predicted without --save_probabilities
    with pytest.raises(PairingError, match=r"LES_006\.nii\.gz.*nnUNetv2_predict with --save_probabilities"):
        apply_folder(0.5, validation, output=tmp_path / "masks")
    assert not (tmp_path / "masks").exists()


def test_no_default_output_inside_nnunet_results(tree, tmp_path, monkeypatch):
    results, _, _ = tree
    model = results / "Dataset042_Lesion" / MODEL
    with pytest.raises(clskern.InputError, match="inside nnU-Net's results tree"):
        default_output(model / "fold_0" / "validation")
    elsewhere = results / "Dataset042_Lesion" / "predictions_test"  # not a model folder, but inside $nnUNet_results
    elsewhere.mkdir()
    monkeypatch.setenv("nnUNet_results", str(results))
    with pytest.raises(clskern.InputError, match="inside nnU-Net's results tree"):
        default_output(elsewhere)
    assert default_output(tmp_path / "predictions") == str(tmp_path / "predictions_clskern")


def test_folds_asked_twice_missing_or_unfinished(tree, tmp_path, capsys):
    results, _, _ = tree
    model = results / "Dataset042_Lesion" / MODEL
    with pytest.raises(clskern.InputError, match="fold 0 asked twice"):
        results_folder(results, 42, "3d_fullres", folds=[0, 0])
    with pytest.raises(PairingError, match=r"no fold 7 \(fold_N there: 0, 1, 2, 3, 4\)"):
        results_folder(results, 42, "3d_fullres", folds=[1, 7])
    (model / "fold_5").mkdir()  # training not finished: no validation/ yet
    (model / "fold_5" / "checkpoint_latest.pth").write_bytes(b"")
    with pytest.raises(PairingError, match=r"fold 5 has no validation/ folder: training not finished, or run "
                                           r"nnUNetv2_train Dataset042_Lesion 3d_fullres 5 --val --npz"):
        results_folder(results, 42, "3d_fullres")
    assert sorted(results_folder(results, 42, "3d_fullres", folds=[0, 1]).folds) == [0, 1]
    base = ("stats", "--nnunet-results", results, "--dataset", 42, "--configuration", "3d_fullres")
    for extra, message in ((("--folds", 0, 0), "fold 0 asked twice"),
                           (("--folds", 0, "--allow-unmatched"), "--allow-unmatched"),
                           (("--folds", 5), "fold 5 has no validation/ folder")):
        code, _, err = run_cli(capsys, *base, *extra, "-o", tmp_path / "s.sqlite")
        lines = [x for x in err.splitlines() if x.strip()]
        assert code == 1 and len(lines) == 1 and message in lines[0], (extra, err)
        assert not (tmp_path / "s.sqlite").exists()


def test_a_segmentation_given_as_scores_says_so(tree, tmp_path, capsys):
    results, _, _ = tree
    validation = results / "Dataset042_Lesion" / MODEL / "fold_1" / "validation"
    segmentations = tmp_path / "segmentations"  # nnUNetv2_predict without --save_probabilities
    segmentations.mkdir()
    for case_id in ("LES_001", "LES_006"):
        shutil.copy(validation / f"{case_id}.nii.gz", segmentations)
    code, _, err = run_cli(capsys, "apply", "--calibration", _threshold_file(tmp_path), "--scores", segmentations,
                           "-o", tmp_path / "masks")
    assert code == 1 and "holds uint8 values, not float scores" in err, err
    assert "(a segmentation? nnU-Net writes probabilities with --save_probabilities)" in err


def test_one_of_label_or_channel_picks_its_class_from_dataset_json(tree, tmp_path, capsys):
    """--channel 2 alone read channel 2 against every label > 0 (core and rim mixed); it now reads the
    class dataset.json gives channel 2 (rim, label 2), as --label 2 alone does, in --nnunet-results and
    in plain folders with dataset.json beside labelsTr."""
    results, labels_tr, _ = tree
    model, cases = _three_classes(tree)
    expected = {c: clskern.volume_stats(p[2], y, label=2, name=c) for c, (p, y) in cases.items()}
    nnunet = ("--nnunet-results", results, "--dataset", 42, "--configuration", "3d_fullres")
    for i, pick in enumerate((("--channel", 2), ("--label", 2))):
        store = tmp_path / f"s{i}.sqlite"
        code, _, err = run_cli(capsys, "stats", *nnunet, *pick, "-o", store)
        assert code == 0, err
        assert "is class 'rim'" in err and "channel 2 against label 2" in err
        with StatsStore(store, create=False) as s:
            assert s.load() == expected and s.reading()["label"] == 2 and s.reading()["channel"] == 2
    shutil.copy(model / "dataset.json", labels_tr.parent / "dataset.json")
    store = tmp_path / "plain.sqlite"
    code, _, err = run_cli(capsys, "stats", "--scores", model / "fold_2" / "validation", "--labels", labels_tr,
                           "--channel", 2, "-o", store, "-q")
    assert code == 0, err
    with StatsStore(store, create=False) as s:
        assert s.load() == {c: expected[c] for c in ("LES_002", "LES_007")}
    region = {"labels": {"background": 0, "whole": [1, 2], "rim": 2}, "regions_class_order": [1, 2]}
    (model / "dataset.json").write_text(json.dumps(region))
    store = tmp_path / "r.sqlite"  # regions: no background channel; channel 0 is the region 'whole'
    code, _, err = run_cli(capsys, "stats", *nnunet, "--channel", 0, "-o", store)
    assert code == 0 and "--channel 0: " in err and "1 class (whole), each gathered" in err, err
    with ClassStatsStore(store) as s:  # as calibrate_folder(channel=0) reads it: the region, a class
        assert s.classes() == ({"whole": (0, (1, 2))}, [1])


def test_calibrate_from_folders_reads_dataset_json_beside_labels_tr_as_stats_does(tree, tmp_path, capsys):
    """calibrate --scores/--labels --label 2 read channel 1 against label 2 (stats read channel 2): the same
    rule now serves both, and the calibration records the channel apply must cut."""
    results, labels_tr, _ = tree
    model, cases = _three_classes(tree)
    shutil.copy(model / "dataset.json", labels_tr.parent / "dataset.json")
    pool = tmp_path / "pool"
    pool.mkdir()
    for fold in model.glob("fold_*/validation"):
        for f in fold.iterdir():
            if f.suffix in (".npz", ".pkl"):
                shutil.copy(f, pool / f.name)
    expected = {c: clskern.volume_stats(p[2], y, label=2, name=c) for c, (p, y) in cases.items()}
    out = tmp_path / "rim.json"
    code, _, err = run_cli(capsys, "calibrate", "--scores", pool, "--labels", labels_tr, "--label", 2,
                           "--epsilon", 0.3, "--alpha", 0.5, "-o", out)
    assert code == 0, err
    assert "calibrate: --label 2 is class 'rim'" in err
    cal = Calibration.read(out)
    assert cal.reading == {"label": 2, "channel": 2}
    assert cal.threshold == clskern.calibrate(expected, epsilon=0.3, alpha=0.5).threshold


@pytest.mark.parametrize("labels, reading", [
    ({"background": 0, "lesion": 1, "ignore": 2}, {"label": 1, "channel": 1}),  # ignore voxels are not lesion
    ({"0": "background", "1": "lesion"}, {"label": None, "channel": None}),  # nnU-Net v1: the binary default
    ({"0": "background", "1": "lesion", "2": "ignore"}, {"label": 1, "channel": 1}),  # v1's ignore too
    ({"background": 0, "lesion": 1}, {"label": None, "channel": None}),  # v2 binary: unchanged
])
def test_one_class_datasets_read_as_their_class(tree, tmp_path, capsys, labels, reading):
    results, labels_tr, cases = tree
    (labels_tr.parent / "dataset.json").write_text(json.dumps({"labels": labels}))
    validation = results / "Dataset042_Lesion" / MODEL / "fold_1" / "validation"
    if "ignore" in labels or "ignore" in labels.values():  # part of each lesion marked ignore
        for case_id in ("LES_001", "LES_006"):
            y = np.asarray(nib.load(labels_tr / f"{case_id}.nii.gz").dataobj).copy()
            y[: SHAPE[0] // 3][y[: SHAPE[0] // 3] > 0] = 2
            nib.save(nib.Nifti1Image(y, AFFINE), labels_tr / f"{case_id}.nii.gz")
    store = tmp_path / "s.sqlite"
    code, _, err = run_cli(capsys, "stats", "--scores", validation, "--labels", labels_tr, "-o", store, "-q")
    assert code == 0, err
    with StatsStore(store, create=False) as s:
        assert {k: s.reading()[k] for k in ("label", "channel")} == reading
        for case_id, stats in s.load().items():
            y = np.asarray(nib.load(labels_tr / f"{case_id}.nii.gz").dataobj)
            assert stats.n_fg == int(np.count_nonzero(y == 1))


def test_a_single_region_and_a_foreign_dataset_json(tree, tmp_path, capsys):
    results, labels_tr, _ = tree
    validation = results / "Dataset042_Lesion" / MODEL / "fold_1" / "validation"
    region = {"labels": {"background": 0, "lesion": [1, 2]}, "regions_class_order": [1]}
    (labels_tr.parent / "dataset.json").write_text(json.dumps(region))
    for case_id in ("LES_001", "LES_006"):  # nnU-Net's region outputs: one sigmoid channel
        np.savez_compressed(validation / f"{case_id}.npz",
                            probabilities=np.load(validation / f"{case_id}.npz")["probabilities"][1:])
    store = tmp_path / "r.sqlite"
    code, _, err = run_cli(capsys, "stats", "--scores", validation, "--labels", labels_tr, "-o", store)
    assert code == 0, err  # it read channel 1 of a one-channel file and failed
    assert "1 class (lesion), each gathered" in err
    with ClassStatsStore(store) as s:
        assert s.classes() == ({"lesion": (0, (1, 2))}, [1]) and len(s) == 2
    (labels_tr.parent / "dataset.json").write_text(json.dumps({"name": "not nnU-Net's"}))
    code, _, err = run_cli(capsys, "stats", "--scores", validation, "--labels", labels_tr, "-o", tmp_path / "x.sqlite")
    assert code == 1 and "no 'labels' object" in err and "pass --label and --channel" in err
    code, _, err = run_cli(capsys, "stats", "--scores", validation, "--labels", labels_tr, "--label", 1, "--channel", 0,
                           "-o", tmp_path / "y.sqlite", "-q")
    assert code == 0, err  # both given: the file is not read
