"""Where an adapter's threshold comes from: a ``Calibration``, its JSON file, or a number."""

import os

import numpy as np

from .._validate import real_number
from ..calibration.record import Calibration
from ..errors import ArgumentTypeError, CalibrationFileError


def load_calibration_or_set(calibration):
    """A ``Calibration``, a ``CalibrationSet`` (per class or per group), or a number, as given or read.

    A path is read as ``clskern apply`` reads it: a checked ``Calibration`` or
    ``CalibrationSet``, whichever the file holds.
    """
    from ..calibration.sets import read_calibration

    if isinstance(calibration, (str, os.PathLike)):
        return read_calibration(os.fspath(calibration))  # digest and consistency checked
    return calibration


def _refuse_set(calibration, where):
    from ..calibration.sets import CalibrationSet

    if isinstance(calibration, CalibrationSet):
        raise CalibrationFileError(f"{where}a calibration per {calibration.by} ({', '.join(calibration.names)}), "
                                   "not one threshold; pass one of its members (the_set[NAME])")


def load_calibration(calibration):
    """``(threshold, channel, normalize)`` of a ``Calibration``, a calibration JSON file, or a number.

    ``channel`` is the score channel the calibration cases were read from
    (``Calibration.reading``), or None where it is not recorded (always for a
    bare number); ``normalize`` how each volume's scores are rescaled before
    the cut (``Calibration.normalize``; ``"none"`` for a number). A
    calibration per class or per group (``CalibrationSet``) is refused in one
    line naming its members: it is not one threshold.
    """
    where = f"{os.fspath(calibration)}: " if isinstance(calibration, (str, os.PathLike)) else ""
    calibration = load_calibration_or_set(calibration)
    _refuse_set(calibration, where)
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
