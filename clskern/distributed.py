"""Statistics of many cases on a Dask cluster: ``stats_to_store``.

The per-case pass (read a score/label pair from shared storage,
``volume_stats``) runs on the workers of a ``dask.distributed`` cluster; the
calling process owns the statistics store and writes each case as its
result arrives, one transaction per case. What crosses the network per case
is the pair of file paths out and the case's statistics back (its sorted
lesion scores and sparse background histogram, a ``VolumeStats.to_bytes``
image: kilobytes to a few MB), never the volume.

Losing nothing: a worker that dies mid-run has its cases recomputed on the
others by the scheduler; if the calling process itself stops, every case
already written stays in the store, and running again reads only the rest
(stored cases whose input files hold the same bytes are not read again, exactly as
in ``clskern.io.collect_stats``). A case not stored yet is hashed by the
worker that reads it, just before reading, so its files cross the network
once; the calling process hashes only the files of cases it has stored. The stored statistics equal the in-process
ones bit for bit: the pass is deterministic and independent of thread counts.

Cores: each worker process runs one pass at a time (a per-process lock
around the kernels; ``threads_per_worker > 1`` only overlaps reading the
next files) with ``cores on its machine // worker processes on that machine``
Numba threads, so workers sharing a machine do not oversubscribe it.

``dask[distributed]`` is imported only when a scheduler is given.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._lesions import DEFAULT_CONNECTIVITY
from ._threads import usable_cores as usable_cores  # re-exported: numba_thread_plan runs it on workers
from ._validate import check_empty_policy, empty_error
from .io import BatchResult, CaseEvent, collect_stats, load_case
from .io.batch import case_fingerprint, split_stored
from .io.cases import AFFINE_ATOL
from .volume import VolumeStats, volume_stats

if TYPE_CHECKING:  # annotations only
    from .calibration.record import EmptyPolicy
    from .io.cases import CasePair
    from .store import StatsStore

_PASS_LOCK = threading.Lock()  # one kernel pass at a time per worker process


def numba_thread_plan(client: Any) -> dict[str, int]:
    """``{machine: Numba threads per worker process}``: each machine's cores shared among its workers.

    Keyed by host, so a worker the nanny restarts on the same machine gets
    the same share; a worker on a machine that joins later takes all of its
    cores.
    """
    try:
        workers = client.scheduler_info(n_workers=-1)["workers"]  # every worker, not a sample
    except TypeError:  # older distributed: no n_workers, and it lists every worker
        workers = client.scheduler_info()["workers"]
    cores = client.run(usable_cores)
    per_host = Counter(info["host"] for info in workers.values())
    plan: dict[str, int] = {}
    for address, info in workers.items():
        share = max(1, cores.get(address, 1) // per_host[info["host"]])
        plan[info["host"]] = min(share, plan.get(info["host"], share))
    return plan


def _worker_threads(plan):
    """This worker's Numba threads under ``plan`` (an int, or a ``numba_thread_plan``)."""
    if isinstance(plan, int):
        return plan
    from distributed import get_worker
    from distributed.comm import get_address_host

    return plan.get(get_address_host(get_worker().address)) or usable_cores()


def case_stats(pair: CasePair, label: float | None, channel: int | None, affine_atol: float,
               numba_threads: int | Mapping[str, int],
               connectivity: int | None = DEFAULT_CONNECTIVITY) -> tuple[bytes, int, float, int]:
    """One case's pass, on a worker: ``(stats bytes, bytes read, seconds, numba threads used)``."""
    import numba

    started = time.perf_counter()
    case = load_case(pair, channel=channel, affine_atol=affine_atol)
    n = max(1, min(int(_worker_threads(numba_threads)), numba.config.NUMBA_NUM_THREADS))
    with _PASS_LOCK:
        numba.set_num_threads(n)  # thread-local in Numba: set on the thread that runs the kernels
        stats = volume_stats(case.scores, case.labels, label=label, name=pair.case_id, connectivity=connectivity)
    return stats.to_bytes(), case.nbytes, time.perf_counter() - started, n


class _InputFailure:
    """A case's input error, returned by a worker as a value: a raised one would make Dask log
    "Compute Failed" with a traceback, and the command owes the user one line per case."""

    def __init__(self, error):
        self.error = error


def _fingerprinted_case_stats(pair, key, label, channel, affine_atol, numba_threads,
                              connectivity=DEFAULT_CONNECTIVITY):
    """``(fingerprint, case_stats(...))`` on a worker; the files are hashed first when ``key`` is None,
    so a file replaced during the read gets a fingerprint that the next run does not match.
    An input error comes back as ``(key, _InputFailure)``."""
    try:
        if key is None:
            key = case_fingerprint(pair, label=label, channel=channel, affine_atol=affine_atol,
                                   connectivity=connectivity)
        return key, case_stats(pair, label, channel, affine_atol, numba_threads, connectivity)
    except (ValueError, OSError, MemoryError, OverflowError, RecursionError) as exc:
        return key, _InputFailure(exc)


