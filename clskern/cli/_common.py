"""Options shared by several subcommands, and their checks.

Every subcommand spells a shared option the same way, with the same short
form and default (tests/test_cli_options.py checks it on the built parser):

- ``-o/--output``: what the command writes (a store, a JSON file, a folder);
- ``-q/--quiet``: nothing but errors (and calibrate's degenerate-cut warnings);
- ``-j/--jobs N``: cases read in parallel, and ``--threads T``: threads for each case's kernels (commands that
  read volumes; ``jobs x threads`` at most the usable cores, ``cpu_threads``);
- ``--empty skip|pass|error``: cases without lesion voxels (default skip; evaluate and demo: skip|error);
- ``--alpha A``: miscoverage, default ``DEFAULT_ALPHA`` (calibrate, evaluate, demo);
- ``--epsilon E``, ``--delta D``, ``--seed S``, ``--store STORE``: one placeholder and one check each.

The value checks are argparse types, so a bad value is one usage line naming
the option (``argument --alpha: must lie in (0, 1), got 0``), exit status 2,
before the command reads or writes anything. Their ranges are the library's:
alpha, delta and the calibration fraction in (0, 1), epsilon in [0, 1), the
lesion overlap in [0, 1], splits and cases >= 1, seeds >= 0.
"""

import argparse
import math

from .._threads import default_threads, usable_cores
from .._validate import EMPTY_POLICIES
from ..io.cases import AFFINE_ATOL


def _number(text, convert, what):
    try:
        return convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None


def _require(value, holds, rule):
    if not holds:
        raise argparse.ArgumentTypeError(rule)
    return value


def positive_int(text):
    value = _number(text, int, "a whole number")
    return _require(value, value >= 1, f"must be at least 1, got {value}")


def jobs_count(text):
    """--jobs: at least 1, at most one reader per usable core (more only queue up and hold memory)."""
    value = positive_int(text)
    cores = usable_cores()
    return _require(value, value <= cores,
                    f"must be at most {cores} here (one reader per core; more would only hold more volumes in memory)")


def threads_count(text):
    """--threads: at least 1, at most the cores this process may use (affinity and cgroup quota)."""
    value = positive_int(text)
    cores = usable_cores()
    return _require(value, value <= cores, f"must be at most {cores} here (the cores this process may use)")


