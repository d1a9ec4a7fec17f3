"""Exceptions raised by clskern.

Every error is a ``ValueError`` (or ``OSError`` for files), so callers that
already catch those keep working; the subclasses let them tell causes apart.
Messages name the volume (or file) and the problem.
"""


class ClsKernError(ValueError):
    """Base class of every clskern input or calibration error."""


class InputError(ClsKernError):
    """Inputs that cannot be used: scores or labels of the wrong shape, dtype or layout, bad arguments, files."""


class ArgumentError(InputError):
    """An argument of a public function outside its domain: NaN, out of range, the wrong shape.

    The message names the argument.
    """


class ArgumentTypeError(ArgumentError, TypeError):
    """An argument of the wrong type (a string, bool, complex or object where a real number goes).

    Also a ``TypeError``; the message names the argument.
    """


class CalibrationFileError(InputError):
    """A calibration record that cannot be trusted: not JSON, edited, inconsistent, another format.

    Raised by ``Calibration.from_json``/``from_dict`` (reason only) and by
    ``Calibration.read`` and ``read_calibration`` (``"{path}: {reason}"``, one line).
    """


class ScoreDtypeError(InputError, TypeError):
    """Scores or labels of a dtype clskern does not read (also a TypeError)."""


class NaNScoresError(InputError):
    """Scores containing NaN: never dropped silently."""


class EmptyGroundTruthError(InputError):
    """A volume without lesion voxels under ``empty="error"``."""


class CalibrationError(ClsKernError):
    """No threshold can be certified for the request (too few volumes, say)."""


class KernelCacheWarning(RuntimeWarning):
    """Numba's on-disk kernel cache could not be used: kernels are compiled in memory for this process."""


def volume_name(name):
    """How messages refer to a volume: ``volume 'case_01'`` or just ``volume``."""
    return "volume" if name is None else f"volume {name!r}"
