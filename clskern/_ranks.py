"""The largest integer ``j`` with ``j / denominator <= fraction``, exactly.

``floor(fraction * denominator)`` is not always that integer in floating point
(0.29 * 100 = 28.999999999999996, yet 29 / 100 <= 0.29), so the product only
gives a first guess, which the float64 division then corrects. The product
errs by less than one, so one step either way suffices.
"""

import numpy as np


def largest_rank(fraction, denominator, top):
    """Largest ``j`` in ``0..top`` with ``j / denominator <= fraction`` (float64).

    ``fraction`` may be an array; the result is an int64 array of its shape.
    Entries for which no ``j >= 0`` qualifies (negative fractions) are -1.
    """
    fraction = np.asarray(fraction, dtype=np.float64)
    j = np.clip(np.floor(fraction * denominator), -1, top).astype(np.int64)
    up = (j + 1 <= top) & ((j + 1) / denominator <= fraction)
    j = j + up
    down = (j >= 0) & (j / denominator > fraction)
    return j - down
