"""One command line: every subcommand spells the shared options alike, with the same defaults."""

import argparse
import os

from clskern.cli import calibrate as calibrate_cli
from clskern.cli._common import DEFAULT_ALPHA, EMPTY_DEFAULT, NO_PASS, QUIET_HELP
from clskern.cli.main import SUBCOMMANDS, build_parser, main
from clskern._threads import usable_cores
from clskern._validate import EMPTY_POLICIES

CORES = usable_cores()

# option -> the subcommands that must have it (evaluate reads a store only: no -j, nothing to read in parallel)
SHARED = {
    "--output": set(SUBCOMMANDS) - {"warmup"},  # warmup writes into Numba's cache: --cache-dir
    "--quiet": set(SUBCOMMANDS),
    "--jobs": {"stats", "calibrate", "apply", "demo"},
    "--threads": {"stats", "calibrate", "apply", "demo"},
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
            if option == "--threads":  # unset: the cores shared among the --jobs readers (cpu_threads)
                assert action.default is None
            if option == "--quiet":
                assert action.default is False
            if option == "--empty":  # evaluate and demo: a lesion-free case has no FNR to pass
                policies = NO_PASS if command in ("evaluate", "demo") else EMPTY_POLICIES
                assert tuple(action.choices) == tuple(policies) and action.default == EMPTY_DEFAULT, command
                assert ("pass" in action.help) == ("pass" in policies), (command, action.help)
            if option == "--quiet":
                assert action.help == QUIET_HELP, command
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


# one placeholder per option, whichever subcommand shows it
METAVARS = {"--epsilon": "E", "--alpha": "A", "--delta": "D", "--store": "STORE", "--seed": "S", "--jobs": "N",
            "--threads": "T",
            "--overlap": "TAU", "--splits": "N", "--cal-fraction": "F"}


def test_one_placeholder_per_option():
    seen = {}
    for command, actions in _actions().items():
        for option, metavar in METAVARS.items():
            action = actions.get(option)
            if action is None or (command == "stats" and option == "--store"):  # stats: the old -o spelling
                continue
            seen.setdefault(option, set()).add(command)
            assert action.metavar == metavar, (command, option, action.metavar)
    assert seen["--epsilon"] == seen["--alpha"] == {"calibrate", "evaluate", "demo"}
    assert seen["--seed"] == {"evaluate", "demo"} and seen["--store"] == {"calibrate", "evaluate"}
    demo_help = _subparser("demo").format_help()
    assert "default 64 64 48" in demo_help and "[64, 64, 48]" not in demo_help


def _subparser(name):
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


BAD_VALUES = [  # (subcommand arguments, the option, the message)
    (["calibrate", "--store", "s", "--epsilon", "0.1", "-o", "c.json", "--alpha", "0"], "--alpha", "(0, 1), got 0"),
    (["calibrate", "--store", "s", "--epsilon", "0.1", "-o", "c.json", "--alpha", "1.5"], "--alpha", "(0, 1)"),
    (["calibrate", "--store", "s", "--epsilon", "0.1", "-o", "c.json", "--delta", "0"], "--delta", "(0, 1), got 0"),
    (["calibrate", "--store", "s", "--epsilon", "0.1", "-o", "c.json", "--delta", "2"], "--delta", "(0, 1), got 2"),
    (["calibrate", "--store", "s", "--epsilon", "1", "-o", "c.json"], "--epsilon", "[0, 1), got 1"),
    (["calibrate", "--store", "s", "--epsilon", "0.1", "-o", "c.json", "--overlap", "1.5"], "--overlap", "[0, 1]"),
    (["evaluate", "--store", "s", "-o", "r", "--epsilon", "-0.1"], "--epsilon", "[0, 1), got -0.1"),
    (["evaluate", "--store", "s", "-o", "r", "--epsilon", "0.1", "--alpha", "0"], "--alpha", "(0, 1), got 0"),
    (["evaluate", "--store", "s", "-o", "r", "--epsilon", "0.1", "--delta", "1"], "--delta", "(0, 1), got 1"),
    (["evaluate", "--store", "s", "-o", "r", "--epsilon", "0.1", "--overlap", "2"], "--overlap", "[0, 1]"),
    (["evaluate", "--store", "s", "-o", "r", "--epsilon", "0.1", "--splits", "0"], "--splits", "at least 1"),
    (["evaluate", "--store", "s", "-o", "r", "--epsilon", "0.1", "--cal-fraction", "1"], "--cal-fraction", "(0, 1)"),
    (["evaluate", "--store", "s", "-o", "r", "--epsilon", "0.1", "--seed", "-1"], "--seed", "0 or more, got -1"),
    (["evaluate", "--store", "s", "-o", "r", "--epsilon", "0.1", "--methods", "nope"], "--methods", "nope"),
    (["evaluate", "--store", "s", "-o", "r", "--epsilon", "0.1", "--empty", "pass"], "--empty", "'pass'"),
    (["demo", "--seed", "-1"], "--seed", "0 or more, got -1"),
    (["demo", "--alpha", "0"], "--alpha", "(0, 1), got 0"),
    (["demo", "--epsilon", "1.5"], "--epsilon", "[0, 1), got 1.5"),
    (["stats", "--scores", "a", "--labels", "b", "-o", "s", "--threads", "0"], "--threads", "at least 1, got 0"),
    (["apply", "--calibration", "c", "--scores", "a", "-o", "m", "--threads", "-2"], "--threads", "at least 1, got -2"),
    (["stats", "--scores", "a", "--labels", "b", "-o", "s", "--threads", str(CORES + 1)], "--threads",
     f"must be at most {CORES} here (the cores this process may use)"),
    (["demo", "--threads", "x"], "--threads", "expected a whole number, got 'x'"),
]
# --jobs x --threads beyond the cores: named with both numbers
BAD_VALUES.append((["calibrate", "--scores", "a", "--labels", "b", "--epsilon", "0.1", "-o", "c.json",
                    "-j", str(CORES), "--threads", "2"], "--threads",
                   f"--jobs {CORES} x --threads 2 must be at most {CORES} here"))


def test_a_bad_value_is_one_usage_line_naming_its_option(tmp_path, capsys, monkeypatch):
    """Each value is checked by the parser, the same way in every subcommand, before anything is read."""
    import pytest

    monkeypatch.chdir(tmp_path)
    for argv, option, says in BAD_VALUES:
        with pytest.raises(SystemExit) as exc:
            main(argv)
        err = capsys.readouterr().err
        assert exc.value.code == 2, argv
        assert len(err.strip().splitlines()) == 1 and f"argument {option}: " in err and says in err, (argv, err)
    assert os.listdir(tmp_path) == []


def test_evaluate_refuses_an_existing_report_as_every_subcommand_does(tmp_path, capsys):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "summary.json").write_text('{"clskern_version": "0", "inputs": {}, "methods": {}}')  # clskern's
    code = main(["evaluate", "--store", str(tmp_path / "missing.sqlite"), "--epsilon", "0.2", "-o", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 1 and err.strip() == (f"clskern evaluate: error: {tmp_path / 'r' / 'summary.json'}: output exists; "
                                         "pass --overwrite to replace it")
