"""The corruption suite: random damage to every format clskern reads.

Each damaged input must end the command with exit 1, one line naming the
file, and no output written; or, where the damage cannot be seen (a byte of a
gzip header's time stamp, whitespace in JSON), with the same result as the
undamaged input. Only where a format carries no checksum by design (the header
and voxels of an uncompressed ``.nii``, the voxels of a ``.npy``) may a run
succeed with other numbers: README, "What clskern cannot detect".
"""

import json
import os
import shutil
import sqlite3

import nibabel as nib
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clskern.cli.main import main

SHAPE = (6, 5, 4)
N_CASES = 3
EXAMPLES = 150
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _volumes(i):
    rng = np.random.default_rng(100 + i)
    p = rng.random(SHAPE, dtype=np.float32)
    y = (p > 0.55).astype(np.uint8)
    return p, y


def _write_folders(base, score_suffix):
    scores, labels = base / "scores", base / "labels"
    scores.mkdir(parents=True)
    labels.mkdir()
    for i in range(N_CASES):
        p, y = _volumes(i)
        case = f"case{i}"
        nib.save(nib.Nifti1Image(y, np.eye(4)), labels / f"{case}.nii.gz")
        if score_suffix == ".npy":
            np.save(scores / f"{case}.npy", p)
        else:
            nib.save(nib.Nifti1Image(p, np.eye(4)), scores / f"{case}{score_suffix}")
    return scores, labels


def _run(capsys, argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, [line for line in err.splitlines() if line.strip()]


def _damage(data, edits):
    """``data`` with each ``(position, xor)`` applied (positions wrap around)."""
    out = bytearray(data)
    for pos, xor in edits:
        out[pos % len(out)] ^= xor
    return bytes(out)


EDITS = st.lists(st.tuples(st.integers(0, 1 << 30), st.integers(1, 255)), min_size=1, max_size=3)


def _masks(folder):
    return {f: np.asarray(nib.load(folder / f).dataobj) for f in sorted(os.listdir(folder))}


def _calibrate_folders(capsys, scores, labels, out):
    return _run(capsys, ["calibrate", "--scores", scores, "--labels", labels, "--epsilon", 0.2, "--alpha", 0.5,
                         "-o", out, "-q"])


def _result(path):
    with open(path, encoding="utf-8") as f:
        d = json.load(f)
    return d["threshold"], d["critical_thresholds"], d["case_ids"]


def _case_id(path):
    name = os.path.basename(path)
    return name.split(".", 1)[0]


def _expect_refused_or_same(code, lines, out, damaged_file, clean_result, *, undetectable=False):
    if code == 0:
        if not undetectable:
            assert _result(out) == clean_result, f"{damaged_file}: damage accepted with another result"
        return
    assert code == 1 and len(lines) == 1, lines
    named = (os.path.basename(damaged_file), os.path.dirname(damaged_file), f"'{_case_id(damaged_file)}'")
    assert any(n in lines[0] for n in named), lines[0]  # the file, its folder, or its case
    assert not os.path.exists(out), "output written despite the error"


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".npy"])
def test_damaged_score_files(tmp_path, capsys, suffix):
    scores, labels = _write_folders(tmp_path / "clean", suffix)
    out = tmp_path / "clean.json"
    code, lines = _calibrate_folders(capsys, scores, labels, out)
    assert code == 0, lines
    clean_result = _result(out)
    target = scores / f"case1{suffix}"
    original = target.read_bytes()
    header_end = 352 if suffix == ".nii" else (128 if suffix == ".npy" else None)

    @SETTINGS
    @given(edits=EDITS)
    def check(edits):
        damaged = _damage(original, edits)
        target.write_bytes(damaged)
        result = tmp_path / "damaged.json"
        try:
            code, lines = _calibrate_folders(capsys, scores, labels, result)
            # No checksum by design: voxels of .nii/.npy and a .nii header (README).
            in_voxels = header_end is not None and any(p % len(original) >= header_end for p, _ in edits)
            _expect_refused_or_same(code, lines, result, target, clean_result,
                                    undetectable=in_voxels or suffix == ".nii")
        finally:
            if result.exists():
                result.unlink()
            target.write_bytes(original)

    check()


def _write_nnunet_folders(base, stored):
    """nnU-Net v2 outputs (``CASE.npz`` + ``CASE.pkl``, reorienting reader) with label NIfTI files."""
    from nnunet_files import LPS_AFFINE, write_nnunet_case

    scores, labels = base / "scores", base / "labels"
    scores.mkdir(parents=True)
    labels.mkdir()
    for i in range(N_CASES):
        p, y = _volumes(i)
        nib.save(nib.Nifti1Image(y, LPS_AFFINE), labels / f"case{i}.nii.gz")
        npz = write_nnunet_case(scores, f"case{i}", p, LPS_AFFINE, reader="reorient")
        if stored:  # np.savez: members stored, not deflated
            with np.load(npz) as z:
                probabilities = z["probabilities"]
            np.savez(npz, probabilities=probabilities)
    return scores, labels


