"""One command line: every subcommand spells the shared options alike, with the same defaults."""

import argparse
import os

from clskern.cli import calibrate as calibrate_cli
from clskern.cli._common import DEFAULT_ALPHA, EMPTY_DEFAULT
from clskern.cli.main import SUBCOMMANDS, build_parser, main
from clskern._validate import EMPTY_POLICIES

# option -> the subcommands that must have it (evaluate reads a store only: no -j, nothing to read in parallel)
SHARED = {
    "--output": set(SUBCOMMANDS),
    "--quiet": set(SUBCOMMANDS),
    "--jobs": {"stats", "calibrate", "apply", "demo"},
    "--empty": {"stats", "calibrate", "evaluate", "demo"},
    "--alpha": {"calibrate", "evaluate", "demo"},
}
SHORT = {"--output": "-o", "--quiet": "-q", "--jobs": "-j"}


def _actions():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {name: {s: a for a in p._actions for s in a.option_strings} for name, p in sub.choices.items()}


def test_every_subcommand_has_the_shared_options_alike():
    actions = _actions()
    for option, commands in SHARED.items():
        for command in commands:
            action = actions[command].get(option)
            assert action is not None, (command, option)
            if option in SHORT:
                assert SHORT[option] in action.option_strings, (command, option)
            if option == "--jobs":
                assert action.default == 1
            if option == "--quiet":
                assert action.default is False
            if option == "--empty":
                assert tuple(action.choices) == tuple(EMPTY_POLICIES) and action.default == EMPTY_DEFAULT
            if option == "--alpha" and command != "calibrate":
                assert action.default == DEFAULT_ALPHA, command
    # calibrate's alpha depends on the method (crc takes none): unset, it is DEFAULT_ALPHA
    args = argparse.Namespace(method="cls", alpha=None, delta=None)
    assert calibrate_cli._parameters(args)[0] == DEFAULT_ALPHA


def test_old_spellings_still_parse_but_are_not_shown():
    parser = build_parser()
    args = parser.parse_args(["evaluate", "--store", "s", "--epsilon", "0.2", "--outdir", "r"])
    assert args.outdir == "r" and args.alpha == DEFAULT_ALPHA and args.quiet is False
    args = parser.parse_args(["stats", "--scores", "a", "--labels", "b", "--store", "s.sqlite"])
    assert args.store == "s.sqlite"
    args = parser.parse_args(["demo", "--dir", "d"])
    assert args.output == "d"
    assert parser.parse_args(["demo"]).output == "clskern-demo"
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert "--outdir" not in sub.choices["evaluate"].format_help()


def test_demo_keeps_its_folder_and_leaves_nothing_in_the_temp_directory(tmp_path, capsys, monkeypatch):
    import tempfile

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", None)  # read TMPDIR again
    monkeypatch.chdir(tmp_path)
    code = main(["demo", "--cases", "8", "--shape", "20", "20", "12", "--alpha", "0.4"])
    out, err = capsys.readouterr()
    assert code == 0, err
    root = tmp_path / "clskern-demo"
    assert str(root) in out.splitlines()[0] and out.rstrip().endswith(f"files kept in {root})")
    assert (root / "report" / "report.md").is_file() and (root / "calibration.json").is_file()
    assert os.listdir(tmp) == []
    assert main(["demo", "--cases", "8", "--shape", "20", "20", "12", "--alpha", "0.4", "-q", "--overwrite"]) == 0
    assert os.listdir(tmp) == []
