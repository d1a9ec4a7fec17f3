"""Calibration sets on the command line: ``--groups FILE.csv`` (one calibration per group).

``calibrate --groups`` writes a ``CalibrationSet`` (``clskern.calibration.sets``)
holding one checked ``Calibration`` per group; ``apply`` given such a file
needs ``--groups`` too, to know each case's group, and cuts each case at its
group's threshold.
"""

import os
import sys

from ..calibration.methods import calibrate
from ..calibration.sets import CalibrationSet
from ..errors import CalibrationError
from ..io.groups import read_groups
from ..store import StatsStore
from ._cases import gather, pairs_of
from ._output import refuse_existing, refuse_inputs_as_outputs, write_text_atomic


def add_group_option(parser, what):
    parser.add_argument("--groups", metavar="FILE.csv", default=None,
                        help=f"CSV 'case,group' (header row, then one row per case): {what}")


def add_calibrate_options(parser):
    """The options of ``clskern calibrate`` that make a calibration set."""
    add_group_option(parser, "calibrate each group on its own cases (one threshold per group)")


def add_apply_options(parser):
    """The options of ``clskern apply`` for calibration sets."""
    add_group_option(parser, "each case's group, for a calibration per group")


def wants_set(args):
    return getattr(args, "groups", None) is not None


def _describe_set(result, output):
    lines = [f"calibrate: {len(result.calibrations)} {result.by}(s) ({result.method}) -> {output}"]
    for name, cal in result.calibrations.items():
        k = f", k={cal.k}" if cal.k is not None else ""
        skipped = f", {cal.n_skipped} skipped" if cal.n_skipped else ""
        lines.append(f"  {result.by} {name}: threshold {cal.threshold!r} (n={cal.n}{k}{skipped})")
    lines.append(f"  {result.guarantee}")
    return "\n".join(lines)


def run_calibrate(args, alpha, delta):
    """``clskern calibrate --groups``: one calibration per group, written as a set."""
    refuse_inputs_as_outputs([args.output], [args.store, args.scores, args.labels, args.groups])
    refuse_existing([args.output], args.overwrite)
    groups = read_groups(args.groups)
    if args.store is not None:
        with StatsStore(args.store, create=False) as store:
            volumes = store.lesion_stats()
            reading = store.reading()
        if not volumes:
            raise ValueError(f"{args.store}: the store holds no cases")
        source = args.store
    else:
        volumes = gather(args, what="calibrate", paired=pairs_of(args)).stats
        reading = {"label": args.label, "channel": args.channel}
        source = args.scores
    lacking = [case for case in volumes if case not in groups]
    if lacking:
        more = f" (and {len(lacking) - 1} more)" if len(lacking) > 1 else ""
        raise ValueError(f"{args.groups}: case {lacking[0]!r} of {source} has no group{more}; "
                         "list every calibration case")
    try:
        calibrations = calibrate(volumes, epsilon=args.epsilon, alpha=alpha, method=args.method, delta=delta,
                                 empty=args.empty, groups=groups)
    except CalibrationError as exc:
        raise CalibrationError(f"{args.groups}: {exc}") from None
    import dataclasses

    calibrations = {g: dataclasses.replace(c, reading=reading) for g, c in calibrations.items()}
    result = CalibrationSet(by="group", calibrations=calibrations, alpha=alpha, delta=delta)
    write_text_atomic(args.output, result.to_json() + "\n")
    if not args.quiet:
        print(_describe_set(result, args.output))
    return 0


def thresholds_by_case(calibration_set, cases, groups_path, calibration_path):
    """``{case: Calibration}`` of each case's group; refusals name the case, group and files."""
    if groups_path is None:
        raise ValueError(f"{calibration_path}: a calibration per group ({', '.join(calibration_set.names)}); "
                         "pass --groups FILE.csv to say each case's group")
    groups = read_groups(groups_path)
    out = {}
    for case in cases:
        group = groups.get(case)
        if group is None:
            raise ValueError(f"{groups_path}: case {case!r} has no group")
        if group not in calibration_set.calibrations:
            raise ValueError(f"case {case!r}: group {group!r} ({groups_path}) was not calibrated in "
                             f"{calibration_path} (its groups: {', '.join(calibration_set.names)})")
        out[case] = calibration_set.calibrations[group]
    return out


def run_apply_groups(args, calibration_set, find_inputs, channel_of):
    """``clskern apply`` with a calibration per group: each case cut at its group's threshold."""
    from ..apply import apply_threshold
    from ..io import prefetch
    from ..io.cases import read_case_scores
    from ..io.masks import reference_index, resolve_geometry, save_mask
    from ._progress import Progress

    inputs = find_inputs(args.scores)
    per_case = thresholds_by_case(calibration_set, list(inputs), args.groups, args.calibration)
    references = reference_index(args.reference) if args.reference else None
    plan = []
    for case_id, path in inputs.items():
        out = os.path.join(args.output, case_id + ".nii.gz")
        channel = channel_of(per_case[case_id], args.channel, args.calibration)
        plan.append((case_id, path, resolve_geometry(path, case_id, references), out, channel))
    sources = [args.scores, args.reference, args.calibration, args.groups, *inputs.values(),
               *(references or {}).values()]
    sources += [p for _, _, geometry, _, _ in plan for p in (geometry.path, geometry.pkl)]
    refuse_inputs_as_outputs([args.output, *(item[3] for item in plan)], sources)
    refuse_existing([item[3] for item in plan], args.overwrite)
    os.makedirs(args.output, exist_ok=True)
    progress = Progress(len(plan), "apply", quiet=args.quiet)

    def load(item):
        return read_case_scores(item[1], channel=item[4], geometry=item[2])

    stream = prefetch(plan, load, jobs=args.jobs, nbytes=lambda volume: volume.array.nbytes)
    try:
        for (case_id, _, geometry, out, _), volume, error in stream:
            if error is not None:
                raise error
            mask = apply_threshold(volume.array, per_case[case_id].threshold, name=case_id)
            save_mask(mask, out, geometry, volume)
            progress.step(case_id, "done", volume.array.nbytes)
    finally:
        stream.close()
        progress.close()
    if not args.quiet:
        used = sorted({c.threshold for c in per_case.values()})
        print(f"apply: {len(plan)} mask(s), each at its group's threshold ({len(used)} distinct) -> {args.output}",
              file=sys.stdout)
    return 0


def is_set(calibration):
    return isinstance(calibration, CalibrationSet)


def refuse_set_options(args):
    """``apply`` with a single calibration: the set options have nothing to choose."""
    if getattr(args, "groups", None) is not None:
        raise ValueError(f"{args.calibration}: one calibration for every case; --groups applies to a calibration "
                         "per group (clskern calibrate --groups)")


def run_apply(args, calibration_set, *, find_inputs, channel_of):
    """``clskern apply`` with a calibration set (``find_inputs``, ``channel_of``: apply's own helpers)."""
    if calibration_set.by == "group":
        return run_apply_groups(args, calibration_set, find_inputs, channel_of)
    raise ValueError(f"{args.calibration}: calibration by {calibration_set.by} is not supported by apply yet")
