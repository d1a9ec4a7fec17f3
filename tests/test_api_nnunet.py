"""clskern.adapters.nnunet on a folder laid out as nnU-Net v2 writes it."""

import json
import pickle

import nibabel as nib
import numpy as np
import pytest
from nnunet_files import LPS_AFFINE
from nnunet_files import write_nnunet_case as write_nnunet_files

import clskern
from clskern.adapters.nnunet import apply_folder, calibrate_folder
from clskern.io.errors import PairingError
from clskern.store import StatsStore
from clskern.synthetic import synthetic_case

SHAPE = (20, 18, 12)  # nibabel (x, y, z); nnU-Net stores (C, z, y, x)
AFFINE = np.diag([0.7, 0.7, 2.5, 1.0])


def write_nnunet_case(folder, case_id, scores, *, segmentation=True):
    """``CASE.npz`` (probabilities, (C, z, y, x)), ``CASE.pkl`` and nnU-Net's own ``CASE.nii.gz``."""
    probabilities = np.stack([1 - scores, scores]).transpose(0, 3, 2, 1).astype(np.float32)
    np.savez_compressed(folder / f"{case_id}.npz", probabilities=probabilities)
    with open(folder / f"{case_id}.pkl", "wb") as f:
        pickle.dump({"nibabel_stuff": {"original_affine": AFFINE}, "spacing": [2.5, 0.7, 0.7]}, f)
    if segmentation:
        nib.save(nib.Nifti1Image((scores >= 0.5).astype(np.uint8), AFFINE), folder / f"{case_id}.nii.gz")


@pytest.fixture
def dataset(tmp_path):
    """``predictions/`` for 10 cases and ``labelsTr/`` for 13 (three never predicted)."""
    predictions, labels_tr = tmp_path / "predictions", tmp_path / "labelsTr"
    predictions.mkdir()
    labels_tr.mkdir()
    rng = np.random.default_rng(3)
    cases = {}
    for i in range(13):
        case_id = f"BRATS_{i:03d}"
        scores, labels = synthetic_case(rng, SHAPE, lesion_free=i == 4)
        labels = labels * np.uint8(2)  # lesion label 2, as in multi-label datasets
        labels[0, 0, :3] = 1  # and some other label
        nib.save(nib.Nifti1Image(labels, AFFINE), labels_tr / f"{case_id}.nii.gz")
        if i < 10:
            write_nnunet_case(predictions, case_id, scores)
            cases[case_id] = (scores, labels)
    (predictions / "summary.json").write_text(json.dumps({"foreground_mean": {}}))
    return predictions, labels_tr, cases


def test_calibrate_folder_equals_library_calibration(dataset, tmp_path):
    predictions, labels_tr, cases = dataset
    expected_stats = {c: clskern.volume_stats(s, y, label=2, name=c) for c, (s, y) in cases.items()}
    expected = clskern.calibrate(expected_stats, epsilon=0.2, alpha=0.3)
    calibration = calibrate_folder(predictions, labels_tr, epsilon=0.2, alpha=0.3, label=2)
    assert calibration.threshold == expected.threshold and calibration.n == expected.n == 9
    assert calibration.n_skipped == 1 and calibration.case_ids == expected.case_ids
    store = tmp_path / "stats.sqlite"
    first = calibrate_folder(predictions, labels_tr, epsilon=0.2, method="crc", label=2, store=store)
    again = calibrate_folder(predictions, labels_tr, epsilon=0.2, method="crc", label=2, store=store)
    assert first.threshold == again.threshold == clskern.calibrate(expected_stats, epsilon=0.2, method="crc").threshold
    with StatsStore(store) as s:
        assert s.load() == expected_stats


def test_prediction_without_label_is_an_error(dataset):
    predictions, labels_tr, _ = dataset
    write_nnunet_case(predictions, "ORPHAN", np.zeros(SHAPE, np.float32))
    with pytest.raises(PairingError, match="ORPHAN.npz"):
        calibrate_folder(predictions, labels_tr, epsilon=0.2, alpha=0.3)


