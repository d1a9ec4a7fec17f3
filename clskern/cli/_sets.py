"""Calibration sets on the command line: one calibration per group or per class.

- ``--groups FILE.csv`` (calibrate, apply): ``calibrate`` writes a
  ``CalibrationSet`` (``clskern.calibration.sets``) holding one checked
  ``Calibration`` per group; ``apply`` given such a file needs ``--groups``
  too, to know each case's group, and cuts each case at its group's threshold.
- ``--classes "WT=0:1,2,3;TC=1:2,3"`` or ``--dataset-json PATH`` (stats,
  calibrate): every class's statistics from one read of each case's labels,
  kept per (case, class) in the store (``clskern.class_store``); ``calibrate``
  writes one calibration per class (``--family none|bonferroni``,
  ``--class-epsilon NAME=E,...``); ``apply`` writes nnU-Net's label map.
"""

import os
import sys

from ..calibration.sets import CalibrationSet
from ..errors import CalibrationError
from ..io.groups import read_groups
from ..store import StatsStore
from ._cases import gather, pairs_of, say_unmatched
from ._output import write_text_atomic


def add_group_option(parser, what):
    parser.add_argument("--groups", metavar="FILE.csv", default=None,
                        help=f"CSV 'case,group' (header row, then one row per case): {what}")


def add_class_options(parser):
    """--classes / --dataset-json: several classes of channel-first scores."""
    parser.add_argument("--classes", metavar="SPEC", default=None,
                        help="several classes: 'NAME=CHANNEL:VALUE,VALUE;...' (e.g. nnU-Net's BraTS regions 'WT=0:1,2,3;TC=1:2,3;ET=2:3'); "
                             "a class's ground truth is the label in its values, its scores the channel")
    parser.add_argument("--regions-class-order", metavar="V,V,...", default=None,
                        help="with --classes: the label value each class writes in the label map (needed when a "
                             "class has several values, as nnU-Net's regions_class_order)")
    parser.add_argument("--dataset-json", metavar="PATH", default=None,
                        help="the classes of an nnU-Net v2 dataset.json (labels, regions, regions_class_order)")


def add_stats_options(parser):
    """The options of ``clskern stats`` for several classes."""
    add_class_options(parser)


def add_calibrate_options(parser):
    """The options of ``clskern calibrate`` that make a calibration set."""
    add_group_option(parser, "calibrate each group on its own cases (one threshold per group)")
    add_class_options(parser)
    parser.add_argument("--family", choices=("none", "bonferroni"), default="none",
                        help="several classes: 'none' (each class its own 1 - alpha, default) or 'bonferroni' "
                             "(alpha / classes each: every class at once with probability >= 1 - alpha)")
    parser.add_argument("--class-epsilon", metavar="NAME=E,...", default=None,
                        help="several classes: a tolerance per class (the others take --epsilon)")


def add_apply_options(parser):
    """The options of ``clskern apply`` for calibration sets."""
    add_group_option(parser, "each case's group, for a calibration per group")


def wants_classes(args):
    return (getattr(args, "classes", None) is not None or getattr(args, "dataset_json", None) is not None
            or getattr(args, "implied_classes", None) is not None)


def note_stored_classes(args):
    """``calibrate --store`` on a per-class store (``stats --classes/--dataset-json/--nnunet-results``)
    without --classes or --dataset-json: the classes the store records (``args.implied_classes``)."""
    from ..class_store import ClassStatsStore

    if args.store is not None and args.classes is None and args.dataset_json is None:
        args.implied_classes, args.implied_from = ClassStatsStore.recorded_classes(args.store), args.store


def wants_set(args):
    return getattr(args, "groups", None) is not None or wants_classes(args) or (
        getattr(args, "family", "none") != "none" or getattr(args, "class_epsilon", None) is not None)


