"""Where an adapter's threshold comes from: a ``Calibration``, its JSON file, or a number."""

import os

import numpy as np

from ..calibration.record import Calibration
from .._validate import real_number
from ..errors import ArgumentTypeError


def load_threshold(calibration):
    """The threshold of a ``Calibration``, a calibration JSON file, or a number."""
    if isinstance(calibration, Calibration):
        return float(calibration.threshold)
    if isinstance(calibration, (str, os.PathLike)):
        return Calibration.read(os.fspath(calibration)).threshold  # digest and consistency checked
    if isinstance(calibration, (bool, np.bool_)) or not isinstance(calibration, (int, float, np.floating, np.integer)):
        raise ArgumentTypeError(
            f"expected a Calibration, a calibration file or a threshold, got {type(calibration).__name__}")
    return real_number(calibration, "threshold")
