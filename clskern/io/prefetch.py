"""Reading the next cases while the current one is processed, with bounded memory.

``prefetch`` runs ``load`` on a thread pool and yields results in input
order. At most ``jobs`` loads run ahead of the case the caller holds, so at
most ``jobs + 1`` volumes are in memory. Reading threads overlap because the
gzip backends, file reads and the Numba kernels release the GIL.
"""

from collections import deque
from concurrent.futures import ThreadPoolExecutor


def prefetch(items, load, *, jobs=1, meanwhile=None):
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

    Yields
    ------
    item, result, error
        ``error`` is the exception ``load`` raised (``result`` is then None).
    """
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    items = iter(items)
    pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="clskern-read")
    pending = deque()
    try:
        for item in items:
            pending.append((item, pool.submit(load, item)))
            if len(pending) >= jobs:
                break
        if meanwhile is not None:
            meanwhile()
        while pending:
            item, future = pending.popleft()
            error = future.exception()
            result = None if error is not None else future.result()
            future = None
            for nxt in items:  # keep `jobs` loads running while the consumer works
                pending.append((nxt, pool.submit(load, nxt)))
                break
            yield item, result, error
            result = None
    finally:
        for _, future in pending:
            future.cancel()
        pool.shutdown(wait=False, cancel_futures=True)
