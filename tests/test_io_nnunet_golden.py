"""clskern against files nnU-Net v2 wrote itself (``tests/data/nnunet``, made by ``tests/nnunet_golden.py``).

Every reader nnU-Net has (SimpleITKIO, NibabelIO, NibabelIOWithReorient,
SimpleITKIOWithReorient), two plans whose ``transpose_forward`` is not the
identity and a region-based dataset: statistics equal those nnU-Net's own
reader gives (``expected.json``), every voxel lands where nnU-Net's
``write_seg`` puts it (``levels/``), and masks equal nnU-Net's ``write_seg``
of ``probabilities[channel] >= threshold`` (``masks/``). Needs neither nnU-Net,
torch nor SimpleITK.
"""

import json
import os
import pickle
import shutil

import nibabel as nib
import numpy as np
import pytest

import clskern
from clskern.adapters.nnunet import apply_folder
from clskern.cli.main import main
from clskern.io import MismatchError, load_case, pair_cases
from clskern.io.cases import load_case_channels
from clskern.io.errors import FileFormatError
from clskern.io.nnunet_pkl import find_plans, read_pkl_geometry
from clskern.store import StatsStore

DATA = os.path.join(os.path.dirname(__file__), "data", "nnunet")
DATASETS = sorted(n for n in os.listdir(DATA) if os.path.isdir(os.path.join(DATA, n)))
READERS = {"SimpleITKIO", "NibabelIO", "NibabelIOWithReorient", "SimpleITKIOWithReorient"}


def _expected(name):
    with open(os.path.join(DATA, name, "expected.json")) as f:
        return json.load(f)


def _copy(tmp_path, name):
    """The dataset's folder, copied (tests that damage or move files)."""
    return shutil.copytree(os.path.join(DATA, name), tmp_path / name)


def _image(path):
    img = nib.load(path)
    return np.asarray(img.dataobj), img.affine


def test_the_golden_files_cover_every_reader_a_transpose_and_regions():
    seen = {_expected(n)["reader"] for n in DATASETS}
    transposes = {tuple(_expected(n)["transpose_forward"]) for n in DATASETS}
    assert seen == READERS
    assert len(transposes - {(0, 1, 2)}) >= 2  # [2, 0, 1] (SimpleITK, a thick x axis) and [1, 0, 2]
    assert any("whole" in _expected(n)["channels"] for n in DATASETS)
    with open(os.path.join(DATA, "VERSIONS.json")) as f:
        assert json.load(f)["nnunetv2"] == "2.8.1"


@pytest.mark.parametrize("name", DATASETS)
def test_statistics_equal_nnunets_own_reading(name):
    expected = _expected(name)
    pred, labels = os.path.join(DATA, name, "pred"), os.path.join(DATA, name, "labelsTr")
    classes = list(expected["channels"])
    for pair in pair_cases(pred, labels)[0]:
        cases = load_case_channels(pair, [expected["channels"][k] for k in classes])
        for k, case in zip(classes, cases):
            want = expected["cases"][pair.case_id][k]
            stats = clskern.volume_stats(case.scores, np.isin(case.labels, expected["values"][k]), name=pair.case_id)
            np.testing.assert_array_equal(stats.lesion_scores, np.array(want["lesion_scores"], np.float32))
            assert (stats.n_voxels, stats.n_fg) == (want["n_voxels"], want["n_fg"])
            t = expected["threshold"]  # 0.5: a histogram bin edge, so FP is exact there
            assert (int(stats.fn(t)), int(stats.fp(t))) == (want["fn"], want["fp"])


@pytest.mark.parametrize("name", DATASETS)
def test_every_voxel_lands_where_nnunets_write_seg_puts_it(name):
    expected = _expected(name)
    pred, labels = os.path.join(DATA, name, "pred"), os.path.join(DATA, name, "labelsTr")
    for pair in pair_cases(pred, labels)[0]:
        case = load_case(pair, channel=expected["mask_channel"])
        levels, affine = _image(os.path.join(DATA, name, "levels", f"{pair.case_id}.nii.gz"))
        ours = (np.floor(case.scores.astype(np.float64) * expected["levels"]) + 1).astype(np.uint8)
        np.testing.assert_array_equal(ours, levels)
        np.testing.assert_allclose(nib.load(pair.labels).affine, affine, atol=1e-4)
        assert len(np.unique(levels)) > 20  # a code that shows a flip or a transpose


