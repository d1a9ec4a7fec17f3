"""Many volumes at once on the GPU: critical thresholds and calibration.

``critical_thresholds`` reads the volumes of a chunk back to back on the
device (``clskern.cuda.batch``), so the host waits a handful of times per
chunk instead of per volume; ``calibrate`` is ``clskern.calibrate`` over
volumes given as (scores, labels) pairs. Results equal the one-volume calls
and the CPU bit for bit. Both need a GPU (or numba-cuda's simulator).
"""

from collections.abc import Mapping

from . import _backend
from ._validate import check_empty_policy, empty_threshold, epsilon_array, scalar_or_array
from .calibration import METHODS
from .calibration import calibrate as _calibrate
from .volume import volume_stats


def _cases(cases):
    """``(pairs, names, as_mapping)`` from a mapping id -> (scores, labels) or a sequence of pairs."""
    if isinstance(cases, Mapping):
        return list(cases.values()), [str(k) for k in cases.keys()], True
    pairs = list(cases)
    return pairs, [f"#{i}" for i in range(len(pairs))], False


def _pair(pair, name):
    try:
        scores, labels = pair
    except (TypeError, ValueError):
        raise TypeError(f"case {name}: expected a (scores, labels) pair") from None
    return scores, labels


def critical_thresholds(cases, epsilon, *, label=None, empty="skip", chunk=16):
    """Critical thresholds of many volumes, computed on the GPU in batches.

    Parameters
    ----------
    cases : mapping of case id -> (scores, labels), or sequence of pairs
        GPU arrays are read in place; host arrays are copied over, ``chunk``
        volumes at a time.
    epsilon : float or array_like
        Tolerated FNR, in [0, 1).
    label : number, optional
        The lesion label value in multi-label masks.
    empty : {"skip", "pass", "error"}
        Volumes without lesion voxels give None, +inf, or raise.
    chunk : int
        Volumes on the device at once.

    Returns
    -------
    dict or list
        Case id -> threshold for a mapping, else a list in input order; each
        threshold as ``clskern.critical_threshold`` gives it.
    """
    _backend.check_cuda()
    check_empty_policy(empty)
    eps = epsilon_array(epsilon)
    if int(chunk) < 1:
        raise ValueError(f"chunk must be a positive integer, got {chunk!r}")
    pairs, names, as_mapping = _cases(cases)
    pairs = [_pair(pair, name) for pair, name in zip(pairs, names)]
    values = _backend.gpu_critical_thresholds(pairs, names, eps, label, int(chunk))
    results = [
        empty_threshold(empty, eps, name) if v is None else scalar_or_array(v, eps) for v, name in zip(values, names)
    ]
    return dict(zip(names, results)) if as_mapping else results


def calibrate(cases, *, epsilon, alpha=None, method="cls", delta=None, empty="skip", label=None, chunk=16):
    """``clskern.calibrate`` over volumes given as (scores, labels) pairs, read on the GPU.

    Parameters
    ----------
    cases : mapping of case id -> (scores, labels), or sequence of pairs
        As in ``critical_thresholds``.
    epsilon, alpha, method, delta, empty
        As in ``clskern.calibrate``.
    label : number, optional
        The lesion label value in multi-label masks.
    chunk : int
        Volumes on the device at once (``cls``, ``cls-pac``).

    Returns
    -------
    Calibration
        Equal to ``clskern.calibrate`` of the CPU statistics (case ids are the
        mapping's keys, or ``#0``, ``#1``, ... for a sequence).

    Notes
    -----
    ``cls`` and ``cls-pac`` need only each volume's critical threshold
    (``critical_thresholds``, batched); ``crc`` and ``rcps`` need every
    volume's statistics (``volume_stats(..., backend="cuda")``, one by one).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    pairs, names, as_mapping = _cases(cases)
    if method in ("cls", "cls-pac"):
        given = dict(zip(names, pairs)) if as_mapping else pairs  # ``cases`` may be an iterator, now spent
        values = critical_thresholds(given, epsilon, label=label, empty="skip", chunk=chunk)
    else:
        _backend.check_cuda()
        stats = [
            volume_stats(*_pair(pair, name), label=label, name=name if as_mapping else None, backend="cuda")
            for pair, name in zip(pairs, names)
        ]
        values = dict(zip(names, stats)) if as_mapping else stats
    return _calibrate(values, epsilon=epsilon, alpha=alpha, method=method, delta=delta, empty=empty)
