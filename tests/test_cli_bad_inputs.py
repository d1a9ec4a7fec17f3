"""Every bad input: exit 1, one line naming the file or case and the problem, nothing half-written."""

import json
import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

import clskern.volume
from clskern.cli.main import main
from clskern.store import StatsStore

SHAPE = (8, 7, 6)


def _write_case(root, case, p, y, affine=None):
    affine = np.eye(4) if affine is None else affine
    nib.save(nib.Nifti1Image(p, affine), root / "scores" / f"{case}.nii.gz")
    nib.save(nib.Nifti1Image(y, np.eye(4)), root / "labels" / f"{case}.nii.gz")


@pytest.fixture
def root(tmp_path):
    (tmp_path / "scores").mkdir()
    (tmp_path / "labels").mkdir()
    rng = np.random.default_rng(1)
    for i in range(5):
        p = rng.random(SHAPE, dtype=np.float32)
        _write_case(tmp_path, f"ok{i}", p, (p > 0.7).astype(np.uint8))
    return tmp_path


def fails(capsys, *argv):
    """Run, expect exit 1 and exactly one error line; return it."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    lines = [x for x in err.splitlines() if x.strip()]
    assert code == 1, (out, err)
    assert len(lines) == 1, err
    assert lines[0].startswith(f"clskern {argv[0]}: error: ")
    return lines[0]


def stats(root, *extra):
    return ("stats", "--scores", root / "scores", "--labels", root / "labels", "-o", root / "st.sqlite", "-q", *extra)


def _no_temporaries(directory):
    return not [f for f in os.listdir(directory) if f.startswith(".")]


def test_corrupt_gzip(root, capsys):
    path = root / "scores" / "ok3.nii.gz"
    data = bytearray(path.read_bytes())
    for i in range(200, 260):
        data[i] ^= 0xA5
    path.write_bytes(bytes(data))
    line = fails(capsys, *stats(root))
    assert "scores/ok3.nii.gz" in line and ("corrupt" in line or "truncated" in line)
    with StatsStore(root / "st.sqlite") as st:
        assert st.case_ids() == ["ok0", "ok1", "ok2"]  # finished cases kept


def test_truncated_file(root, capsys):
    path = root / "labels" / "ok1.nii.gz"
    path.write_bytes(path.read_bytes()[:-30])
    line = fails(capsys, *stats(root))
    assert "labels/ok1.nii.gz: truncated" in line


def test_unreadable_header(root, capsys):
    (root / "scores" / "ok2.nii.gz").write_bytes(__import__("gzip").compress(b"\x00" * 400))
    line = fails(capsys, *stats(root))
    assert "scores/ok2.nii.gz: not a NIfTI file" in line


def test_nan_scores(root, capsys):
    p = np.random.default_rng(2).random(SHAPE, dtype=np.float32)
    p[1, 2, 3] = p[4, 4, 4] = np.nan
    _write_case(root, "nan_case", p, (p > 0.5).astype(np.uint8))
    line = fails(capsys, *stats(root))
    assert "'nan_case'" in line and "2 NaN scores" in line


def test_empty_labels_follow_the_policy(root, capsys):
    p = np.random.default_rng(3).random(SHAPE, dtype=np.float32)
    _write_case(root, "ok9_empty", p, np.zeros(SHAPE, np.uint8))
    line = fails(capsys, *stats(root, "--empty", "error"))
    assert "'ok9_empty' has no lesion voxels" in line
    assert main([str(a) for a in stats(root)]) == 0  # skip (default): stored, left out when calibrating
    capsys.readouterr()
    cal = root / "cal.json"
    line = fails(capsys, "calibrate", "--store", root / "st.sqlite", "--epsilon", 0.2, "--alpha", 0.2,
                 "--empty", "error", "-o", cal)
    assert "'ok9_empty' has no lesion voxels" in line and not cal.exists()
    assert main(["calibrate", "--store", str(root / "st.sqlite"), "--epsilon", "0.2", "--alpha", "0.2",
                 "-o", str(cal), "-q"]) == 0
    assert json.loads(cal.read_text())["n_skipped"] == 1


def test_shape_mismatch(root, capsys):
    p = np.random.default_rng(4).random((8, 7, 5), dtype=np.float32)
    _write_case(root, "bad_shape", p, np.ones(SHAPE, np.uint8))
    line = fails(capsys, *stats(root))
    assert "'bad_shape'" in line and "scores/bad_shape.nii.gz" in line and "labels/bad_shape.nii.gz" in line


def test_affine_mismatch(root, capsys):
    p = np.random.default_rng(5).random(SHAPE, dtype=np.float32)
    _write_case(root, "moved", p, (p > 0.5).astype(np.uint8), affine=np.diag([1.0, 1.0, 3.0, 1.0]))
    line = fails(capsys, *stats(root))
    assert "affine mismatch" in line and "scores/moved.nii.gz" in line and "labels/moved.nii.gz" in line
    assert main([str(a) for a in stats(root, "--affine-tolerance", 2.5)]) == 0  # the user's call


def test_unmatched_files(root, capsys):
    nib.save(nib.Nifti1Image(np.zeros(SHAPE, np.float32), np.eye(4)), root / "scores" / "stray.nii.gz")
    line = fails(capsys, *stats(root))
    assert "stray.nii.gz" in line and "--allow-unmatched" in line
    assert main([str(a) for a in stats(root, "--allow-unmatched")]) == 0


def test_existing_outputs_are_refused_without_overwrite(root, capsys):
    """clskern's own outputs need --overwrite; a file it did not write is refused even with it."""
    assert main([str(a) for a in stats(root)]) == 0
    cal = root / "cal.json"
    calibrate = ["calibrate", "--store", str(root / "st.sqlite"), "--epsilon", "0.2", "--alpha", "0.2", "-o", str(cal)]
    cal.write_text("precious")
    for extra in ([], ["--overwrite"]):
        line = fails(capsys, *calibrate, *extra)
        assert "cal.json: exists and is not a calibration file clskern wrote" in line and cal.read_text() == "precious"
    cal.unlink()
    assert main(calibrate + ["-q"]) == 0
    line = fails(capsys, *calibrate)
    assert "cal.json: output exists" in line and "--overwrite" in line
    assert main(calibrate + ["-q", "--overwrite"]) == 0
    masks = root / "masks"
    masks.mkdir()
    (masks / "ok2.nii.gz").write_bytes(b"precious")
    for extra in ([], ["--overwrite"]):
        line = fails(capsys, "apply", "--calibration", cal, "--scores", root / "scores", "-o", masks, *extra)
        assert "masks/ok2.nii.gz: exists and is not a mask clskern wrote" in line
    assert sorted(os.listdir(masks)) == ["ok2.nii.gz"]  # nothing written before refusing
    (masks / "ok2.nii.gz").unlink()
    apply = ["apply", "--calibration", str(cal), "--scores", str(root / "scores"), "-o", str(masks), "-q"]
    assert main(apply) == 0
    assert "masks/ok0.nii.gz: output exists (and 4 more)" in fails(capsys, *apply)
    assert main(apply + ["--overwrite"]) == 0
    assert len(os.listdir(masks)) == 5 and _no_temporaries(masks)
    (root / "notastore.sqlite").write_text("my notes " * 50)
    line = fails(capsys, "stats", "--scores", root / "scores", "--labels", root / "labels",
                 "-o", root / "notastore.sqlite")
    assert "notastore.sqlite: exists and is not a statistics store clskern wrote (not a SQLite file)" in line


