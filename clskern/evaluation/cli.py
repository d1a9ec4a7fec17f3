"""``clskern evaluate``'s runner, for the CLI to mount (its parser is ``clskern.cli.evaluate``).

The CLI owns reading statistics (from a store or files); it passes a
``load_stats(args)`` callable returning a mapping case id -> VolumeStats
(or case id -> {class: VolumeStats} for a store of several classes: then
each class is evaluated, ``evaluate_classes``). ``--groups FILE.csv``
evaluates each group on its own cases (``evaluate_groups``). The CLI
passes its parser of ``--class-epsilon`` too, the one ``clskern calibrate``
uses, so both commands take and refuse the same tolerances.
``load_stats_files`` reads ``VolumeStats.to_bytes`` files for callers
without a store.
"""

import os

from collections.abc import Mapping

from ..errors import InputError
from ..io.groups import read_groups
from ..volume import VolumeStats
from .protocol import evaluate
from .report import REPORT, write_report
from .sets import evaluate_classes, evaluate_groups


def run(args, load_stats, class_epsilon=None):
    """Run ``clskern evaluate`` with parsed ``args``; returns the exit status (0).

    ``load_stats(args)`` must return a mapping case id -> VolumeStats.
    ``class_epsilon(epsilon, text, names)`` reads ``--class-epsilon`` into
    ``{class: epsilon}`` (the command line's parser, ``clskern.cli._sets``,
    which ``clskern calibrate`` uses too); needed only with that option. Errors
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
        if args.class_epsilon is not None and class_epsilon is None:
            raise InputError("--class-epsilon needs the parser of the clskern command line")
        epsilon = args.epsilon if args.class_epsilon is None else class_epsilon(args.epsilon, args.class_epsilon, names)
        evaluation = evaluate_classes(stats, epsilon=epsilon,
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
