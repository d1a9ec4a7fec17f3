"""One rule for every command's outputs (clskern/cli/_output.py): an input is never an output, and
``--overwrite`` replaces only what clskern wrote (issue 18)."""

import json
import os
import sqlite3

import nibabel as nib
import numpy as np
import pytest

from clskern.cli._output import STORE, NotOursError, refuse_foreign
from clskern.cli.main import main
from clskern.io.nifti import mask_problem
from clskern.store import StatsStore, recorded_files, store_problem

SHAPE = (8, 7, 6)
CAL = ("--epsilon", 0.2, "--alpha", 0.2)


@pytest.fixture
def root(tmp_path):
    (tmp_path / "scores").mkdir()
    (tmp_path / "labels").mkdir()
    rng = np.random.default_rng(18)
    for i in range(6):
        p = rng.random(SHAPE, dtype=np.float32)
        nib.save(nib.Nifti1Image(p, np.eye(4)), tmp_path / "scores" / f"c{i}.nii.gz")
        nib.save(nib.Nifti1Image((p > 0.6).astype(np.uint8), np.eye(4)), tmp_path / "labels" / f"c{i}.nii.gz")
    return tmp_path


def cli(*argv):
    return main([str(a) for a in argv])


def fails(capsys, *argv):
    """Exit 1 and exactly one error line on stderr, which is returned."""
    capsys.readouterr()
    code = cli(*argv)
    out, err = capsys.readouterr()
    lines = [x for x in err.splitlines() if x.strip()]
    assert code == 1, (out, err)
    assert len(lines) == 1 and lines[0].startswith(f"clskern {argv[0]}: error: "), err
    return lines[0]


def snapshot(folder):
    """Each file's bytes (a folder: its own snapshot)."""
    return {p.name: snapshot(p) if p.is_dir() else p.read_bytes() for p in sorted(folder.iterdir())}


def stats(root, out, *extra):
    return ("stats", "--scores", root / "scores", "--labels", root / "labels", "-o", out, "-q", *extra)


# --- the five reproductions of issue 18 ------------------------------------------


def test_calibrate_never_writes_over_a_label_file_its_store_names(root, capsys, monkeypatch):
    monkeypatch.chdir(root)  # the store records the paths as given: relative here
    assert cli("stats", "--scores", "scores", "--labels", "labels", "-o", "st.sqlite", "-q") == 0
    assert os.path.join("labels", "c1.nii.gz") in recorded_files(root / "st.sqlite")
    monkeypatch.chdir(root.parent)  # recorded relative to the store's folder, not to here
    before = snapshot(root / "labels")
    line = fails(capsys, "calibrate", "--store", root / "st.sqlite", *CAL, "-o", root / "labels" / "c1.nii.gz",
                 "--overwrite")
    assert "c1.nii.gz: output is an input of this command" in line
    assert snapshot(root / "labels") == before


def test_stats_never_replaces_its_dataset_json(root, capsys):
    for path in (root / "scores").iterdir():  # two channels (background, lesion), channel last
        p = np.asanyarray(nib.load(path).dataobj)
        nib.save(nib.Nifti1Image(np.stack([1 - p, p], axis=-1), np.eye(4)), path)
    (root / "meta").mkdir()
    dataset_json = root / "meta" / "d.json"
    dataset_json.write_text(json.dumps({"channel_names": {"0": "CT"}, "labels": {"background": 0, "lesion": 1},
                                        "numTraining": 6, "file_ending": ".nii.gz"}))
    before = dataset_json.read_bytes()
    line = fails(capsys, *stats(root, dataset_json, "--dataset-json", dataset_json, "--overwrite"))
    assert "d.json: output is an input of this command" in line
    assert dataset_json.read_bytes() == before and not (root / "meta" / "d.json-wal").exists()


def test_apply_never_writes_masks_over_labels_of_the_same_names(root, capsys):
    assert cli("calibrate", "--scores", root / "scores", "--labels", root / "labels", *CAL,
               "-o", root / "cal.json", "-q") == 0
    before = snapshot(root / "labels")
    for extra in ([], ["--overwrite"]):
        line = fails(capsys, "apply", "--calibration", root / "cal.json", "--scores", root / "scores",
                     "-o", root / "labels", "-q", *extra)
        assert "labels/c0.nii.gz: exists and is not a mask clskern wrote" in line
        assert "remove it yourself or choose another -o" in line
    assert snapshot(root / "labels") == before  # no mask, no staging folder left


def test_calibrate_never_writes_over_its_stores_sqlite_files(root, capsys):
    store = root / "st.sqlite"
    assert cli(*stats(root, store)) == 0
    before = store.read_bytes()
    for suffix in ("-wal", "-shm", "-journal"):
        line = fails(capsys, "calibrate", "--store", store, *CAL, "-o", f"{store}{suffix}", "--overwrite")
        assert f"st.sqlite{suffix}: output is an input of this command" in line
        assert not os.path.lexists(f"{store}{suffix}")
    assert store.read_bytes() == before


