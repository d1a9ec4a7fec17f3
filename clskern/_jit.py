"""clskern's ``njit``: Numba's, with an on-disk cache that never fails a call.

Every kernel is compiled once and cached on disk (``cache=True``): in the
package's ``__pycache__``, else in Numba's user-wide folder, or in
``NUMBA_CACHE_DIR`` (``clskern warmup`` fills it ahead of time). A cache that
cannot be written (a read-only install with no writable home, a full disk, a
file where the folder should be) or read (a damaged entry) must not turn a
call into an error: the kernel is then compiled in memory for this process,
and clskern says so once, with a ``KernelCacheWarning`` (the CLI prints it as
one line on stderr).
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable
from typing import Any

import numba

from .errors import KernelCacheWarning

_warned = threading.Event()
KERNELS: list[Any] = []  # every dispatcher made here, in the order their modules were imported (``clskern warmup``)


def warn_uncached(reason: str) -> None:
    """Warn once per process that kernels compile in memory because the cache cannot be used."""
    if _warned.is_set():
        return
    _warned.set()
    warnings.warn(
        f"clskern: Numba's kernel cache cannot be used ({' '.join(str(reason).split())}); kernels are compiled in "
        "memory for this process, which costs seconds at each first call: set NUMBA_CACHE_DIR to a writable "
        "folder, or run `clskern warmup` where the cache can be written",
        KernelCacheWarning, stacklevel=4,
    )


class _GuardedCache:
    """A dispatcher's ``FunctionCache`` whose failures mean "compile in memory", never an error."""

    def __init__(self, cache: Any) -> None:
        self._inner = cache

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def load_overload(self, sig: Any, target_context: Any) -> Any:
        try:
            return self._inner.load_overload(sig, target_context)
        except Exception as exc:  # noqa: BLE001 - a damaged or unreadable entry: compile instead
            warn_uncached(f"reading it failed: {type(exc).__name__}: {exc}")
            return None

    def save_overload(self, sig: Any, data: Any) -> None:
        try:
            self._inner.save_overload(sig, data)
        except Exception as exc:  # noqa: BLE001 - disk full, read-only, a file in the way: keep the compiled kernel
            warn_uncached(f"writing it failed: {type(exc).__name__}: {exc}")


def njit(*, cache: bool = True, **options: Any) -> Callable[[Callable[..., Any]], Any]:
    """``numba.njit(**options)`` with ``cache=True`` made safe (module docstring)."""

    def decorate(fn: Callable[..., Any]) -> Any:
        dispatcher = numba.njit(**options)(fn)
        if cache:
            try:
                dispatcher.enable_caching()
            except Exception as exc:  # noqa: BLE001 - no folder to cache in at all (RuntimeError from Numba)
                warn_uncached(str(exc))
            else:
                dispatcher._cache = _GuardedCache(dispatcher._cache)
        KERNELS.append(dispatcher)
        return dispatcher

    return decorate
