"""Where an adapter's threshold comes from: a ``Calibration``, its JSON file, or a number."""

import os

import numpy as np

from .._calibration_record import Calibration
from ..errors import InputError


def load_threshold(calibration):
    """The threshold of a ``Calibration``, a calibration JSON file, or a number."""
    if isinstance(calibration, Calibration):
        return float(calibration.threshold)
    if isinstance(calibration, (str, os.PathLike)):
        path = os.fspath(calibration)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        try:
            return float(Calibration.from_json(text).threshold)
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{path}: not a clskern calibration file ({exc})") from None
    if isinstance(calibration, bool) or not isinstance(calibration, (int, float, np.floating, np.integer)):
        raise TypeError(f"expected a Calibration, a calibration file or a threshold, got {type(calibration).__name__}")
    value = float(calibration)
    if np.isnan(value):
        raise ValueError("the threshold must not be NaN")
    return value
