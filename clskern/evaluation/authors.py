"""The authors' calibration, reproduced as a baseline (SPEC 2, note on ``cls``).

The reference code of the paper differs from exact ``cls`` in three ways:

1. each case's scores are min-max rescaled to [0, 1] before anything else;
2. each case's critical threshold is found by bisection on the rescaled
   scale, stopping when the bracket is narrower than 1e-4 (the lower end,
   which satisfies FNR <= eps, is kept);
3. the conformal rank ``ceil((1 - alpha)(n + 1))`` is clipped to ``n`` when
   it exceeds it (small ``n`` or small ``alpha``), which silently drops the
   guarantee instead of refusing.

At test time a case is cut at ``rescaled >= t_hat``, i.e. at
``min + t_hat (max - min)`` in its own score scale, so every test case has
its own threshold. From statistics alone the per-case min and max are known
only up to a histogram bin for background scores (see
``Cases.score_range``); the rounding of the rescaling itself is not
reproduced. Both effects are far below the bisection tolerance.
"""

import math

import numpy as np

TOLERANCE = 1e-4


def rescaled_critical(cases, epsilon, tolerance=TOLERANCE):
    """Per-case critical thresholds on the min-max rescaled scale, by bisection."""
    low, high = cases.score_range()
    width = high - low
    out = np.empty(len(cases))
    for i, s in enumerate(cases.stats):
        lesion = s.lesion_scores
        lo, hi = 0.0, 1.0
        while hi - lo > tolerance:
            mid = (lo + hi) / 2
            t = low[i] + mid * width[i]
            fnr = np.searchsorted(lesion, t, side="left") / s.n_fg
            if fnr <= epsilon:
                lo = mid
            else:
                hi = mid
        out[i] = lo
    return out


def clipped_rank(n, alpha):
    """Our 1-based rank ``k`` of the authors' ``t_(ceil((1 - alpha)(n + 1)))``, clipped to n."""
    upper = min(math.ceil((1 - alpha) * (n + 1)), n)
    return n + 1 - upper


def authors_thresholds(cases, cal_idx, epsilon, alpha):
    """Per-split rescaled cut and each case's own threshold in its score scale.

    Returns
    -------
    cut : ndarray, shape (splits,)
        The calibrated threshold on the rescaled [0, 1] scale.
    per_case : ndarray, shape (splits, n_cases)
        ``min_i + cut (max_i - min_i)``: the score threshold case ``i`` gets.
    """
    rescaled = rescaled_critical(cases, epsilon)
    rank = clipped_rank(cal_idx.shape[1], alpha)
    cut = np.partition(rescaled[cal_idx], rank - 1, axis=1)[:, rank - 1]
    low, high = cases.score_range()
    per_case = low[None, :] + cut[:, None] * (high - low)[None, :]
    return cut, per_case
