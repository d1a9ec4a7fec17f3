"""Pairing files by case id, and loading a pair with its shape and affine checks."""

import threading
import time

import nibabel as nib
import numpy as np
import pytest
from nnunet_files import write_nnunet_case

from clskern.io import MismatchError, PairingError, load_case, pair_cases, prefetch

SHAPE = (6, 5, 4)


def _write(path, array, affine=None):
    nib.save(nib.Nifti1Image(array, np.eye(4) if affine is None else affine), path)


def _dirs(tmp_path):
    s, l = tmp_path / "scores", tmp_path / "labels"
    s.mkdir()
    l.mkdir()
    return s, l


def _case(seed=0):
    rng = np.random.default_rng(seed)
    return rng.random(SHAPE, dtype=np.float32), (rng.random(SHAPE) > 0.7).astype(np.uint8)


def test_pairs_by_id_across_formats_and_nnunet_naming(tmp_path):
    s, l = _dirs(tmp_path)
    p, y = _case()
    _write(s / "a.nii.gz", p)
    _write(s / "b_0000.nii.gz", p)  # nnU-Net image-channel naming
    write_nnunet_case(s, "c", p, np.eye(4), segmentation=True)  # .npz, .pkl and nnU-Net's segmentation
    np.save(s / "d.npy", p)
    (s / "dataset.json").write_text("{}")
    (s / ".hidden.nii.gz").write_bytes(b"")
    for case in "abcd":
        _write(l / f"{case}.nii.gz", y)
    _write(l / "e_0001.nii", y)  # a case id that merely ends in digits
    _write(s / "e_0001.nii", p)
    pairs, unmatched = pair_cases(s, l)
    assert [x.case_id for x in pairs] == ["a", "b", "c", "d", "e_0001"]
    assert pairs[2].scores.endswith("c.npz") and unmatched == []
    for pair, geometry in zip(pairs, ["affine", "affine", "pkl", "shape", "affine"]):
        case = load_case(pair)
        np.testing.assert_array_equal(case.scores, p)
        np.testing.assert_array_equal(case.labels, y)
        assert case.geometry == geometry and case.geometry_checked == (geometry != "shape")


def test_unmatched_cases_are_listed_or_left_out(tmp_path):
    s, l = _dirs(tmp_path)
    p, y = _case()
    _write(s / "a.nii.gz", p)
    _write(s / "lonely.nii.gz", p)
    _write(l / "a.nii.gz", y)
    _write(l / "orphan.nii.gz", y)
    with pytest.raises(PairingError, match=r"1 score file\(s\) without a label.*lonely\.nii\.gz.*--allow-unmatched") as e:
        pair_cases(s, l)
    assert "orphan" not in str(e.value)  # labels without scores are normal (a fold holds part of labelsTr)
    pairs, unmatched = pair_cases(s, l, allow_unmatched=True)
    assert [x.case_id for x in pairs] == ["a"] and len(unmatched) == 2
    (s / "lonely.nii.gz").unlink()
    pairs, unmatched = pair_cases(s, l)
    assert [x.case_id for x in pairs] == ["a"] and unmatched == [str(l / "orphan.nii.gz")]


def test_duplicate_and_missing(tmp_path):
    s, l = _dirs(tmp_path)
    p, y = _case()
    _write(s / "a.nii.gz", p)
    _write(s / "a.nii", p)
    _write(l / "a.nii.gz", y)
    with pytest.raises(PairingError, match="several files"):
        pair_cases(s, l)
    with pytest.raises(FileNotFoundError):
        pair_cases(tmp_path / "nowhere", l)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(PairingError, match="no scores files"):
        pair_cases(empty, l)


def test_shape_and_affine_mismatch_name_both_files(tmp_path):
    s, l = _dirs(tmp_path)
    p, y = _case()
    _write(s / "a.nii.gz", p)
    _write(l / "a.nii.gz", y[:, :, :3])
    shifted = np.eye(4)
    shifted[0, 3] = 0.5
    _write(s / "b.nii.gz", p, shifted)
    _write(l / "b.nii.gz", y)
    nearly = np.eye(4)
    nearly[1, 3] = 1e-5  # float32 round-off: accepted
    _write(s / "c.nii.gz", p, nearly)
    _write(l / "c.nii.gz", y)
    a, b, c = pair_cases(s, l)[0]
    with pytest.raises(MismatchError, match=r"'a'.*scores/a\.nii\.gz.*\(6, 5, 4\).*labels/a\.nii\.gz.*\(6, 5, 3\)"):
        load_case(a)
    with pytest.raises(MismatchError, match=r"affine mismatch between .*scores/b\.nii\.gz and .*labels/b\.nii\.gz"):
        load_case(b)
    load_case(c)


def test_multilabel_masks_load_as_integers(tmp_path):
    s, l = _dirs(tmp_path)
    p, _ = _case()
    y = np.random.default_rng(3).integers(0, 3, SHAPE).astype(np.int16)
    _write(s / "a.nii.gz", p)
    _write(l / "a.nii.gz", y)
    case = load_case(pair_cases(s, l)[0][0])
    assert case.labels.dtype == np.int16
    np.testing.assert_array_equal(case.labels, y)


def test_prefetch_keeps_order_bounds_work_and_reports_errors():
    running = []
    peak = [0]
    lock = threading.Lock()

    def load(i):
        with lock:
            running.append(i)
            peak[0] = max(peak[0], len(running))
        time.sleep(0.01 * (i % 3))
        with lock:
            running.remove(i)
        if i == 4:
            raise ValueError("bad 4")
        return i * i

    seen = []
    for item, result, error in prefetch(range(9), load, jobs=2):
        seen.append((item, result, None if error is None else str(error)))
    assert [x[0] for x in seen] == list(range(9))
    assert seen[4] == (4, None, "bad 4") and seen[5] == (5, 25, None)
    assert peak[0] <= 2
    with pytest.raises(ValueError):
        next(prefetch([1], load, jobs=0))


def test_prefetch_runs_meanwhile_after_starting_the_first_loads():
    started = threading.Event()
    order = []

    def load(i):
        started.set()
        return i

    def meanwhile():
        assert started.wait(5)  # a load is under way before the start-up work
        order.append("meanwhile")

    for _, result, _ in prefetch(range(3), load, jobs=1, meanwhile=meanwhile):
        order.append(result)
    assert order == ["meanwhile", 0, 1, 2]
