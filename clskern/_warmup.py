"""Compile every CPU kernel ahead of time, into Numba's on-disk cache.

A fresh process compiles each kernel at its first call: seconds each (a
container starts without the cache). ``warmup()`` (the command ``clskern
warmup``) calls every public entry point that runs a kernel on tiny volumes,
for each score dtype and label dtype the readers deliver, in C and Fortran
order, at voxel and lesion level, and the calibration and evaluation searches,
so that the cache holds every signature the command line and the Python API
use. Run it where the cache can be written (``RUN clskern warmup`` in a
container build): later processes load the kernels instead of compiling them.

The cache lives in the installed package's ``__pycache__`` folders, else in
Numba's user-wide folder, or in ``NUMBA_CACHE_DIR`` (``cache_dir=``): a process
that should read it there needs the same ``NUMBA_CACHE_DIR``. Numba keys each
entry on the source file and the CPU: a cache built on one CPU model is
compiled again on another (``NUMBA_CPU_NAME=generic`` trades speed for
portability).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from .errors import ArgumentError

SCORE_DTYPES = ("float16", "float32", "float64")
# What the readers deliver: a NIfTI label file's own integer or float dtype (float16 is read as float32).
LABEL_DTYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64", "float32", "float64")



@dataclass(frozen=True)
class WarmupStep:
    """One step of ``warmup``: what it ran, kernels compiled and loaded from the cache, seconds."""

    what: str
    compiled: int
    loaded: int
    seconds: float


def _dispatchers():
    """Every kernel made so far (``clskern._jit.KERNELS``, the list itself: modules a step imports add theirs)."""
    from ._jit import KERNELS

    return KERNELS


def _counts(dispatchers):
    """``(compiled, loaded)`` so far: signatures Numba found missing from, or read from, the cache."""
    compiled = loaded = 0
    for d in dispatchers:
        stats = d.stats
        compiled += sum(stats.cache_misses.values())
        loaded += sum(stats.cache_hits.values())
    return compiled, loaded


def _volume(score_dtype, label_dtype, order, rng):
    """A 5x6x7 volume with two lesions, ties and a zero: every branch a real volume takes, at any dtype."""
    shape = (5, 6, 7)
    scores = rng.random(shape)
    scores[0, 0, :3] = 0.0
    scores[1, 1, 1] = scores[1, 1, 2]
    labels = np.zeros(shape, label_dtype)
    labels[1:3, 1:3, 1:4] = 1
    labels[4, 4:6, 5:7] = 2
    return (np.asarray(scores.astype(score_dtype), order=order), np.asarray(labels, order=order))


def _volume_calls(scores, labels):
    import clskern

    clskern.volume_stats(scores, labels)
    clskern.volume_stats(scores, labels, connectivity=None, label=2)
    clskern.critical_threshold(scores, labels, 0.2)
    clskern.critical_threshold(scores, labels, np.linspace(0.0, 0.9, 12))  # many ranks: the sort path
    clskern.critical_threshold(scores, labels, 0.2, level="lesion")
    clskern.critical_threshold(scores, labels, 0.2, level="lesion", overlap=0.5)
    clskern.lesion_scores(scores, labels)
    clskern.apply_threshold(scores, 0.5)
    clskern.score_range(scores)


def _calibration_calls(rng):
    """crc and rcps at both levels, and the protocol's fast searches, on 40 tiny cases (sizes do not matter)."""
    import clskern

    cases = {f"case{i}": clskern.volume_stats(*_volume("float32", "uint8", "C", rng)) for i in range(40)}
    for level in ("voxel", "lesion"):
        clskern.calibrate(cases, epsilon=0.4, method="crc", level=level)
        clskern.calibrate(cases, epsilon=0.4, method="rcps", delta=0.5, level=level)
    clskern.evaluate(cases, epsilon=0.4, alpha=0.5, splits=2, methods=("cls", "crc", "rcps"), sweeps=False)
    clskern.evaluate(cases, epsilon=0.4, alpha=0.5, splits=2, methods=("cls", "crc"), sweeps=False, level="lesion")


def _check_dtypes(asked, allowed, what):
    names = []
    for dtype in asked:
        try:
            name = np.dtype(dtype).name
        except TypeError:
            name = None
        if name not in allowed:
            raise ArgumentError(f"{what} must be among {', '.join(allowed)}; got {dtype!r}")
        names.append(name)
    if not names:
        raise ArgumentError(f"{what}: name at least one")
    return tuple(dict.fromkeys(names))


def set_cache_dir(cache_dir: str | os.PathLike[str]) -> str:
    """Make ``cache_dir`` Numba's cache folder for this process; only before clskern's kernels are imported."""
    path = os.path.abspath(os.fspath(cache_dir))
    made = sys.modules.get("clskern._jit")
    if made is not None and made.KERNELS:  # each kernel's cache folder was fixed when it was made
        raise ArgumentError(f"cache_dir {path}: clskern's kernels are already loaded in this process, with the "
                            "cache folder they found; set NUMBA_CACHE_DIR before the first clskern call instead")
    if os.path.exists(path) and not os.path.isdir(path):
        raise ArgumentError(f"cache_dir {path}: exists and is not a folder")
    os.makedirs(path, exist_ok=True)
    import numba

    os.environ["NUMBA_CACHE_DIR"] = path  # for child processes too
    numba.config.CACHE_DIR = path
    return path


def warmup(score_dtypes: Iterable[str] = SCORE_DTYPES, label_dtypes: Iterable[str] = LABEL_DTYPES, *,
           cache_dir: str | os.PathLike[str] | None = None,
           on_step: Callable[[WarmupStep], object] | None = None) -> list[WarmupStep]:
    """Compile (or load) every kernel signature for these dtypes; returns the steps, in order.

    Parameters
    ----------
    score_dtypes, label_dtypes : iterables of dtype names
        Default: every dtype the readers deliver (``SCORE_DTYPES``,
        ``LABEL_DTYPES``); name fewer to warm a known pipeline faster.
    cache_dir : path, optional
        Numba's cache folder (``NUMBA_CACHE_DIR``); only before any clskern
        kernel ran in this process.
    on_step : callable, optional
        Called with each ``WarmupStep`` as it finishes (progress).
    """
    scores_asked = _check_dtypes(score_dtypes, SCORE_DTYPES, "score dtypes")
    labels_asked = _check_dtypes(label_dtypes, LABEL_DTYPES, "label dtypes")
    if cache_dir is not None:
        set_cache_dir(cache_dir)
    dispatchers = _dispatchers()
    rng = np.random.default_rng(0)
    steps: list[WarmupStep] = []

    def step(what, run: Callable[[], object]):
        before = _counts(dispatchers)
        started = time.perf_counter()
        run()
        after = _counts(dispatchers)
        done = WarmupStep(what, after[0] - before[0], after[1] - before[1], time.perf_counter() - started)
        steps.append(done)
        if on_step is not None:
            on_step(done)

    for score_dtype in scores_asked:
        for label_dtype in labels_asked:
            def run(score_dtype=score_dtype, label_dtype=label_dtype) -> None:
                for order in ("C", "F"):
                    _volume_calls(*_volume(score_dtype, label_dtype, order, rng))

            step(f"{score_dtype} scores, {label_dtype} labels", run)
    step("calibration and evaluation searches", lambda: _calibration_calls(rng))
    return steps
