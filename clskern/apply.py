"""Test-time masks: ``apply_threshold``."""

import math
import numbers

import numpy as np

from . import _backend
from . import _cpu_kernels as kernels
from ._validate import flat_scores
from .errors import InputError, NaNScoresError, volume_name


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
        Written in place; same shape, contiguous in the scores' memory order.
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
    """
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or math.isnan(threshold):
        raise ValueError(f"threshold must be a number (not NaN), got {threshold!r}")
    if _backend.use_cuda(backend, scores, out, name=name):
        return _backend.apply_threshold(scores, float(threshold), out, name)
    flat, order, array = flat_scores(scores, name)
    if out is None:
        out = np.empty(array.shape, dtype=np.uint8, order=order)
    elif not isinstance(out, np.ndarray) or out.dtype != np.uint8 or out.shape != array.shape:
        raise InputError(f"{volume_name(name)}: out must be a uint8 array of shape {array.shape}")
    elif not (out.flags.c_contiguous if order == "C" else out.flags.f_contiguous):
        raise InputError(f"{volume_name(name)}: out must be {order}-contiguous like the scores")
    n_nan = int(kernels.threshold_mask(flat, float(threshold), out.ravel(order=order)))
    if n_nan:
        raise NaNScoresError(f"{volume_name(name)}: {n_nan} NaN scores; a mask would call them background")
    return out
