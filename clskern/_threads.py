"""How many CPU threads a kernel call takes, and the threading layer they run on.

clskern runs inside other programs (inference engines, validation loops beside
PyTorch, ``--jobs`` runs) whose cores are already busy, so every parallel call
follows three rules:

- **The caller decides the ceiling**: ``threads(n)`` (a context, thread-local,
  as threadpoolctl's), else ``NUMBA_NUM_THREADS`` or ``OMP_NUM_THREADS``, else
  the cores this process may use (its CPU affinity and its cgroup CPU quota,
  ``usable_cores``); a lower ``numba.set_num_threads(k)`` on the calling
  thread is a ceiling too.
- **The work decides below it**: a call takes one thread per
  ``BYTES_PER_THREAD`` of input, at least one (``threads_for``). A small volume
  runs on one thread and never waits for another; a large one on all it may use.
- **No thread spins for long**: the layer is TBB where its wheel is installed
  (the default on x86-64; its idle workers sleep, it balances work between
  threads that the scheduler preempts, and it is both fork-safe and safe to call
  from several Python threads at once), else Numba's ``workqueue`` (fork-safe,
  sleeps when idle), whose calls are serialised by a lock because it aborts
  the process on concurrent ones. GNU OpenMP (Numba's ``omp``) is taken only
  when the user names it: its workers spin after each region, and a process
  forked after it ran is killed when it uses it again. ``NUMBA_THREADING_LAYER``,
  when set, is always honoured. docs/threads.md has the measurements behind
  these choices (``benchmarks/bench_host_load.py``).

The layer is chosen when ``clskern.cpu`` is imported (``choose_layer``), before
anything starts Numba's pool; ``kernel_threads(nbytes)`` wraps every CPU
kernel call (``clskern.cpu._ops``).
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import functools
import math
import os
import sys
import threading
from collections.abc import Iterator

from .errors import ArgumentError, ArgumentTypeError

# A thread must have at least this many bytes of scores and labels to read before a call takes it:
# below it, waking a second thread and joining it costs more than the read it takes over, and on a busy
# host the wait for a preempted thread is the whole slowdown. Measured on 2 cores (docs/threads.md):
# volume_stats (a histogram of every score), lesion labelling and masks gain from a second thread from
# about 4 MB on; critical_threshold and lesion_scores, which read the labels and only the scores near
# lesions, from about 16 MB on.
BYTES_PER_THREAD = 4 << 20
LIGHT_BYTES_PER_THREAD = 16 << 20
# A parallel pass over a volume is cut into this many chunks per thread (when it has several threads), so
# that the threads that run can take over the chunks of one the scheduler preempted (TBB steals them)
# instead of waiting for it: on 2 cores with a spinning process on each, the worst of 4 fresh processes
# went from 8.2 to 6.2 ms for critical_threshold on 512x256x128, at no cost idle.
CHUNKS_PER_THREAD = 4

_limit: contextvars.ContextVar[int | None] = contextvars.ContextVar("clskern_threads", default=None)
_layer_lock = threading.Lock()  # choosing the layer, once
_serial = threading.RLock()  # workqueue only: one parallel call at a time in the process
_chosen: str | None = None


def cgroup_quota(root: str = "/sys/fs/cgroup") -> int | None:
    """Cores allowed by a cgroup CPU quota (v2 ``cpu.max``, v1 ``cfs_quota_us``), rounded up; None if unlimited."""
    candidates = [(f"{root}/cpu.max", None), (f"{root}/cpu/cpu.cfs_quota_us", f"{root}/cpu/cpu.cfs_period_us")]
    for quota_path, period_path in candidates:
        try:
            with open(quota_path) as f:
                fields = f.read().split()
            if period_path is not None:
                with open(period_path) as f:
                    fields.append(f.read().strip())
        except OSError:
            continue
        if len(fields) < 2 or fields[0] in ("max", "-1"):
            return None
        try:
            quota, period = int(fields[0]), int(fields[1])
        except ValueError:
            return None
        if quota > 0 and period > 0:
            return max(1, math.ceil(quota / period))
    return None


@functools.lru_cache(maxsize=1)
def _process_quota() -> int | None:
    """This process's cgroup quota, read once: every kernel call asks for the usable cores, and reading the
    cgroup files took 50 us of a 0.3 ms call (a container's quota does not change under a running process)."""
    return cgroup_quota()


def usable_cores() -> int:
    """Cores this process may use: its CPU affinity, capped by a cgroup CPU quota (containers)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    quota = _process_quota()
    return max(1, min(cores, quota) if quota else cores)


def _env_threads() -> int | None:
    """The smallest positive whole ``NUMBA_NUM_THREADS`` / ``OMP_NUM_THREADS`` set, else None."""
    values = []
    for variable in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS"):
        text = os.environ.get(variable, "").split(",")[0].strip()  # OMP allows a list per nesting level
        if text.isdigit() and int(text) >= 1:
            values.append(int(text))
    return min(values) if values else None


def default_threads() -> int:
    """The ceiling when no ``threads(n)`` is active: the environment's, else the usable cores."""
    env = _env_threads()
    cores = usable_cores()
    return min(env, cores) if env else cores


def thread_limit() -> int:
    """The threads a call may take here and now: the innermost ``threads(n)``, else ``default_threads()``."""
    limit = _limit.get()
    return limit if limit is not None else default_threads()


def check_threads(n: object, what: str = "threads") -> int:
    """``n`` as a thread count: a whole number from 1 to the usable cores, else one clear error."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise ArgumentTypeError(f"{what} must be a whole number, got {n!r}")
    cores = usable_cores()
    if not 1 <= n <= cores:
        raise ArgumentError(f"{what} must be between 1 and {cores} (the cores this process may use), got {n}")
    return n


@contextlib.contextmanager
def threads(n: int) -> Iterator[int]:
    """Cap the CPU threads that clskern's calls take in this block (on this thread; asyncio tasks inherit it).

    ``with clskern.threads(1): clskern.volume_stats(p, y)`` runs on the
    calling thread alone; threads already bounded by ``NUMBA_NUM_THREADS`` or
    ``OMP_NUM_THREADS`` stay so only where ``n`` is larger than those. A call
    still takes fewer when its volume is too small to pay for them. Yields the
    cap in force.
    """
    n = check_threads(n)
    token = _limit.set(n)
    try:
        yield n
    finally:
        _limit.reset(token)


def threads_for(nbytes: int, per_thread: int = BYTES_PER_THREAD) -> int:
    """Threads for a call that reads ``nbytes``: one per ``per_thread`` bytes, at least 1, at most the limit."""
    return max(1, min(thread_limit(), int(nbytes) // per_thread))


def _preload_tbb() -> bool:
    """Load the TBB runtime of the ``tbb`` wheel, so that Numba's TBB layer finds it; True when it is loaded.

    pip puts ``libtbb`` in the environment's ``lib/`` folder, which the
    dynamic loader does not search: loaded here once by its full path (global
    symbols), Numba's ``tbbpool`` then links against the loaded copy.
    """
    names = {"linux": "libtbb.so.12", "darwin": "libtbb.12.dylib", "win32": "tbb12.dll"}
    name = names.get(sys.platform)
    if name is None:
        return False
    try:
        ctypes.CDLL(name, mode=ctypes.RTLD_GLOBAL)  # already on the loader's path (conda, system)
        return True
    except OSError:
        pass
    try:
        from importlib import metadata

        files = metadata.distribution("tbb").files or []
    except Exception:  # noqa: BLE001 - no tbb distribution (or unreadable metadata)
        return False
    for file in files:
        if file.name == name:
            path = str(file.locate())
            try:
                if sys.platform == "win32":
                    os.add_dll_directory(os.path.dirname(path))
                ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
                return True
            except OSError:
                return False
    return False


def _layer_ready(numba_parallel) -> bool:
    return bool(getattr(numba_parallel, "_is_initialized", False))


_configured = False


def choose_layer() -> None:
    """Set Numba's threading layer before its pool starts (module docstring); once, cheap, nothing launched.

    Called when clskern's CPU kernels are imported, so that the layer is
    clskern's even if other code starts Numba's pool first: with ``libtbb``
    loaded, Numba's own default order (tbb, omp, workqueue) finds TBB.
    """
    global _configured
    if _configured:
        return
    with _layer_lock:
        if _configured:
            return
        import numba
        from numba.np.ufunc import parallel

        asked = os.environ.get("NUMBA_THREADING_LAYER", "").lower()
        if not _layer_ready(parallel):
            if not asked:
                # Nobody chose: TBB where it can load, else workqueue (never GNU OpenMP: it spins, forks die).
                numba.config.THREADING_LAYER = "tbb" if _preload_tbb() else "workqueue"
            elif asked in ("tbb", "default", "safe", "threadsafe", "forksafe"):
                _preload_tbb()  # so that the layer asked for can load from a pip-installed wheel
        _configured = True


def threading_layer() -> str:
    """The Numba threading layer clskern's kernels run on (starting Numba's pool if it has not started)."""
    global _chosen
    if _chosen is not None:
        return _chosen
    choose_layer()
    import numba

    numba.get_num_threads()  # launches the pool: the layer is fixed from here on
    _chosen = numba.threading_layer()
    return _chosen


@contextlib.contextmanager
def kernel_threads(nbytes: int, per_thread: int = BYTES_PER_THREAD) -> Iterator[int]:
    """Run the block's Numba kernels on ``threads_for(nbytes, per_thread)`` threads (restored after); yields it.

    Under the ``workqueue`` layer the block also holds the process-wide lock:
    that layer aborts the process when two Python threads enter it at once.
    """
    import numba

    layer = threading_layer()
    guard = _serial if layer == "workqueue" else contextlib.nullcontext()
    with guard:
        previous = numba.get_num_threads()  # a caller's numba.set_num_threads(k) is a limit too
        n = min(threads_for(nbytes, per_thread), previous)
        numba.set_num_threads(n)  # thread-local in Numba: the caller's other threads keep theirs
        try:
            yield n
        finally:
            numba.set_num_threads(previous)
