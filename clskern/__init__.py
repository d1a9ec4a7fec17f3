"""clskern: exact one-pass kernels for conformal lesion segmentation.

Read a volume once (``volume_stats`` or the faster ``critical_threshold``),
calibrate a threshold on held-out cases (``calibrate``), cut new cases with it
(``apply_threshold``), and check the guarantee on your own data
(``evaluate``). Definitions: SPEC.md. Nothing here needs a GPU at import;
``backend="cuda"`` (or GPU arrays) runs the numba-cuda kernels.
"""

import importlib

from ._version import __version__

# Public names and the modules that hold them, imported on first use (PEP 562):
# ``import clskern`` stays light, so a command that only reads a store, or a
# resumed ``clskern stats``, does not pay for Numba's start-up.
_PUBLIC = {
    "CudaUnavailableError": "._backend",
    "apply_threshold": ".apply",
    "METHODS": ".calibration.methods",
    "calibrate": ".calibration.methods",
    "Calibration": ".calibration.record",
    "ArgumentError": ".errors",
    "ArgumentTypeError": ".errors",
    "CalibrationError": ".errors",
    "CalibrationFileError": ".errors",
    "ClsKernError": ".errors",
    "EmptyGroundTruthError": ".errors",
    "InputError": ".errors",
    "NaNScoresError": ".errors",
    "ScoreDtypeError": ".errors",
    "evaluate": ".evaluation",
    "VolumeStats": ".volume",
    "critical_threshold": ".volume",
    "lesion_scores": ".volume",
    "lesions": ".volume",
    "score_range": ".volume",
    "volume_stats": ".volume",
}


# Subpackages and modules reachable as attributes (``clskern.io.load_case``), also imported on first use.
_SUBMODULES = frozenset({
    "adapters", "apply", "batch", "calibration", "classes", "cli", "cpu", "cuda", "distributed", "errors", "evaluation",
    "io", "store", "synthetic", "volume",
})


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'clskern' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__():
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
    "NaNScoresError",
    "ScoreDtypeError",
    "VolumeStats",
    "apply_threshold",
    "calibrate",
    "critical_threshold",
    "evaluate",
    "lesion_scores",
    "lesions",
    "score_range",
    "volume_stats",
]
