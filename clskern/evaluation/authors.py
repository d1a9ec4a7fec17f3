"""The authors' calibration, reproduced as a baseline (docs: methods, the authors' procedure).

Reference: GitHub binyutan/CLS, ``calibration.py`` (calibration), ``test.py``
(test) and ``utils/metrics.py`` (``min_max_normalize``,
``find_threshold_for_loss_gpu``, ``compute_fnr_loss_gpu``,
``compute_conformal_quantile``, ``apply_threshold``). Their procedure, per
calibration/test split:

1. **Rescaling** (``min_max_normalize``, NumPy, on the saved probability map,
   float32 for their models): ``q = (p - min p) / (max p - min p)`` with every
   operation in the array's own dtype (``min``/``max`` are NumPy scalars of
   that dtype, so ``max - min`` and the division round to float32 for float32
   maps); ``q = 0`` everywhere when ``max - min == 0``. Test cases are
   rescaled the same way.
2. **Per-case score** ``t_i`` (``find_threshold_for_loss_gpu``, on
   ``torch.from_numpy(q).float()``, i.e. ``q`` cast to float32): bisection on
   ``t`` with ``low, high = 0.0, 1.0`` (Python floats), at most 200 steps.
   Each step takes ``mid = (low + high) / 2``, predicts ``q > 1 - mid``
   (strict; PyTorch compares a float32 tensor with the Python float
   ``1 - mid`` rounded to float32) and computes the loss
   ``1 - float32(TP) / float32(#lesion)`` in float32 (``compute_fnr_loss_gpu``).
   With ``loss.item()`` (that float32 value as a Python float) it returns
   ``mid`` as soon as ``|loss - eps| < 1e-4``; otherwise ``loss > eps`` moves
   ``low`` up to ``mid``, else ``high`` comes down to ``mid``. After 200 steps
   without a hit it returns ``(low + high) / 2`` (a point never evaluated).
3. **Quantile** (``compute_conformal_quantile``): the calibration ``t_i``
   sorted ascending, ``k = int(np.ceil((1.0 - alpha) * (1.0 + n)))`` clipped to
   ``n`` (silently dropping the guarantee where ``cls`` refuses), and
   ``t_hat = sorted[k - 1]``.
4. **Test** (``apply_threshold`` in ``test.py``): ``q >= 1.0 - t_hat``
   (inclusive, unlike calibration), NumPy comparing the rescaled array with
   the Python float, i.e. in the array's dtype (float32: the cut is rounded
   to float32).

clskern evaluates from ``VolumeStats``, so this module redoes steps 1-4 on the
sorted lesion scores, which determine every lesion count exactly: ``q`` is
monotone in ``p`` (each rounding step is), so the lesion ``q`` stay sorted and
``TP`` at any cut is one binary search. At test time each case gets the
smallest score ``tau_i`` of its dtype with ``q(tau_i) >= 1 - t_hat`` (after
the same rounding): ``p >= tau_i`` then selects exactly the voxels the
authors' mask selects, background included.

**What is exact and what is not.** The bisection, the quantile and the cut
are reproduced bit for bit given each volume's exact ``min`` and ``max``
over all voxels. ``VolumeStats`` carries exact lesion scores but bins the
background, so unless a statistic provides ``score_min`` / ``score_max``
(exact minimum and maximum over every voxel, in the dtype of
``lesion_scores``; used when present), a case whose minimum or maximum is a
background voxel gets the range of ``Cases.score_range``: the minimum is the
lower edge of the lowest occupied background bin (at or below the true
minimum, within one bin: 2**-8 relative, or below 2**-32 for the bin
``[0, 2**-32)`` where softmax minima usually fall) and the maximum the lower
edge of the highest one (at or below the true maximum, within one bin).
With an approximate range every ``q`` is shifted by at most about one bin
width over ``max - min``; the lesion counts (hence ``t_i``) change only
where a lesion ``q`` lies that close to a bisection cut.

Not reproduced: the authors count lesion voxels as ``label == 1`` (clskern
uses its own lesion definition, ``y > 0`` or the chosen label); they keep
cases without lesion voxels in calibration (their loss is 0, so bisection
runs 200 steps down to ``t_i = 2**-201``) whereas ``Cases`` leaves them out;
float16 volumes, whose rescaling they would do in float16 (clskern keeps
their lesion scores as float32 and rescales in float32).
"""

