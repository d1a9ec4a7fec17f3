"""Calibration: from per-case statistics to a certified threshold, and its file.

- ``methods``: ``calibrate`` and its four methods (``cls``, ``cls-pac``,
  ``crc``, ``rcps``), each certifying its own promise about a new case's FNR.
- ``record``: ``Calibration``, the result, its JSON file and the checks that
  make a file trustworthy (digest, recomputed ``k`` and threshold).
- ``_binomial``: the binomial tail and the Hoeffding-Bentkus p-value, exact
  where a decision is closer than rounding can tell.
- ``_risk_search``: the exact search for the largest threshold ``crc`` and
  ``rcps`` certify.

The exact rank rule they share with the kernels (the largest ``j`` with
``j / n <= fraction``) is ``clskern._ranks``. Names load on first use (PEP
562), so reading a calibration file (``Calibration``) imports neither the
statistics nor Numba.
"""

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # what type checkers see; at run time these resolve lazily (``__getattr__`` below)
    from .methods import METHODS, calibrate, risk_predicate
    from .record import Calibration, EmptyPolicy, Level, Method, Normalize

_PUBLIC = {
    "METHODS": ".methods",
    "calibrate": ".methods",
    "risk_predicate": ".methods",
    "_NEEDS": ".methods",
    "_cls_rank": ".methods",
    "_cls_pac_rank": ".methods",
    "Calibration": ".record",
    "EmptyPolicy": ".record",
    "Level": ".record",
    "Method": ".record",
    "Normalize": ".record",
}


def __getattr__(name: str) -> object:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'clskern.calibration' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))


__all__ = ["METHODS", "Calibration", "EmptyPolicy", "Level", "Method", "Normalize", "calibrate", "risk_predicate"]
