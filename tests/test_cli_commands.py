"""``clskern stats / calibrate / apply / demo`` on real files written by nibabel."""

import dataclasses
import json
import os
import pickle
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

import clskern
from clskern.calibration.degenerate import degenerate_cut
from clskern.cli.main import SUBCOMMANDS, main
from clskern.store import StatsStore

SHAPE = (10, 9, 8)
N = 10


def _affine():
    a = np.diag([1.0, 1.1, 2.0, 1.0])
    a[:3, 3] = [-5.0, 3.0, 1.0]
    return a


def _case(rng):
    p = rng.random(SHAPE, dtype=np.float32)
    y = np.zeros(SHAPE, np.uint8)
    y[2:6, 3:7, 2:5] = 1
    y[7:9, 0:3, 5:7] = 2  # a second label in multi-label masks
    p[y == 1] = np.clip(p[y == 1] + rng.uniform(-0.2, 0.5), 0, 1)
    return np.asfortranarray(p), y


def _endian_header(i):
    return nib.Nifti1Header(endianness=">" if i % 2 else "<")


@pytest.fixture
def data(tmp_path):
    """Scores (half of them big-endian) and multi-label masks, as nibabel writes them."""
    rng = np.random.default_rng(0)
    s, l = tmp_path / "scores", tmp_path / "labels"
    s.mkdir()
    l.mkdir()
    cases = {}
    for i in range(N):
        p, y = _case(rng)
        nib.save(nib.Nifti1Image(p.astype(f"{'>' if i % 2 else '<'}f4"), _affine(), _endian_header(i)),
                 s / f"case_{i:02d}.nii.gz")
        nib.save(nib.Nifti1Image(y, _affine()), l / f"case_{i:02d}.nii.gz")
        cases[f"case_{i:02d}"] = (p, y)
    return tmp_path, cases


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_stats_calibrate_apply_end_to_end(data, capsys):
    root, cases = data
    store, cal, masks = root / "st.sqlite", root / "cal.json", root / "masks"
    code, out, err = cli(capsys, "stats", "--scores", root / "scores", "--labels", root / "labels",
                         "-o", store, "--label", 1)
    assert code == 0, err
    assert f"{N} read" in out and len(err.splitlines()) == N  # one plain progress line per case
    assert "stats 3/10 case_02: stored" in err and "MB/s" in err
    expected = {k: clskern.volume_stats(p, y, label=1, name=k) for k, (p, y) in cases.items()}
    with StatsStore(store) as st:
        assert st.load() == expected

    code, out, err = cli(capsys, "stats", "--scores", root / "scores", "--labels", root / "labels",
                         "-o", store, "--label", 1, "-q")
    assert code == 0 and out == "" and err == ""

    code, out, err = cli(capsys, "calibrate", "--store", store, "--epsilon", 0.2, "--alpha", 0.2, "-o", cal)
    assert code == 0, err
    record = json.loads(cal.read_text())
    reference = clskern.calibrate(expected, epsilon=0.2, alpha=0.2)
    # what the store says; and these uniform backgrounds make the cut degenerate (the check's warnings)
    warnings = degenerate_cut(expected, reference.threshold)
    assert warnings and "predicted lesion" in warnings[0] and "clskern calibrate: warning: degenerate cut" in err
    reference = dataclasses.replace(reference, reading={"label": 1, "channel": None}, warnings=warnings)
    assert record == json.loads(reference.to_json())
    for key in ("threshold", "method", "epsilon", "alpha", "delta", "n", "n_skipped", "k", "guarantee",
                "critical_thresholds", "case_ids", "reading", "clskern_version", "format_version"):
        assert key in record
    assert repr(reference.threshold) in out

    code, out, err = cli(capsys, "apply", "--calibration", cal, "--scores", root / "scores", "-o", masks)
    assert code == 0, err
    for k, (p, _) in cases.items():
        img = nib.load(masks / f"{k}.nii.gz")
        assert img.get_data_dtype() == np.uint8
        np.testing.assert_array_equal(np.asanyarray(img.dataobj), (p >= reference.threshold).astype(np.uint8))
        np.testing.assert_allclose(img.affine, _affine())
    assert not [f for f in os.listdir(masks) if f.startswith(".")]  # no temporary files left


def test_calibrate_from_folders_equals_store_for_every_method(data, capsys):
    root, cases = data
    store = root / "st.sqlite"
    assert cli(capsys, "stats", "--scores", root / "scores", "--labels", root / "labels", "-o", store, "-j", 2)[0] == 0
    for method, extra in [("cls", ["--alpha", 0.3]), ("cls-pac", ["--alpha", 0.3, "--delta", 0.2]),
                          ("crc", []), ("rcps", ["--delta", 0.3])]:
        a, b = root / f"{method}_a.json", root / f"{method}_b.json"
        assert cli(capsys, "calibrate", "--store", store, "--epsilon", 0.3, "--method", method, *extra, "-o", a)[0] == 0
        code, _, err = cli(capsys, "calibrate", "--scores", root / "scores", "--labels", root / "labels",
                           "--epsilon", 0.3, "--method", method, *extra, "-o", b, "-q")
        assert code == 0, err
        assert json.loads(a.read_text()) == json.loads(b.read_text())
        assert json.loads(a.read_text())["method"] == method