def classes_of(args):
    """``(classes, regions_class_order)`` from --classes (and --regions-class-order) or --dataset-json."""
    from ..classes import classes_from_dataset_json, parse_classes, region_mode

    if args.classes is not None and args.dataset_json is not None:
        raise ValueError("give either --classes or --dataset-json, not both")
    if getattr(args, "implied_classes", None) is not None:  # a per-class store's, or dataset.json's
        if args.regions_class_order is not None:
            raise ValueError("--regions-class-order: the classes and their order are known already "
                             f"({args.implied_from})")
        return args.implied_classes
    if args.dataset_json is not None:
        if args.regions_class_order is not None:
            raise ValueError(f"--regions-class-order: {args.dataset_json} gives regions_class_order")
        return classes_from_dataset_json(args.dataset_json)
    classes = parse_classes(args.classes)
    order = None
    if args.regions_class_order is not None:
        try:
            order = [float(v) for v in args.regions_class_order.split(",")]
        except ValueError:
            raise ValueError(f"--regions-class-order: expected numbers separated by commas, "
                             f"got {args.regions_class_order!r}") from None
        order = [int(v) if v.is_integer() else v for v in order]
        if len(order) != len(classes):
            raise ValueError(f"--regions-class-order: {len(order)} values for {len(classes)} classes")
    elif region_mode(classes):
        several = next(n for n, (_, v) in classes.items() if len(v) > 1)
        raise ValueError(f"--classes: class {several!r} has several values (a region): give --regions-class-order, "
                         "the label value each class writes")
    return classes, order


def class_epsilon(epsilon, text, names):
    """``--class-epsilon NAME=E,...`` over ``--epsilon``, for calibrate and evaluate alike: ``epsilon`` when
    ``text`` is None, else ``{class: epsilon}``; each item NAME=E of a known class, E in [0, 1)."""
    if text is None:
        return epsilon
    out = {name: epsilon for name in names}
    for item in text.split(","):
        name, equals, value = item.partition("=")
        name = name.strip()
        if not equals:
            raise ValueError(f"--class-epsilon: {item!r} is not NAME=EPSILON")
        if name not in out:
            raise ValueError(f"--class-epsilon: {name!r} is not a class ({', '.join(names)})")
        try:
            eps = float(value)
        except ValueError:
            raise ValueError(f"--class-epsilon: {item!r} is not NAME=EPSILON") from None
        if not 0 <= eps < 1:
            raise ValueError(f"--class-epsilon: {name}: must lie in [0, 1), got {eps:g}")
        out[name] = eps
    return out


def refuse_connectivity(args):
    """Per-class statistics keep 26-connected lesions (the class store records no other): a ``--connectivity``
    other than 26 is refused rather than ignored."""
    asked = getattr(args, "connectivity", None)
    if asked is not None and asked != 26:
        raise ValueError(f"--connectivity {asked}: statistics per class (--classes, --dataset-json, several "
                         "classes from nnU-Net) keep lesions with 26 neighbours only; leave --connectivity out, "
                         "or pick one class with --label/--channel")


def run_stats(args):
    """``clskern stats --classes``: every class's statistics, one read of the labels per channel pass."""
    import time

    from ..class_store import ClassStatsStore
    from ..io.class_batch import collect_class_stats
    from ._progress import Progress

    refuse_connectivity(args)
    classes, order = classes_of(args)
    if args.label is not None or args.channel is not None:
        raise ValueError("--label and --channel choose one class; --classes/--dataset-json name each class's "
                         "channel and label values")
    if getattr(args, "scheduler", None):
        raise ValueError("--scheduler: per-class statistics are read here (not yet on a Dask cluster)")
    paired = pairs_of(args)
    say_unmatched(*paired, "stats", args.quiet)
    if args.overwrite:  # the store and SQLite's journal files beside it
        for suffix in ("", "-wal", "-shm", "-journal"):
            if os.path.lexists(args.store + suffix):
                os.unlink(args.store + suffix)
    started = time.perf_counter()
    with ClassStatsStore(args.store) as store:
        progress = Progress(len(paired[0]), "stats", quiet=args.quiet)
        try:
            result = collect_class_stats(paired[0], classes, regions_class_order=order, store=store,
                                         empty=args.empty, jobs=args.jobs, keep_going=args.keep_going,
                                         on_case=lambda e: progress.step(e.case_id, e.status, e.nbytes),
                                         affine_atol=args.affine_tolerance)
        finally:
            progress.close()
        n_stored = len(store)
    if not args.quiet:
        print(f"stats: {n_stored} case(s) x {len(classes)} class(es) ({', '.join(classes)}) in {args.store}: "
              f"{result.read} read, {result.reused} already stored"
              + (f", {len(result.failed)} failed" if result.failed else "")
              + f" ({time.perf_counter() - started:.1f} s)")
    if result.failed:
        print(f"clskern stats: error: {len(result.failed)} case(s) failed, first {result.failed[0][0]!r}: "
              f"{result.failed[0][1]}", file=sys.stderr)
        return 1
    return 0


