"""clskern: exact one-pass kernels for conformal lesion segmentation.

Read a volume once (``volume_stats`` or the faster ``critical_threshold``),
calibrate a threshold on held-out cases (``calibrate``), and cut new cases with
it (``apply_threshold``). Definitions: SPEC.md; nothing here needs a GPU.
"""

from ._version import __version__
from .apply import apply_threshold
from .calibration import METHODS, calibrate
from ._calibration_record import Calibration
from .errors import (
    CalibrationError,
    ClsKernError,
    EmptyGroundTruthError,
    InputError,
    NaNScoresError,
    ScoreDtypeError,
)
from .volume import VolumeStats, critical_threshold, lesion_scores, volume_stats

__all__ = [
    "__version__",
    "METHODS",
    "Calibration",
    "CalibrationError",
    "ClsKernError",
    "EmptyGroundTruthError",
    "InputError",
    "NaNScoresError",
    "ScoreDtypeError",
    "VolumeStats",
    "apply_threshold",
    "calibrate",
    "critical_threshold",
    "lesion_scores",
    "volume_stats",
]
