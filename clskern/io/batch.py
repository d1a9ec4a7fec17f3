"""Statistics for a folder of cases: read, gather, store, one case at a time.

``collect_stats`` is what ``clskern stats`` and ``clskern calibrate
--scores/--labels`` run: pairs are read ahead on ``jobs`` threads
(``prefetch``), each volume is passed once through ``volume_stats`` on the
calling thread, and, with a store, written there before the next case, so
stopping loses at most the cases in flight. Stored cases whose fingerprint
(a hash of both files' bytes and the reading options, ``clskern.store``)
still matches are not read again; a case not stored yet is hashed on its
reader thread just before it is read, so the hash reads the file into the
page cache the reader then maps, and a first run reads each file from disk
once.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from .._lesions import DEFAULT_CONNECTIVITY, check_connectivity
from .._validate import check_empty_policy, empty_error
from ..store import file_digest, fingerprint_of
from .cases import AFFINE_ATOL, load_case
from .nnunet_pkl import pkl_beside
from .prefetch import prefetch

if TYPE_CHECKING:  # annotations only
    from ..calibration.record import EmptyPolicy
    from ..store import StatsStore
    from ..volume import VolumeStats
    from .cases import CasePair


ALREADY_STORED = "already stored"  # a resumed case's status (not "skipped": that is --empty skip's word)


@dataclass
class CaseEvent:
    """What happened to one case, for progress reports."""

    case_id: str
    status: str  # "done", "stored", ALREADY_STORED (resumed: stored earlier with the same inputs), "failed"
    nbytes: int = 0
    seconds: float = 0.0
    error: Exception | None = None


@dataclass
class BatchResult:
    """Statistics gathered (and stored) by ``collect_stats``."""

    stats: dict[str, VolumeStats] = field(default_factory=dict)
    read: int = 0
    reused: int = 0
    empty: list[str] = field(default_factory=list)
    failed: list[tuple[str, BaseException]] = field(default_factory=list)  # (case_id, exception)
    nbytes: int = 0

    def record_failure(self, case_id: str, exc: BaseException, *, keep_going: bool,
                       on_case: Callable[[CaseEvent], object] | None = None) -> bool:
        """Record a case that failed on its input and report it; False when the run must stop instead
        (not ``keep_going``, or an error that is not the input's: the caller re-raises it)."""
        if not keep_going or not isinstance(exc, (ValueError, OSError)):
            return False
        self.failed.append((case_id, exc))
        if on_case:
            on_case(CaseEvent(case_id, "failed", error=exc))
        return True


def split_known(pairs, known, fingerprint):
    """``(reused, todo)``: the pairs stored with the fingerprint ``fingerprint(pair)`` still
    gives, and ``[(pair, fingerprint or None)]`` of the others, still to read.

    ``known`` maps case ids to stored fingerprints. Only cases with a stored row
    are hashed here; the others come back with ``None``, to be hashed where they
    are read. A file that cannot be hashed (gone, unreadable) is left to the
    reader too, which reports it per case.
    """
    reused, todo = [], []
    for pair in pairs:
        key = None
        if pair.case_id in known:
            try:
                key = fingerprint(pair)
            except OSError:
                pass
        if key is not None and known[pair.case_id] == key:
            reused.append(pair)
        else:
            todo.append((pair, key))
    return reused, todo


def split_stored(pairs, store, result, *, label, channel, keep_stats, on_case, empty="skip", affine_atol=AFFINE_ATOL,
                 connectivity=DEFAULT_CONNECTIVITY):
    """``[(pair, fingerprint or None)]`` of the cases still to read (``split_known``); cases stored
    with the same input bytes and options count as reused in ``result`` (and are loaded
    when ``keep_stats``). Under ``empty="error"`` a stored case without lesion
    voxels raises, as a read one would. Each file is hashed once, even when two
    pairs share it.
    """
    if store is None:
        return [(pair, None) for pair in pairs]
    store.check_reading(label=label, channel=channel, connectivity=connectivity)
    n_fg = store.lesion_counts()
    digests = {}
    reused, todo = split_known(pairs, store.fingerprints(), lambda pair: case_fingerprint(
        pair, label=label, channel=channel, affine_atol=affine_atol, digests=digests, connectivity=connectivity))
    for pair in reused:
        if n_fg[pair.case_id] == 0 and empty == "error":
            raise empty_error(pair.case_id)
    for pair in reused:
        if keep_stats:
            result.stats[pair.case_id] = store.get(pair.case_id)
        result.reused += 1
        if n_fg[pair.case_id] == 0:
            result.empty.append(pair.case_id)
        if on_case:
            on_case(CaseEvent(pair.case_id, ALREADY_STORED))
    return todo


def case_fingerprint(pair, *, label, channel, affine_atol=AFFINE_ATOL, digests=None, connectivity=None):
    """The store fingerprint of a case pair (``clskern.store.fingerprint``).

    An nnU-Net ``.npz`` is read through the ``CASE.pkl`` beside it (which
    axes its probabilities are in), so that file's bytes count too. A
    geometry tolerance other than the default counts as a reading option: a
    case stored under a looser ``--affine-tolerance`` is checked again.
    ``digests``: a ``{path: file_digest}`` cache, so that a file is hashed once.
    A ``connectivity`` (lesion statistics) counts too; None (voxel statistics
    only) adds nothing, so the fingerprints of stores made before lesion level
    still match.
    """
    digests = {} if digests is None else digests
    paths = [pair.scores, pair.labels]
    geometry = pkl_beside(pair.scores) if pair.scores.endswith(".npz") else None
    if geometry is not None and os.path.isfile(geometry):
        paths.append(geometry)
    for path in paths:
        if path not in digests:
            digests[path] = file_digest(path)
    options = {"label": label, "channel": channel}
    if affine_atol != AFFINE_ATOL:
        options["affine_atol"] = float(affine_atol)
    if connectivity is not None:
        options["connectivity"] = int(connectivity)
    if geometry is not None:
        options["geometry"] = digests.get(geometry)  # None: no .pkl (the read refuses the case)
    return fingerprint_of(digests[pair.scores], digests[pair.labels], **options)


def collect_stats(pairs: Sequence[CasePair], *, store: StatsStore | None = None, label: float | None = None,
                  channel: int | None = None, empty: EmptyPolicy = "skip", jobs: int = 1, keep_going: bool = False,
                  on_case: Callable[[CaseEvent], object] | None = None, keep_stats: bool = True,
                  backend: str | None = None, affine_atol: float = AFFINE_ATOL,
                  connectivity: int | None = DEFAULT_CONNECTIVITY) -> BatchResult:
    """``VolumeStats`` of every case pair, from the store where already there.

    Parameters
    ----------
    pairs : sequence of CasePair
        From ``pair_cases``.
    store : StatsStore, optional
        Cases with a matching fingerprint are taken from it; new ones are
        written to it as soon as they are done.
    label, channel
        Lesion label value and score channel (see ``load_case``).
    empty : {"skip", "pass", "error"}
        ``"error"`` stops at a case without lesion voxels; otherwise such
        cases are kept (and stored), and the calibration's policy decides.
    jobs : int
        Reader threads; at most ``jobs + 1`` cases are in memory.
    keep_going : bool
        Record failing cases in ``failed`` and go on instead of raising.
    on_case : callable, optional
        Called with a ``CaseEvent`` after each case.
    keep_stats : bool
        Return every case's statistics in ``BatchResult.stats``. False (with
        a store): only store and count them, as ``clskern stats`` does, so
        memory does not grow with the number of cases.
    connectivity : {6, 18, 26} or None
        Lesions kept in the statistics (``volume_stats``); a store holds one.

    Returns
    -------
    BatchResult
    """
    check_empty_policy(empty)
    connectivity = check_connectivity(connectivity, optional=True)
    if store is None and not keep_stats:
        raise ValueError("keep_stats=False needs a store: the statistics would be lost")
    result = BatchResult()
    todo = split_stored(pairs, store, result, label=label, channel=channel, keep_stats=keep_stats,
                        on_case=on_case, empty=empty, affine_atol=affine_atol, connectivity=connectivity)

    def load(item):
        started = time.perf_counter()
        pair, key = item
        if store is not None and key is None:  # hashed before reading: a file changed meanwhile is read again
            key = case_fingerprint(pair, label=label, channel=channel, affine_atol=affine_atol,
                                   connectivity=connectivity)
        return load_case(pair, channel=channel, backend=backend, affine_atol=affine_atol), started, key

    if todo:  # Numba is imported only when a case is to be read (not on a re-run over a complete store)
        from ..volume import volume_stats
    stream = prefetch(todo, load, jobs=jobs, meanwhile=_warm_up if todo else None)
    try:
        for (pair, _), loaded, error in stream:
            try:
                if error is not None:
                    raise error
                case, started, key = cast("tuple[Any, float, Any]", loaded)  # not None: error is None
                stats = volume_stats(case.scores, case.labels, label=label, name=pair.case_id,
                                     connectivity=connectivity)
                if stats.n_fg == 0 and empty == "error":
                    raise empty_error(pair.case_id)
                nbytes = case.nbytes
                del case, loaded
                if store is not None:
                    store.put(pair.case_id, key, stats, scores_path=pair.scores, labels_path=pair.labels)
            except Exception as exc:
                if not result.record_failure(pair.case_id, exc, keep_going=keep_going, on_case=on_case):
                    raise
                continue
            if keep_stats:
                result.stats[pair.case_id] = stats
            result.read += 1
            result.nbytes += nbytes
            if stats.n_fg == 0:
                result.empty.append(pair.case_id)
            if on_case:
                on_case(CaseEvent(pair.case_id, "stored" if store is not None else "done", nbytes,
                                  time.perf_counter() - started))
    finally:  # cancel reads still queued, now rather than when the generator is collected
        stream.close()
    result.stats = dict(sorted(result.stats.items()))
    return result


def _warm_up():
    """Start Numba's thread pool and load the usual kernels while the first cases are read.

    The first parallel call of a process costs about half a second; float32
    scores with uint8 labels are the common case (others load their own
    cached kernels on first use, a small cost once the pool is up).
    """
    from ..volume import volume_stats

    volume_stats(np.zeros(8, np.float32), np.ones(8, np.uint8))

