"""Running ``collect_stats`` with progress and a readable report: stats and calibrate."""

import sys

from ..io import collect_stats, pair_cases
from ._progress import Progress


def pairs_of(args):
    """``(pairs, unmatched)`` of the --scores and --labels folders."""
    return pair_cases(args.scores, args.labels, allow_unmatched=args.allow_unmatched)


def gather(args, *, store=None, what="stats", keep_stats=True, paired=None):
    """Pair the folders in ``args`` (unless ``paired`` is given) and collect statistics.

    Returns the ``BatchResult``.
    """
    pairs, unmatched = paired if paired is not None else pairs_of(args)
    if unmatched and not args.quiet:
        print(f"{what}: left out {len(unmatched)} unmatched file(s)", file=sys.stderr)
    progress = Progress(len(pairs), what, quiet=args.quiet)

    def on_case(event):
        if event.status == "failed":
            if progress.tty and not args.quiet:
                sys.stderr.write("\n")
            print(f"clskern {what}: error: {event.error}", file=sys.stderr)
        progress.step(event.case_id, event.status, event.nbytes)

    try:
        if getattr(args, "scheduler", None):
            from ..distributed import stats_to_store

            return stats_to_store(
                pairs, store, args.scheduler, label=args.label, channel=args.channel, empty=args.empty,
                keep_going=getattr(args, "keep_going", False), on_case=on_case, keep_stats=keep_stats,
                affine_atol=args.affine_tolerance,
            )
        return collect_stats(
            pairs, store=store, label=args.label, channel=args.channel, empty=args.empty,
            jobs=args.jobs, keep_going=getattr(args, "keep_going", False), on_case=on_case,
            keep_stats=keep_stats, affine_atol=args.affine_tolerance,
        )
    finally:
        progress.close()