import weakref

import numpy as np

from .._binning import bin_lower_edges
from .._normalize import from_ordered, ordered, smallest_reaching

TOLERANCE = 1e-4  # the authors' ``tol``: stop when |FNR - eps| < TOLERANCE
MAX_STEPS = 200  # the authors' ``max_iter``

_CACHE = weakref.WeakKeyDictionary()  # Cases -> {"range": ..., "q": ..., eps: t values}


def _cache(cases):
    try:
        return _CACHE[cases]
    except KeyError:
        return _CACHE.setdefault(cases, {})


def volume_ranges(cases):
    """Each case's ``(min, max)`` in its lesion scores' dtype, and whether they are exact.

    Returns ``(low, high, exact)``: lists of NumPy scalars (float32 or float64,
    the dtype of the case's ``lesion_scores``) and a bool array. Exact when the
    statistics carry ``score_min`` and ``score_max``; otherwise the estimate
    of ``Cases.score_range`` (see the module docstring), with an infinite lower
    edge (the bin of scores below ``-2**32``) replaced by ``-2**32``.
    """
    memo = _cache(cases)
    if "range" not in memo:
        est_low, est_high = cases.score_range()
        floor = bin_lower_edges()[1]  # the lowest finite edge, -2**32
        low, high, exact = [], [], np.zeros(len(cases), bool)
        for i, s in enumerate(cases.stats):
            dtype = s.lesion_scores.dtype.type
            smin, smax = getattr(s, "score_min", None), getattr(s, "score_max", None)
            if smin is not None and smax is not None:
                low.append(dtype(smin))
                high.append(dtype(smax))
                exact[i] = True
            else:
                low.append(dtype(max(est_low[i], floor)))  # bin edges are float32 values: exact
                high.append(dtype(est_high[i]))
        memo["range"] = (low, high, exact)
    return memo["range"]


def min_max_rescale(scores, low, high):
    """``min_max_normalize`` of the authors on ``scores`` with the volume's ``low``/``high``.

    Every operation in ``scores.dtype`` (``low`` and ``high`` are scalars of
    that dtype), zeros when ``high - low == 0``.
    """
    dtype = scores.dtype.type
    low, high = dtype(low), dtype(high)
    with np.errstate(over="ignore", invalid="ignore"):
        span = high - low
        if span == 0:
            return np.zeros_like(scores)
        return (scores - low) / span


def _float32_order(x):
    """int64 keys ordering float32 values as numbers (-0.0 and +0.0 equal; no NaN)."""
    bits = x.view(np.int32).astype(np.int64)
    return np.where(bits < 0, -(bits & 0x7FFFFFFF), bits)


def _rescaled_lesions(cases):
    """Keys of every case's rescaled lesion scores as the bisection sees them (float32).

    Returns the keys, sorted within each case and offset by case so that one
    ``searchsorted`` answers every case at once, and the key offset per case.
    """
    memo = _cache(cases)
    if "q" not in memo:
        low, high, _ = volume_ranges(cases)
        parts = []
        shift = np.arange(len(cases), dtype=np.int64) << 33
        for i, s in enumerate(cases.stats):
            q32 = min_max_rescale(s.lesion_scores, low[i], high[i]).astype(np.float32)  # ``.float()``
            parts.append(_float32_order(q32) + shift[i])
        memo["q"] = (np.concatenate(parts), shift)
    return memo["q"]


