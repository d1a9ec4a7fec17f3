"""Reading the next cases while the current one is processed, with bounded memory.

``prefetch`` runs ``load`` on a thread pool and yields results in input
order. At most ``jobs`` loads run ahead of the case the caller holds, so at
most ``jobs + 1`` volumes are in memory, and fewer when the volumes seen so
far would not fit in the memory available. Reading threads overlap because
the gzip backends, file reads and the Numba kernels release the GIL.
"""

from __future__ import annotations

import contextvars
from collections import deque
from collections.abc import Callable, Generator, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from ._memory import available_memory

_END = object()
T = TypeVar("T")
R = TypeVar("R")


def loads_ahead(jobs: int, nbytes: int, available: int | None) -> int:
    """How many loads may run ahead of a held volume of ``nbytes``: ``jobs`` at most,
    fewer so that ``ahead + 1`` such volumes fit in ``available`` bytes (0 when even two do not)."""
    if not nbytes or available is None:
        return jobs
    return max(0, min(jobs, available // nbytes - 1))


def prefetch(items: Iterable[T], load: Callable[[T], R], *, jobs: int = 1,
             meanwhile: Callable[[], object] | None = None,
             nbytes: Callable[[R], int] | None = None,
             ) -> Generator[tuple[T, R | None, BaseException | None], None, None]:
    """Yield ``(item, result, error)`` for each item, in order.

    Parameters
    ----------
    items : iterable
    load : callable
        Called as ``load(item)`` on a worker thread.
    jobs : int
        Worker threads, and loads allowed ahead of the consumer.
    meanwhile : callable, optional
        Called once on the calling thread after the first loads have
        started, before waiting for them (start-up work that can overlap).
    nbytes : callable, optional
        ``nbytes(result)``: the memory a result holds. The largest seen so
        far bounds the loads run ahead by the memory available.

    Yields
    ------
    item, result, error
        ``error`` is the exception ``load`` raised (``result`` is then None).
    """
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    items = iter(items)
    pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="clskern-read")
    pending: deque[tuple[T, Future[R]]] = deque()
    largest = 0

    def top_up(limit):
        while len(pending) < limit:
            nxt = next(items, _END)
            if nxt is _END:
                return
            # the caller's context travels with the load (a clskern.threads(n) limit applies there too)
            pending.append((nxt, pool.submit(contextvars.copy_context().run, load, nxt)))

    try:
        top_up(jobs)
        if meanwhile is not None:
            meanwhile()
        while pending:
            future: Future[R] | None
            item, future = pending.popleft()
            error = future.exception()
            result = None if error is not None else future.result()
            future = None
            if nbytes is not None and result is not None:
                largest = max(largest, int(nbytes(result)))
            top_up(loads_ahead(jobs, largest, available_memory() if largest else None))
            yield item, result, error
            result = None
            if not pending:  # nothing was allowed ahead: the next load starts now
                top_up(1)
    finally:
        for _, future in pending:
            future.cancel()
        pool.shutdown(wait=False, cancel_futures=True)
