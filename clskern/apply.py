"""Test-time masks: ``apply_threshold``."""

import numpy as np

from . import _backend
from . import _cpu_kernels as kernels
from ._validate import flat_scores, real_number
from .errors import ArgumentError, ArgumentTypeError, NaNScoresError, volume_name


def apply_threshold(scores, threshold, *, out=None, name=None, backend="auto"):
    """The mask ``scores >= threshold`` as uint8, in one parallel pass.

    Parameters
    ----------
    scores : array_like of float16, float32 or float64
        A score volume, read in place when C- or Fortran-contiguous.
    threshold : float
        Typically ``Calibration.threshold``; compared in float64, so a
        threshold taken from float32 scores keeps its exact meaning.
    out : ndarray of uint8, optional
        Written in place: a writable uint8 ndarray of the scores' shape,
        contiguous in the scores' memory order, sharing no memory with them.
    name : str, optional
        Case id for error messages.
    backend : {"auto", "cpu", "cuda"}
        ``auto`` follows the scores' device; on the GPU the mask is written
        on the device (a CuPy array, torch tensor or numba device array like
        the scores, or ``out``); ``cuda`` with host scores returns a host mask.

    Returns
    -------
    ndarray of uint8
        Same shape and memory order as ``scores`` (C order for strided views);
        on the device for device scores.

    Raises
    ------
    NaNScoresError
        If any score is NaN (the mask would silently call it background).
    ArgumentError, ArgumentTypeError
        For a threshold that is not a real number (NaN included; +-inf are
        allowed), and for an ``out`` that cannot take the mask (the message
        names ``out``; ``ArgumentTypeError``, also a ``TypeError``, when it is
        not a NumPy array at all).
    """
    threshold = real_number(threshold, "threshold")
    if _backend.use_cuda(backend, scores, out, name=name):
        return _backend.apply_threshold(scores, threshold, out, name)
    flat, order, array = flat_scores(scores, name)
    if out is None:
        out = np.empty(array.shape, dtype=np.uint8, order=order)
    else:
        _check_out(out, array, order, name)
    n_nan = int(kernels.threshold_mask(flat, threshold, out.ravel(order=order)))
    if n_nan:
        raise NaNScoresError(f"{volume_name(name)}: {n_nan} NaN scores; a mask would call them background")
    return out


def _check_out(out, array, order, name):
    """``out`` must be able to take the mask in place, before any kernel sees it."""
    where = volume_name(name)
    if not isinstance(out, np.ndarray):
        raise ArgumentTypeError(f"{where}: out must be a uint8 NumPy array, got {type(out).__name__}")
    if out.dtype != np.uint8:
        raise ArgumentError(f"{where}: out must be a uint8 array of shape {array.shape}, got dtype {out.dtype}")
    if out.shape != array.shape:
        raise ArgumentError(f"{where}: out must be a uint8 array of shape {array.shape}, got shape {out.shape}")
    if not out.flags.writeable:
        raise ArgumentError(f"{where}: out is read-only")
    if not (out.flags.c_contiguous if order == "C" else out.flags.f_contiguous):
        raise ArgumentError(f"{where}: out must be {order}-contiguous like the scores")
    if np.shares_memory(out, array):
        raise ArgumentError(f"{where}: out shares memory with the scores; the mask would overwrite them as it goes")
