"""``clskern demo``: values checked before anything is written, its own files recognised after a failure,
-q quiet, and a default that shows a sensible calibrated cut."""

import os

import numpy as np
import pytest

import clskern
from clskern.calibration.degenerate import degenerate_cut
from clskern.cli import demo
from clskern.cli.main import main

SMALL = ["--cases", "8", "--shape", "20", "20", "12", "--alpha", "0.4"]


def _cli(capsys, *argv):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("argv, code, says", [
    (["--alpha", "0"], 2, "argument --alpha: must lie in (0, 1), got 0"),
    (["--epsilon", "1.5"], 2, "argument --epsilon: must lie in [0, 1), got 1.5"),
    (["--seed", "-1"], 2, "argument --seed: must be 0 or more, got -1"),
    (["--empty", "pass"], 2, "argument --empty: invalid choice: 'pass'"),
    (["--shape", "4", "20", "20"], 2, "argument --shape: each size must be at least 8"),
    (["--cases", "3"], 1, "--cases 3: the demo needs at least 4"),
    (["--cases", "6"], 1, "--cases 6 with --alpha 0.1: cls needs n >= 9 calibration cases with lesions"),
    (["--cases", "40", "--empty", "error"], 1, "--empty error: the demo's data has 4 lesion-free case(s)"),
])
def test_every_value_is_checked_before_anything_is_generated(tmp_path, capsys, argv, code, says):
    root = tmp_path / "d"
    got, out, err = _cli(capsys, "demo", "-o", root, *argv)
    assert got == code and says in err and len(err.strip().splitlines()) == 1, err
    assert "demo: error: demo:" not in err and out == ""
    assert not root.exists()


def test_cases_asked_for_are_enough(tmp_path, capsys):
    """The --cases the refusal proposes is the least the demo can calibrate with."""
    err = _cli(capsys, "demo", "-o", tmp_path / "d", "--cases", "6")[2]
    assert "use --cases 20 or more" in err
    for alpha, enough in ((0.1, 20), (0.4, 4), (0.05, 42)):
        args = demo.add_parser(__import__("argparse").ArgumentParser().add_subparsers()).parse_args(
            ["-o", str(tmp_path / "x"), "--cases", str(enough), "--alpha", str(alpha)])
        demo.check_request(args)
        args.cases = enough - 2
        with pytest.raises(ValueError, match="cls needs|at least 4"):
            demo.check_request(args)


def test_output_that_is_a_file_is_refused_in_one_line(tmp_path, capsys):
    f = tmp_path / "existing_file"
    f.write_text("mine")
    code, out, err = _cli(capsys, "demo", "-o", f, *SMALL)
    assert code == 1 and err.strip() == f"clskern demo: error: {f}: -o names a file; the demo writes a folder there"
    assert f.read_text() == "mine"


def test_overwrite_after_a_failed_demo_removes_its_own_files(tmp_path, capsys, monkeypatch):
    root = tmp_path / "d"
    run = demo._run

    def fail_at_calibrate(argv, main_):
        if argv[0] == "calibrate":
            raise KeyboardInterrupt
        run(argv, main_)

    monkeypatch.setattr(demo, "_run", fail_at_calibrate)
    assert main(["demo", "-o", str(root), *SMALL]) == 130
    monkeypatch.setattr(demo, "_run", run)
    assert (root / "stats.sqlite").exists() and not (root / "calibration.json").exists()
    # what an interrupted run leaves: SQLite's files beside the store, apply's staged masks
    (root / "stats.sqlite-wal").write_bytes(b"")
    (root / "masks" / ".clskern-staged-abc").mkdir(parents=True)
    (root / "masks" / ".clskern-staged-abc" / "test_000.nii.gz").write_bytes(b"x")
    capsys.readouterr()
    code, out, err = _cli(capsys, "demo", "-o", root, *SMALL, "--overwrite", "-q")
    assert code == 0, err
    assert (root / "calibration.json").is_file() and not (root / "masks" / ".clskern-staged-abc").exists()
    # a user's own file is still refused, and the message names -o
    (root / "masks" / "mine.txt").write_text("mine")
    code, out, err = _cli(capsys, "demo", "-o", root, *SMALL, "--overwrite")
    assert code == 1 and "mine.txt: not written by clskern demo" in err and "choose another -o folder" in err
    assert "--dir" not in err and (root / "masks" / "mine.txt").read_text() == "mine"


def test_quiet_prints_nothing_but_errors_and_warnings(tmp_path, capsys):
    code, out, err = _cli(capsys, "demo", "-o", tmp_path / "d", *SMALL, "-q")
    assert code == 0 and out == ""
    assert all("warning" in line for line in err.splitlines()), err


def test_printed_commands_reproduce_the_run_and_warnings_are_summed_up(tmp_path, capsys, monkeypatch):
    from clskern.cli import calibrate as calibrate_cli

    monkeypatch.setattr(calibrate_cli, "_warnings", lambda *a: ["degenerate cut: a test's warning"])
    code, out, err = _cli(capsys, "demo", "-o", tmp_path / "d", *SMALL, "--seed", "3")
    assert code == 0, err
    assert "clskern evaluate --store all-cases.sqlite --epsilon 0.2 --alpha 0.4 --empty skip --splits 50 " \
           "--seed 3 -o report" in out
    assert "clskern calibrate: warning: degenerate cut: a test's warning" in err
    assert "clskern calibrate warned (1 warning(s) above" in out


def test_the_default_demo_calibrates_a_sensible_cut():
    """The default demo's calibration half (as run() generates it, in memory): no degenerate-cut warning."""
    from clskern.synthetic import DEMO_SHAPE, synthetic_case

    n_cal = demo.DEFAULT_CASES // 2
    rng = np.random.default_rng(np.random.SeedSequence(0).spawn(2)[0])
    stats = {}
    for i in range(n_cal):
        free = i % demo.LESION_FREE_EVERY == demo.LESION_FREE_EVERY - 1
        p, y = synthetic_case(rng, DEMO_SHAPE, lesion_free=free)
        stats[f"cal_{i:03d}"] = clskern.volume_stats(p, y)
    result = clskern.calibrate(stats, epsilon=demo.DEFAULT_EPSILON, alpha=0.1)
    assert result.k >= 2 and result.threshold > 0.05
    assert not degenerate_cut(stats, result.threshold)
