"""Random calibration/test splits, reproducible from a seed."""

import numpy as np

MAX_SPLIT_CELLS = 10**8
"""Largest ``splits * n_cases`` the split matrices may hold.

Drawing the splits needs about 17 bytes per cell at once (float64 keys, their
int64 argsort, the boolean test mask): 10**8 cells is roughly 2 GB. Larger
requests are refused before anything is allocated.
"""


def calibration_size(n, cal_fraction):
    """Calibration cases per split: ``round(cal_fraction n)``, at least 1, at most n - 1."""
    if not 0 < cal_fraction < 1:
        raise ValueError(f"cal_fraction must lie in (0, 1), got {cal_fraction!r}")
    return int(min(max(round(cal_fraction * n), 1), n - 1))


def random_splits(n, n_splits, cal_fraction, seed):
    """``(cal_idx, test_mask)``: calibration indices (splits x n_cal) and test membership.

    Each split is an independent uniform permutation of the n cases; the
    first ``calibration_size`` indices calibrate, the rest test.
    """
    if n_splits < 1:
        raise ValueError(f"splits must be at least 1, got {n_splits!r}")
    if n_splits * n > MAX_SPLIT_CELLS:
        raise ValueError(
            f"{n_splits} splits of {n} cases need {n_splits * n:.3g} split cells (about "
            f"{17 * n_splits * n / 2**30:.1f} GiB); the limit is splits x cases <= {MAX_SPLIT_CELLS:.0e}: use fewer splits"
        )
    n_cal = calibration_size(n, cal_fraction)
    rng = np.random.default_rng(seed)
    order = np.argsort(rng.random((n_splits, n)), axis=1)
    cal_idx = np.ascontiguousarray(order[:, :n_cal])
    test_mask = np.ones((n_splits, n), bool)
    np.put_along_axis(test_mask, cal_idx, False, axis=1)
    return cal_idx, test_mask
