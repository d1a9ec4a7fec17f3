"""Report files, plots and the ``evaluate`` sub-command's parser and runner."""

import argparse
import json
import pathlib

import numpy as np
import pytest

import clskern
from clskern.errors import InputError
from clskern.evaluation import evaluate, write_report
from clskern.cli.evaluate import add_parser
from clskern.evaluation.cli import load_stats_files, load_stats_from_files, run
from clskern.evaluation.report import ReportExistsError
from clskern.evaluation.synthetic_suite import make_dataset


@pytest.fixture(scope="module")
def stats():
    return make_dataset("liver", "overconfident", 40, seed=1)


@pytest.fixture(scope="module")
def evaluation(stats):
    return evaluate(stats, epsilon=0.2, alpha=0.2, splits=20, methods=("cls", "crc", "authors", "fixed-0.5"),
                    sweep_alphas=(0.1, 0.5), sweep_fractions=(0.3, 0.7))


def _parser():
    parser = argparse.ArgumentParser(prog="clskern")
    add_parser(parser.add_subparsers(dest="command"))
    return parser


def test_summary_and_markdown(evaluation, tmp_path):
    paths = write_report(evaluation, tmp_path, plots=False)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["inputs"]["splits"] == 20 and summary["n_cases"] == 40 and summary["n_calibration"] == 20
    cls = summary["methods"]["cls"]
    assert set(cls) >= {"ecr", "v_fnr", "p_fnr", "v_fpr", "pc", "dice", "threshold", "n_uncertified"}
    assert cls["ecr"]["mean"] == pytest.approx(float(np.mean(evaluation["cls"].metrics["ecr"])))
    assert summary["sweeps"]["alpha"]["values"] == [0.1, 0.5]
    text = (tmp_path / "report.md").read_text()
    assert "| cls | ECR ≥ 0.8 |" in text and "Plots were not requested" in text
    assert [p.split("/")[-1] for p in paths] == ["summary.json", "report.md"]
    with pytest.raises(ReportExistsError, match="summary.json exists"):
        write_report(evaluation, tmp_path, plots=False)
    write_report(evaluation, tmp_path, plots=False, overwrite=True)


def test_plots_are_small_pngs(evaluation, tmp_path):
    pytest.importorskip("matplotlib")
    paths = write_report(evaluation, tmp_path)
    pngs = [p for p in paths if p.endswith(".png")]
    assert len(pngs) == 5
    for p in pngs:
        data = pathlib.Path(p).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) < 150_000
    text = (tmp_path / "report.md").read_text()
    assert "![ECR against alpha](ecr_vs_alpha.png)" in text


def test_cli_runs_with_a_loader(stats, tmp_path, capsys):
    args = _parser().parse_args(
        ["evaluate", "--store", "ignored", "--epsilon", "0.3", "--splits", "7", "--methods", "cls,fixed-0.5",
         "--no-sweeps", "--no-plots", "-o", str(tmp_path / "out")]
    )
    assert args.methods == ("cls", "fixed-0.5") and args.alpha == 0.1 and args.cal_fraction == 0.5
    assert run(args, lambda a: stats) == 0
    assert "report: " in capsys.readouterr().out
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["inputs"]["epsilon"] == 0.3 and set(summary["methods"]) == {"cls", "fixed-0.5"}
    with pytest.raises(FileExistsError):
        run(args, lambda a: stats)


def test_cli_rejects_unknown_methods(capsys):
    with pytest.raises(SystemExit):
        _parser().parse_args(["evaluate", "--epsilon", "0.2", "--methods", "cls,magic", "-o", "x"])
    assert "unknown method 'magic'" in capsys.readouterr().err


def test_load_stats_files(stats, tmp_path):
    paths = []
    for name, s in list(stats.items())[:3]:
        path = tmp_path / f"{name}.npz"
        path.write_bytes(s.to_bytes())
        paths.append(str(path))
    loaded = load_stats_files(paths)
    assert list(loaded) == list(stats)[:3] and all(loaded[k] == stats[k] for k in loaded)
    (tmp_path / "bad.npz").write_bytes(b"not statistics")
    with pytest.raises(InputError, match="bad.npz"):
        load_stats_files([str(tmp_path / "bad.npz")])
    with pytest.raises(InputError, match="appears twice"):
        load_stats_files(paths[:1] * 2)
    args = _parser().parse_args(["evaluate", *paths, "--epsilon", "0.2", "-o", str(tmp_path / "r")])
    assert list(load_stats_from_files(args)) == list(stats)[:3]
    for argv in (["--store", "s"], []):
        args = _parser().parse_args(["evaluate", *argv, "--epsilon", "0.2", "-o", "r"])
        with pytest.raises(InputError):
            load_stats_from_files(args)


