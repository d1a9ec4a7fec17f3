"""clskern: exact one-pass kernels for conformal lesion segmentation.

Read a volume once (``volume_stats`` or the faster ``critical_threshold``),
calibrate a threshold on held-out cases (``calibrate``), cut new cases with it
(``apply_threshold``), and check the guarantee on your own data
(``evaluate``). Definitions: docs/definitions.md. Nothing here needs a GPU at import;
``backend="cuda"`` (or GPU arrays) runs the numba-cuda kernels.
"""

import importlib
from typing import TYPE_CHECKING

from ._version import __version__

if TYPE_CHECKING:  # what type checkers see; at run time these resolve lazily (``__getattr__`` below)
    # (not the backends cpu and cuda: only clskern._backend imports both)
    from . import (adapters, apply, batch, calibration, classes, cli, distributed, errors, evaluation, io, store,
                   synthetic, volume)
    from ._backend import CudaUnavailableError
    from .apply import apply_threshold
    from .calibration.methods import METHODS, calibrate
    from .calibration.record import Calibration
    from .calibration.sets import read_calibration
    from ._threads import threads
    from .errors import (ArgumentError, ArgumentTypeError, CalibrationError, CalibrationFileError, ClsKernError,
                         EmptyGroundTruthError, InputError, KernelCacheWarning, NaNScoresError, ScoreDtypeError)
    from .evaluation import evaluate
    from .volume import VolumeStats, critical_threshold, lesion_scores, lesions, score_range, volume_stats
    from ._warmup import warmup

# Public names and the modules that hold them, imported on first use (PEP 562):
# ``import clskern`` stays light, so a command that only reads a store, or a
# resumed ``clskern stats``, does not pay for Numba's start-up.
_PUBLIC = {
    "CudaUnavailableError": "._backend",
    "apply_threshold": ".apply",
    "METHODS": ".calibration.methods",
    "calibrate": ".calibration.methods",
    "Calibration": ".calibration.record",
    "read_calibration": ".calibration.sets",
    "ArgumentError": ".errors",
    "ArgumentTypeError": ".errors",
    "CalibrationError": ".errors",
    "CalibrationFileError": ".errors",
    "ClsKernError": ".errors",
    "EmptyGroundTruthError": ".errors",
    "InputError": ".errors",
    "KernelCacheWarning": ".errors",
    "NaNScoresError": ".errors",
    "ScoreDtypeError": ".errors",
    "evaluate": ".evaluation",
    "VolumeStats": ".volume",
    "critical_threshold": ".volume",
    "lesion_scores": ".volume",
    "lesions": ".volume",
    "score_range": ".volume",
    "volume_stats": ".volume",
    "threads": "._threads",
    "warmup": "._warmup",
}


# Subpackages and modules reachable as attributes (``clskern.io.load_case``), also imported on first use.
_SUBMODULES = frozenset({
    "adapters", "apply", "batch", "calibration", "classes", "cli", "cpu", "cuda", "distributed", "errors", "evaluation",
    "io", "store", "synthetic", "volume",
})


def __getattr__(name: str) -> object:
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'clskern' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC) | _SUBMODULES)


__all__ = [
    "__version__",
    "METHODS",
    "ArgumentError",
    "ArgumentTypeError",
    "Calibration",
    "CalibrationError",
    "CalibrationFileError",
    "ClsKernError",
    "CudaUnavailableError",
    "EmptyGroundTruthError",
    "InputError",
    "KernelCacheWarning",
    "NaNScoresError",
    "ScoreDtypeError",
    "VolumeStats",
    "apply_threshold",
    "calibrate",
    "critical_threshold",
    "evaluate",
    "lesion_scores",
    "lesions",
    "read_calibration",
    "score_range",
    "threads",
    "volume_stats",
    "warmup",
]
