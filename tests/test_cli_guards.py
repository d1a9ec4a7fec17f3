"""The command line never destroys an input, says what it left out, and ends every failure in one line."""

import os

import nibabel as nib
import numpy as np
import pytest

import clskern
import clskern.cli.stats
from clskern.cli.main import main
from clskern.io.prefetch import loads_ahead, prefetch
from clskern.store import StatsStore

SHAPE = (8, 7, 6)


@pytest.fixture
def root(tmp_path):
    (tmp_path / "scores").mkdir()
    (tmp_path / "labels").mkdir()
    rng = np.random.default_rng(7)
    for i in range(6):
        p = rng.random(SHAPE, dtype=np.float32)
        nib.save(nib.Nifti1Image(p, np.eye(4)), tmp_path / "scores" / f"c{i}.nii.gz")
        nib.save(nib.Nifti1Image((p > 0.6).astype(np.uint8), np.eye(4)), tmp_path / "labels" / f"c{i}.nii.gz")
    return tmp_path


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def fails(capsys, *argv):
    """Exit 1 and exactly one line on stderr, which is returned."""
    code, out, err = run(capsys, *argv)
    lines = [x for x in err.splitlines() if x.strip()]
    assert code == 1, (out, err)
    assert len(lines) == 1, err
    cmd = next(a for a in map(str, argv) if not a.startswith("-"))
    assert lines[0].startswith(f"clskern {cmd}: error: "), lines
    return lines[0]


def stats_args(root, out=None, *extra):
    return ("stats", "--scores", root / "scores", "--labels", root / "labels",
            "-o", out or root / "st.sqlite", "-q", *extra)


def snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# --- inputs are never destroyed ------------------------------------------------


def test_calibrate_never_replaces_its_own_store(root, capsys):
    assert main([str(a) for a in stats_args(root)]) == 0
    before = (root / "st.sqlite").read_bytes()
    line = fails(capsys, "calibrate", "--store", root / "st.sqlite", "--epsilon", 0.2, "--alpha", 0.2,
                 "-o", root / "st.sqlite", "--overwrite")
    assert "st.sqlite: output is an input of this command" in line
    assert (root / "st.sqlite").read_bytes() == before


def test_stats_and_calibrate_never_replace_a_label_file(root, capsys):
    labels = snapshot(root / "labels")
    target = root / "labels" / "c1.nii.gz"
    line = fails(capsys, *stats_args(root, target, "--overwrite"))
    assert "c1.nii.gz: output is an input of this command" in line
    assert main([str(a) for a in stats_args(root)]) == 0
    line = fails(capsys, "calibrate", "--scores", root / "scores", "--labels", root / "labels",
                 "--epsilon", 0.2, "--alpha", 0.2, "-o", target, "--overwrite")
    assert "c1.nii.gz: output is an input of this command" in line
    assert snapshot(root / "labels") == labels


def test_outputs_inside_an_input_folder_are_refused(root, capsys):
    line = fails(capsys, *stats_args(root, root / "scores" / "st.sqlite"))
    assert "lies inside input" in line
    assert not (root / "scores" / "st.sqlite").exists()


def test_links_do_not_hide_an_input(root, capsys):
    os.link(root / "labels" / "c2.nii.gz", root / "hard.nii.gz")
    os.symlink(root / "labels", root / "alias")
    before = snapshot(root / "labels")
    line = fails(capsys, *stats_args(root, root / "hard.nii.gz", "--overwrite"))
    assert "hard.nii.gz: output is an input" in line  # same device and inode as labels/c2.nii.gz
    line = fails(capsys, *stats_args(root, root / "alias" / "x.sqlite", "--overwrite"))
    assert "lies inside input" in line
    assert snapshot(root / "labels") == before


def test_evaluate_never_writes_into_its_store(root, capsys):
    assert main([str(a) for a in stats_args(root)]) == 0
    line = fails(capsys, "evaluate", "--store", root / "st.sqlite", "--epsilon", 0.2, "-o", root / "st.sqlite",
                 "--overwrite")
    assert "output is an input" in line


def test_demo_overwrite_removes_only_what_a_demo_wrote(tmp_path, capsys):
    d = tmp_path / "demo"
    argv = ["demo", "--dir", str(d), "--cases", "10", "--shape", "8", "8", "8", "-q", "--alpha", "0.3"]
    assert main(argv) == 0
    assert main(argv + ["--overwrite"]) == 0  # its own files: replaced
    capsys.readouterr()
    precious = d / "calibration" / "notes.txt"
    precious.write_text("mine")
    line = fails(capsys, *argv, "--overwrite")
    assert "notes.txt: not written by clskern demo" in line
    assert precious.read_text() == "mine"
    assert (d / "stats.sqlite").exists()  # nothing removed before refusing