def run_calibrate_classes(args, alpha, delta):
    """``clskern calibrate --classes/--dataset-json``: one calibration per class, written as a set.

    A store's classes are read as ``clskern evaluate`` reads them (``ClassStatsStore.load``: whole statistics,
    with their lesions), so ``--level lesion`` calibrates each class's lesion-level FNR from either source."""
    from ..class_store import ClassStatsStore
    from ..io.class_batch import collect_class_stats

    if args.store is None:
        refuse_connectivity(args)
    classes, order = classes_of(args)
    if args.store is not None:
        with ClassStatsStore(args.store, create=False) as store:
            stored, stored_order = store.classes()
            if stored != classes or stored_order != order:
                raise ValueError(f"{args.store}: the store holds classes "
                                 f"{', '.join(f'{n}={c}:{v}' for n, (c, v) in stored.items())}, not the ones asked")
            volumes = store.load()
        if not volumes:
            raise ValueError(f"{args.store}: the store holds no cases")
    else:
        pairs, _ = pairs_of(args)
        volumes = collect_class_stats(pairs, classes, regions_class_order=order, empty=args.empty, jobs=args.jobs,
                                      affine_atol=args.affine_tolerance).stats
    epsilon = class_epsilon(args.epsilon, args.class_epsilon, list(classes))
    calibrations = calibrate(volumes, epsilon=epsilon, alpha=alpha, method=args.method, delta=delta,
                             empty=args.empty, family=args.family, level=args.level, overlap=args.overlap)
    import dataclasses

    calibrations = {n: dataclasses.replace(c, reading={"label": None, "channel": classes[n][0]},
                                           warnings=_degenerate(c, {case: v[n] for case, v in volumes.items()}))
                    for n, c in calibrations.items()}
    result = CalibrationSet(by="class", calibrations=calibrations, family=args.family, alpha=alpha, delta=delta,
                            classes=classes, regions_class_order=order)
    return _write_set(args, result)


def _degenerate(calibration, volumes):
    """``degenerate_cut``'s warnings on one member's own calibration cases (full statistics)."""
    from ..calibration.degenerate import degenerate_cut

    return degenerate_cut(volumes, calibration.threshold, normalize=calibration.normalize) or []


def _write_set(args, result):
    """Write a calibration set, then print its members' warnings (with -q too) and, unless -q, its summary."""
    write_text_atomic(args.output, result.to_json() + "\n")
    for name, cal in result.calibrations.items():  # kept in each member's JSON record too
        for warning in cal.warnings:
            print(f"clskern calibrate: warning: {result.by} {name!r}: {warning}", file=sys.stderr)
    if not args.quiet:
        print(_describe_set(result, args.output))
    return 0


def _describe_set(result, output):
    lines = [f"calibrate: {len(result.calibrations)} {result.by}(s) ({result.method}) -> {output}"]
    for name, cal in result.calibrations.items():
        k = f", k={cal.k}" if cal.k is not None else ""
        skipped = f", {cal.n_skipped} skipped" if cal.n_skipped else ""
        lines.append(f"  {result.by} {name}: threshold {cal.threshold!r} (n={cal.n}{k}{skipped})")
    lines.append(f"  {result.guarantee}")
    return "\n".join(lines)


def calibrate(*args, **kwargs):
    """``clskern.calibrate``, imported when a calibration runs (``clskern stats`` does not load it)."""
    from ..calibration.methods import calibrate as calibrate_

    return calibrate_(*args, **kwargs)


