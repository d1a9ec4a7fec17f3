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

from .errors import ArgumentError, ArgumentTypeError, EmptyGroundTruthError, InputError, ScoreDtypeError, volume_name

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


def _short(value, limit=60):
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_real_scalar(value):
    """A real number, not a bool (Python's, NumPy's), string or complex."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def real_number(value, what, *, finite=False):
    """``value`` as a float: a real number, never NaN (nor +-inf when ``finite``); else an error naming ``what``."""
    if not _is_real_scalar(value):
        raise ArgumentTypeError(f"{what} must be a real number, got {_short(value)} ({type(value).__name__})")
    try:
        number = float(value)
    except (OverflowError, TypeError, ValueError):
        raise ArgumentError(f"{what} {_short(value)} does not convert to float64") from None
    if math.isnan(number) or (finite and math.isinf(number)):
        raise ArgumentError(f"{what} must be {'finite' if finite else 'a number, not NaN'}, got {number!r}")
    return number


def real_array(value, what, *, finite=True):
    """``value`` (a real number or an array of them) as float64, never NaN (nor +-inf when ``finite``).

    Strings, bytes, bools, None, complex numbers and object arrays are refused
    (``ArgumentTypeError``, also a ``TypeError``) rather than converted.
    """
    if _is_real_scalar(value):
        array = np.asarray(real_number(value, what, finite=finite), dtype=np.float64)
    else:
        if value is None or isinstance(value, (str, bytes, bytearray, bool, np.bool_, complex)):
            raise ArgumentTypeError(f"{what} must be a real number or an array of them, got {_short(value)}")
        try:
            array = np.asarray(value)
        except Exception:  # ragged lists, objects NumPy cannot read
            raise ArgumentTypeError(f"{what} must be a real number or an array of them, got {_short(value)}") from None
        if array.dtype.kind not in "iuf":
            raise ArgumentTypeError(
                f"{what} must be a real number or an array of them, got {_short(value)} (dtype {array.dtype})"
            )
        array = array.astype(np.float64)
    bad = np.isnan(array) | (np.isinf(array) if finite else False)
    if bad.any():
        raise ArgumentError(f"{what} must be {'finite' if finite else 'free of NaN'}, got {_short(value)}")
    return array


def check_label(label, name=None):
    """``label``: None or a finite real number (checked before any volume is read)."""
    if label is None:
        return None
    try:
        return real_number(label, "label", finite=True)
    except ArgumentError as exc:
        raise type(exc)(f"{volume_name(name)}: {exc}") from None


def label_target(label, dtype, name=None):
    """``(target, use_target)`` for the kernels: lesion is ``labels == target`` or ``labels > 0``."""
    dtype = np.dtype(np.uint8 if dtype == np.bool_ else dtype)
    if label is None:
        return dtype.type(0), False
    check_label(label, name)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        if label != int(label) or not info.min <= label <= info.max:
            raise ArgumentError(f"{volume_name(name)}: label {label!r} cannot occur in {dtype} labels")
        return dtype.type(int(label)), True
    return dtype.type(label), True


def prepare(scores, labels, label=None, name=None):
    """Flat scores and labels plus the lesion rule, ready for the kernels."""
    flat_s, order, array = flat_scores(scores, name)
    flat_l = flat_labels(labels, array.shape, order, name)
    target, use_target = label_target(label, flat_l.dtype, name)
    return flat_s, flat_l, target, use_target


def check_empty_policy(empty, allowed=EMPTY_POLICIES):
    if not isinstance(empty, str) or empty not in allowed:
        raise ArgumentError(f"empty must be one of {', '.join(map(repr, allowed))}, got {empty!r}")


def empty_error(name):
    return EmptyGroundTruthError(
        f"{volume_name(name)} has no lesion voxels: its FNR is undefined "
        "(choose empty='pass' to treat it as satisfied by any threshold, or 'skip')"
    )


def scalar_or_array(values, like):
    """A Python scalar when ``like`` is 0-d (a scalar epsilon), else ``values``."""
    return values.item() if np.ndim(like) == 0 else values


def empty_threshold(empty, eps, name):
    """The critical threshold of a volume without lesion voxels, by policy (docs: one case)."""
    if empty == "error":
        raise empty_error(name)
    return None if empty == "skip" else scalar_or_array(np.full(eps.shape, np.inf), eps)


def check_fraction(value, what, *, closed_low=True):
    """A probability-like parameter: finite, in [0, 1) (or (0, 1) if not ``closed_low``)."""
    if not _is_real_scalar(value):
        raise ArgumentTypeError(f"{what} must be a number, got {_short(value)}")
    value = real_number(value, what)
    low_ok = value >= 0 if closed_low else value > 0
    if not (low_ok and value < 1):
        interval = "[0, 1)" if closed_low else "(0, 1)"
        raise ArgumentError(f"{what} must lie in {interval}, got {value!r}")
    return value


def epsilon_array(epsilon, what="epsilon"):
    """``epsilon`` as a float64 array in [0, 1) (a real number or an array of them; never a string)."""
    eps = real_array(epsilon, what)
    if not np.all((eps >= 0) & (eps < 1)):
        raise ArgumentError(f"{what} must lie in [0, 1), got {_short(epsilon)}")
    return eps
