"""The ``clskern`` command: subcommands stats, calibrate, apply, evaluate, demo, warmup.

Each subcommand is a module with ``add_parser(subparsers)`` and
``run(args) -> exit code``; ``SUBCOMMANDS`` lists them in help order, so a new
one (say ``evaluate``) is one line here. Every bad input ends the run with
exit status 1 and one line ``clskern CMD: error: ...`` on stderr (no
traceback; ``--debug`` shows it); usage errors exit 2, Ctrl-C 130. An error
clskern did not foresee is still one line, marked as an internal error.
"""

import argparse
import contextlib
import importlib
import logging
import sqlite3
import sys
import traceback
import warnings

from .._threads import threads
from .._version import __version__
from ._common import cpu_threads

SUBCOMMANDS = {
    "stats": "clskern.cli.stats",
    "calibrate": "clskern.cli.calibrate",
    "apply": "clskern.cli.apply",
    "evaluate": "clskern.cli.evaluate",
    "demo": "clskern.cli.demo",
    "warmup": "clskern.cli.warmup",
}


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors in one line."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(commands=None):
    """The ``clskern`` parser; ``commands`` (names) limits which subcommands' modules are imported.

    The others get a bare parser, so a resumed ``clskern stats`` does not load
    the evaluation's plotting or the calibration's tables to read its options.
    """
    parser = _Parser(
        prog="clskern",
        description="Conformal lesion segmentation: exact per-case statistics, calibrated thresholds, masks.",
        epilog="Start with: clskern demo",
    )
    parser.add_argument("--version", action="version", version=f"clskern {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    modules = {}
    for name, module_name in SUBCOMMANDS.items():
        if commands is not None and name not in commands:
            sub.add_parser(name)
            continue
        module = importlib.import_module(module_name)
        command = module.add_parser(sub)
        command.set_defaults(_module=module)
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help="show the traceback of an error")
        modules[name] = module
    return parser


# Failures of reading or validating an input: reported as the input's fault.
# MemoryError, OverflowError and RecursionError come from sizes and nesting
# that a file declares; UnicodeError (a ValueError) from names and text.
INPUT_ERRORS = (ValueError, OSError, sqlite3.Error, MemoryError, OverflowError, RecursionError)


def _describe(exc):
    """One line for an error: its message, with the file for OSErrors, never empty."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}"
    elif isinstance(exc, MemoryError):
        text = f"out of memory{': ' + str(exc) if str(exc) else ''}"
    elif isinstance(exc, RecursionError):
        text = f"input nested too deeply ({exc})"
    else:
        text = str(exc) or type(exc).__name__
        if not isinstance(exc, INPUT_ERRORS):
            text = f"internal error ({type(exc).__name__}: {text}); run with --debug for the traceback"
    return " ".join(text.split())


# What a Ctrl-C leaves, by subcommand (the others write their one output atomically: nothing).
INTERRUPTED = {
    "stats": "the cases stored so far are kept: run it again to resume",
    "apply": "no mask written: masks are moved into place only when every case is done",
    "demo": "the demo's folder is incomplete: run it again with --overwrite",
}


def _say(line):
    """Print one line on stderr, whatever bytes a file name holds."""
    stream = sys.stderr
    encoding = getattr(stream, "encoding", None) or "utf-8"
    stream.write(line.encode(encoding, "backslashreplace").decode(encoding) + "\n")
    stream.flush()


def _quiet_libraries():
    """No third-party log lines: clskern reports every problem itself, in one line.

    Returns a callable that restores the loggers (``main`` also runs in-process).
    """
    logger = logging.getLogger("nibabel")
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    return lambda: logger.setLevel(level)


@contextlib.contextmanager
def _warnings_as_lines(prog):
    """clskern's own warnings (a kernel cache that cannot be written, say) as one ``prog: warning:`` line each."""
    from ..errors import KernelCacheWarning

    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, KernelCacheWarning):
            _say(f"{prog}: warning: {message}")
        else:
            shown(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = shown


def main(argv=None):
    """Run the command line; returns the exit status."""
    words = sys.argv[1:] if argv is None else list(argv)
    named = [w for w in words if w in SUBCOMMANDS][:1]
    first = next((w for w in words if not w.startswith("-")), None)
    parser = build_parser(named if named and first == named[0] else None)
    args = parser.parse_args(words)
    prog = f"clskern {args.command}"
    try:
        n_threads = cpu_threads(args)
    except argparse.ArgumentTypeError as exc:
        parser.exit(2, f"{prog}: error: {exc} (see {prog} --help)\n")
    restore = (lambda: None) if args.debug else _quiet_libraries()
    try:
        with contextlib.nullcontext() if n_threads is None else threads(n_threads), _warnings_as_lines(prog):
            return int(args._module.run(args) or 0)
    except KeyboardInterrupt:
        _say(f"\n{prog}: interrupted ({INTERRUPTED.get(args.command, 'nothing written')})")
        return 130
    except Exception as exc:  # noqa: BLE001 - every failure ends in one line
        if args.debug:
            traceback.print_exc()
        _say(f"{prog}: error: {_describe(exc)}")
        return 1
    finally:
        restore()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