def run_calibrate(args, alpha, delta):
    """``clskern calibrate`` with --groups, or --classes/--dataset-json: a calibration set."""
    if wants_classes(args):
        if args.groups is not None:
            raise ValueError("--groups with several classes is not supported yet: calibrate each class by group "
                             "separately")
        if args.label is not None or args.channel is not None:
            raise ValueError("--label and --channel choose one class; --classes/--dataset-json name each class's "
                             "channel and label values")
        return run_calibrate_classes(args, alpha, delta)
    if args.family != "none" or args.class_epsilon is not None:
        raise ValueError(f"{'--family' if args.family != 'none' else '--class-epsilon'} needs several classes "
                         "(--classes or --dataset-json)")
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
                                 empty=args.empty, groups=groups, level=args.level, overlap=args.overlap)
    except CalibrationError as exc:
        raise CalibrationError(f"{args.groups}: {exc}") from None
    import dataclasses

    if args.store is not None:  # the fast path's statistics have no background: the full ones, for the check
        with StatsStore(args.store, create=False) as store:
            volumes = store.load(list(volumes))
    calibrations = {g: dataclasses.replace(c, reading=reading, warnings=_degenerate(
                        c, {case: v for case, v in volumes.items() if groups[case] == g}))
                    for g, c in calibrations.items()}
    result = CalibrationSet(by="group", calibrations=calibrations, alpha=alpha, delta=delta)
    return _write_set(args, result)


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
    from ..io.cases import read_case_scores
    from ..io.masks import check_input
    from ._masks import plan_masks, write_masks

    inputs = find_inputs(args.scores)
    per_case = thresholds_by_case(calibration_set, list(inputs), args.groups, args.calibration)
    channels = {case_id: channel_of(per_case[case_id], args.channel, args.calibration) for case_id in inputs}
    plan = plan_masks(args, inputs, args.groups)
    for case_id, path, geometry, _ in plan:  # every input, before the first mask
        check_input(path, geometry, channels[case_id])

    def cut(case_id, volume):
        calibration = per_case[case_id]
        return apply_threshold(volume.array, calibration.threshold, normalize=calibration.normalize,
                               name=case_id), volume

    write_masks(args, plan, lambda item: read_case_scores(item[1], channel=channels[item[0]], geometry=item[2]), cut,
                nbytes=lambda volume: volume.array.nbytes)
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
    if args.groups is not None:
        raise ValueError(f"{args.calibration}: a calibration per class; --groups applies to a calibration per group")
    if args.channel is not None:
        raise ValueError(f"{args.calibration}: a calibration per class reads each class's own channel; "
                         "--channel does not apply")
    return run_apply_classes(args, calibration_set, find_inputs)


def run_apply_classes(args, calibration_set, find_inputs):
    """``clskern apply`` with a calibration per class: nnU-Net's label map per case."""
    import numpy as np

    from ..classes import apply_classes, stacked_layout
    from ..io.cases import read_case_scores_channels
    from ..io.masks import check_input
    from ._masks import plan_masks, write_masks

    classes = calibration_set.classes
    if classes is None:
        raise ValueError(f"{args.calibration}: the set does not say which channel each class reads")
    order = calibration_set.regions_class_order
    channels, stacked = stacked_layout(classes, order, f"{args.calibration}: ")
    plan = plan_masks(args, find_inputs(args.scores))
    for _, path, geometry, _ in plan:  # every input, before the first label map
        check_input(path, geometry, max(channels))

    def cut(case_id, volumes):
        scores = np.stack([v.array for v in volumes])
        label_map = apply_classes(scores, calibration_set.calibrations, stacked, regions_class_order=order,
                                  name=case_id).astype(np.uint8, copy=False)
        return label_map, volumes[0]

    write_masks(args, plan, lambda item: read_case_scores_channels(item[1], channels, item[2]), cut,
                nbytes=lambda volumes: sum(v.array.nbytes for v in volumes))
    if not args.quiet:
        print(f"apply: {len(plan)} label map(s) of {len(classes)} class(es) ({', '.join(classes)}) -> {args.output}",
              file=sys.stdout)
    return 0
