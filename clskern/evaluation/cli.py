"""``clskern evaluate``: the argument parser and the runner, for the CLI to mount.

The CLI owns reading statistics (from a store or files); it passes a
``load_stats(args)`` callable returning a mapping case id -> VolumeStats
(or case id -> {class: VolumeStats} for a store of several classes: then
each class is evaluated, ``evaluate_classes``). ``--groups FILE.csv``
evaluates each group on its own cases (``evaluate_groups``).
``load_stats_files`` reads ``VolumeStats.to_bytes`` files for callers
without a store.
"""

import os

from collections.abc import Mapping

from ..cli._common import DEFAULT_ALPHA, add_alpha, add_empty, add_output, add_quiet
from ..errors import InputError
from ..io.groups import read_groups
from ..volume import VolumeStats
from .methods import DEFAULT_METHODS, check_methods
from .protocol import evaluate
from .report import REPORT, write_report
from .sets import evaluate_classes, evaluate_groups


def _methods(text):
    try:
        return check_methods(m.strip() for m in text.split(",") if m.strip())
    except ValueError as exc:
        import argparse

        raise argparse.ArgumentTypeError(str(exc)) from None


def add_parser(subparsers):
    """Add the ``evaluate`` sub-command to an argparse ``subparsers`` object; returns it."""
    p = subparsers.add_parser(
        "evaluate",
        help="run the paper's validation protocol (random calibration/test splits) and write a report",
        description=(
            "Repeat random calibration/test splits of the cases; per split and method calibrate on one part and "
            "measure ECR, V-FNR, P-FNR, V-FPR, PC and Dice on the other. Writes summary.json, report.md and "
            "PNG plots (with matplotlib) to OUTDIR."
        ),
    )
    p.add_argument("stats", nargs="*", metavar="STATS", help="VolumeStats files (alternative to --store)")
    p.add_argument("--store", metavar="PATH", help="statistics store to evaluate")
    p.add_argument("--epsilon", type=float, required=True, help="tolerated FNR per case, in [0, 1)")
    add_alpha(p, f"miscoverage of cls/cls-pac/authors (default {DEFAULT_ALPHA}, as clskern calibrate)")
    p.add_argument("--delta", type=float, default=0.1, help="confidence parameter of cls-pac and rcps (default 0.1)")
    p.add_argument("--splits", type=int, default=100, help="random splits (default 100, as the paper)")
    p.add_argument("--cal-fraction", type=float, default=0.5, help="share of cases that calibrates (default 0.5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the splits (default 0)")
    p.add_argument(
        "--methods", type=_methods, default=DEFAULT_METHODS,
        help="comma-separated: cls, cls-pac, crc, rcps, authors, fixed-T (default: %s)" % ",".join(DEFAULT_METHODS),
    )
    p.add_argument("--level", choices=("voxel", "lesion"), default="voxel",
                   help="lesion: calibrate every method on the lesion-level FNR (the share of a case's lesions "
                        "missed) and report lesion-level ECR; needs statistics with lesions (clskern stats "
                        "--connectivity, default 26). L-FNR and L-ECR are reported at either level when the "
                        "statistics have lesions")
    p.add_argument("--overlap", type=float, default=0.0, metavar="TAU",
                   help="a lesion is detected when at least max(1, ceil(TAU x its size)) of its voxels score >= "
                        "the threshold (default 0: any voxel)")
    p.add_argument("--groups", metavar="FILE.csv", default=None,
                   help="CSV 'case,group': evaluate each group on its own cases (Mondrian calibration) and "
                        "report each group and the pool")
    p.add_argument("--family", choices=("none", "bonferroni"), default="none",
                   help="a store of several classes: 'none' (each class at alpha) or 'bonferroni' (alpha / "
                        "classes each; the report gives the share of cases where every class meets epsilon)")
    p.add_argument("--class-epsilon", metavar="NAME=E,...", default=None,
                   help="a store of several classes: a tolerance per class (the others take --epsilon)")
    p.add_argument("--no-sweeps", action="store_true", help="skip the alpha / calibration-fraction / epsilon sweeps")
    p.add_argument("--no-plots", action="store_true", help="write summary.json and report.md only")
    add_empty(p, help="cases without lesion voxels: skip them (left out of calibration and test: no FNR), or stop "
                      "with an error; pass is refused here (default skip)")
    add_output(p, dest="outdir", aliases=("--outdir",), metavar="OUTDIR", help="output directory")
    p.add_argument("--overwrite", action="store_true", help="replace an existing report in OUTDIR")
    add_quiet(p, help="print nothing but errors")
    return p