@contextlib.contextmanager
def _environ_kept():
    """Undo what Dask's nannies write into this process's environment to start their workers.

    They set ``OMP_NUM_THREADS=1`` (and MKL's, OpenBLAS's) in ``os.environ``
    and leave it there, which would cap this process's own clskern calls at one
    thread (``clskern._threads`` honours ``OMP_NUM_THREADS``).
    """
    before = dict(os.environ)
    try:
        yield
    finally:
        for key in set(os.environ) - set(before):
            del os.environ[key]
        for key, value in before.items():
            if os.environ.get(key) != value:
                os.environ[key] = value


def _connect(scheduler):
    """``(client, owned resources to close)`` for a scheduler address, "local", or a Client."""
    from distributed import Client, LocalCluster

    if isinstance(scheduler, Client):
        return scheduler, []
    if scheduler == "local":
        with _environ_kept():
            cluster = LocalCluster(n_workers=usable_cores(), threads_per_worker=1, processes=True,
                                   dashboard_address=None)
        client = Client(cluster, set_as_default=False)
        return client, [client, cluster]
    if isinstance(scheduler, str):
        client = Client(scheduler, set_as_default=False)
        return client, [client]
    raise TypeError(f"scheduler must be None, 'local', an address or a distributed.Client, got {scheduler!r}")


def stats_to_store(pairs: Sequence[CasePair], store: StatsStore, scheduler: Any = None, *, label: float | None = None,
                   channel: int | None = None, empty: EmptyPolicy = "skip",
                   numba_threads: int | Mapping[str, int] | None = None, keep_going: bool = False,
                   on_case: Callable[[CaseEvent], object] | None = None, keep_stats: bool = True,
                   affine_atol: float = AFFINE_ATOL, connectivity: int | None = DEFAULT_CONNECTIVITY) -> BatchResult:
    """Gather every case's ``VolumeStats`` on a Dask cluster into a statistics store.

    Parameters
    ----------
    pairs : sequence of CasePair
        From ``clskern.io.pair_cases``; the paths must be readable by the
        workers (shared storage).
    store : clskern.store.StatsStore
        Written by this process only; cases already stored with the same
        input files are not read again (resume).
    scheduler : None, "local", str or distributed.Client
        ``None``: in this process (``clskern.io.collect_stats``). ``"local"``:
        a ``LocalCluster`` of one single-threaded worker process per core,
        for this call. An address (``"tcp://10.0.0.5:8786"``) or a
        ``Client``: that cluster.
    label, channel, empty, keep_going, on_case, keep_stats, affine_atol, connectivity
        As in ``clskern.io.collect_stats`` (``keep_stats=False``: the
        statistics are only stored, so memory stays flat in the number of
        cases).
    numba_threads : int or dict, optional
        Numba threads per worker. Default: each machine's cores divided by
        its worker processes (``numba_thread_plan``).

    Returns
    -------
    BatchResult
        As ``collect_stats`` returns it, ``stats`` sorted by case id.
    """
    check_empty_policy(empty)
    if scheduler is None:
        return collect_stats(pairs, store=store, label=label, channel=channel, empty=empty,
                             keep_going=keep_going, on_case=on_case, keep_stats=keep_stats,
                             affine_atol=affine_atol, connectivity=connectivity)
    from distributed import as_completed

    result = BatchResult()
    todo = {
        pair.case_id: (pair, key)
        for pair, key in split_stored(pairs, store, result, label=label, channel=channel, keep_stats=keep_stats,
                                      affine_atol=affine_atol, connectivity=connectivity,
                                      on_case=on_case, empty=empty)
    }
    client, owned = _connect(scheduler)
    try:
        plan = numba_threads if numba_threads is not None else numba_thread_plan(client)
        futures, finished = {}, set()
        for case_id, (pair, key) in todo.items():
            future = client.submit(_fingerprinted_case_stats, pair, key, label, channel, affine_atol, plan,
                                   connectivity, pure=False, key=f"clskern-stats-{case_id}-{uuid.uuid4().hex}")
            futures[future] = case_id
        try:
            for future in as_completed(futures, loop=client.loop):
                case_id = futures[future]
                finished.add(case_id)
                pair = todo[case_id][0]
                try:
                    key, outcome = future.result()
                    if isinstance(outcome, _InputFailure):
                        raise outcome.error
                    blob, nbytes, seconds, _ = outcome
                    stats = VolumeStats.from_bytes(blob)
                    if stats.n_fg == 0 and empty == "error":
                        raise empty_error(case_id)
                    store.put(case_id, key, stats, scores_path=pair.scores, labels_path=pair.labels)
                except Exception as exc:
                    if not result.record_failure(case_id, exc, keep_going=keep_going, on_case=on_case):
                        raise
                    continue
                finally:
                    future.release()
                if keep_stats:
                    result.stats[case_id] = stats
                result.read += 1
                result.nbytes += nbytes
                if stats.n_fg == 0:
                    result.empty.append(case_id)
                if on_case:
                    on_case(CaseEvent(case_id, "stored", nbytes, seconds))
        except BaseException:  # stopped: drop the queued cases (the stored ones stay stored)
            client.cancel([f for f, case_id in futures.items() if case_id not in finished])
            raise
    finally:
        for resource in owned:
            resource.close()
    result.stats = dict(sorted(result.stats.items()))
    result.empty.sort()
    return result