def test_calibration_of_another_format_version(root, capsys):
    assert main([str(a) for a in stats(root)]) == 0
    cal = root / "cal.json"
    assert main(["calibrate", "--store", str(root / "st.sqlite"), "--epsilon", "0.2", "--alpha", "0.2",
                 "-o", str(cal), "-q"]) == 0
    record = json.loads(cal.read_text())
    record["format_version"] = 3
    cal.write_text(json.dumps(record))
    line = fails(capsys, "apply", "--calibration", cal, "--scores", root / "scores", "-o", root / "m")
    assert "cal.json" in line and "format version 3" in line and not (root / "m").exists()
    cal.write_text("{not json")
    assert "cal.json: calibration is not valid JSON" in fails(
        capsys, "apply", "--calibration", cal, "--scores", root / "scores", "-o", root / "m")
    cal.write_text('{"format_version": 2}')
    assert "cal.json: not a clskern calibration" in fails(
        capsys, "apply", "--calibration", cal, "--scores", root / "scores", "-o", root / "m")


def test_too_few_cases_for_alpha(root, capsys):
    cal = root / "cal.json"
    line = fails(capsys, "calibrate", "--scores", root / "scores", "--labels", root / "labels",
                 "--epsilon", 0.2, "--alpha", 0.05, "-o", cal, "-q")
    assert "alpha=0.05 with n=5" in line and "n >= 19" in line
    assert not cal.exists() and _no_temporaries(root)


