"""clskern: exact one-pass kernels for conformal lesion segmentation.

Read a volume once (``volume_stats`` or the faster ``critical_threshold``),
calibrate a threshold on held-out cases (``calibrate``), cut new cases with it
(``apply_threshold``), and check the guarantee on your own data
(``evaluate``). Definitions: SPEC.md. Nothing here needs a GPU at import;
``backend="cuda"`` (or GPU arrays) runs the numba-cuda kernels.
"""

from ._version import __version__
from ._backend import CudaUnavailableError
from .apply import apply_threshold
from .calibration import METHODS, calibrate
from ._calibration_record import Calibration
from .errors import (
    ArgumentError,
    ArgumentTypeError,
    CalibrationError,
    CalibrationFileError,
    ClsKernError,
    EmptyGroundTruthError,
    InputError,
    NaNScoresError,
    ScoreDtypeError,
)
from .evaluation import evaluate
from .volume import VolumeStats, critical_threshold, lesion_scores, volume_stats

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
    "volume_stats",
]