def test_multilabel_label_choice_changes_statistics(data, capsys):
    root, cases = data
    for label in (1, 2):
        out = root / f"cal{label}.json"
        code, _, err = cli(capsys, "calibrate", "--scores", root / "scores", "--labels", root / "labels",
                           "--label", label, "--epsilon", 0.1, "--alpha", 0.2, "-o", out, "-q")
        assert code == 0, err
        stats = {k: clskern.volume_stats(p, y, label=label) for k, (p, y) in cases.items()}
        assert json.loads(out.read_text())["threshold"] == clskern.calibrate(stats, epsilon=0.1, alpha=0.2).threshold


def test_nnunet_npz_with_reference_or_pkl(tmp_path, capsys):
    rng = np.random.default_rng(4)
    s, l, ref = tmp_path / "pred", tmp_path / "labels", tmp_path / "images"
    for d in (s, l, ref):
        d.mkdir()
    arrays = {}
    for i in range(6):
        p, y = _case(rng)
        case = f"BRATS_{i:03d}"
        np.savez_compressed(s / f"{case}.npz", probabilities=np.stack([1 - p.T, p.T]).astype(np.float32))
        nib.save(nib.Nifti1Image((p > 0.5).astype(np.uint8), _affine()), s / f"{case}.nii.gz")  # nnU-Net seg
        nib.save(nib.Nifti1Image(y, _affine()), l / f"{case}.nii.gz")
        nib.save(nib.Nifti1Image(p, _affine()), ref / f"{case}_0000.nii.gz")
        with open(s / f"{case}.pkl", "wb") as f:
            pickle.dump({"nibabel_stuff": {"original_affine": _affine()}}, f)
        arrays[case] = (p, y)
    cal = tmp_path / "cal.json"
    code, _, err = cli(capsys, "calibrate", "--scores", s, "--labels", l, "--epsilon", 0.2, "--alpha", 0.25,
                       "-o", cal, "-q")
    assert code == 0, err
    stats = {k: clskern.volume_stats(p, y) for k, (p, y) in arrays.items()}
    threshold = json.loads(cal.read_text())["threshold"]
    assert threshold == clskern.calibrate(stats, epsilon=0.2, alpha=0.25).threshold
    one = s / "BRATS_001.npz"
    for extra, out in [(["--reference", ref], tmp_path / "m1"), ([], tmp_path / "m2")]:
        code, _, err = cli(capsys, "apply", "--calibration", cal, "--scores", one, "-o", out, "-q", *extra)
        assert code == 0, err
        img = nib.load(out / "BRATS_001.nii.gz")
        np.testing.assert_array_equal(np.asanyarray(img.dataobj), arrays["BRATS_001"][0] >= threshold)
        np.testing.assert_allclose(img.affine, _affine())


def test_demo_runs_and_prints_the_table(tmp_path, capsys):
    code, out, err = cli(capsys, "demo", "--cases", 10, "--shape", 24, 24, 16, "--alpha", 0.3, "--dir", tmp_path / "d")
    assert code == 0, err
    for row in ("threshold", "mean FNR (test)", "mean Dice (test)", "FNR <= 0.2 (test)", "0.5 cut"):
        assert row in out
    calibration = json.loads((tmp_path / "d" / "calibration.json").read_text())
    assert f"{calibration['threshold']:.4f}" in out
    assert len(os.listdir(tmp_path / "d" / "masks")) == 5
    code, out, err = cli(capsys, "demo", "--cases", 10, "--shape", 24, 24, 16, "--alpha", 0.3, "--dir", tmp_path / "d")
    assert code == 1 and "--overwrite" in err


def test_console_entry_point_and_module():
    assert set(SUBCOMMANDS) >= {"stats", "calibrate", "apply", "demo"}
    run = subprocess.run([sys.executable, "-m", "clskern", "--version"], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert run.returncode == 0 and run.stdout.strip() == f"clskern {clskern.__version__}"
    run = subprocess.run([sys.executable, "-m", "clskern", "stats", "--scores", "x"], capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1 and "required" in run.stderr


@pytest.mark.parametrize("argv, limit", [(["--threads", "1"], 1), ([], None), (["-j", "2"], "half")])
def test_threads_reach_every_kernel_call(data, capsys, monkeypatch, argv, limit):
    """--threads caps each case's kernels; unset, the cores (or NUMBA_NUM_THREADS/OMP_NUM_THREADS) over --jobs."""
    from clskern import _threads

    if "-j" in argv and _threads.usable_cores() < 2:
        pytest.skip("-j 2 needs two usable cores")
    seen = []
    real = _threads.threads_for
    monkeypatch.setattr(_threads, "threads_for", lambda nbytes, per=_threads.BYTES_PER_THREAD: (
        seen.append(_threads.thread_limit()) or real(nbytes, per)))
    root, _ = data
    code, _, err = cli(capsys, "stats", "--scores", root / "scores", "--labels", root / "labels",
                       "-o", root / "s.sqlite", *argv)
    assert code == 0, err
    if limit == "half":  # the readers take their share of the cores: jobs x threads stays within them
        limit = max(1, _threads.default_threads() // 2)
    assert len(seen) >= N and set(seen) == {limit or _threads.default_threads()}