def test_missing_inputs(root, capsys):
    assert main([str(a) for a in stats(root)]) == 0
    assert "nowhere: scores directory not found" in fails(
        capsys, "stats", "--scores", root / "nowhere", "--labels", root / "labels", "-o", root / "st.sqlite",
        "--overwrite")
    with StatsStore(root / "st.sqlite") as st:
        assert len(st) == 5  # a failed --overwrite run keeps the old store
    assert "no statistics store" in fails(
        capsys, "calibrate", "--store", root / "none.sqlite", "--epsilon", 0.2, "-o", root / "c.json")
    assert "missing.json: No such file" in fails(
        capsys, "apply", "--calibration", root / "missing.json", "--scores", root / "scores", "-o", root / "m")
    assert "method crc takes no --alpha" in fails(
        capsys, "calibrate", "--store", root / "none.sqlite", "--epsilon", 0.2, "--alpha", 0.1,
        "--method", "crc", "-o", root / "c.json")


def test_ctrl_c_keeps_finished_cases_and_resumes(root, capsys, monkeypatch):
    real = clskern.volume.volume_stats
    calls = []

    def interrupted(*args, **kwargs):
        if kwargs.get("name") is None:  # the start-up warm-up, not a case
            return real(*args, **kwargs)
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(clskern.volume, "volume_stats", interrupted)
    assert main([str(a) for a in stats(root)]) == 130
    assert "interrupted (the cases stored so far are kept: run it again to resume)" in capsys.readouterr().err
    with StatsStore(root / "st.sqlite") as st:
        assert st.case_ids() == ["ok0", "ok1"]
    monkeypatch.setattr(clskern.volume, "volume_stats", real)
    assert main([str(a) for a in stats(root)[:-1]]) == 0
    out, err = capsys.readouterr()
    assert "3 read, 2 already stored" in out
    assert "ok0: already stored" in err and "skipped" not in err  # --empty skip's word, not a resumed case's


