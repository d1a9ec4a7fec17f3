"""Host side of the CPU path: one call per volume, arrays in, arrays out.

Each function mirrors one function of ``clskern.cuda._ops`` and returns the
same values bit for bit; ``clskern.volume`` and ``clskern.apply`` (through
the dispatch, ``clskern._backend``) turn them into the public results.
"""

import numba
import numpy as np

from .._lesions import DEFAULT_CONNECTIVITY
from .._ranks import largest_rank
from .._threads import LIGHT_BYTES_PER_THREAD, kernel_threads
from .._validate import empty_threshold, flat_scores, prepare, scalar_or_array
from ..errors import ArgumentError, ArgumentTypeError, NaNScoresError, volume_name
from . import _components as components
from . import _gather as gather
from . import _kernels as kernels
from ._radix import select_ranks, sort_scores

SORT_ABOVE = 8  # more distinct ranks than this: one sort beats selection per rank


def _lesion_dtype(flat_scores):
    return np.float64 if flat_scores.dtype == np.float64 else np.float32


def _raise_nan(name, n_nan, where):
    raise NaNScoresError(f"{volume_name(name)}: {n_nan} NaN scores {where}; clskern never drops them silently")


def _score_dtype(flat_scores):
    return np.float16 if flat_scores.dtype == np.uint16 else flat_scores.dtype.type


def _range(flat_s, low_high, top):
    """``(min, max)`` of a volume's scores in the lesion dtype from folded extremes; ``(None, None)`` when empty."""
    if flat_s.size == 0:
        return None, None
    return kernels.extremes_of(low_high, top, _score_dtype(flat_s), _lesion_dtype(flat_s))


def volume_stats_parts(scores, labels, label=None, name=None):
    """``(n_voxels, sorted lesion scores, background bins, their counts, score min, score max)`` in one pass.

    The minimum and maximum are over every voxel, exact, in the lesion
    scores' dtype (-0.0 as +0.0; None for an empty volume).
    """
    flat_s, flat_l, target, use_target = prepare(scores, labels, label, name)
    with kernel_threads(flat_s.nbytes + flat_l.nbytes):
        gathered = gather.gather(flat_s, flat_l, target, use_target, every_score=True)
        lesion, _ = gather.assemble_lesions(gathered, _lesion_dtype(flat_s))
        hist = gathered.all_hist
        if hist[:, 0].any() or hist[:, -1].any():  # the end bins also catch NaN: count them now
            n_nan = int(kernels.count_nan(flat_s))
            if n_nan:
                _raise_nan(name, n_nan, f"among {flat_s.size} voxels")
        lesion_hist = gathered.lesion_hist
        if lesion_hist is None:  # a row overflowed: count the assembled scores instead
            lesion_hist = kernels.bin_counts(lesion, hist.shape[0])
        bins, counts = kernels.background_bins(hist, lesion_hist)
        sort_scores(lesion)
    return (flat_s.size, lesion, bins, counts, *_range(flat_s, *gathered.extremes))