def _assert_golden_masks(written, name):
    assert written
    for case_id, path in written.items():
        ours, affine = _image(path)
        theirs, their_affine = _image(os.path.join(DATA, name, "masks", f"{case_id}.nii.gz"))
        np.testing.assert_array_equal(ours, theirs)
        np.testing.assert_allclose(affine, their_affine, atol=1e-4)


@pytest.mark.parametrize("name", DATASETS)
def test_apply_folder_equals_nnunets_write_seg(tmp_path, name):
    expected = _expected(name)
    written = apply_folder(expected["threshold"], os.path.join(DATA, name, "pred"), output=tmp_path / "masks",
                           channel=expected["mask_channel"])
    _assert_golden_masks(written, name)


def _cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("name", ["transposed", "sitk_reorient", "transposed_reorient"])
@pytest.mark.parametrize("reference", [False, True])
def test_cli_stats_calibrate_apply_on_what_failed(tmp_path, capsys, name, reference):
    """The issue's two refusals: `clskern apply` on a transposing plan, `clskern stats` on SimpleITKIOWithReorient."""
    expected = _expected(name)
    pred, labels = os.path.join(DATA, name, "pred"), os.path.join(DATA, name, "labelsTr")
    store, cal = tmp_path / "s.sqlite", tmp_path / "cal.json"
    code, _, err = _cli(capsys, "stats", "--scores", pred, "--labels", labels, "--label", 1, "--channel", 1,
                        "-o", store, "-q")
    assert code == 0, err
    with StatsStore(store) as s:
        for case_id, stats in s.load().items():
            np.testing.assert_array_equal(stats.lesion_scores, np.float32(
                expected["cases"][case_id]["lesion"]["lesion_scores"]))
    code, _, err = _cli(capsys, "calibrate", "--store", store, "--epsilon", 0.5, "--alpha", 0.4, "-o", cal, "-q")
    assert code == 0, err
    threshold = json.loads(cal.read_text())["threshold"]
    options = ("--reference", labels) if reference else ()
    code, _, err = _cli(capsys, "apply", "--calibration", cal, "--scores", pred, *options, "-o", tmp_path / "m", "-q")
    assert code == 0, err
    python = apply_folder(cal, pred, output=tmp_path / "p")
    for case_id, path in python.items():
        ours, affine = _image(tmp_path / "m" / f"{case_id}.nii.gz")
        np.testing.assert_array_equal(ours, _image(path)[0])
        levels, their_affine = _image(os.path.join(DATA, name, "levels", f"{case_id}.nii.gz"))
        np.testing.assert_allclose(affine, their_affine, atol=1e-4)
        # the mask at the calibrated cut, in nnU-Net's space: every voxel at or above it, by nnU-Net's own map
        scores = load_case(pair_cases(pred, labels)[0][sorted(python).index(case_id)], channel=1).scores
        np.testing.assert_array_equal(ours, scores >= np.float32(threshold))
        assert np.all(levels[ours > 0] >= np.floor(np.float64(np.float32(threshold)) * expected["levels"]) + 1)


@pytest.mark.parametrize("name", ["transposed", "transposed_reorient"])
def test_transposed_plans_without_plans_json_read_as_nnunets_planner_makes_them(tmp_path, name):
    folder = _copy(tmp_path, name)
    os.remove(folder / "pred" / "plans.json")
    assert find_plans(folder / "pred" / f"{name}_000.npz") is None
    _assert_golden_masks(apply_folder(0.5, folder / "pred", output=tmp_path / "m"), name)