def test_demo_overwrite_keeps_a_users_folder_of_the_same_name(tmp_path, capsys):
    d = tmp_path / "demo"
    (d / "masks").mkdir(parents=True)
    (d / "masks" / "patient.nii.gz").write_bytes(b"a user's mask")
    line = fails(capsys, "demo", "--dir", d, "--cases", "4", "--shape", 8, 8, 8, "-q", "--overwrite")
    assert "patient.nii.gz: not written by clskern demo" in line
    assert (d / "masks" / "patient.nii.gz").read_bytes() == b"a user's mask"


# --- say what was left out -----------------------------------------------------


def test_a_label_no_case_holds_is_an_error_naming_it(root, capsys):
    line = fails(capsys, *stats_args(root, None, "--label", 7))
    assert "--label 7: no case holds label 7" in line and "st.sqlite not written" in line
    assert not (root / "st.sqlite").exists()  # a store of cases read for nothing would refuse the corrected run
    assert main([str(a) for a in stats_args(root)]) == 0
    line = fails(capsys, *stats_args(root, None, "--label", 7))  # an earlier store is the user's: kept
    assert "--label" in line and (root / "st.sqlite").exists()
    line = fails(capsys, "calibrate", "--scores", root / "scores", "--labels", root / "labels", "--label", 7,
                 "--epsilon", 0.2, "--alpha", 0.2, "-o", root / "c.json", "-q")
    assert "--label 7: no case holds label 7" in line and not (root / "c.json").exists()


def test_calibrate_says_how_many_cases_it_skipped_and_why(root, capsys):
    for case in ("c0", "c3"):
        nib.save(nib.Nifti1Image(np.zeros(SHAPE, np.uint8), np.eye(4)), root / "labels" / f"{case}.nii.gz")
    assert main([str(a) for a in stats_args(root)]) == 0
    code, out, _ = run(capsys, "calibrate", "--store", root / "st.sqlite", "--epsilon", 0.2, "--alpha", 0.2,
                       "-o", root / "c.json")
    assert code == 0
    assert "2 of 6 case(s) skipped: no lesion voxels" in out and "c0, c3" in out
    line = fails(capsys, "calibrate", "--store", root / "st.sqlite", "--epsilon", 0.2, "--alpha", 0.1,
                 "-o", root / "d.json")
    assert "n=4" in line and "2 of 6 case(s) skipped: no lesion voxels" in line


def test_the_same_folder_for_scores_and_labels_is_refused(root, capsys):
    line = fails(capsys, "stats", "--scores", root / "labels", "--labels", root / "labels" / ".", "-o",
                 root / "st.sqlite")
    assert "the same folder as --scores and --labels" in line


