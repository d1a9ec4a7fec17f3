"""Per-volume score normalisation (docs: min-max normalisation), in NumPy: ``minmax`` and ``score_cut``.

``normalize="minmax"`` replaces a volume's scores ``p`` by
``q = (p - min p) / (max p - min p)``, computed in float64 over every voxel of
that volume (``q = 0`` everywhere when ``max p == min p``). Each step is a
correctly rounded, monotone operation, so ``q`` is non-decreasing in ``p``;
everything clskern computes in ``q`` therefore follows from the scores
themselves:

- a sorted array of scores maps to a sorted array of ``q``: critical
  thresholds in ``q`` are ``q(s[k])``, FN counts at ``t`` are ``#{q(s) < t}``;
- ``score_cut(t, lo, hi, dtype)``, the smallest value ``x`` of the scores'
  dtype in ``[lo, hi]`` with ``q(x) >= t``, turns a cut in ``q`` back into a
  cut in ``p``: for every score ``p`` of the volume (``lo <= p <= hi``),
  ``p >= score_cut(t)`` exactly when ``q(p) >= t``. The masks of ``apply``
  and the counts of the statistics use the score cut, so no voxel is ever
  rescaled.

The bisection over a dtype's ordered bit patterns (``ordered``,
``from_ordered``, ``smallest_reaching``) is shared with the authors'
baseline (``clskern.evaluation.authors``), which rescales in the scores' own
dtype instead.
"""

import numpy as np

from .errors import ArgumentError, InputError, volume_name

NORMALIZATIONS = ("none", "minmax")


def check_normalize(normalize):
    """``normalize`` must be one of ``NORMALIZATIONS``; returns it."""
    if not isinstance(normalize, str) or normalize not in NORMALIZATIONS:
        raise ArgumentError(f"normalize must be one of {', '.join(map(repr, NORMALIZATIONS))}, got {normalize!r}")
    return normalize


def check_range(lo, hi, name=None):
    """``(lo, hi)`` as float64 after checking that min-max normalisation is defined for them.

    ``None`` (statistics without a recorded range), infinite scores and a
    span that overflows float64 are refused: ``q`` would be NaN or 0 for
    every finite score.
    """
    if lo is None or hi is None:
        raise InputError(
            f"{volume_name(name)}: normalize='minmax' needs the volume's exact score_min and score_max, which "
            "these statistics lack (written by an older clskern): gather them again (clskern stats)"
        )
    lo64, hi64 = float(lo), float(hi)
    if not (np.isfinite(lo64) and np.isfinite(hi64) and np.isfinite(hi64 - lo64)):
        raise InputError(
            f"{volume_name(name)}: normalize='minmax' needs finite scores (min {lo64!r}, max {hi64!r}); "
            "q = (p - min) / (max - min) is undefined otherwise"
        )
    return lo64, hi64


def minmax(x, lo, hi):
    """``q = (x - lo) / (hi - lo)`` in float64 (zeros when ``hi == lo``), as the docs define it (min-max normalisation).

    ``x``: a scalar or an array of any float dtype (converted to float64,
    exactly); ``lo``, ``hi``: the volume's minimum and maximum. Returns a
    float64 array of ``x``'s shape (0-d for a scalar).
    """
    x = np.asarray(x, dtype=np.float64)
    lo, hi = float(lo), float(hi)
    span = hi - lo
    if span == 0:
        return np.zeros_like(x)
    return (x - lo) / span


def ordered(x):
    """Unsigned keys whose integer order is the numeric order of the float array ``x``
    (-0.0 just below +0.0; NaN beyond the infinities). float16/32/64."""
    uint = {2: np.uint16, 4: np.uint32, 8: np.uint64}[x.dtype.itemsize]
    sign = uint(1) << uint(8 * x.dtype.itemsize - 1)
    u = np.asarray(x).view(uint)
    return np.where(u & sign, ~u, u | sign)


def from_ordered(keys, dtype):
    """The float values of ``dtype`` whose ``ordered`` keys are ``keys`` (its inverse)."""
    keys = np.asarray(keys)
    uint = keys.dtype.type
    sign = uint(1) << uint(8 * keys.dtype.itemsize - 1)
    return np.where(keys & sign, keys & ~sign, ~keys).view(dtype)


def smallest_reaching(lo_keys, hi_keys, reached, dtype):
    """Smallest key ``k`` in ``[lo_keys, hi_keys]`` (element-wise) with ``reached(value of k)``.

    ``reached`` maps values of ``dtype`` (an array of the keys' shape) to
    booleans, must be monotone (false, then true, along the key order) and
    true at ``hi_keys``. Bisection: at most one step per bit of the dtype.
    """
    lo = np.array(lo_keys, copy=True)
    hi = np.array(hi_keys, copy=True)
    while True:
        open_ = lo < hi
        if not open_.any():
            return lo
        mid = lo + (hi - lo) // 2
        hit = reached(from_ordered(mid, dtype))
        hi = np.where(open_ & hit, mid, hi)
        lo = np.where(open_ & ~hit, mid + 1, lo)


def score_cut(t, lo, hi, dtype):
    """The score cut equivalent to ``q >= t`` on a volume with range ``[lo, hi]``.

    The smallest value ``x`` of ``dtype`` (float32 or float64: the dtype of
    the volume's lesion scores; float16 volumes use float32, which holds
    every float16 exactly) with ``lo <= x`` and ``minmax(x, lo, hi) >= t``,
    so that ``p >= x`` exactly when ``q(p) >= t`` for every score ``p`` of
    the volume. ``-inf`` when every score qualifies (``t <= 0``), ``+inf``
    when none does (``t > 1``; for a constant volume, ``q = 0``: ``t > 0``).
    -0.0 comes back as +0.0.

    ``t``: a float or an array of them (float64, never NaN); ``lo``, ``hi``:
    finite values of ``dtype`` (``check_range``). Returns float64, of
    ``t``'s shape (a Python float for a scalar ``t``).
    """
    dtype = np.dtype(dtype)
    scalar = np.ndim(t) == 0
    t = np.asarray(t, dtype=np.float64)
    lo_v, hi_v = np.asarray(lo, dtype), np.asarray(hi, dtype)
    out = np.where(t <= 0, -np.inf, np.inf)
    inside = (t > 0) & (t <= 1) & (hi_v > lo_v)
    if inside.any():
        wanted = t[inside]
        keys = smallest_reaching(
            np.full(wanted.shape, ordered(lo_v.reshape(1))[0]),
            np.full(wanted.shape, ordered(hi_v.reshape(1))[0]),
            lambda x: minmax(x, lo_v, hi_v) >= wanted,  # q(hi) = 1 >= every wanted
            dtype,
        )
        out[inside] = from_ordered(keys, dtype).astype(np.float64) + 0.0
    return float(out) if scalar else out
