"""Exceptions raised by clskern.

Every error is a ``ValueError`` (or ``OSError`` for files), so callers that
already catch those keep working; the subclasses let them tell causes apart.
Messages name the volume (or file) and the problem.
"""


class ClsKernError(ValueError):
    """Base class of every clskern input or calibration error."""


class InputError(ClsKernError):
    """Scores or labels that cannot be used: wrong shape, dtype or layout."""


class ScoreDtypeError(InputError, TypeError):
    """Scores or labels of a dtype clskern does not read (also a TypeError)."""


class NaNScoresError(InputError):
    """Scores containing NaN: never dropped silently."""


class EmptyGroundTruthError(InputError):
    """A volume without lesion voxels under ``empty="error"``."""


class CalibrationError(ClsKernError):
    """No threshold can be certified for the request (too few volumes, say)."""


def volume_name(name):
    """How messages refer to a volume: ``volume 'case_01'`` or just ``volume``."""
    return "volume" if name is None else f"volume {name!r}"