def test_jobs_are_bounded_by_the_cores(root, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([str(a) for a in stats_args(root, None, "--jobs", 1000)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "--jobs: must be at most" in err and len(err.splitlines()) == 1


def test_loads_ahead_fit_the_memory():
    assert loads_ahead(4, 0, None) == 4
    assert loads_ahead(4, 100, 10_000) == 4
    assert loads_ahead(4, 100, 300) == 2  # two ahead + the one held = 300
    assert loads_ahead(4, 100, 150) == 0  # only the held one fits
    items = list(prefetch(range(5), lambda i: np.zeros(1 << 20), jobs=2, nbytes=lambda a: 1 << 60))
    assert [i for i, _, _ in items] == list(range(5))  # nothing ahead, still every item, in order


# --- one line, always ----------------------------------------------------------


@pytest.mark.parametrize("error", [MemoryError(), OverflowError("int too large to convert to float"),
                                   RecursionError("maximum recursion depth exceeded"), RuntimeError(""),
                                   KeyError("x")])
def test_every_failure_is_one_line(root, capsys, monkeypatch, error):
    def boom(*args, **kwargs):
        raise error

    monkeypatch.setattr(clskern.cli.stats, "gather", boom)
    line = fails(capsys, *stats_args(root))
    assert line.split("error: ", 1)[1].strip()  # never an empty reason
    if not isinstance(error, (MemoryError, OverflowError, RecursionError)):
        assert "internal error" in line and "--debug" in line


def test_debug_shows_the_traceback(root, capsys, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(clskern.cli.stats, "gather", boom)
    code, _, err = run(capsys, *stats_args(root), "--debug")
    assert code == 1 and "Traceback" in err and "kaboom" in err


def test_a_full_disk_names_the_output(root, capsys, monkeypatch):
    assert main([str(a) for a in stats_args(root)]) == 0

    def no_space(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    line = fails(capsys, "calibrate", "--store", root / "st.sqlite", "--epsilon", 0.2, "--alpha", 0.2,
                 "-o", root / "c.json")
    assert f"{root / 'c.json'}: No space left on device" in line
    assert not (root / "c.json").exists() and not [f for f in os.listdir(root) if f.startswith(".")]


def test_an_invalid_utf8_case_name_is_one_line(root, capsys):
    raw = os.fsencode(root / "scores") + b"/bad\xff.nii.gz"
    os.rename(root / "scores" / "c4.nii.gz", raw)
    os.rename(root / "labels" / "c4.nii.gz", os.fsencode(root / "labels") + b"/bad\xff.nii.gz")
    line = fails(capsys, *stats_args(root))
    assert "bad\\xff.nii.gz: the file name is not valid UTF-8" in line
    assert not (root / "st.sqlite").exists()  # refused while pairing, before the store is opened


def test_no_library_log_lines(root, capsys):
    img = nib.load(root / "scores" / "c5.nii.gz")
    header = img.header.copy()
    header["pixdim"][0] = 0  # nibabel logs "pixdim[0] (qfac) should be 1 (default) or -1" when it reads this
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), img.affine, header), root / "scores" / "c5.nii.gz")
    code, out, err = run(capsys, *stats_args(root))
    assert code == 0 and err == "", err
    with StatsStore(root / "st.sqlite") as st:
        assert len(st) == 6


def test_an_npz_declaring_more_voxels_than_its_labels_is_refused_before_inflating(tmp_path, capsys, monkeypatch):
    import clskern.io.arrays
    from nnunet_files import write_nnunet_case

    (tmp_path / "pred").mkdir()
    (tmp_path / "labels").mkdir()
    nib.save(nib.Nifti1Image(np.ones(SHAPE, np.uint8), np.eye(4)), tmp_path / "labels" / "big.nii.gz")
    write_nnunet_case(tmp_path / "pred", "big", np.zeros((80, 70, 60), np.float32), np.eye(4))

    def never(*args, **kwargs):
        raise AssertionError("inflated before the shapes were compared")

    monkeypatch.setattr(clskern.io.arrays, "inflate_raw", never)
    line = fails(capsys, "stats", "--scores", tmp_path / "pred", "--labels", tmp_path / "labels",
                 "-o", tmp_path / "st.sqlite", "-q")
    assert "case 'big'" in line and "big.npz" in line and "(80, 70, 60)" in line and "(8, 7, 6)" in line


def test_a_zero_voxel_image_is_refused(root, capsys):
    np.save(root / "scores" / "c0.npy", np.zeros((0, 7, 6), np.float32))
    os.unlink(root / "scores" / "c0.nii.gz")
    line = fails(capsys, *stats_args(root))
    assert "c0.npy" in line and "holds no voxels" in line


def test_evaluate_never_writes_a_report_file_over_its_store(root, capsys):
    assert main([str(a) for a in stats_args(root)]) == 0
    (root / "rep").mkdir()
    store = root / "rep" / "summary.json"
    os.replace(root / "st.sqlite", store)
    before = store.read_bytes()
    line = fails(capsys, "evaluate", "--store", store, "--epsilon", 0.2, "--alpha", 0.5, "--splits", 3,
                 "-o", root / "rep", "--overwrite", "--no-plots")
    assert "summary.json: output is an input" in line and store.read_bytes() == before


def test_a_database_that_is_not_a_store_is_never_written(root, capsys):
    import sqlite3

    other = root / "users.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE users (name TEXT)")
    db.close()
    before = other.read_bytes()
    line = fails(capsys, "calibrate", "--store", other, "--epsilon", 0.2, "--alpha", 0.2, "-o", root / "c.json")
    assert "users.db: not a clskern statistics store" in line
    line = fails(capsys, *stats_args(root, other))
    assert "users.db: exists and is not a statistics store clskern wrote (no tables 'meta' and 'cases')" in line
    assert other.read_bytes() == before and not (root / "users.db-wal").exists()


@pytest.mark.parametrize("edit", ["UPDATE cases SET case_id='c9' WHERE case_id='c1'",
                                  "UPDATE cases SET n_fg=n_fg+1 WHERE case_id='c1'",
                                  "UPDATE cases SET stats=5 WHERE case_id='c1'"])
def test_an_edited_store_row_is_refused_naming_store_and_case(root, capsys, edit):
    import sqlite3

    assert main([str(a) for a in stats_args(root)]) == 0
    with sqlite3.connect(root / "st.sqlite") as db:
        db.execute(edit)
    db.close()
    line = fails(capsys, "calibrate", "--store", root / "st.sqlite", "--epsilon", 0.2, "--alpha", 0.2,
                 "-o", root / "c.json")
    assert "st.sqlite: case 'c" in line and "unreadable statistics" in line
    assert not (root / "c.json").exists()


def test_a_looser_affine_tolerance_does_not_outlive_its_run(root, capsys):
    img = nib.load(root / "scores" / "c2.nii.gz")
    moved = img.affine.copy()
    moved[0, 3] += 15
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), moved), root / "scores" / "c2.nii.gz")
    assert main([str(a) for a in stats_args(root, None, "--affine-tolerance", 100)]) == 0
    line = fails(capsys, *stats_args(root))  # the default tolerance checks the stored case again
    assert "affine mismatch" in line and "c2.nii.gz" in line