def test_apply_folder_writes_masks_beside_nnunets_folder(dataset):
    predictions, _, cases = dataset
    before = sorted(p.name for p in predictions.iterdir())
    nnunet_own = (predictions / "BRATS_000.nii.gz").read_bytes()
    written = apply_folder(0.37, predictions)
    out = predictions.parent / "predictions_clskern"  # a sibling: nothing written inside nnU-Net's folder
    assert sorted(written) == sorted(cases)
    for case_id, (scores, _) in cases.items():
        img = nib.load(written[case_id])
        assert written[case_id] == str(out / f"{case_id}.nii.gz")  # the name clskern apply writes
        assert img.get_data_dtype() == np.uint8 and np.allclose(img.affine, AFFINE)
        assert np.array_equal(np.asarray(img.dataobj), (scores >= np.float32(0.37)).astype(np.uint8))
    assert sorted(p.name for p in predictions.iterdir()) == before
    assert (predictions / "BRATS_000.nii.gz").read_bytes() == nnunet_own
    with pytest.raises(FileExistsError):
        apply_folder(0.37, predictions)
    apply_folder(0.5, predictions, overwrite=True)
    with pytest.raises(clskern.InputError, match="replace nnU-Net"):
        apply_folder(0.5, predictions, output=predictions)
    with pytest.raises(clskern.InputError, match="inside nnU-Net"):
        apply_folder(0.5, predictions, output=predictions / "masks")
    assert sorted(p.name for p in predictions.iterdir()) == before
    inside = apply_folder(0.5, predictions, output=predictions / "masks", inside=True)  # asked explicitly
    assert inside["BRATS_001"] == str(predictions / "masks" / "BRATS_001.nii.gz")


def test_apply_folder_to_another_folder_with_a_calibration_file(dataset, tmp_path):
    predictions, labels_tr, cases = dataset
    calibration = calibrate_folder(predictions, labels_tr, epsilon=0.3, alpha=0.5, label=2)
    path = tmp_path / "cal.json"
    path.write_text(calibration.to_json())
    written = apply_folder(path, predictions, output=tmp_path / "masks")
    scores = cases["BRATS_002"][0]
    mask = np.asarray(nib.load(written["BRATS_002"]).dataobj)
    assert np.array_equal(mask, clskern.apply_threshold(scores, calibration.threshold))


def test_reorienting_reader_folder_equals_library_calibration(tmp_path):
    """NibabelIOWithReorient saves probabilities in RAS axes: the folder API brings them back to labelsTr's."""
    predictions, labels_tr = tmp_path / "predictions", tmp_path / "labelsTr"
    predictions.mkdir()
    labels_tr.mkdir()
    rng = np.random.default_rng(5)
    expected_stats, arrays = {}, {}
    for i in range(8):
        case_id = f"LPS_{i:03d}"
        scores, labels = synthetic_case(rng, SHAPE)
        write_nnunet_files(predictions, case_id, scores, LPS_AFFINE, reader="reorient", segmentation=True)
        nib.save(nib.Nifti1Image(labels, LPS_AFFINE), labels_tr / f"{case_id}.nii.gz")
        arrays[case_id] = scores.astype(np.float32)
        expected_stats[case_id] = clskern.volume_stats(arrays[case_id], labels, name=case_id)
    calibration = calibrate_folder(predictions, labels_tr, epsilon=0.2, alpha=0.3)
    assert calibration.threshold == clskern.calibrate(expected_stats, epsilon=0.2, alpha=0.3).threshold
    written = apply_folder(calibration, predictions)
    for case_id, path in written.items():
        img = nib.load(path)
        np.testing.assert_allclose(img.affine, LPS_AFFINE, atol=1e-5)
        mask = np.asarray(img.dataobj)
        np.testing.assert_array_equal(mask, clskern.apply_threshold(arrays[case_id], calibration.threshold))


def test_dataset_json_beside_labels_tr_calibrates_each_class(dataset):
    """nnUNet_raw keeps dataset.json beside labelsTr: with several labels each is calibrated on its own channel."""
    predictions, labels_tr, cases = dataset
    (labels_tr.parent / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "other": 1, "lesion": 2}}))
    for case_id, (scores, _) in cases.items():  # softmax over 3 labels: channel = label value
        probabilities = np.stack([1 - scores, np.zeros_like(scores), scores]).transpose(0, 3, 2, 1)
        np.savez_compressed(predictions / f"{case_id}.npz", probabilities=probabilities.astype(np.float32))
    calibrations = calibrate_folder(predictions, labels_tr, epsilon=0.2, alpha=0.3)
    assert calibrations.names == ["other", "lesion"]
    expected = clskern.calibrate({c: clskern.volume_stats(s, y, label=2, name=c) for c, (s, y) in cases.items()},
                                 epsilon=0.2, alpha=0.3)
    assert calibrations["lesion"].threshold == expected.threshold
    assert calibrations["lesion"].reading == {"label": None, "channel": 2}
    lesion = calibrate_folder(predictions, labels_tr, epsilon=0.2, alpha=0.3, label=2)
    assert lesion.threshold == expected.threshold and lesion.reading == {"label": 2, "channel": 2}
    written = apply_folder(lesion, predictions)  # channel 2, as recorded; a plain folder: the sibling default
    mask = np.asarray(nib.load(written["BRATS_003"]).dataobj)
    assert np.array_equal(mask, clskern.apply_threshold(cases["BRATS_003"][0].astype(np.float32), lesion.threshold))
    with pytest.raises(clskern.InputError, match="calibrated on channel 2, but channel=1"):
        apply_folder(lesion, predictions, channel=1, overwrite=True)