@pytest.mark.parametrize("kind", ["text", "database", "folder"])
def test_stats_overwrite_removes_only_a_store_clskern_wrote(root, capsys, kind):
    target = root / "notes.sqlite"
    if kind == "text":
        target.write_text("my notes " * 50)
    elif kind == "database":
        with sqlite3.connect(target) as db:
            db.execute("CREATE TABLE users (name TEXT)")
        db.close()
    else:
        target.mkdir()
        (target / "keep.txt").write_text("mine")
    before = snapshot(root)
    line = fails(capsys, *stats(root, target, "--overwrite"))
    assert "notes.sqlite: exists and is not a statistics store clskern wrote" in line
    assert snapshot(root) == before and (kind != "folder" or (target / "keep.txt").read_text() == "mine")


# --- the other inputs and outputs -------------------------------------------------


def test_a_sqlite_file_without_its_store_is_not_removed(root, capsys):
    (root / "st.sqlite-wal").write_bytes(b"someone's")
    line = fails(capsys, *stats(root, root / "st.sqlite", "--overwrite"))
    assert "st.sqlite-wal: exists and is not a statistics store clskern wrote (no statistics store" in line
    assert (root / "st.sqlite-wal").read_bytes() == b"someone's" and not (root / "st.sqlite").exists()


def test_evaluate_overwrite_replaces_only_clskerns_report_files(root, capsys):
    assert cli(*stats(root, root / "st.sqlite")) == 0
    report = root / "rep"
    report.mkdir()
    (report / "report.md").write_text("# my own notes\n")
    evaluate = ("evaluate", "--store", root / "st.sqlite", "--epsilon", 0.2, "--splits", 3, "--no-plots",
                "--no-sweeps", "-q", "-o", report)
    line = fails(capsys, *evaluate, "--overwrite")
    assert "rep/report.md: exists and is not a report file clskern wrote" in line
    assert snapshot(report) == {"report.md": b"# my own notes\n"}
    (report / "report.md").unlink()
    assert cli(*evaluate) == 0
    assert "rep/summary.json: output exists" in fails(capsys, *evaluate)
    assert cli(*evaluate, "--overwrite") == 0  # its own report: replaced
    assert sorted(os.listdir(report)) == ["report.md", "summary.json"]


def test_overwrite_replaces_clskerns_own_store_calibration_and_masks(root, capsys):
    store, cal, masks = root / "st.sqlite", root / "cal.json", root / "masks"
    assert cli(*stats(root, store)) == 0
    assert cli(*stats(root, store, "--overwrite")) == 0  # its own store, afresh
    with StatsStore(store, create=False) as s:
        assert len(s) == 6
    calibrate = ("calibrate", "--store", store, *CAL, "-o", cal, "-q")
    assert cli(*calibrate) == 0
    record = json.loads(cal.read_text())
    record["case_ids"][0] = "edited"  # by hand: no longer what clskern wrote (its digest says so)
    cal.write_text(json.dumps(record))
    assert "cal.json: exists and is not a calibration file clskern wrote" in fails(capsys, *calibrate, "--overwrite")
    cal.unlink()
    assert cli(*calibrate) == 0 and cli(*calibrate, "--overwrite") == 0
    apply = ("apply", "--calibration", cal, "--scores", root / "scores", "-o", masks, "-q")
    assert cli(*apply) == 0
    assert all(mask_problem(p) is None for p in masks.iterdir())  # each mask carries clskern's mark
    before = snapshot(masks)
    assert cli(*apply, "--overwrite") == 0
    assert snapshot(masks) == before  # replaced by the same masks


def test_a_copied_label_among_masks_stops_the_run_before_any_mask_is_replaced(root, capsys):
    assert cli("calibrate", "--scores", root / "scores", "--labels", root / "labels", *CAL,
               "-o", root / "cal.json", "-q") == 0
    apply = ("apply", "--calibration", root / "cal.json", "--scores", root / "scores", "-o", root / "m", "-q")
    assert cli(*apply) == 0
    (root / "m" / "c3.nii.gz").write_bytes((root / "labels" / "c3.nii.gz").read_bytes())
    before = snapshot(root / "m")
    line = fails(capsys, *apply, "--overwrite")
    assert "m/c3.nii.gz: exists and is not a mask clskern wrote (its header does not carry clskern's mark" in line
    assert snapshot(root / "m") == before


# --- the recognisers ----------------------------------------------------------------


def test_store_problem_and_refuse_foreign(root):
    assert cli(*stats(root, root / "st.sqlite")) == 0
    assert store_problem(root / "st.sqlite") is None
    assert store_problem(root / "labels") == "a folder"
    assert store_problem(root / "labels" / "c0.nii.gz") == "not a SQLite file"
    assert refuse_foreign([str(root / "st.sqlite"), str(root / "new.sqlite")], STORE) == [str(root / "st.sqlite")]
    with pytest.raises(NotOursError, match="c0.nii.gz: exists and is not a statistics store clskern wrote"):
        refuse_foreign([str(root / "labels" / "c0.nii.gz")], STORE)
    assert issubclass(NotOursError, ValueError)
