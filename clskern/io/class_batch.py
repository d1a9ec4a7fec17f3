"""Per-class statistics for a folder of cases (``clskern stats/calibrate --classes``).

Each case's labels are read, each channel a class uses is read (with the
checks ``load_case`` makes: shapes, affines, nnU-Net's ``.pkl``), and
``clskern.classes.class_stats_from_channels`` derives every class's ground
truth from one pass over the labels. With a ``ClassStatsStore``, cases whose
files, options and class definitions are unchanged are not read again.

Each case's label file and score file are read once whatever the number of
channels (``load_case_channels``: the channels are views of one inflated
``.npz`` or ``.nii.gz``), with the checks ``load_case`` makes per channel.
"""

import time

from .._validate import check_empty_policy, empty_error
from ..store import fingerprint_of
from .batch import ALREADY_STORED, BatchResult, CaseEvent, case_fingerprint, split_known
from .cases import AFFINE_ATOL, load_case_channels
from .prefetch import prefetch


def class_fingerprint(pair, spec, *, affine_atol=AFFINE_ATOL, digests=None):
    """A case's fingerprint for per-class statistics: its files and options, and the class definitions."""
    base = case_fingerprint(pair, label=None, channel=None, affine_atol=affine_atol, digests=digests)
    return fingerprint_of(base, "", classes=spec)


def load_channels(pair, channels, *, affine_atol=AFFINE_ATOL):
    """``({channel: scores}, labels)`` of a case, each channel checked against the labels; the
    label file and the score file are each read once (``load_case_channels``)."""
    cases = load_case_channels(pair, channels, affine_atol=affine_atol)
    return {channel: case.scores for channel, case in zip(channels, cases)}, cases[0].labels


def collect_class_stats(pairs, classes, *, regions_class_order=None, store=None, empty="skip", jobs=1,
                        keep_going=False, on_case=None, affine_atol=AFFINE_ATOL):
    """``BatchResult`` whose ``stats`` are ``{case: {class: VolumeStats}}``.

    ``store`` (a ``ClassStatsStore``) keeps each case's classes as soon as
    they are done and gives back those already stored. ``empty="error"``
    stops at a case lacking a class; otherwise lacking classes are kept
    (``n_fg == 0``) for the calibration's empty policy. A case counts in
    ``result.empty`` when it lacks every class.
    """
    from ..class_store import spec_json
    from ..classes import check_classes, class_stats_from_channels

    check_empty_policy(empty)
    classes = check_classes(classes)
    spec = spec_json(classes, regions_class_order)
    channels = sorted({channel for channel, _ in classes.values()})
    result = BatchResult()
    todo = [(pair, None) for pair in pairs]
    if store is not None:
        store.check_classes(classes, regions_class_order)
        digests = {}
        reused, todo = split_known(pairs, store.fingerprints(), lambda pair: class_fingerprint(
            pair, spec, affine_atol=affine_atol, digests=digests))
        stored = store.load() if reused else {}
        for pair in reused:
            lacking = [name for name, s in stored[pair.case_id].items() if s.n_fg == 0]
            if lacking and empty == "error":
                raise empty_error(f"{pair.case_id} (class {lacking[0]!r})")
        for pair in reused:
            result.stats[pair.case_id] = stored[pair.case_id]
            result.reused += 1
            if all(s.n_fg == 0 for s in stored[pair.case_id].values()):
                result.empty.append(pair.case_id)
            if on_case:
                on_case(CaseEvent(pair.case_id, ALREADY_STORED))

    def load(item):
        pair, key = item
        started = time.perf_counter()
        if store is not None and key is None:
            key = class_fingerprint(pair, spec, affine_atol=affine_atol)
        return load_channels(pair, channels, affine_atol=affine_atol), started, key

    stream = prefetch(todo, load, jobs=jobs)
    try:
        for (pair, _), loaded, error in stream:
            try:
                if error is not None:
                    raise error
                (arrays, labels), started, key = loaded
                stats = class_stats_from_channels(arrays, labels, classes, name=pair.case_id)
                nbytes = sum(a.nbytes for a in arrays.values()) + labels.nbytes
                del arrays, labels, loaded
                lacking = [name for name, s in stats.items() if s.n_fg == 0]
                if lacking and empty == "error":
                    raise empty_error(f"{pair.case_id} (class {lacking[0]!r})")
                if store is not None:
                    store.put(pair.case_id, key, stats)
            except Exception as exc:
                if not result.record_failure(pair.case_id, exc, keep_going=keep_going, on_case=on_case):
                    raise
                continue
            result.stats[pair.case_id] = stats
            result.read += 1
            result.nbytes += nbytes
            if len(lacking) == len(stats):
                result.empty.append(pair.case_id)
            if on_case:
                on_case(CaseEvent(pair.case_id, "stored" if store is not None else "done", nbytes,
                                  time.perf_counter() - started))
    finally:
        stream.close()
    result.stats = dict(sorted(result.stats.items()))
    return result