def cpu_threads(args):
    """The kernel threads of a run: ``--threads``, else the cores (or ``NUMBA_NUM_THREADS``/``OMP_NUM_THREADS``)
    shared among the ``--jobs`` readers; None for a command without those options.

    Raises ``argparse.ArgumentTypeError`` when ``jobs x threads`` exceeds the usable cores.
    """
    if not hasattr(args, "threads"):
        return None
    jobs = getattr(args, "jobs", 1)
    if args.threads is None:
        return max(1, default_threads() // jobs)
    cores = usable_cores()
    if jobs * args.threads > cores:
        raise argparse.ArgumentTypeError(
            f"argument --threads: --jobs {jobs} x --threads {args.threads} must be at most {cores} here "
            "(the cores this process may use)")
    return args.threads


def non_negative_int(text):
    value = _number(text, int, "a whole number")
    return _require(value, value >= 0, f"must be 0 or more, got {value}")


def channel_index(text):
    value = _number(text, int, "a channel number")
    return _require(value, value >= 0, f"must be 0 or more, got {value}")


def tolerance(text):
    value = _number(text, float, "a number")
    return _require(value, math.isfinite(value) and value >= 0, f"must be a finite number >= 0, got {text!r}")


def fraction(text):
    """[0, 1): epsilon (a tolerated FNR of 0 is a valid, if demanding, request)."""
    value = _number(text, float, "a number")
    return _require(value, 0 <= value < 1, f"must lie in [0, 1), got {value:g}")


def open_fraction(text):
    """(0, 1): alpha, delta, the calibration fraction (0 asks for infinitely many cases, 1 for nothing)."""
    value = _number(text, float, "a number")
    return _require(value, 0 < value < 1, f"must lie in (0, 1), got {value:g}")


NO_LESIONS = "none"


def connectivity_choice(text):
    """--connectivity: 6, 18, 26, or 'none' (voxel statistics only)."""
    if text.strip().lower() == NO_LESIONS:
        return NO_LESIONS
    value = _number(text, int, "6, 18, 26 or none")
    return _require(value, value in (6, 18, 26), f"must be 6, 18, 26 or none, got {text!r}")


def connectivity_of(args):
    """The connectivity a command reads cases with: --connectivity, 26 when not given, None for 'none'."""
    value = getattr(args, "connectivity", None)
    if value is None:
        return 26
    return None if value == NO_LESIONS else value


def unit_interval(text):
    value = _number(text, float, "a number")
    return _require(value, 0 <= value <= 1, f"must lie in [0, 1], got {text!r}")


def label_value(text):
    value = _number(text, float, "a label value")
    _require(value, value != 0, "0 is the background in a label map: choose the lesion's label value")
    return int(value) if value.is_integer() else value


DEFAULT_ALPHA = 0.1  # miscoverage when --alpha is not given: calibrate, evaluate and demo alike
EMPTY_DEFAULT = "skip"


def add_output(parser, *, metavar, help, dest="output", aliases=(), required=True, default=None):
    """``-o/--output``; ``aliases`` (older spellings: ``--store``, ``--outdir``, ``--dir``) still parse
    but are left out of --help, so every subcommand shows the one name."""
    action = parser.add_argument("-o", "--output", *aliases, dest=dest, metavar=metavar, help=help,
                                 required=required, default=default)
    action.option_strings = ["-o", "--output"]  # the parser still maps the aliases to this action
    return action


def add_alpha(parser, help, default=DEFAULT_ALPHA):
    parser.add_argument("--alpha", type=open_fraction, default=default, metavar="A", help=help)


def add_epsilon(parser, help, default=None):
    """``--epsilon E`` in [0, 1); required when no ``default``."""
    parser.add_argument("--epsilon", type=fraction, required=default is None, default=default, metavar="E",
                        help=help)


def add_delta(parser, help, default):
    parser.add_argument("--delta", type=open_fraction, default=default, metavar="D", help=help)


def add_seed(parser, help):
    parser.add_argument("--seed", type=non_negative_int, default=0, metavar="S", help=help)


def add_overlap(parser, help):
    parser.add_argument("--overlap", type=unit_interval, default=0.0, metavar="TAU", help=help)


def add_store(parser, help, required=False):
    return parser.add_argument("--store", metavar="STORE", required=required, help=help)


QUIET_HELP = "print nothing but errors and warnings (no progress, no summary)"


def add_quiet(parser, help=QUIET_HELP):
    """``-q/--quiet``, worded alike everywhere (``help`` only for callers outside the CLI)."""
    parser.add_argument("-q", "--quiet", action="store_true", help=help)


def add_overwrite(parser, help="replace existing outputs"):
    parser.add_argument("--overwrite", action="store_true", help=help)


def add_jobs(parser):
    """``-j/--jobs`` (reader threads) and ``--threads`` (kernel threads): the CPU a run may take."""
    parser.add_argument(
        "-j", "--jobs", type=jobs_count, default=1, metavar="N",
        help="cases read in parallel, at most one per core (at most N+1 volumes in memory, fewer when "
             "they would not fit in the memory available; default 1: read the next case while the "
             "current one is processed)",
    )
    parser.add_argument(
        "--threads", type=threads_count, default=None, metavar="T",
        help="threads for each case's kernels, at most the usable cores divided by --jobs (default: that "
             "share, or NUMBA_NUM_THREADS / OMP_NUM_THREADS when set; a small volume takes fewer)",
    )


def add_channel(parser):
    parser.add_argument(
        "--channel", type=channel_index, default=None, metavar="C",
        help="class channel of multi-channel scores (nnU-Net .npz, 4-D NIfTI); default 1 "
             "(0 for single-channel files)",
    )


def add_reading(parser, required=True):
    """--scores/--labels folders and the options that decide how cases are read.

    ``required=False``: the command checks them itself (``clskern stats --nnunet-results``)."""
    parser.add_argument("--scores", metavar="DIR", required=required,
                        help="folder of score files (.nii.gz, .nii, nnU-Net .npz, .npy)")
    parser.add_argument("--labels", metavar="DIR", required=required,
                        help="folder of label NIfTI files, paired with the scores by case id")
    add_case_options(parser)


def add_case_options(parser):
    """How cases are read: lesion label, channel, unmatched files, reader threads."""
    parser.add_argument("--label", type=label_value, default=None, metavar="V",
                        help="lesion label value in multi-label masks (default: every label > 0)")
    add_channel(parser)
    parser.add_argument("--connectivity", type=connectivity_choice, default=None, metavar="{6,18,26,none}",
                        help="lesions are the connected components of the lesion mask with face (6), face+edge (18) "
                             "or face+edge+corner (26) neighbours; their scores are kept for lesion level "
                             "(default 26; none: voxel statistics only)")
    parser.add_argument("--allow-unmatched", action="store_true",
                        help="leave out score files without a label (default: an error listing them); labels "
                             "without scores are always left out (a fold holds part of labelsTr)")
    parser.add_argument("--affine-tolerance", type=tolerance, default=AFFINE_ATOL, metavar="MM",
                        help=f"largest difference allowed between the scores' and labels' NIfTI affines "
                             f"(default {AFFINE_ATOL:g})")
    add_jobs(parser)


_EMPTY_WORDS = {"skip": "skip them", "pass": "let them pass any threshold", "error": "stop with an error"}
NO_PASS = ("skip", "error")  # evaluate and demo: a lesion-free test case has no FNR to count as met


def add_empty(parser, policies=EMPTY_POLICIES, help=None):
    """``--empty``, offering ``policies`` only (``NO_PASS`` where a lesion-free case cannot pass), its help
    naming exactly those."""
    if help is None:
        words = [_EMPTY_WORDS[p] for p in policies]
        listed = ", ".join(words[:-1]) + (", or " if len(words) > 2 else " or ") + words[-1]
        help = f"cases without lesion voxels: {listed} (default {EMPTY_DEFAULT})"
    parser.add_argument("--empty", choices=tuple(policies), default=EMPTY_DEFAULT, help=help)
