"""``clskern calibrate``: a threshold from a store (no pass over volumes) or from folders."""

import dataclasses
import sys

from ..calibration import _NEEDS, METHODS, calibrate
from .._lesions import DEFAULT_CONNECTIVITY
from ..calibration.degenerate import degenerate_cut
from ..errors import CalibrationError
from ..io.cases import AFFINE_ATOL
from ..store import StatsStore
from ._cases import gather, pairs_of
from ._common import (DEFAULT_ALPHA, add_alpha, add_case_options, add_delta, add_empty, add_epsilon, add_output,
                      add_overlap, add_overwrite, add_quiet, add_store)
from ._output import CALIBRATION, guard_outputs, write_text_atomic
from . import _nnunet, _sets

HELP = "calibrate a threshold (cls, cls-pac, crc, rcps) and write it as JSON"
DEFAULT_DELTA = 0.1


def add_parser(subparsers):
    p = subparsers.add_parser(
        "calibrate", help=HELP, description=(
            "Calibrate the score threshold on held-out cases, from a statistics store (any "
            "epsilon, alpha or method without reading the volumes again) or from folders."
        ),
    )
    source = p.add_mutually_exclusive_group(required=True)
    add_store(source, help="statistics store written by clskern stats")
    source.add_argument("--scores", metavar="DIR", help="folder of score files (with --labels)")
    p.add_argument("--labels", metavar="DIR", help="folder of label files (with --scores)")
    reading = p.add_argument_group("reading folders (with --scores/--labels)")
    add_case_options(reading)
    add_epsilon(p, help="tolerated FNR per case, in [0, 1)")
    add_alpha(p, f"miscoverage for cls and cls-pac (default {DEFAULT_ALPHA})", default=None)
    p.add_argument("--method", choices=METHODS, default="cls", help="calibration method (default cls)")
    add_delta(p, default=None,
              help=f"cls-pac and rcps: the guarantee holds with probability 1 - D over the "
                   f"calibration draw (default {DEFAULT_DELTA})")
    add_empty(p)
    p.add_argument("--normalize", choices=("none", "minmax"), default="none",
                   help="minmax: calibrate in per-case min-max normalised scores, q = (p - min) / (max - min) over "
                        "every voxel; recorded in the calibration, so apply normalises each case the "
                        "same way (default none)")
    _sets.add_calibrate_options(p)
    p.add_argument("--level", choices=("voxel", "lesion"), default="voxel",
                   help="lesion: certify the lesion-level FNR (the share of a case's lesions missed) instead of "
                        f"the voxel FNR; needs statistics with lesions (clskern stats --connectivity, default "
                        f"{DEFAULT_CONNECTIVITY})")
    add_overlap(p, help="with --level lesion: a lesion is detected when at least max(1, ceil(TAU x its size)) of "
                        "its voxels score >= the threshold (default 0: any voxel)")
    add_output(p, metavar="JSON", help="calibration file to write")
    add_overwrite(p)
    add_quiet(p)
    return p


def _parameters(args):
    uses = _NEEDS[args.method]
    for name in ("alpha", "delta"):
        if name not in uses and getattr(args, name) is not None:
            raise ValueError(f"method {args.method} takes no --{name}: its guarantee does not involve one")
    alpha = (DEFAULT_ALPHA if args.alpha is None else args.alpha) if "alpha" in uses else None
    delta = (DEFAULT_DELTA if args.delta is None else args.delta) if "delta" in uses else None
    return alpha, delta


def run(args):
    if args.scores is not None and args.labels is None:
        raise ValueError("--scores needs --labels")
    if args.store is not None:
        given = [flag for flag, value in (("--labels", args.labels), ("--label", args.label),
                                          ("--channel", args.channel), ("--connectivity", args.connectivity))
                 if value is not None]
        given += [flag for flag, changed in (("--allow-unmatched", args.allow_unmatched),
                                             ("--affine-tolerance", args.affine_tolerance != AFFINE_ATOL),
                                             ("--jobs", args.jobs != 1)) if changed]
        if given:
            raise ValueError(f"{given[0]} applies to --scores folders; a store keeps the options clskern stats used")
    alpha, delta = _parameters(args)
    _sets.note_stored_classes(args)
    if args.scores is not None:  # nnU-Net's dataset.json beside labelsTr says which class is which
        from ..io.cases import dataset_json_beside

        _nnunet.read_dataset_json(args, dataset_json_beside(args.labels), what="calibrate")
    if args.overlap != 0 and args.level != "lesion":
        raise ValueError(f"--overlap {args.overlap:g} applies to --level lesion only")
    guard_outputs(args, "output", CALIBRATION)  # every path (one calibration or a set) writes -o alone
    if _sets.wants_set(args):  # per group or per class: a calibration set
        if args.normalize != "none":
            raise ValueError("--normalize minmax is not available with groups or classes yet; calibrate one set")
        return _sets.run_calibrate(args, alpha, delta)
    if args.store is not None:
        with StatsStore(args.store, create=False) as store:
            volumes = store.lesion_stats()  # all any method needs, without the histograms
            reading = store.reading()
        if not volumes:
            raise ValueError(f"{args.store}: the store holds no cases")
    else:
        volumes = gather(args, what="calibrate", paired=pairs_of(args)).stats
        reading = {"label": args.label, "channel": args.channel}
    lesion_free = sorted(case for case, stats in volumes.items() if stats.n_fg == 0)
    try:
        result = calibrate(volumes, epsilon=args.epsilon, alpha=alpha, method=args.method, delta=delta,
                           level=args.level, overlap=args.overlap,
                           empty=args.empty, normalize=args.normalize)
    except CalibrationError as exc:
        if lesion_free and args.empty == "skip":
            raise CalibrationError(f"{exc}; {skipped_why(lesion_free, len(volumes))}") from None
        raise
    warnings = _warnings(args, volumes, result)
    # apply cuts the channel the cases were read from
    result = dataclasses.replace(result, reading=reading, warnings=warnings)
    write_text_atomic(args.output, result.to_json() + "\n")
    for warning in warnings:  # not progress: printed with -q too (and kept in the JSON)
        print(f"clskern calibrate: warning: {warning}", file=sys.stderr)
    if not args.quiet:
        k = f", k={result.k}" if result.k is not None else ""
        print(f"calibrate: threshold {result.threshold!r} ({result.method}, n={result.n}{k}) -> {args.output}")
        if result.n_skipped:
            print(f"  {skipped_why(lesion_free, len(volumes))}")
        print(f"  {result.guarantee}")
    return 0


def _warnings(args, volumes, result):
    """``degenerate_cut`` on the calibration statistics. A store's fast path (``lesion_stats``) has no
    background, so the full statistics are loaded for this check alone, once the threshold is known."""
    if args.store is not None:
        with StatsStore(args.store, create=False) as store:
            volumes = store.load(list(volumes))
    return degenerate_cut(volumes, result.threshold, normalize=args.normalize) or []


def skipped_why(lesion_free, n_cases, shown=5):
    """Which cases ``--empty skip`` left out, and why, in one line."""
    names = ", ".join(lesion_free[:shown]) + (f" and {len(lesion_free) - shown} more" if len(lesion_free) > shown else "")
    return (f"{len(lesion_free)} of {n_cases} case(s) skipped: no lesion voxels, so no FNR "
            f"(--empty pass counts them as met by any threshold): {names}")