def test_a_fold_in_a_results_tree_finds_the_model_folders_plans(tmp_path):
    model = tmp_path / "nnUNet_results" / "Dataset505_transposed" / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    validation = model / "fold_0" / "validation"
    shutil.copytree(os.path.join(DATA, "transposed", "pred"), validation)
    shutil.move(validation / "plans.json", model / "plans.json")
    assert find_plans(validation / "transposed_000.npz") == str(model / "plans.json")
    _assert_golden_masks(apply_folder(0.5, validation, output=tmp_path / "m"), "transposed")
    # the model's plans say "no transpose": these files do not fit them
    plans = json.loads((model / "plans.json").read_text())
    plans.update(transpose_forward=[0, 1, 2], transpose_backward=[0, 1, 2])
    (model / "plans.json").write_text(json.dumps(plans))
    with pytest.raises(MismatchError, match=r"transposed_000\.npz: declares spatial shape \(9, 7, 6\) .*"
                                            r"transposed_000\.pkl records \(7, 6, 9\).*transpose_forward \[0, 1, 2\]"):
        apply_folder(0.5, validation, output=tmp_path / "m2")
    plans.update(transpose_forward=[2, 0, 1], transpose_backward=[2, 0, 1])  # not its inverse
    (model / "plans.json").write_text(json.dumps(plans))
    with pytest.raises(FileFormatError, match=r"plans\.json: transpose_backward \[2, 0, 1\] does not undo"):
        apply_folder(0.5, validation, output=tmp_path / "m3")
    assert not (tmp_path / "m2").exists() and not (tmp_path / "m3").exists()


def _rewrite_pkl(path, **changes):
    with open(path, "rb") as f:
        props = pickle.load(f)
    props.update(changes)
    with open(path, "wb") as f:
        pickle.dump(props, f)


@pytest.mark.parametrize("change", ["spacing", "bbox", "order"])
def test_either_order_never_accepts_a_pkl_that_disagrees_elsewhere(tmp_path, change):
    """Without plans.json a transposed shape passes only when the .pkl agrees with nnU-Net's planner."""
    folder = _copy(tmp_path, "transposed")
    os.remove(folder / "pred" / "plans.json")
    pkl = folder / "pred" / "transposed_000.pkl"
    with open(pkl, "rb") as f:
        props = pickle.load(f)
    if change == "spacing":  # the thick axis (3.0) no longer the one moved first
        _rewrite_pkl(pkl, spacing=[3.0, 0.8, 0.9])
    elif change == "bbox":
        _rewrite_pkl(pkl, bbox_used_for_cropping=[[0, 9], [0, 8], [0, 7]])  # 8 > 6 voxels on that axis
    else:  # a shape in an order nnU-Net's planner never makes
        shape = props["shape_before_cropping"]
        _rewrite_pkl(pkl, shape_before_cropping=(shape[0], shape[2], shape[1]),
                     bbox_used_for_cropping=None, shape_after_cropping_and_before_resampling=None)
    with pytest.raises(MismatchError, match=r"transposed_000\.npz: declares spatial shape \(9, 7, 6\).*"
                                            r"transposed_000\.pkl records") as e:
        apply_folder(0.5, folder / "pred", output=tmp_path / "m")
    assert "\n" not in str(e.value) and not (tmp_path / "m").exists()


def test_sitk_reorient_geometry_and_a_damaged_orientation(tmp_path):
    pkl = os.path.join(DATA, "sitk_reorient", "pred", "sitk_reorient_000.pkl")
    geometry = read_pkl_geometry(pkl)
    label = nib.load(os.path.join(DATA, "sitk_reorient", "labelsTr", "sitk_reorient_000.nii.gz"))
    assert geometry.reader == "sitk_reorient" and geometry.reoriented
    assert geometry.original_orientation == "".join(nib.aff2axcodes(label.affine))
    np.testing.assert_allclose(geometry.affine, label.affine, atol=1e-4)
    folder = _copy(tmp_path, "sitk_reorient")
    pkl = folder / "pred" / "sitk_reorient_000.pkl"
    with open(pkl, "rb") as f:
        stuff = pickle.load(f)["sitk_stuff"]
    flipped = stuff["original_orientation"].translate(str.maketrans("LRAPSI", "RLPAIS"))  # every axis flipped
    _rewrite_pkl(pkl, sitk_stuff={**stuff, "original_orientation": flipped})
    pair = pair_cases(folder / "pred", folder / "labelsTr")[0][0]
    with pytest.raises(MismatchError, match=r"'sitk_reorient_000': affine mismatch between .*sitk_reorient_000\.pkl"):
        load_case(pair)
    _rewrite_pkl(pkl, sitk_stuff={**stuff, "original_orientation": "PRX"})
    with pytest.raises(FileFormatError, match=r"sitk_reorient_000\.pkl: sitk_stuff\['original_orientation'\] is 'PRX'"):
        load_case(pair)