def _calibrate_with_damaged(tmp_path, capsys, scores, labels, target, clean_result):
    """Hypothesis: ``target`` damaged, ``calibrate`` over the folders refuses in one line or gives
    ``clean_result``; the file is put back after each example."""
    original = target.read_bytes()

    @SETTINGS
    @given(edits=EDITS)
    def check(edits):
        target.write_bytes(_damage(original, edits))
        result = tmp_path / "damaged.json"
        try:
            code, lines = _calibrate_folders(capsys, scores, labels, result)
            _expect_refused_or_same(code, lines, result, target, clean_result)
        finally:
            if result.exists():
                result.unlink()
            target.write_bytes(original)

    check()


@pytest.mark.parametrize("member", ["stored", "deflated", "pkl"])
def test_damaged_nnunet_files(tmp_path, capsys, member):
    scores, labels = _write_nnunet_folders(tmp_path / "clean", stored=member == "stored")
    out = tmp_path / "clean.json"
    code, lines = _calibrate_folders(capsys, scores, labels, out)
    assert code == 0, lines
    clean_result = _result(out)
    target = scores / ("case1.pkl" if member == "pkl" else "case1.npz")
    _calibrate_with_damaged(tmp_path, capsys, scores, labels, target, clean_result)


def test_damaged_label_files(tmp_path, capsys):
    scores, labels = _write_folders(tmp_path / "clean", ".nii.gz")
    out = tmp_path / "clean.json"
    assert _calibrate_folders(capsys, scores, labels, out)[0] == 0
    clean_result = _result(out)
    target = labels / "case2.nii.gz"
    _calibrate_with_damaged(tmp_path, capsys, scores, labels, target, clean_result)


def test_damaged_store(tmp_path, capsys):
    scores, labels = _write_folders(tmp_path / "clean", ".nii.gz")
    store = tmp_path / "st.sqlite"
    code, lines = _run(capsys, ["stats", "--scores", scores, "--labels", labels, "-o", store, "-q"])
    assert code == 0, lines
    with sqlite3.connect(store) as db:  # one file, no journal beside it
        db.execute("PRAGMA journal_mode=DELETE")
    out = tmp_path / "clean.json"
    calibrate = ["calibrate", "--store", store, "--epsilon", 0.2, "--alpha", 0.5, "-q", "-o"]
    assert _run(capsys, calibrate + [out])[0] == 0
    clean_result = _result(out)
    original = store.read_bytes()

    @SETTINGS
    @given(edits=EDITS)
    def check(edits):
        store.write_bytes(_damage(original, edits))
        result = tmp_path / "damaged.json"
        try:
            code, lines = _run(capsys, calibrate + [result])
            _expect_refused_or_same(code, lines, result, store, clean_result)
        finally:
            if result.exists():
                result.unlink()
            for suffix in ("", "-wal", "-shm", "-journal"):
                if os.path.exists(f"{store}{suffix}"):
                    os.unlink(f"{store}{suffix}")
            store.write_bytes(original)

    check()


def test_damaged_calibration_file(tmp_path, capsys):
    scores, labels = _write_folders(tmp_path / "clean", ".nii.gz")
    cal = tmp_path / "cal.json"
    assert _calibrate_folders(capsys, scores, labels, cal)[0] == 0
    original = cal.read_bytes()
    apply = ["apply", "--calibration", cal, "--scores", scores, "-q", "-o"]
    assert _run(capsys, apply + [tmp_path / "clean_masks"])[0] == 0
    clean_masks = _masks(tmp_path / "clean_masks")

    @SETTINGS
    @given(edits=EDITS)
    def check(edits):
        damaged = _damage(original, edits)
        cal.write_bytes(damaged)
        masks = tmp_path / "masks"
        try:
            code, lines = _run(capsys, apply + [masks])
            if code == 0:  # only whitespace may change: the same calibration, the same masks
                assert json.loads(damaged.decode()) == json.loads(original.decode())
                assert _masks(masks).keys() == clean_masks.keys()
                assert all(np.array_equal(m, clean_masks[f]) for f, m in _masks(masks).items())
            else:
                assert code == 1 and len(lines) == 1 and "cal.json" in lines[0], lines
                assert not masks.exists(), "masks written from a damaged calibration"
        finally:
            shutil.rmtree(masks, ignore_errors=True)
            cal.write_bytes(original)

    check()
