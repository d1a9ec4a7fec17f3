"""``clskern evaluate``: the paper's validation protocol on a statistics store."""

import argparse

from .._lesions import DEFAULT_CONNECTIVITY
from ..evaluation import cli as evaluation_cli
from ..evaluation.methods import DEFAULT_METHODS, check_methods
from ..evaluation.report import REPORT_FILES
from ..store import StatsStore
from ._common import (DEFAULT_ALPHA, NO_PASS, add_alpha, add_delta, add_empty, add_epsilon, add_output, add_overlap,
                      add_overwrite, add_quiet, add_seed, add_store, open_fraction, positive_int)
from ._output import REPORT, guard_outputs
from . import _sets

DEFAULT_DELTA = 0.1


def methods_list(text):
    """--methods: comma-separated method names, checked by the evaluation's own rule."""
    try:
        return check_methods(m.strip() for m in text.split(",") if m.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_parser(subparsers):
    """``clskern evaluate``: its options checked, as every subcommand's, by the shared types of ``_common``."""
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
    add_store(p, help="statistics store to evaluate")
    add_epsilon(p, help="tolerated FNR per case, in [0, 1)")
    add_alpha(p, f"miscoverage of cls/cls-pac/authors (default {DEFAULT_ALPHA}, as clskern calibrate)")
    add_delta(p, default=DEFAULT_DELTA,
              help=f"cls-pac and rcps: the guarantee holds with probability 1 - D over the calibration draw "
                   f"(default {DEFAULT_DELTA})")
    p.add_argument("--splits", type=positive_int, default=100, metavar="N",
                   help="random splits (default 100, as the paper)")
    p.add_argument("--cal-fraction", type=open_fraction, default=0.5, metavar="F",
                   help="share of cases that calibrates, in (0, 1) (default 0.5)")
    add_seed(p, help="seed of the splits (default 0)")
    p.add_argument("--methods", type=methods_list, default=DEFAULT_METHODS, metavar="M,...",
                   help="comma-separated: cls, cls-pac, crc, rcps, authors, fixed-T (default: %s)"
                        % ",".join(DEFAULT_METHODS))
    p.add_argument("--level", choices=("voxel", "lesion"), default="voxel",
                   help="lesion: calibrate every method on the lesion-level FNR (the share of a case's lesions "
                        "missed) and report lesion-level ECR; needs statistics with lesions (clskern stats "
                        f"--connectivity, default {DEFAULT_CONNECTIVITY}). L-FNR and L-ECR are reported at either "
                        "level when the statistics have lesions")
    add_overlap(p, help="a lesion is detected when at least max(1, ceil(TAU x its size)) of its voxels score >= "
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
    add_empty(p, NO_PASS, help="cases without lesion voxels: skip them (left out of calibration and test: no FNR) "
                               "or stop with an error (default skip)")
    add_output(p, dest="outdir", aliases=("--outdir",), metavar="OUTDIR", help="output directory")
    add_overwrite(p, help="replace an existing report in OUTDIR")
    add_quiet(p)
    return p


def load_stats(args):
    """Case id -> VolumeStats from ``--store`` (whole statistics: FPR, Dice and PC need the histograms)."""
    if args.store is None:
        return evaluation_cli.load_stats_from_files(args)
    if args.stats:
        raise ValueError("give either --store or VolumeStats files, not both")
    with StatsStore(args.store, create=False) as store:
        stats = store.load()
    if not stats:
        stats = _class_stats(args.store)
    if not stats:
        raise ValueError(f"{args.store}: the store holds no cases")
    return stats


def _class_stats(path):
    """``{case: {class: VolumeStats}}`` of a store of several classes (clskern stats --classes), else {}."""
    from ..class_store import ClassStatsStore
    from ..store import StoreError

    try:
        with ClassStatsStore(path, create=False) as store:
            return store.load()
    except StoreError:
        return {}


def run(args):
    guard_outputs(args, "outdir", REPORT, names=REPORT_FILES)  # before the evaluation runs
    return evaluation_cli.run(args, load_stats, _sets.class_epsilon)  # calibrate's parser of --class-epsilon
