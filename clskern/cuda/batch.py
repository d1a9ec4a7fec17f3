"""Many volumes at once: their critical thresholds, on the GPU.

The volumes of a chunk are launched back to back on the device (label
counts, then gathers, then the radix selection of all of them together), so
the host waits a handful of times per chunk instead of per volume and the GPU
stays busy between volumes. Results equal the one-volume calls bit for bit.
The public entry points (case ids, empty cases, calibration) are
``clskern.batch``.
"""

from . import _ops
from ._intake import device_volume


def critical_thresholds(pairs, names, eps, label, chunk):
    """Per volume, its thresholds at ``eps`` (a float64 array), or None without lesion voxels.

    Parameters
    ----------
    pairs : list of (scores, labels)
        GPU arrays are read in place; host arrays are copied over, ``chunk``
        volumes at a time.
    names : list of str
        The case ids, for error messages.
    eps : ndarray of float64
        Tolerated FNRs, checked.
    label : number or None
        The lesion label value in multi-label masks.
    chunk : int
        Volumes on the device at once.
    """
    results = []
    for start in range(0, len(pairs), chunk):
        part_names = names[start : start + chunk]
        vols = [
            device_volume(scores, labels, label=label, name=name)
            for (scores, labels), name in zip(pairs[start : start + chunk], part_names)
        ]
        offsets = [_ops.launch_offsets(vol) for vol in vols]
        totals = [_ops.total(o) for o in offsets]
        gathered = [_ops.launch_gather(v, o, n) for v, o, n in zip(vols, offsets, totals)]
        for (lesion, n_nan), name in zip(gathered, part_names):
            _ops.check_gather(lesion, n_nan, name)
        lesions = [lesion for lesion, _ in gathered]
        results += _ops.thresholds_from_lesions(lesions, eps)
    return results
