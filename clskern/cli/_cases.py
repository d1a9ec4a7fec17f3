"""Running ``collect_stats`` with progress and a readable report: stats and calibrate."""

import sys

from ..io import collect_stats, pair_cases
from ._progress import Progress


def gather(args, *, store=None, what="stats", keep_stats=True):
    """Pair the folders in ``args`` and collect statistics; returns the ``BatchResult``."""
    pairs, unmatched = pair_cases(args.scores, args.labels, allow_unmatched=args.allow_unmatched)
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
        return collect_stats(
            pairs, store=store, label=args.label, channel=args.channel, empty=args.empty,
            jobs=args.jobs, keep_going=getattr(args, "keep_going", False), on_case=on_case,
            keep_stats=keep_stats,
        )
    finally:
        progress.close()
