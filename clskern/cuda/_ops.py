"""Host side of the GPU path: launch the kernels, select, bring back the small results.

Each function mirrors one of ``clskern.cpu._ops`` (the contract both
backends offer, see ``clskern.cpu``) and returns the same values bit for bit; only statistics (counts, the
histogram, lesion scores, thresholds) cross to the host, never the volume.
"""

import numpy as np
from numba import config, cuda

from .._binning import N_BINS
from .._ranks import largest_rank
from .._validate import check_empty_policy, empty_threshold, epsilon_array, scalar_or_array
from ..errors import InputError, NaNScoresError, volume_name
from . import _kernels as K
from ._intake import device_array, device_scores, device_volume
from ._launch import blocks_for, launch, multiprocessors, zeros

SORT_ABOVE = 8  # as clskern.cpu._ops: more distinct ranks than this, sort instead of selecting
_SIGN = np.uint64(1) << np.uint64(63)


def _lesion_dtype(scores):
    return np.float64 if scores.dtype == np.float64 else np.float32


def launch_offsets(vol):
    """Each tile's first slot among the lesion voxels, on the device (nothing waits)."""
    n_tiles = -(-vol.labels.size // K.TILE)
    if n_tiles == 0:
        return zeros(1)
    offsets = cuda.device_array(n_tiles + 1, np.int64)  # the scan writes every entry
    counts = cuda.device_array(n_tiles, np.int64)
    launch(K.count_kernel, blocks_for(n_tiles, 1, 8, 2), K.TPB, vol.labels, vol.target, vol.use_target, counts)
    launch(K.scan_kernel, 1, K.SCAN_TPB, counts, offsets)
    return offsets


def total(offsets):
    """The number of lesion voxels: the last offset, copied to the host."""
    return int(offsets[offsets.size - 1 :].copy_to_host()[0])


def _offsets(vol):
    offsets = launch_offsets(vol)
    return offsets, total(offsets)


def _raise_nan(name, n_nan, where):
    raise NaNScoresError(f"{volume_name(name)}: {n_nan} NaN scores {where}; clskern never drops them silently")


def _stats_grid(vol):
    n_tiles = -(-vol.labels.size // K.TILE)
    # A block counts fewer than 2**32 voxels in its uint32 shared window.
    floor = -(-vol.labels.size // (1 << 30))
    if config.ENABLE_CUDASIM:
        return max(1, min(n_tiles, 2))
    return max(1, min(n_tiles, max(floor, 4 * multiprocessors())))


def _key_range():
    """A device ``[min key, max key]`` pair seeded so that any score replaces both."""
    return cuda.to_device(np.array([np.iinfo(np.uint64).max, 0], np.uint64))


def _extremes(key_range, n, dtype):
    """``(min, max)`` from a device key pair, as scalars of ``dtype`` (-0.0 as +0.0); None, None when empty."""
    if n == 0:
        return None, None
    low, high = key_range.copy_to_host()
    return tuple(dtype(_key_value(key)) + dtype(0.0) for key in (low, high))


def volume_stats_parts(scores, labels, label=None, name=None):
    """``(n_voxels, sorted lesion scores, bins, counts, score min, score max)`` of one volume, as the CPU's."""
    vol = device_volume(scores, labels, label, name)
    offsets, n_fg = _offsets(vol)
    n = vol.labels.size
    lesion = cuda.device_array(n_fg, _lesion_dtype(vol.scores))
    hist = zeros(N_BINS, np.uint64)
    n_nan = zeros(1)
    key_range = _key_range()
    if n:
        launch(
            K.stats_kernel, _stats_grid(vol), K.TPB,
            vol.scores, vol.labels, vol.target, vol.use_target, offsets, K.WINDOW_LO, lesion, hist, n_nan, key_range
        )
    nans = int(n_nan.copy_to_host()[0])
    if nans:
        _raise_nan(name, nans, f"among {n} voxels")
    counts = hist.copy_to_host()
    bins = np.flatnonzero(counts)
    low, high = _extremes(key_range, n, _lesion_dtype(vol.scores))
    return n, sorted_scores(lesion), bins.astype(np.uint32), counts[bins].astype(np.int64), low, high


def score_range(scores, name=None):
    """``(min, max)`` of every score, as the CPU's ``score_range``: a block reduction on the device."""
    vol = device_scores(scores, name)
    n = vol.scores.size
    key_range, n_nan = _key_range(), zeros(1)
    if n:
        launch(K.range_kernel, blocks_for(n, K.TPB, 8, 2), K.TPB, vol.scores, key_range, n_nan)
    nans = int(n_nan.copy_to_host()[0])
    if nans:
        _raise_nan(name, nans, f"among {n} voxels")
    return _extremes(key_range, n, _lesion_dtype(vol.scores))


def launch_gather(vol, offsets, n_fg):
    """Start the ordered lesion gather; returns the device lesion array and its NaN counter."""
    lesion = cuda.device_array(n_fg, _lesion_dtype(vol.scores))
    n_nan = zeros(1)
    if n_fg:
        launch(
            K.gather_kernel, blocks_for(offsets.size - 1, 1, 8, 2), K.TPB,
            vol.scores, vol.labels, vol.target, vol.use_target, offsets, lesion, n_nan
        )
    return lesion, n_nan


def check_gather(lesion, n_nan, name):
    """Raise ``NaNScoresError`` when the gather met NaN lesion scores."""
    nans = int(n_nan.copy_to_host()[0])
    if nans:
        _raise_nan(name, nans, f"among its {lesion.size} lesion voxels")


def _gather(vol, name):
    offsets, n_fg = _offsets(vol)
    lesion, n_nan = launch_gather(vol, offsets, n_fg)
    check_gather(lesion, n_nan, name)
    return lesion


def lesion_scores(scores, labels, label=None, name=None):
    """The lesion scores in memory order, on the host (as the CPU's ``lesion_scores``)."""
    return _gather(device_volume(scores, labels, label, name), name).copy_to_host()


# -- order statistics of the lesion scores -------------------------------------------


def sorted_scores(values):
    """Device ``values`` sorted ascending, on the host, equal to ``np.sort`` of the same array.

    With CuPy or PyTorch the sort runs on the device. The gather stores -0.0 as
    +0.0, so equal values share one bit pattern and any sort gives the same bits.
    """
    if values.size == 0:
        return values.copy_to_host()
    device_sort = None if config.ENABLE_CUDASIM else _device_sort()
    if device_sort is None:
        host = values.copy_to_host()
        host.sort()
        return host
    return device_sort(values)


def _device_sort():
    """A sort on the device from CuPy or PyTorch (zero-copy views), or None."""
    try:
        import cupy

        return lambda values: cupy.asnumpy(cupy.sort(cupy.asarray(values)))
    except ImportError:
        pass
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    return lambda values: torch.sort(torch.as_tensor(values, device="cuda")).values.cpu().numpy()


def _key_value(key):
    """The float64 whose order key is ``key`` (the inverse of ``_bins.order_key``)."""
    key = np.uint64(key)
    bits = key ^ _SIGN if key & _SIGN else ~key
    return float(np.array([bits], np.uint64).view(np.float64)[0])


# Radix selection digits, (shift, bits) from the top of the 64-bit order key.
# float32 scores widen to float64 with 29 low mantissa bits zero, so the key
# bits below 29 carry no information (all 0, or all 1 for negative values):
# three digits cover float32 lesions, six cover float64.
DIGITS_F64 = ((53, 11), (42, 11), (31, 11), (20, 11), (10, 10), (0, 10))
DIGITS_F32 = ((52, 12), (40, 12), (29, 11))


def select_ranks(lesions, ranks):
    """The ``ranks[v]``-th smallest of each device array ``lesions[v]`` (0-based), exactly.

    Radix selection on an order key, digit by digit from the top; all volumes
    advance together, one small copy to the host per digit. Returns float
    values (float32 lesions convert to float64 exactly).
    """
    n = len(lesions)
    if n == 0:
        return []
    wide = any(values.dtype == np.float64 for values in lesions)
    digits = DIGITS_F64 if wide else DIGITS_F32
    prefix = [np.uint64(0)] * n
    mask = np.uint64(0)
    rank = [int(r) for r in ranks]
    offsets = np.cumsum([0] + [n << bits for _, bits in digits])
    all_counts = zeros(int(offsets[-1]))  # one allocation for every pass
    for p, (shift, bits) in enumerate(digits):
        shift, width = np.uint64(shift), 1 << bits
        digit_mask = np.uint64(width - 1)
        counts = all_counts[int(offsets[p]) : int(offsets[p + 1])]
        for v, values in enumerate(lesions):
            row = counts[v * width : (v + 1) * width]
            grid = blocks_for(values.size, K.TPB, 8)
            launch(K.digit_kernel, grid, K.TPB, values, prefix[v], mask, shift, digit_mask, row)
        host = counts.copy_to_host().reshape(n, width)
        for v in range(n):
            cum = np.cumsum(host[v])
            d = int(np.searchsorted(cum, rank[v], side="right"))
            rank[v] -= int(cum[d - 1]) if d else 0
            prefix[v] = prefix[v] | (np.uint64(d) << shift)
        mask = mask | (digit_mask << shift)
    low = ~mask  # key bits never examined: zero for values >= +0.0, ones below
    keys = [key if key & _SIGN else key | low for key in prefix]
    return [_key_value(key) for key in keys]


def thresholds_from_lesions(lesions, eps):
    """Critical thresholds (float64 array of ``eps``'s shape) for each device lesion array.

    Volumes without lesion voxels get None (the caller applies the empty policy).
    """
    results = [None] * len(lesions)
    jobs = []  # (volume, rank array, distinct ranks)
    for v, values in enumerate(lesions):
        if values.size == 0:
            continue
        k = largest_rank(eps, values.size, values.size - 1)
        distinct = np.unique(k)
        if distinct.size > SORT_ABOVE:
            results[v] = sorted_scores(values)[k].astype(np.float64)
        else:
            jobs.append((v, k, distinct))
    flat = [(v, int(r)) for v, _, distinct in jobs for r in distinct]
    chosen = select_ranks([lesions[v] for v, _ in flat], [r for _, r in flat])
    picked = {}
    for (v, r), value in zip(flat, chosen):
        picked[v, r] = value
    for v, k, distinct in jobs:
        table = np.array([picked[v, int(r)] for r in distinct], np.float64)
        results[v] = table[np.searchsorted(distinct, k)]
    return results


def critical_threshold(scores, labels, epsilon, label=None, empty="error", name=None):
    """As the CPU's ``critical_threshold``: read labels, then scores only where lesion voxels are."""
    check_empty_policy(empty)
    eps = epsilon_array(epsilon)
    lesion = _gather(device_volume(scores, labels, label, name), name)
    if lesion.size == 0:
        return empty_threshold(empty, eps, name)
    return scalar_or_array(thresholds_from_lesions([lesion], eps)[0], eps)


# -- masks ------------------------------------------------------------------------------


def _contiguous_strides(shape, order, itemsize=1):
    strides = []
    step = itemsize
    dims = range(len(shape)) if order == "F" else reversed(range(len(shape)))
    for d in dims:
        strides.append(step)
        step *= shape[d]
    return tuple(strides) if order == "F" else tuple(reversed(strides))


def _mask_like(vol):
    """An empty uint8 mask of the volume's shape and order, from the scores' own library."""
    module = type(vol.source).__module__.split(".")[0]
    if module == "cupy":
        import cupy

        with cupy.cuda.Device(vol.source.device.id):
            return cupy.empty(vol.shape, dtype=cupy.uint8, order=vol.order)
    if module == "torch":
        import torch

        strides = _contiguous_strides(vol.shape, vol.order)
        return torch.empty_strided(vol.shape, strides, dtype=torch.uint8, device=vol.source.device)
    return cuda.device_array(vol.shape, np.uint8, order=vol.order)


def _check_out(out, vol, name):
    """A flat device view of a caller's ``out`` array, after the CPU path's checks."""
    if vol.host:
        if not isinstance(out, np.ndarray) or out.dtype != np.uint8 or out.shape != vol.shape:
            raise InputError(f"{volume_name(name)}: out must be a uint8 array of shape {vol.shape}")
        if not (out.flags.c_contiguous if vol.order == "C" else out.flags.f_contiguous):
            raise InputError(f"{volume_name(name)}: out must be {vol.order}-contiguous like the scores")
        return None
    array = device_array(out, name)
    if array is None or np.dtype(array.dtype) != np.uint8 or tuple(array.shape) != vol.shape:
        raise InputError(f"{volume_name(name)}: out must be a uint8 GPU array of shape {vol.shape}")
    contiguous = array.is_c_contiguous() if vol.order == "C" else array.is_f_contiguous()
    if not contiguous:
        raise InputError(f"{volume_name(name)}: out must be {vol.order}-contiguous like the scores")
    return array.ravel(order=vol.order)


def apply_threshold(scores, threshold, out=None, name=None):
    """``scores >= threshold`` as uint8, written on the device.

    Device scores give a device mask of the same library (CuPy array, torch
    tensor, or numba device array), or fill ``out``; host scores give a host
    mask, as on the CPU.
    """
    vol = device_scores(scores, name)
    if out is not None:
        flat_out = _check_out(out, vol, name)
    else:
        flat_out = None
    if vol.host:
        mask = cuda.device_array(vol.scores.size, np.uint8)
    elif flat_out is not None:
        mask = flat_out
    else:
        out = _mask_like(vol)
        mask = device_array(out, name).ravel(order=vol.order)
    n_nan = zeros(1)
    n = vol.scores.size
    if n:
        launch(K.mask_kernel, blocks_for(n, K.TPB, 8, 2), K.TPB, vol.scores, float(threshold), mask, n_nan)
    nans = int(n_nan.copy_to_host()[0])
    if nans:
        raise NaNScoresError(f"{volume_name(name)}: {nans} NaN scores; a mask would call them background")
    if vol.host:
        host = out if out is not None else np.empty(vol.shape, dtype=np.uint8, order=vol.order)
        mask.copy_to_host(host.ravel(order=vol.order))
        return host
    return out