def critical_expansions(cases, epsilon):
    """Every case's ``t_i`` of ``find_threshold_for_loss_gpu`` at ``epsilon`` (float64, cached).

    The bisection of the authors, run for all cases in lockstep: each case
    stops at its own step (``|loss - eps| < 1e-4``) or after 200 steps.
    """
    memo = _cache(cases)
    eps = float(epsilon)
    if eps not in memo:
        keys, shift = _rescaled_lesions(cases)
        starts = cases.offsets[:-1]
        n_fg32 = cases.n_fg.astype(np.float32)
        n = len(cases)
        low, high = np.zeros(n), np.ones(n)
        t = np.full(n, np.nan)
        active = np.ones(n, bool)
        for _ in range(MAX_STEPS):
            mid = (low + high) / 2.0
            cut32 = (1.0 - mid).astype(np.float32)  # the Python float as PyTorch compares it
            not_above = np.searchsorted(keys, _float32_order(cut32) + shift, side="right") - starts
            tp32 = (cases.n_fg - not_above).astype(np.float32)  # ``tp.float()``
            loss = (np.float32(1.0) - tp32 / n_fg32).astype(np.float64)  # float32 arithmetic, then ``.item()``
            hit = active & (np.abs(loss - eps) < TOLERANCE)
            t[hit] = mid[hit]
            active &= ~hit
            if not active.any():
                break
            up = loss > eps
            low = np.where(up, mid, low)
            high = np.where(up, high, mid)
        t[active] = (low[active] + high[active]) / 2.0
        memo[eps] = t
    return memo[eps]


def conformal_index(n, alpha):
    """The authors' 1-based index ``k`` into the ascending ``t_i``: ``ceil((1 - alpha)(1 + n))`` clipped to n."""
    return min(int(np.ceil((1.0 - float(alpha)) * (1.0 + n))), n)


def clipped_rank(n, alpha):
    """The same order statistic as a 1-based rank among the rescaled cuts ``1 - t_i`` (ascending)."""
    return n + 1 - conformal_index(n, alpha)


def score_cuts(cases, cut):
    """Per-case score thresholds equivalent to the authors' test mask ``q >= cut``.

    ``cut`` (splits,) holds ``1 - t_hat`` as Python/float64 values; case ``i``
    compares its rescaled scores with ``cut`` rounded to its dtype. Returns
    ``tau`` (splits, n_cases): the smallest score of the case's dtype whose
    rescaled value reaches the cut (``-inf`` or ``+inf`` for a constant
    volume), so that ``p >= tau`` is the authors' mask for every voxel.
    """
    cut = np.asarray(cut, dtype=np.float64)
    low, high, _ = volume_ranges(cases)
    tau = np.empty((cut.size, len(cases)))
    dtypes = np.array([s.lesion_scores.dtype.str for s in cases.stats])
    for code in np.unique(dtypes):
        dtype = np.dtype(code)
        idx = np.flatnonzero(dtypes == code)
        lo_v = np.array([low[i] for i in idx], dtype)
        hi_v = np.array([high[i] for i in idx], dtype)
        with np.errstate(over="ignore", invalid="ignore"):
            span = hi_v - lo_v
        target = cut.astype(dtype)[:, None]  # NumPy rounds the Python float to the array's dtype
        flat = span == 0
        # Bisection on the score's bit order: q(p) is non-decreasing in p and q(max) = 1 >= target.
        safe_span = np.where(flat, dtype.type(1), span)

        def reached(x, lo_v=lo_v, safe_span=safe_span, target=target):
            with np.errstate(over="ignore", invalid="ignore"):
                return (x - lo_v) / safe_span >= target

        shape = (cut.size, idx.size)
        lo = smallest_reaching(np.broadcast_to(ordered(lo_v), shape), np.broadcast_to(ordered(hi_v), shape), reached, dtype)
        found = from_ordered(lo, dtype).astype(np.float64)
        constant = np.where(np.zeros((), dtype) >= target, -np.inf, np.inf)  # q = 0 everywhere
        tau[:, idx] = np.where(flat[None, :], constant, found)
    return tau


def authors_thresholds(cases, cal_idx, epsilon, alpha):
    """Per-split rescaled cut and each case's own threshold in its score scale.

    Returns
    -------
    cut : ndarray, shape (splits,)
        ``1 - t_hat`` in float64: the authors' test mask is ``q >= cut`` on
        each case's rescaled scores (the comparison rounds ``cut`` to the
        case's dtype).
    per_case : ndarray, shape (splits, n_cases)
        The score threshold case ``i`` gets (``score_cuts``).
    """
    t = critical_expansions(cases, epsilon)
    k = conformal_index(cal_idx.shape[1], alpha)
    t_hat = np.sort(t[cal_idx], axis=1)[:, k - 1]
    cut = 1.0 - t_hat
    return cut, score_cuts(cases, cut)
