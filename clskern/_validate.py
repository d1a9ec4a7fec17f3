"""Input checks and flat, zero-copy views of score and label volumes.

The kernels read both volumes as 1-D arrays in one shared memory order. A C-
or Fortran-contiguous native-endian score volume is never copied; big-endian
volumes are byte-swapped here (one copy, in the volume's own memory order),
and strided views are made contiguous. Labels are small (a quarter of float32
scores at most): they are copied only when their memory order differs from the
scores'.
"""

import math
import numbers

import numpy as np

from .errors import EmptyGroundTruthError, InputError, ScoreDtypeError, volume_name

SCORE_DTYPES = (np.float16, np.float32, np.float64)
EMPTY_POLICIES = ("skip", "pass", "error")


def native(array):
    """``array`` in native byte order (a copy in the same memory order if swapped)."""
    if array.dtype.isnative:
        return array
    return array.astype(array.dtype.newbyteorder("="), order="K")


def score_array(scores, name=None):
    """Scores as a native-endian float16/32/64 ndarray (no copy when possible)."""
    if isinstance(scores, np.ndarray):
        array = scores
    else:
        try:
            array = np.asarray(scores)
        except (TypeError, ValueError) as exc:
            raise ScoreDtypeError(f"{volume_name(name)}: scores cannot be read as an array ({exc})") from None
    if array.dtype.kind != "f" or array.dtype.itemsize not in (2, 4, 8):
        raise ScoreDtypeError(
            f"{volume_name(name)}: scores have dtype {array.dtype}; clskern reads float16, float32 "
            "or float64 scores (cast integer or quantised scores to float32 first)"
        )
    return native(array)


def memory_order(array):
    """'C' or 'F' when ``array`` is contiguous in that order, else None."""
    if array.flags.c_contiguous:
        return "C"
    if array.flags.f_contiguous:
        return "F"
    return None


def flat_scores(scores, name=None):
    """``(flat, order, array)``: a 1-D view of the scores in memory order.

    float16 scores come back as their uint16 bit pattern (the CPU kernels
    decode them). ``array`` is the volume the view belongs to.
    """
    array = score_array(scores, name)
    order = memory_order(array)
    if order is None:
        array = np.ascontiguousarray(array)
        order = "C"
    flat = array.ravel(order=order)
    if flat.dtype == np.float16:
        flat = flat.view(np.uint16)
    return flat, order, array


def flat_labels(labels, shape, order, name=None):
    """A 1-D view of the labels in ``order`` (bool viewed as uint8)."""
    array = labels if isinstance(labels, np.ndarray) else np.asarray(labels)
    if array.dtype.kind not in "biuf":
        raise ScoreDtypeError(
            f"{volume_name(name)}: labels have dtype {array.dtype}; clskern reads bool, integer or float labels"
        )
    if array.shape != tuple(shape):
        raise InputError(
            f"{volume_name(name)}: scores have shape {tuple(shape)} but labels have shape {array.shape}"
        )
    if array.dtype.kind == "f":
        n_nan = int(np.count_nonzero(np.isnan(array)))
        if n_nan:
            raise InputError(f"{volume_name(name)}: {n_nan} NaN labels; a voxel is lesion or not")
        if array.dtype.itemsize == 2:  # float16 of either byte order: Numba's CPU target has none; labels are small
            array = array.astype(np.float32, order="K")
    flat = native(array).ravel(order=order)
    if flat.dtype == np.bool_:
        flat = flat.view(np.uint8)
    return flat


def label_target(label, dtype, name=None):
    """``(target, use_target)`` for the kernels: lesion is ``labels == target`` or ``labels > 0``."""
    dtype = np.dtype(np.uint8 if dtype == np.bool_ else dtype)
    if label is None:
        return dtype.type(0), False
    if isinstance(label, bool) or not isinstance(label, numbers.Real) or not math.isfinite(label):
        raise InputError(f"{volume_name(name)}: label must be a finite number, got {label!r}")
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        if label != int(label) or not info.min <= label <= info.max:
            raise InputError(f"{volume_name(name)}: label {label!r} cannot occur in {dtype} labels")
        return dtype.type(int(label)), True
    return dtype.type(label), True


def prepare(scores, labels, label=None, name=None):
    """Flat scores and labels plus the lesion rule, ready for the kernels."""
    flat_s, order, array = flat_scores(scores, name)
    flat_l = flat_labels(labels, array.shape, order, name)
    target, use_target = label_target(label, flat_l.dtype, name)
    return flat_s, flat_l, target, use_target


def check_empty_policy(empty, allowed=EMPTY_POLICIES):
    if empty not in allowed:
        raise ValueError(f"empty must be one of {', '.join(map(repr, allowed))}, got {empty!r}")


def empty_error(name):
    return EmptyGroundTruthError(
        f"{volume_name(name)} has no lesion voxels: its FNR is undefined "
        "(choose empty='pass' to treat it as satisfied by any threshold, or 'skip')"
    )


def scalar_or_array(values, like):
    """A Python scalar when ``like`` is 0-d (a scalar epsilon), else ``values``."""
    return values.item() if np.ndim(like) == 0 else values


def empty_threshold(empty, eps, name):
    """The critical threshold of a volume without lesion voxels, by policy (SPEC 1)."""
    if empty == "error":
        raise empty_error(name)
    return None if empty == "skip" else scalar_or_array(np.full(eps.shape, np.inf), eps)


def check_fraction(value, what, *, closed_low=True):
    """A probability-like parameter: finite, in [0, 1) (or (0, 1) if not ``closed_low``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{what} must be a number, got {value!r}")
    value = float(value)
    low_ok = value >= 0 if closed_low else value > 0
    if not (low_ok and value < 1):
        interval = "[0, 1)" if closed_low else "(0, 1)"
        raise ValueError(f"{what} must lie in {interval}, got {value!r}")
    return value


def epsilon_array(epsilon):
    """``epsilon`` as a float64 array in [0, 1) (scalar or array)."""
    eps = np.asarray(epsilon, dtype=np.float64)
    if not np.all((eps >= 0) & (eps < 1)):
        raise ValueError(f"epsilon must lie in [0, 1), got {epsilon!r}")
    return eps
