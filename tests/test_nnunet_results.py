"""nnU-Net as users have it: a results folder of 5 folds, one fold against the full labelsTr, masks named once."""

import json
import shutil

import nibabel as nib
import numpy as np
import pytest
from nnunet_files import write_nnunet_case

import clskern
from clskern.adapters.nnunet import apply_folder, calibrate_folder, results_folder
from clskern.cli.main import main
from clskern.class_store import ClassStatsStore
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
    results, labels_tr, cases = tree
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


def test_dataset_json_with_several_labels_gathers_every_class(tree, tmp_path, capsys):
    results, labels_tr, cases = tree
    model = results / "Dataset042_Lesion" / MODEL
    (model / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "core": 1, "rim": 2}}))
    for case_id, (scores, labels) in cases.items():  # three softmax channels; label 2 a part of each lesion
        validation = model / f"fold_{int(case_id[-3:]) % 5}" / "validation"
        probabilities = np.stack([1 - scores, scores * 0.6, scores * 0.4]).transpose(0, 3, 2, 1)
        np.savez_compressed(validation / f"{case_id}.npz", probabilities=probabilities)
        rim = labels.copy()
        rim[: SHAPE[0] // 2][rim[: SHAPE[0] // 2] > 0] = 2
        nib.save(nib.Nifti1Image(rim, AFFINE), labels_tr / f"{case_id}.nii.gz")
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
    default = apply_folder(path, validation)
    assert default["LES_001"] == str(validation.parent / "validation_clskern" / "LES_001.nii.gz")


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