def test_report_without_matplotlib(evaluation, tmp_path, monkeypatch):
    from clskern.evaluation import report

    def missing():
        raise ImportError("No module named 'matplotlib'")

    monkeypatch.setattr(report, "_load_plotting", missing)
    paths = write_report(evaluation, tmp_path)
    assert not [p for p in paths if p.endswith(".png")]
    assert "matplotlib is not installed" in (tmp_path / "report.md").read_text()
    assert clskern.__version__ in (tmp_path / "summary.json").read_text()


def test_report_explains_uncertified_splits(stats, tmp_path):
    result = evaluate(stats, epsilon=0.2, alpha=0.03, splits=4, methods=("cls", "fixed-0.5"), sweeps=False)
    write_report(result, tmp_path, plots=False)
    text = (tmp_path / "report.md").read_text()
    assert "Uncertified splits: `cls` in 4 of 4. With 20 calibration cases" in text
    assert "| cls | ECR ≥ 0.97 | n/a |" in text


def test_importing_the_evaluation_does_not_need_matplotlib():
    import subprocess
    import sys

    code = "import sys, clskern.evaluation, clskern.evaluation.cli; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_cli_rejects_non_finite_fixed_cuts(capsys):
    for method in ("fixed-nan", "fixed-inf"):
        with pytest.raises(SystemExit):
            _parser().parse_args(["evaluate", "--epsilon", "0.2", "--methods", f"cls,{method}", "-o", "x"])
        assert "must be a finite number" in capsys.readouterr().err


def test_existing_pngs_are_not_replaced_without_overwrite(evaluation, tmp_path):
    pytest.importorskip("matplotlib")
    old = tmp_path / "dice_vs_epsilon.png"
    old.write_bytes(b"someone else's figure")
    with pytest.raises(ReportExistsError, match="dice_vs_epsilon.png exists"):
        write_report(evaluation, tmp_path)
    assert old.read_bytes() == b"someone else's figure"
    assert not (tmp_path / "summary.json").exists() and not (tmp_path / "report.md").exists()
    # without plots the PNG is not written, so it does not block
    write_report(evaluation, tmp_path, plots=False)
    paths = write_report(evaluation, tmp_path, overwrite=True)
    assert old.read_bytes()[:4] == b"\x89PNG" and str(old) in paths


def test_plot_names_match_what_is_drawn(evaluation, tmp_path):
    pytest.importorskip("matplotlib")
    from clskern.evaluation.report import PLOTS, SWEEP_PLOTS

    drawn = [pathlib.Path(p).name for p in write_report(evaluation, tmp_path) if p.endswith(".png")]
    assert sorted(drawn) == sorted(PLOTS + SWEEP_PLOTS)
    no_sweeps = evaluate(make_dataset("liver", "overconfident", 10, seed=2), epsilon=0.2, alpha=0.2, splits=2,
                         methods=("cls",), sweeps=False)
    drawn = [pathlib.Path(p).name for p in write_report(no_sweeps, tmp_path / "b") if p.endswith(".png")]
    assert sorted(drawn) == sorted(PLOTS)


def test_failed_rewrite_leaves_the_old_report_intact(evaluation, tmp_path, monkeypatch):
    from clskern.evaluation import report

    write_report(evaluation, tmp_path, plots=False)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def broken(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "_markdown", broken)
    with pytest.raises(KeyboardInterrupt):
        write_report(evaluation, tmp_path, plots=False, overwrite=True)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no truncation, no temp files


def test_failed_plot_leaves_the_old_png_intact(evaluation, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    write_report(evaluation, tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def half_written(self, fname, **kwargs):
        with open(fname, "wb") as f:
            f.write(b"\x89PNG partial")
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", half_written)
    with pytest.raises(OSError, match="disk full"):
        write_report(evaluation, tmp_path, overwrite=True)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