def test_apply_refuses_an_npz_without_its_pkl_even_with_a_reference(root, capsys, tmp_path):
    from nnunet_files import write_nnunet_case

    assert main([str(a) for a in stats_args(root)]) == 0
    assert main(["calibrate", "--store", str(root / "st.sqlite"), "--epsilon", "0.2", "--alpha", "0.2",
                 "-o", str(root / "c.json"), "-q"]) == 0
    pred = tmp_path / "pred"
    pred.mkdir()
    write_nnunet_case(pred, "c1", np.asarray(nib.load(root / "scores" / "c1.nii.gz").dataobj), np.eye(4))
    os.unlink(pred / "c1.pkl")
    line = fails(capsys, "apply", "--calibration", root / "c.json", "--scores", pred, "--reference",
                 root / "labels", "-o", tmp_path / "m")
    assert "c1.pkl not found" in line and not (tmp_path / "m").exists()


def test_label_zero_is_refused(root, capsys):
    with pytest.raises(SystemExit):
        main([str(a) for a in stats_args(root, None, "--label", 0)])
    assert "background" in capsys.readouterr().err


@pytest.fixture
def three_channels(tmp_path):
    """4-D NIfTI scores with three class channels (last axis) and labels of class 2."""
    (tmp_path / "scores").mkdir()
    (tmp_path / "labels").mkdir()
    rng = np.random.default_rng(11)
    for i in range(6):
        p = rng.random((*SHAPE, 3), dtype=np.float32)
        nib.save(nib.Nifti1Image(p, np.eye(4)), tmp_path / "scores" / f"m{i}.nii.gz")
        nib.save(nib.Nifti1Image((p[..., 2] > 0.6).astype(np.uint8), np.eye(4)), tmp_path / "labels" / f"m{i}.nii.gz")
    return tmp_path


def test_apply_cuts_the_channel_the_calibration_was_read_from(three_channels, capsys):
    root = three_channels
    assert main([str(a) for a in stats_args(root, None, "--channel", 2)]) == 0
    line = fails(capsys, *stats_args(root, None, "--channel", 1))  # one store, one way of reading
    assert "read with --channel 2, this run asks --channel 1" in line
    assert main(["calibrate", "--store", str(root / "st.sqlite"), "--epsilon", "0.2", "--alpha", "0.2",
                 "-o", str(root / "c.json"), "-q"]) == 0
    cal = clskern.Calibration.read(root / "c.json")
    assert cal.reading == {"label": None, "channel": 2}
    assert main(["apply", "--calibration", str(root / "c.json"), "--scores", str(root / "scores"),
                 "-o", str(root / "m"), "-q"]) == 0
    p = np.asarray(nib.load(root / "scores" / "m3.nii.gz").dataobj)
    np.testing.assert_array_equal(np.asarray(nib.load(root / "m" / "m3.nii.gz").dataobj), p[..., 2] >= cal.threshold)
    line = fails(capsys, "apply", "--calibration", root / "c.json", "--scores", root / "scores", "-o", root / "m2",
                 "--channel", 1)
    assert "calibrated on channel 2, but --channel 1 was asked" in line and not (root / "m2").exists()
