"""Running ``collect_stats`` with progress and a readable report: stats and calibrate."""

import os
import sys

from ..errors import InputError
from ..io import collect_stats, pair_cases
from ._common import connectivity_of
from ._progress import Progress


def _same_folder(a, b):
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def pairs_of(args):
    """``(pairs, unmatched)`` of the --scores and --labels folders (or of --nnunet-results)."""
    if getattr(args, "nnunet", None) is not None:
        from ..adapters.nnunet import results_pairs

        pairs, unmatched = results_pairs(args.nnunet, args.labels)
        for pair in pairs:
            check_case_name(pair)
        return pairs, unmatched
    if _same_folder(args.scores, args.labels):
        raise InputError(f"{args.scores}: the same folder as --scores and --labels; scores and labels "
                         "must be in separate folders (a case id names one file in each)")
    pairs, unmatched = pair_cases(args.scores, args.labels, allow_unmatched=args.allow_unmatched)
    for pair in pairs:
        check_case_name(pair)
    return pairs, unmatched


def check_case_name(pair):
    """Case ids go into the store, the calibration and messages: they must be valid UTF-8."""
    try:
        pair.case_id.encode("utf-8")
    except UnicodeEncodeError:
        shown = pair.scores.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        raise InputError(f"{shown}: the file name is not valid UTF-8; rename the case") from None


def say_shape_only(pairs, what, quiet):
    """Say once that ``.npy`` scores carry no geometry and are paired with their labels by shape only."""
    n_npy = sum(1 for pair in pairs if pair.scores.endswith(".npy"))
    if n_npy and not quiet:
        print(f"{what}: {n_npy} .npy score file(s) carry no geometry: paired with their labels by shape only",
              file=sys.stderr)


class LabelNotFoundError(InputError):
    """``--label V`` that no case holds: every case was read for nothing."""


def check_label_found(result, label):
    """A ``--label`` value that no case holds is an error naming it, not n=0 later."""
    if label is None or result.failed:
        return
    n_cases = result.read + result.reused
    if n_cases and len(result.empty) == n_cases:
        raise LabelNotFoundError(f"--label {label}: no case holds label {label} "
                                 f"(all {n_cases} label files have 0 voxels of it)")


def say_unmatched(pairs, unmatched, what, quiet):
    """Say once how many label files had no scores (normal: one fold's predictions against the whole
    labelsTr) and how many score files without a label were left out (--allow-unmatched)."""
    if not unmatched or quiet:
        return
    label_dirs = {os.path.dirname(pair.labels) for pair in pairs}
    unused = sum(1 for path in unmatched if os.path.dirname(path) in label_dirs)
    if unused:
        print(f"{what}: {unused} label file(s) without scores not used", file=sys.stderr)
    if len(unmatched) > unused:
        print(f"{what}: left out {len(unmatched) - unused} score file(s) without a label", file=sys.stderr)


def gather(args, *, store=None, what="stats", keep_stats=True, paired=None):
    """Pair the folders in ``args`` (unless ``paired`` is given) and collect statistics.

    Returns the ``BatchResult``.
    """
    pairs, unmatched = paired if paired is not None else pairs_of(args)
    say_unmatched(pairs, unmatched, what, args.quiet)
    say_shape_only(pairs, what, args.quiet)
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

            result = stats_to_store(
                pairs, store, args.scheduler, label=args.label, channel=args.channel, empty=args.empty,
                keep_going=getattr(args, "keep_going", False), on_case=on_case, keep_stats=keep_stats,
                affine_atol=args.affine_tolerance, connectivity=connectivity_of(args),
            )
        else:
            result = collect_stats(
                pairs, store=store, label=args.label, channel=args.channel, empty=args.empty,
                jobs=args.jobs, keep_going=getattr(args, "keep_going", False), on_case=on_case,
                keep_stats=keep_stats, affine_atol=args.affine_tolerance, connectivity=connectivity_of(args),
            )
    finally:
        progress.close()
    check_label_found(result, args.label)
    return result
