"""Test-time masks: ``apply_threshold``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from . import _backend
from ._normalize import check_normalize, check_range, score_cut
from ._validate import real_number

if TYPE_CHECKING:  # annotations only
    from numpy.typing import ArrayLike, NDArray


def apply_threshold(scores: ArrayLike, threshold: float, *, normalize: str = "none", out: NDArray[np.uint8] | None = None,
                    name: str | None = None, backend: str = "auto") -> NDArray[np.uint8]:
    """The mask ``scores >= threshold`` as uint8, in one parallel pass.

    Parameters
    ----------
    scores : array_like of float16, float32 or float64
        A score volume, read in place when C- or Fortran-contiguous.
    threshold : float
        Typically ``Calibration.threshold``; compared in float64, so a
        threshold taken from float32 scores keeps its exact meaning.
    normalize : {"none", "minmax"}
        ``"minmax"`` (docs: min-max normalisation; ``Calibration.normalize``): the mask is
        ``q >= threshold`` with ``q = (p - min p) / (max p - min p)`` over
        this volume, in float64, voxel for voxel. One pass finds the exact
        minimum and maximum, the threshold becomes the smallest score of the
        volume's dtype whose ``q`` reaches it (``clskern._normalize.score_cut``),
        and the mask pass compares the scores with that: no voxel is rescaled.
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
    kernels = _backend.kernels(backend, scores, out, name=name)
    return kernels.apply_threshold(scores, cut_in_scores(kernels, scores, threshold, normalize, name), out, name)


def cut_in_scores(kernels, scores, threshold, normalize, name=None):
    """The cut on ``scores`` themselves equivalent to ``threshold`` on their ``normalize`` scale.

    ``"none"``: the threshold itself. ``"minmax"``: one pass (``kernels``, a
    backend of ``clskern._backend``) finds the volume's exact range, and the
    cut is the smallest score whose ``q`` reaches the threshold
    (``_normalize.score_cut``).
    """
    if check_normalize(normalize) == "none":
        return threshold
    low, high = kernels.score_range(scores, name)
    if low is None:  # an empty volume has an empty mask whatever the cut
        return threshold
    dtype = np.asarray(low).dtype  # the lesion scores' dtype: float32 (float16/32 volumes) or float64
    low, high = check_range(low, high, name)
    return score_cut(threshold, low, high, dtype)