def test_no_traceback_from_the_console(root):
    (root / "scores" / "ok0.nii.gz").write_bytes(b"\x1f\x8b garbage")
    run = subprocess.run([sys.executable, "-m", "clskern", *map(str, stats(root))], capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert run.stderr.count("\n") == 1 and "ok0.nii.gz" in run.stderr


def test_reading_options_with_a_store_are_refused(root, capsys):
    assert main([str(a) for a in stats(root)]) == 0
    line = fails(capsys, "calibrate", "--store", root / "st.sqlite", "--label", 2, "--epsilon", 0.2,
                 "-o", root / "c.json")
    assert "--label applies to --scores folders" in line
    for option in (["--allow-unmatched"], ["--affine-tolerance", "2"], ["-j", "2"]):  # were ignored silently
        line = fails(capsys, "calibrate", "--store", root / "st.sqlite", *option, "--epsilon", 0.2,
                     "-o", root / "c.json")
        assert "applies to --scores folders" in line and not (root / "c.json").exists()


def test_a_failing_case_in_apply_leaves_no_mask(root, capsys):
    assert main([str(a) for a in stats(root)]) == 0
    cal = root / "cal.json"
    assert main(["calibrate", "--store", str(root / "st.sqlite"), "--epsilon", "0.2", "--alpha", "0.2",
                 "-o", str(cal), "-q"]) == 0
    assert os.stat(cal).st_mode & 0o777 == 0o666 & ~_umask()
    path = root / "scores" / "ok3.nii.gz"
    path.write_bytes(path.read_bytes()[:-50])
    line = fails(capsys, "apply", "--calibration", cal, "--scores", root / "scores", "-o", root / "m", "-q")
    assert "ok3.nii.gz: truncated" in line
    assert not (root / "m").exists()  # the masks of ok0..ok2 were staged, then removed
    path.unlink()
    assert main(["apply", "--calibration", str(cal), "--scores", str(root / "scores"), "-o", str(root / "m"),
                 "-q"]) == 0
    assert sorted(os.listdir(root / "m")) == ["ok0.nii.gz", "ok1.nii.gz", "ok2.nii.gz", "ok4.nii.gz"]
    assert os.stat(root / "m" / "ok0.nii.gz").st_mode & 0o777 == 0o666 & ~_umask()


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_npy_scores_need_a_reference_for_masks(root, capsys):
    assert main([str(a) for a in stats(root)]) == 0
    cal = root / "cal.json"
    assert main(["calibrate", "--store", str(root / "st.sqlite"), "--epsilon", "0.2", "--alpha", "0.2",
                 "-o", str(cal), "-q"]) == 0
    raw = root / "raw"
    raw.mkdir()
    p = np.asanyarray(nib.load(root / "scores" / "ok1.nii.gz").dataobj)
    np.save(raw / "ok1.npy", p)
    line = fails(capsys, "apply", "--calibration", cal, "--scores", raw, "-o", root / "m")
    assert "ok1.npy: no geometry for the mask" in line and "--reference" in line and not (root / "m").exists()
    assert main(["apply", "--calibration", str(cal), "--scores", str(raw), "-o", str(root / "m"),
                 "--reference", str(root / "labels")]) == 0
    assert "1 .npy score file(s) carry no geometry" in capsys.readouterr().err  # said once
    threshold = json.loads(cal.read_text())["threshold"]
    np.testing.assert_array_equal(np.asanyarray(nib.load(root / "m" / "ok1.nii.gz").dataobj), p >= threshold)
    np.save(raw / "ok1.npy", p[:, :, :3])
    line = fails(capsys, "apply", "--calibration", cal, "--scores", raw, "-o", root / "m", "--overwrite",
                 "--reference", root / "labels", "-q")
    assert "shape" in line and "ok1.npy" in line and "labels/ok1.nii.gz" in line


_UNEDITED = object()


def _calibration(path, threshold=0.5, *, edit=_UNEDITED):
    """A valid calibration file at ``threshold`` (or one whose threshold was edited to ``edit`` by hand)."""
    from clskern.calibration.record import Calibration

    cal = Calibration.build("cls", threshold, 0.2, 0.2, None, 5, 0, 1, critical_thresholds=[threshold] * 5,
                            case_ids=list("abcde"))
    d = json.loads(cal.to_json())
    if edit is not _UNEDITED:
        d["threshold"] = edit
    path.write_text(json.dumps(d))
    return path


def test_apply_never_writes_over_its_inputs(root, capsys):
    cal = _calibration(root / "cal.json")
    before = {p.name: p.read_bytes() for p in (root / "scores").iterdir()}
    line = fails(capsys, "apply", "--calibration", cal, "--scores", root / "scores", "-o", root / "scores", "--overwrite")
    assert "scores: output is an input of this command" in line
    line = fails(capsys, "apply", "--calibration", cal, "--scores", root / "scores" / "ok1.nii.gz",
                 "-o", root / "scores" / ".", "--overwrite")
    assert "ok1.nii.gz: output is an input of this command" in line
    assert {p.name: p.read_bytes() for p in (root / "scores").iterdir()} == before


@pytest.mark.parametrize("threshold", ["nan", None, [0.5], True, 0.4])
def test_apply_refuses_a_bad_threshold_before_writing(root, capsys, threshold):
    cal = _calibration(root / "cal.json", edit=threshold)
    line = fails(capsys, "apply", "--calibration", cal, "--scores", root / "scores", "-o", root / "masks")
    assert "cal.json: " in line and "threshold" in line
    assert not (root / "masks").exists()


def test_apply_accepts_infinite_thresholds(root, capsys):
    cal = _calibration(root / "cal.json", float("inf"))
    assert main(["apply", "--calibration", str(cal), "--scores", str(root / "scores"), "-o", str(root / "m"), "-q"]) == 0
    assert not nib.load(root / "m" / "ok0.nii.gz").get_fdata().any()


def test_stored_empty_cases_follow_the_error_policy(root, capsys):
    p = np.random.default_rng(3).random(SHAPE, dtype=np.float32)
    _write_case(root, "ok9_empty", p, np.zeros(SHAPE, np.uint8))
    assert main([str(a) for a in stats(root)]) == 0  # skip: stored
    capsys.readouterr()
    line = fails(capsys, *stats(root, "--empty", "error"))  # reused from the store, still refused
    assert "'ok9_empty' has no lesion voxels" in line


def test_channel_the_file_lacks(root, capsys):
    line = fails(capsys, *stats(root, "--channel", 5))
    assert "scores/ok0.nii.gz: channel 5 does not exist (the file has 1 channel)" in line
    assert main([str(a) for a in stats(root, "--channel", 0, "--overwrite")]) == 0


@pytest.mark.parametrize("argv", [("--channel", "-2"), ("--affine-tolerance", "nan"),
                                  ("--affine-tolerance", "inf"), ("--affine-tolerance", "-1")])
def test_bad_option_values_are_usage_errors(root, capsys, argv):
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in stats(root, *argv)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert argv[0] in err and len(err.strip().splitlines()) == 1
    assert not (root / "st.sqlite").exists()


def test_calibrate_checks_parameters_with_the_library_table():
    import clskern.calibration
    import clskern.cli.calibrate

    assert clskern.cli.calibrate._NEEDS is clskern.calibration._NEEDS
    assert not hasattr(clskern.cli.calibrate, "_USES")


def test_apply_failing_late_leaves_no_mask_and_keeps_older_ones(root, capsys):
    """NaN scores are found while cutting, after the inputs' headers passed: the masks of the cases
    before are not left behind, and under --overwrite the masks of an earlier run stay as they were."""
    assert main([str(a) for a in stats(root)]) == 0
    cal, masks = root / "cal.json", root / "masks"
    assert main(["calibrate", "--store", str(root / "st.sqlite"), "--epsilon", "0.2", "--alpha", "0.2",
                 "-o", str(cal), "-q"]) == 0
    p = np.random.default_rng(9).random(SHAPE, dtype=np.float32)
    p[3, 3, 3] = np.nan
    nib.save(nib.Nifti1Image(p, np.eye(4)), root / "scores" / "zz_nan.nii.gz")
    line = fails(capsys, "apply", "--calibration", cal, "--scores", root / "scores", "-o", masks, "-q")
    assert "zz_nan" in line and "NaN" in line
    assert not masks.exists()

    os.remove(root / "scores" / "zz_nan.nii.gz")
    assert main(["apply", "--calibration", str(cal), "--scores", str(root / "scores"), "-o", str(masks), "-q"]) == 0
    before = {name: (masks / name).read_bytes() for name in os.listdir(masks)}
    assert len(before) == 5
    for i in range(5):  # every case changes, the last one fails
        q = np.random.default_rng(20 + i).random(SHAPE, dtype=np.float32)
        if i == 4:
            q[0, 0, 0] = np.nan
        nib.save(nib.Nifti1Image(q, np.eye(4)), root / "scores" / f"ok{i}.nii.gz")
    line = fails(capsys, "apply", "--calibration", cal, "--scores", root / "scores", "-o", masks, "--overwrite", "-q")
    assert "ok4" in line and "NaN" in line
    assert {name: (masks / name).read_bytes() for name in os.listdir(masks)} == before


def test_ctrl_c_in_apply_leaves_no_mask_and_says_so(root, capsys, monkeypatch):
    import clskern.cli.apply as cli_apply

    assert main([str(a) for a in stats(root)]) == 0
    cal = root / "cal.json"
    assert main(["calibrate", "--store", str(root / "st.sqlite"), "--epsilon", "0.2", "--alpha", "0.2",
                 "-o", str(cal), "-q"]) == 0
    real, calls = cli_apply.apply_threshold, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(cli_apply, "apply_threshold", interrupted)
    capsys.readouterr()
    assert main(["apply", "--calibration", str(cal), "--scores", str(root / "scores"), "-o", str(root / "m"),
                 "-q"]) == 130
    assert "interrupted (no mask written" in capsys.readouterr().err
    assert not (root / "m").exists()
