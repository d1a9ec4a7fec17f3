"""The ``clskern`` command: subcommands stats, calibrate, apply, evaluate, demo.

Each subcommand is a module with ``add_parser(subparsers)`` and
``run(args) -> exit code``; ``SUBCOMMANDS`` lists them in help order, so a new
one (say ``evaluate``) is one line here. Every bad input ends the run with
exit status 1 and one line ``clskern CMD: error: ...`` on stderr (no
traceback); usage errors exit 2, Ctrl-C 130.
"""

import argparse
import importlib
import sqlite3
import sys

from .._version import __version__

SUBCOMMANDS = {
    "stats": "clskern.cli.stats",
    "calibrate": "clskern.cli.calibrate",
    "apply": "clskern.cli.apply",
    "evaluate": "clskern.cli.evaluate",
    "demo": "clskern.cli.demo",
}


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors in one line."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser():
    parser = _Parser(
        prog="clskern",
        description="Conformal lesion segmentation: exact per-case statistics, calibrated thresholds, masks.",
        epilog="Start with: clskern demo",
    )
    parser.add_argument("--version", action="version", version=f"clskern {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    modules = {}
    for name, module_name in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        module.add_parser(sub).set_defaults(_module=module)
        modules[name] = module
    return parser


def _describe(exc):
    """One line for an error: its message, with the file for OSErrors."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def main(argv=None):
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    prog = f"clskern {args.command}"
    try:
        return int(args._module.run(args) or 0)
    except KeyboardInterrupt:
        print(f"\n{prog}: interrupted (finished work is kept; run it again to resume)", file=sys.stderr)
        return 130
    except (ValueError, OSError, sqlite3.Error) as exc:
        print(f"{prog}: error: {_describe(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