def score_range(scores, name=None):
    """``(min, max)`` of every score of a volume, exact, in the lesion dtype (float32 for float16/32 volumes,
    float64 for float64; -0.0 as +0.0; None, None for an empty volume): one parallel pass. NaN raises."""
    flat, _, _ = flat_scores(scores, name)
    with kernel_threads(flat.nbytes):
        n_chunks = max(1, min(numba.get_num_threads(), -(-flat.size // kernels.RANGE_BLOCK)))
        signed, unsigned, low_high, top = kernels.extremes_buffers(flat, n_chunks)
        kernels.extremes(signed, unsigned, low_high, top)
    low, high = _range(flat, low_high, top)
    if low is not None and (np.isnan(low) or np.isnan(high)):  # NaN keys lie beyond the infinities
        _raise_nan(name, int(kernels.count_nan(flat)), f"among {flat.size} voxels")
    return low, high


def lesion_scores(scores, labels, label=None, name=None):
    """The lesion voxels' scores in memory order (unsorted); NaN among them raises."""
    flat_s, flat_l, target, use_target = prepare(scores, labels, label, name)
    with kernel_threads(flat_s.nbytes + flat_l.nbytes, LIGHT_BYTES_PER_THREAD):
        gathered = gather.gather(flat_s, flat_l, target, use_target)
        lesion, n_nan = gather.assemble_lesions(gathered, _lesion_dtype(flat_s))
    if n_nan:
        _raise_nan(name, n_nan, f"among its {lesion.size} lesion voxels")
    return lesion


def critical_threshold(scores, labels, eps, label=None, empty="error", name=None):
    """The critical threshold(s) at ``eps``; the k-th score selected, not sorted (``_gather``).

    ``eps`` and ``empty`` are checked already (``epsilon_array``, ``check_empty_policy``).
    """
    flat_s, flat_l, target, use_target = prepare(scores, labels, label, name)
    with kernel_threads(flat_s.nbytes + flat_l.nbytes, LIGHT_BYTES_PER_THREAD):
        gathered = gather.gather(flat_s, flat_l, target, use_target)
        n_fg = int(gathered.counts.sum())
        if n_fg == 0:
            return empty_threshold(empty, eps, name)
        k = largest_rank(eps, n_fg, n_fg - 1)
        distinct, where = np.unique(k, return_inverse=True)
        lesion_dtype = _lesion_dtype(flat_s)
        if distinct.size <= SORT_ABOVE and gathered.complete:
            values, n_nan = gather.select_in_rows(gathered, distinct, lesion_dtype)
        else:
            lesion, n_nan = gather.assemble_lesions(gathered, lesion_dtype)
            if not n_nan:
                values = sort_scores(lesion)[distinct] if distinct.size > SORT_ABOVE else select_ranks(lesion, distinct)
    if n_nan:
        _raise_nan(name, n_nan, f"among its {n_fg} lesion voxels")
    return scalar_or_array(values[where].reshape(k.shape).astype(np.float64), eps)


def lesion_parts(scores, labels, label=None, connectivity=DEFAULT_CONNECTIVITY, name=None):
    """``(offsets, grouped scores)``: each lesion's scores, ascending (docs: lesions; ``_components``).

    Lesion ``j``'s scores are ``grouped[offsets[j]:offsets[j + 1]]`` (float32
    for float16/32 scores, float64 for float64; -0.0 as +0.0), lesions by the
    C-order index of their first voxel. ``connectivity`` is checked already
    (``clskern._lesions``); NaN among lesion scores raises.
    """
    flat_s, flat_l, target, use_target, shape, order = components.prepare_volume(scores, labels, label, name)
    with kernel_threads(flat_s.nbytes + flat_l.nbytes):
        offsets, grouped, n_nan = components.ragged_lesions(flat_s, flat_l, target, use_target, shape, order,
                                                            connectivity)
    if n_nan:
        _raise_nan(name, n_nan, f"among its {grouped.size} lesion voxels")
    return offsets, grouped


def lesion_detection(scores, labels, label=None, connectivity=DEFAULT_CONNECTIVITY, overlap=0.0, name=None):
    """``(d, sizes)``: each lesion's detection score and voxel count, no lesion sorted (``_components``).

    ``d[j]`` is the ``r_j``-th largest score of lesion ``j`` (its largest
    when ``overlap == 0``), in the order of ``lesion_parts``; ``connectivity``
    and ``overlap`` are checked already. NaN among lesion scores raises.
    """
    flat_s, flat_l, target, use_target, shape, order = components.prepare_volume(scores, labels, label, name)
    with kernel_threads(flat_s.nbytes + flat_l.nbytes):
        d, sizes, n_nan = components.detection_scores_flat(
            flat_s, flat_l, target, use_target, shape, order, connectivity, overlap
        )
    if n_nan:
        _raise_nan(name, n_nan, f"among its {int(sizes.sum())} lesion voxels")
    return d, sizes


def apply_threshold(scores, threshold, out=None, name=None):
    """The uint8 mask ``scores >= threshold`` in the scores' memory order (or in ``out``); NaN raises."""
    flat, order, array = flat_scores(scores, name)
    if out is None:
        out = np.empty(array.shape, dtype=np.uint8, order=order)
    else:
        _check_out(out, array, order, name)
    with kernel_threads(flat.nbytes + out.nbytes):
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