def run(args, load_stats):
    """Run ``clskern evaluate`` with parsed ``args``; returns the exit status (0).

    ``load_stats(args)`` must return a mapping case id -> VolumeStats. Errors
    (bad parameters, too few cases, an existing report) propagate as
    ``ValueError`` / ``OSError`` subclasses for the CLI to report.
    """
    stats = load_stats(args)
    check_empty(stats, getattr(args, "empty", "skip"))
    request = dict(alpha=args.alpha, delta=args.delta, splits=args.splits, cal_fraction=args.cal_fraction,
                   seed=args.seed, methods=args.methods, level=args.level, overlap=args.overlap)
    classes = bool(stats) and isinstance(next(iter(stats.values())), Mapping)
    if not classes and (args.family != "none" or args.class_epsilon is not None):
        raise InputError(f"{'--family' if args.family != 'none' else '--class-epsilon'} needs statistics of "
                         "several classes (a store made by clskern stats --classes or --dataset-json)")
    if classes:
        if args.groups is not None:
            raise InputError("--groups with several classes is not supported: evaluate each class by group "
                             "separately")
        names = list(next(iter(stats.values())))
        evaluation = evaluate_classes(stats, epsilon=class_epsilon(args.epsilon, args.class_epsilon, names),
                                      family=args.family, **request)
        what = f"{len(names)} classes ({args.family})"
    elif args.groups is not None:
        evaluation = evaluate_groups(stats, read_groups(args.groups), epsilon=args.epsilon, **request)
        what = f"{len(evaluation.members)} groups"
    else:
        evaluation = evaluate(stats, epsilon=args.epsilon, sweeps=not args.no_sweeps, **request)
        what = None
    write_report(evaluation, args.outdir, overwrite=args.overwrite, plots=not args.no_plots)
    if not getattr(args, "quiet", False):
        per = f" ({what}, each on its own; no sweeps)" if what else ""
        print(f"evaluated {evaluation.n_cases} cases over {args.splits} splits{per} in {evaluation.seconds:.2f} s")
        print(f"report: {os.path.join(args.outdir, REPORT)}")
    return 0


def check_empty(stats, empty):
    """``--empty``: evaluate leaves lesion-free cases out (skip), or stops at the first (error).

    ``pass`` is refused: the protocol measures FNR per test case, undefined
    without lesion voxels, so it cannot count such a case as met.
    """
    if empty == "skip":
        return
    if empty == "pass":
        raise InputError("--empty pass is not available for evaluate: a case without lesion voxels has no FNR to "
                         "test; use --empty skip (the default) or error")
    for case, value in stats.items():
        members = value.items() if isinstance(value, Mapping) else [(None, value)]
        for name, one in members:
            if one.n_fg == 0:
                where = f" (class {name})" if name is not None else ""
                raise InputError(f"case {case!r}{where} has no lesion voxels (--empty error)")


def class_epsilon(epsilon, text, names):
    """``--class-epsilon NAME=E,...`` over ``--epsilon``: a number, or ``{class: epsilon}``."""
    if text is None:
        return epsilon
    out = {name: epsilon for name in names}
    for item in text.split(","):
        name, _, value = item.partition("=")
        name = name.strip()
        if name not in out:
            raise InputError(f"--class-epsilon: {name!r} is not a class ({', '.join(names)})")
        try:
            out[name] = float(value)
        except ValueError:
            raise InputError(f"--class-epsilon: {item!r} is not NAME=EPSILON") from None
    return out


def load_stats_from_files(args):
    """A ``load_stats`` for ``run`` that reads the positional STATS files (no store)."""
    if args.store is not None:
        raise InputError("--store needs the statistics-store loader of the clskern command line")
    if not args.stats:
        raise InputError("give VolumeStats files or --store PATH")
    return load_stats_files(args.stats)


def load_stats_files(paths):
    """Read ``VolumeStats.to_bytes`` files: dict case id -> VolumeStats (id: stored name or file stem)."""
    out = {}
    for path in paths:
        try:
            with open(path, "rb") as f:
                stats = VolumeStats.from_bytes(f.read())
        except InputError as exc:
            raise InputError(f"{path}: {exc}") from None
        name = stats.name if stats.name is not None else os.path.splitext(os.path.basename(path))[0]
        if name in out:
            raise InputError(f"{path}: case id {name!r} appears twice")
        out[name] = stats
    return out
