"""``clskern stats``: one pass per case, statistics kept in a store."""

import os
import sys
import time

from ..store import StatsStore
from ._cases import LabelNotFoundError, gather, pairs_of
from ._common import add_empty, add_output, add_overwrite, add_quiet, add_reading
from ._output import STORE, guard_outputs
from . import _nnunet, _sets

HELP = "read each case once and keep its statistics in a store (resumable)"


def add_parser(subparsers):
    p = subparsers.add_parser(
        "stats", help=HELP, description=(
            "Pass once over every case (scores paired with labels by case id) and keep its "
            "statistics in STORE, a SQLite file. Re-running skips cases already stored with the "
            "same input files, so an interrupted run resumes; every case is written atomically."
        ),
    )
    add_reading(p, required=False)  # or --nnunet-results
    _nnunet.add_results_options(p)
    add_output(p, dest="store", aliases=("--store",), metavar="STORE", help="statistics store to create or resume")
    add_empty(p)
    _sets.add_stats_options(p)
    p.add_argument("--keep-going", action="store_true",
                   help="report a case that fails and go on (exit 1 at the end)")
    p.add_argument("--scheduler", metavar="ADDRESS", default=None,
                   help="run the per-case pass on a Dask cluster: a scheduler address (tcp://HOST:8786) or "
                   "'local' (needs dask[distributed]); the store is written here")
    add_overwrite(p, help="start STORE afresh (default: resume it)")
    add_quiet(p)
    return p


STORE_FILES = ("", "-wal", "-shm", "-journal")  # SQLite keeps its journal beside the store


def _remove_store(path):
    for suffix in STORE_FILES:
        if os.path.lexists(path + suffix):
            os.unlink(path + suffix)


def run(args):
    _nnunet.resolve(args)
    guard_outputs(args, "store", STORE, resume=True)  # --overwrite removes only a store clskern recognises
    if _sets.wants_classes(args):  # several classes: statistics per (case, class)
        return _sets.run_stats(args)
    paired = pairs_of(args)  # bad folders fail before an old store is removed
    if args.overwrite:
        _remove_store(args.store)
    created = not os.path.lexists(args.store)
    started = time.perf_counter()
    try:
        with StatsStore(args.store) as store:
            result = gather(args, store=store, what="stats", keep_stats=False, paired=paired)
            n_stored = len(store)
    except LabelNotFoundError as exc:  # every case read for a label none holds: a store of nothing to resume
        if created:
            _remove_store(args.store)
            raise LabelNotFoundError(f"{exc}; {args.store} not written") from None
        raise
    elapsed = time.perf_counter() - started
    if not args.quiet:
        mb = result.nbytes / 1e6
        rate = f", {mb:.0f} MB in {elapsed:.1f} s ({mb / max(elapsed, 1e-9):.0f} MB/s)"
        print(
            f"stats: {n_stored} case(s) in {args.store}: {result.read} read, {result.reused} already stored"
            + (f", {len(result.empty)} without lesion voxels" if result.empty else "")
            + (f", {len(result.failed)} failed" if result.failed else "")
            + (rate if result.read else "")
        )
    if result.failed:
        print(f"clskern stats: error: {len(result.failed)} case(s) failed, first {result.failed[0][0]!r}: "
              f"{result.failed[0][1]}", file=sys.stderr)
        return 1
    return 0
