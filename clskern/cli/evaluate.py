"""``clskern evaluate``: the paper's validation protocol on a statistics store."""

import os

from ..evaluation import cli as evaluation_cli
from ..evaluation.report import REPORT_FILES
from ..store import StatsStore
from ._output import refuse_inputs_as_outputs


def add_parser(subparsers):
    return evaluation_cli.add_parser(subparsers)


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
    outputs = [args.outdir, *(os.path.join(args.outdir, name) for name in REPORT_FILES)]
    refuse_inputs_as_outputs(outputs, [args.store, *args.stats, args.groups])
    return evaluation_cli.run(args, load_stats)
