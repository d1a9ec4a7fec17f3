"""Lesion level (docs: lesions), the parts that need no kernel: argument checks, ``r_j``, detection scores.

Both backends' labelling kernels (``clskern.cpu._components``, and the GPU's)
and the library (``clskern.volume``, ``clskern.calibration``) share these, so
``level``, ``overlap`` and ``connectivity`` are checked alike everywhere, and
a lesion's required voxel count ``r_j = max(1, ceil(overlap * m_j))`` is
computed by one exact rule.
"""

import numbers
from fractions import Fraction

import numpy as np

from ._ranks import largest_rank
from ._validate import check_empty_policy, empty_threshold, epsilon_array, real_number, scalar_or_array
from .errors import ArgumentError, ArgumentTypeError, NaNScoresError, volume_name

LEVELS = ("voxel", "lesion")
CONNECTIVITIES = (6, 18, 26)
DEFAULT_CONNECTIVITY = 26


def check_level(level):
    """``level``: ``"voxel"`` or ``"lesion"``; else an error naming it."""
    if not isinstance(level, str):
        raise ArgumentTypeError(f"level must be 'voxel' or 'lesion' (a string), got {level!r}")
    if level not in LEVELS:
        raise ArgumentError(f"level must be 'voxel' or 'lesion', got {level!r}")
    return level


def check_connectivity(connectivity, *, optional=False):
    """``connectivity`` as an int in (6, 18, 26) (or None when ``optional``); else an error naming it."""
    if connectivity is None and optional:
        return None
    if isinstance(connectivity, (bool, np.bool_)) or not isinstance(connectivity, numbers.Integral):
        extra = " or None" if optional else ""
        raise ArgumentTypeError(f"connectivity must be 6, 18 or 26 (an integer){extra}, got {connectivity!r}")
    if int(connectivity) not in CONNECTIVITIES:
        raise ArgumentError(f"connectivity must be 6, 18 or 26, got {connectivity!r}")
    return int(connectivity)


def check_overlap(overlap):
    """``overlap`` (tau) as a float in [0, 1]; else an error naming it."""
    value = real_number(overlap, "overlap")
    if not 0.0 <= value <= 1.0:
        raise ArgumentError(f"overlap must lie in [0, 1], got {overlap!r}")
    return value


def check_level_overlap(level, overlap):
    """``(level, overlap)`` checked together: an overlap other than 0 means lesion level."""
    level = check_level(level)
    overlap = check_overlap(overlap)
    if level == "voxel" and overlap != 0.0:
        raise ArgumentError(f"overlap={overlap!r} applies to level='lesion' only (a voxel has no overlap)")
    return level, overlap


def required_voxels(sizes, overlap):
    """``r_j = max(1, ceil(overlap * m_j))`` for each lesion size ``m_j``, exactly (int64).

    The product is the exact rational ``overlap * m_j`` (``overlap`` as the
    float64 it is). Its float64 rounding ``p`` is within half an ulp of it,
    so ``ceil(p)`` is exact unless an integer lies within an ulp of ``p``:
    only those sizes (and sizes of 2**53 voxels or more, not exact as floats)
    are computed again with integers.
    """
    sizes = np.asarray(sizes, np.int64)
    overlap = check_overlap(overlap)
    if overlap == 0.0 or sizes.size == 0:
        return np.ones(sizes.shape, np.int64)
    if overlap == 1.0:
        return np.maximum(sizes, 1)
    product = overlap * sizes.astype(np.float64)
    needed = np.ceil(product).astype(np.int64)
    doubtful = (np.abs(product - np.round(product)) <= 2 * np.spacing(product)) | (sizes >= 2**53)
    if doubtful.any():
        numerator, denominator = Fraction(overlap).as_integer_ratio()
        needed[doubtful] = [-(-numerator * int(m) // denominator) for m in sizes[doubtful]]
    return np.maximum(needed, 1)


def detection_scores(offsets, scores, overlap=0.0):
    """Each lesion's detection score ``d_j``: the ``r_j``-th largest of its scores (docs: lesions).

    ``offsets`` and ``scores`` are a ragged layout (``clskern.lesions``,
    ``VolumeStats.lesion_offsets``/``lesion_groups``): lesion ``j``'s scores,
    sorted ascending, are ``scores[offsets[j]:offsets[j + 1]]``. Lesion ``j``
    is detected at ``t`` exactly when ``t <= d_j``. Returns an array of
    ``scores``' dtype, one per lesion, in the lesions' order.
    """
    offsets = np.asarray(offsets, np.int64)
    scores = np.asarray(scores)
    sizes = np.diff(offsets)
    if sizes.size and sizes.min() < 1:
        raise ArgumentError("every lesion has at least one voxel: offsets must be strictly increasing")
    r = required_voxels(sizes, overlap)
    return scores[offsets[1:] - r]


def lesion_critical_threshold(d, epsilon, empty="error", name=None):
    """The lesion-level critical threshold: ``sorted(d)[k]`` (docs: lesions).

    ``k`` is the largest ``j`` in ``0..L-1`` with ``j / L <= epsilon``
    (float64, as ``clskern.critical_threshold``), so ``L-FNR(t) <= epsilon``
    exactly for ``t`` up to the result. ``L = 0`` follows ``empty``: raise
    (``"error"``), ``+inf`` (``"pass"``) or None (``"skip"``). Returns a
    float, or a float64 array of ``epsilon``'s shape.
    """
    check_empty_policy(empty)
    eps = epsilon_array(epsilon)
    d = np.asarray(d)
    n = d.size
    if n == 0:
        return empty_threshold(empty, eps, name)
    if np.isnan(d).any():
        raise NaNScoresError(f"{volume_name(name)}: NaN detection scores; clskern never drops them silently")
    k = largest_rank(eps, n, n - 1)
    ordered = np.sort(d.ravel()) + 0.0  # one bit pattern for zero
    return scalar_or_array(ordered[k].astype(np.float64), eps)
