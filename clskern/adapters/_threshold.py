"""Where an adapter's threshold comes from: a ``Calibration``, its JSON file, or a number."""

import os

import numpy as np

from .._validate import real_number
from ..calibration.record import Calibration
from ..errors import ArgumentTypeError


def load_calibration(calibration):
    """``(threshold, channel, normalize)`` of a ``Calibration``, a calibration JSON file, or a number.

    ``channel`` is the score channel the calibration cases were read from
    (``Calibration.reading``), or None where it is not recorded (always for a
    bare number); ``normalize`` how each volume's scores are rescaled before
    the cut (``Calibration.normalize``; ``"none"`` for a number).
    """
    if isinstance(calibration, (str, os.PathLike)):
        calibration = Calibration.read(os.fspath(calibration))  # digest and consistency checked
    if isinstance(calibration, Calibration):
        reading = calibration.reading or {}
        return float(calibration.threshold), reading.get("channel"), getattr(calibration, "normalize", "none")
    if isinstance(calibration, (bool, np.bool_)) or not isinstance(calibration, (int, float, np.floating, np.integer)):
        raise ArgumentTypeError(
            f"expected a Calibration, a calibration file or a threshold, got {type(calibration).__name__}")
    return real_number(calibration, "threshold"), None, "none"


def load_threshold(calibration):
    """The threshold of a ``Calibration``, a calibration JSON file, or a number."""
    return load_calibration(calibration)[0]
