"""Lesions on the GPU (docs: lesions): connected-component labelling and per-lesion scores.

The twin of ``clskern.cpu``'s ``lesion_parts`` and ``lesion_detection``:
the same arguments and, on the host, the same results bit for bit.

1. **Labelling** by union-find over voxels (Playne and Hawick 2018).
   ``init_kernel`` reads the labels once: ``parent[i] = i`` for a lesion
   voxel, -1 for background. ``merge_kernel`` visits lesion voxels only (a
   background voxel costs one read of ``parent``) and joins each to its
   lesion neighbours that come before it in memory (3, 9 or 13 of them for
   6-, 18- or 26-connectivity); ``union`` hangs the larger root under the
   smaller with ``atomicMin`` and retries when another thread moved the
   root first, so one pass joins everything and every set's root is its
   smallest flat index. ``flatten_kernel`` points every voxel straight at
   its root and counts roots and lesion voxels per tile; ``number_kernel``
   numbers the roots in memory order, storing lesion ``c`` at its root as
   ``-(c + 2)`` (-1 stays background), so ``component`` needs at most two
   reads and no array besides ``parent``.
2. **Canonical order**: lesions are ordered by the C-order index of their
   first voxel, as on the CPU. For a C-ordered volume that is the root (the
   smallest flat index) already; for a Fortran-ordered one,
   ``first_voxel_kernel`` takes the least C index per lesion with
   ``atomicMin``, over only the voxels without a lesion face neighbour of
   smaller C index (one of them is the least), and the host ranks the
   lesions by it.
3. **Scores**. ``pairs_kernel`` writes each lesion voxel's ``(score, lesion
   rank)`` in memory order (tile compaction, as ``gather_kernel``): -0.0
   stored as +0.0, float16 widened to float32, NaN counted. One sort by
   score and a stable sort by lesion rank (CuPy or PyTorch on the device;
   the host's ``np.lexsort`` otherwise) group each lesion's scores,
   ascending. With ``overlap == 0`` no sort is needed: ``maxima_kernel``
   takes each lesion's largest score as the largest order key
   (``atomicMax``) and counts its voxels, a thread adding each run of equal
   lesions at once.

Exactness: scores are only moved and compared (equal values share one bit
pattern once -0.0 is +0.0, so any sort gives the same bits), and the rank
``r_j`` is computed by the rule both backends share (``clskern._lesions``).
"""

import numpy as np
from numba import config, cuda, types

from .._lesions import DEFAULT_CONNECTIVITY, check_connectivity, check_overlap, required_voxels
from .._validate import check_label
from ..errors import InputError, NaNScoresError, volume_name
from . import _kernels as K
from ._bins import order_key
from ._intake import device_volume
from ._launch import blocks_for, launch, zeros

_REACH = {6: 1, 18: 2, 26: 3}  # connectivity -> most axes a neighbour's offset may change
_I64 = types.int64
TPB, ITEMS, TILE = K.TPB, K.ITEMS, K.TILE  # the tiles of clskern.cuda._kernels
_SIGN = np.uint64(1) << np.uint64(63)

# -- kernels ---------------------------------------------------------------------------


@cuda.jit(cache=True)
def init_kernel(labels, target, use_target, parent):
    """``parent[i] = i`` for a lesion voxel, -1 for background."""
    for i in range(cuda.grid(1), labels.size, cuda.gridsize(1)):
        parent[i] = i if K.is_lesion(labels[i], target, use_target) else -1


@cuda.jit(device=True)
def find_root(parent, x):
    """The root of ``x``'s set (parents only ever decrease: every read is an ancestor)."""
    p = parent[x]
    while p != x:
        x = p
        p = parent[x]
    return x


@cuda.jit(device=True)
def union(parent, a, b):
    """Join the sets of ``a`` and ``b``: the larger root goes under the smaller.

    ``atomicMin`` returns what the larger root's parent was; if it was no
    longer a root (another thread hung it first), the join goes on from
    what it now points to.
    """
    while True:
        a = find_root(parent, a)
        b = find_root(parent, b)
        if a == b:
            return
        if a > b:
            a, b = b, a
        old = cuda.atomic.min(parent, b, a)
        if old == b:
            return
        b = old


@cuda.jit(cache=True)
def merge_kernel(parent, n1, n2, reach):
    """Join every lesion voxel to its lesion neighbours that lie before it in memory.

    The flat volume is ``(n0, n1, n2)`` in memory order; a neighbour's offset
    changes at most ``reach`` axes by one (1, 2, 3: 6-, 18-, 26-connectivity).
    """
    plane = n1 * n2
    for i in range(cuda.grid(1), parent.size, cuda.gridsize(1)):
        if parent[i] < 0:
            continue
        c = i % n2
        b = (i // n2) % n1
        a = i // plane
        for da in range(-1, 1):
            if a + da < 0:
                continue
            for db in range(-1, 2):
                if da == 0 and db == 1:
                    break
                if b + db < 0 or b + db >= n1:
                    continue
                for dc in range(-1, 2):
                    if da == 0 and db == 0 and dc == 0:
                        break
                    if c + dc < 0 or c + dc >= n2:
                        continue
                    if abs(da) + abs(db) + abs(dc) > reach:
                        continue
                    j = i + da * plane + db * n2 + dc
                    if parent[j] >= 0:
                        union(parent, i, j)


@cuda.jit(cache=True)
def flatten_kernel(parent, root_counts, voxel_counts):
    """Point every lesion voxel at its root; count roots and lesion voxels per tile."""
    totals = cuda.shared.array(2, _I64)
    t = cuda.threadIdx.x
    n = parent.size
    for b in range(cuda.blockIdx.x, root_counts.size, cuda.gridDim.x):
        if t == 0:
            totals[0] = 0
            totals[1] = 0
        cuda.syncthreads()
        roots = 0
        voxels = 0
        base = b * TILE
        for v in range(ITEMS):
            i = base + v * TPB + t
            if i < n:
                p = parent[i]
                if p >= 0:
                    voxels += 1
                    if p == i:
                        roots += 1
                    else:
                        parent[i] = find_root(parent, p)
        if roots:
            cuda.atomic.add(totals, 0, roots)
        if voxels:
            cuda.atomic.add(totals, 1, voxels)
        cuda.syncthreads()
        if t == 0:
            root_counts[b] = totals[0]
            voxel_counts[b] = totals[1]
        cuda.syncthreads()


@cuda.jit(cache=True)
def number_kernel(parent, offsets):
    """Number the roots in memory order: root of lesion ``c`` holds ``-(c + 2)``."""
    buf = cuda.shared.array((2, TPB), _I64)
    t = cuda.threadIdx.x
    n = parent.size
    for b in range(cuda.blockIdx.x, offsets.size - 1, cuda.gridDim.x):
        slot = offsets[b]
        if offsets[b + 1] == slot:  # the same for every thread of the block
            continue
        first = b * TILE + t * ITEMS
        last = min(n, first + ITEMS)
        c = 0
        for i in range(first, last):
            if parent[i] == i:
                c += 1
        before, _ = K.block_exclusive_scan(buf, t, c)
        o = slot + before
        for i in range(first, last):
            if parent[i] == i:
                parent[i] = -(o + 2)
                o += 1


@cuda.jit(device=True, inline="always")
def component(parent, i):
    """The lesion number of voxel ``i`` (memory order of roots), -1 for background."""
    p = parent[i]
    if p >= 0:
        p = parent[p]
    return -p - 2


@cuda.jit(cache=True)
def first_voxel_kernel(parent, s0, s1, key):
    """``key[c]``: the least C-order index of lesion ``c``, in a Fortran volume ``(s0, s1, s2)``.

    A voxel with a lesion face neighbour of smaller C index (the same lesion)
    is not the least: only the others take part.
    """
    plane = s0 * s1
    for f in range(cuda.grid(1), parent.size, cuda.gridsize(1)):
        c = component(parent, f)
        if c < 0:
            continue
        i = f % s0
        j = (f // s0) % s1
        k = f // plane
        if i > 0 and parent[f - 1] != -1:
            continue
        if j > 0 and parent[f - s0] != -1:
            continue
        if k > 0 and parent[f - plane] != -1:
            continue
        s2 = parent.size // plane
        cuda.atomic.min(key, c, (i * s1 + j) * s2 + k)


@cuda.jit(cache=True)
def pairs_kernel(scores, parent, rank, offsets, values, ranks, n_nan):
    """``(score, lesion rank)`` of every lesion voxel, in memory order (tiles as ``gather_kernel``)."""
    buf = cuda.shared.array((2, TPB), _I64)
    t = cuda.threadIdx.x
    n = parent.size
    nans = 0
    for b in range(cuda.blockIdx.x, offsets.size - 1, cuda.gridDim.x):
        slot = offsets[b]
        if offsets[b + 1] == slot:
            continue
        first = b * TILE + t * ITEMS
        last = min(n, first + ITEMS)
        c = 0
        for i in range(first, last):
            if parent[i] != -1:
                c += 1
        before, _ = K.block_exclusive_scan(buf, t, c)
        o = slot + before
        for i in range(first, last):
            if parent[i] != -1:
                x = np.float64(scores[i])  # exact for float16/32/64
                values[o] = x + 0.0  # -0.0 becomes +0.0, as on the CPU
                ranks[o] = rank[component(parent, i)]
                if x != x:
                    nans += 1
                o += 1
    if nans:
        cuda.atomic.add(n_nan, 0, nans)


@cuda.jit(cache=True)
def maxima_kernel(scores, parent, rank, best, sizes, n_nan):
    """``best[r]``: the largest order key of lesion ``r``'s scores; ``sizes[r]``: its voxels.

    A thread reads ITEMS consecutive voxels and adds each run of one lesion
    with one atomic per array.
    """
    t = cuda.threadIdx.x
    n = parent.size
    n_tiles = (n + TILE - 1) // TILE
    nans = 0
    for b in range(cuda.blockIdx.x, n_tiles, cuda.gridDim.x):
        first = b * TILE + t * ITEMS
        last = min(n, first + ITEMS)
        current = -1
        run_key = np.uint64(0)
        run = 0
        for i in range(first, last):
            c = component(parent, i)
            if c < 0:
                continue
            x = np.float64(scores[i]) + 0.0
            if x != x:
                nans += 1
            key = order_key(x)
            r = rank[c]
            if r != current:
                if run:
                    cuda.atomic.max(best, current, run_key)
                    cuda.atomic.add(sizes, current, run)
                current = r
                run_key = key
                run = 1
            else:
                run_key = max(run_key, key)
                run += 1
        if run:
            cuda.atomic.max(best, current, run_key)
            cuda.atomic.add(sizes, current, run)
    if nans:
        cuda.atomic.add(n_nan, 0, nans)


@cuda.jit(cache=True)
def take_kernel(values, positions, out):
    """``out[j] = values[positions[j]]``."""
    for j in range(cuda.grid(1), positions.size, cuda.gridsize(1)):
        out[j] = values[positions[j]]


def _raise_nan(name, n_nan, n_voxels):
    raise NaNScoresError(
        f"{volume_name(name)}: {n_nan} NaN scores among its {n_voxels} lesion voxels; clskern never drops them silently"
    )


# -- labelling -------------------------------------------------------------------------


class Labelled:
    """A labelled volume on the device.

    Attributes
    ----------
    parent : device array, int32 (int64 for 2**31 voxels or more)
        ``component(parent, i)`` is voxel i's lesion in memory order of roots, -1 background.
    rank : device int64 array
        The canonical position of each lesion (by the C index of its first voxel).
    n_lesions, n_voxels : int
        Lesions, and lesion voxels.
    voxel_offsets : device int64 array
        Each tile's first slot among the lesion voxels (memory order).
    """

    __slots__ = ("n_lesions", "n_voxels", "parent", "rank", "voxel_offsets")


def _last(offsets):
    return int(offsets[offsets.size - 1 :].copy_to_host()[0])


def label_volume(vol, connectivity):
    """Label the lesion voxels of a ``DeviceVolume`` (3-D); returns a ``Labelled``."""
    n = vol.labels.size
    shape = vol.shape
    _, n1, n2 = shape if vol.order == "C" else shape[::-1]  # (n0, n1, n2) in memory order
    out = Labelled()
    out.parent = cuda.device_array(n, np.int32 if n < 2**31 - 2 else np.int64)
    grid = blocks_for(n, TPB, 8, 2)
    launch(init_kernel, grid, TPB, vol.labels, vol.target, vol.use_target, out.parent)
    launch(merge_kernel, grid, TPB, out.parent, n1, n2, _REACH[connectivity])
    n_tiles = -(-n // TILE)
    root_counts = cuda.device_array(n_tiles, np.int64)
    voxel_counts = cuda.device_array(n_tiles, np.int64)
    launch(flatten_kernel, blocks_for(n_tiles, 1, 8, 2), TPB, out.parent, root_counts, voxel_counts)
    root_offsets = cuda.device_array(n_tiles + 1, np.int64)
    out.voxel_offsets = cuda.device_array(n_tiles + 1, np.int64)
    launch(K.scan_kernel, 1, K.SCAN_TPB, root_counts, root_offsets)
    launch(K.scan_kernel, 1, K.SCAN_TPB, voxel_counts, out.voxel_offsets)
    out.n_lesions = _last(root_offsets)
    out.n_voxels = _last(out.voxel_offsets)
    if out.n_lesions:
        launch(number_kernel, blocks_for(n_tiles, 1, 8, 2), TPB, out.parent, root_offsets)
    order = np.arange(out.n_lesions, dtype=np.int64)
    if vol.order == "F" and out.n_lesions > 1:
        key = cuda.to_device(np.full(out.n_lesions, np.iinfo(np.int64).max, np.int64))
        launch(first_voxel_kernel, grid, TPB, out.parent, shape[0], shape[1], key)
        order[np.argsort(key.copy_to_host())] = np.arange(out.n_lesions)
    out.rank = cuda.to_device(order)
    return out


def _volume_3d(scores, labels, label, name):
    vol = device_volume(scores, labels, label, name)
    if len(vol.shape) != 3:
        raise InputError(
            f"{volume_name(name)}: lesions are connected components of a 3-D volume; scores have shape {vol.shape}"
        )
    return vol


def _lesion_dtype(vol):
    return np.float64 if vol.scores.dtype == np.float64 else np.float32


def _pairs(vol, lab, name):
    """Every lesion voxel's ``(score, lesion rank)`` on the device; NaN raises."""
    values = cuda.device_array(lab.n_voxels, _lesion_dtype(vol))
    ranks = cuda.device_array(lab.n_voxels, np.int64)
    n_nan = zeros(1)
    grid = blocks_for(lab.voxel_offsets.size - 1, 1, 8, 2)
    launch(pairs_kernel, grid, TPB, vol.scores, lab.parent, lab.rank, lab.voxel_offsets, values, ranks, n_nan)
    nans = int(n_nan.copy_to_host()[0])
    if nans:
        _raise_nan(name, nans, lab.n_voxels)
    return values, ranks


# -- grouping: sort by (lesion, score) ------------------------------------------------


def _host_group(values, ranks, n_lesions):
    values = values.copy_to_host()
    ranks = ranks.copy_to_host()
    return np.bincount(ranks, minlength=n_lesions), values[np.lexsort((values, ranks))]


def _cupy_group(values, ranks, n_lesions):
    import cupy

    v = cupy.asarray(values)
    by_value = cupy.argsort(v)
    r = cupy.asarray(ranks)[by_value]
    by_lesion = cupy.argsort(r)  # stable (CuPy's sorts are): each lesion's scores stay ascending
    sizes = cupy.asnumpy(cupy.bincount(r, minlength=n_lesions))
    return sizes, cuda.as_cuda_array(v[by_value][by_lesion])


def _torch_group(values, ranks, n_lesions):
    import torch

    v, by_value = torch.sort(torch.as_tensor(values, device="cuda"))
    r, by_lesion = torch.sort(torch.as_tensor(ranks, device="cuda")[by_value], stable=True)
    sizes = torch.bincount(r, minlength=n_lesions).cpu().numpy()
    return sizes, cuda.as_cuda_array(v[by_lesion].contiguous())


def _device_group():
    """The grouping sort on the device (CuPy, else PyTorch), or None (and always under the simulator)."""
    if config.ENABLE_CUDASIM:
        return None
    try:
        import cupy  # noqa: F401

        return _cupy_group
    except ImportError:
        pass
    try:
        import torch
    except ImportError:
        return None
    return _torch_group if torch.cuda.is_available() else None


def _group(values, ranks, n_lesions):
    """``(sizes, grouped)``: lesion sizes (host) and every lesion's scores ascending, lesions in order.

    ``grouped`` is a device array when the sort ran on the device, else a NumPy array.
    """
    group = _device_group()
    if group is None:
        return _host_group(values, ranks, n_lesions)
    return group(values, ranks, n_lesions)


def _take(grouped, positions):
    if isinstance(grouped, np.ndarray):
        return grouped[positions]
    out = cuda.device_array(positions.size, grouped.dtype)
    if positions.size:
        launch(take_kernel, blocks_for(positions.size, TPB, 8), TPB, grouped, cuda.to_device(positions), out)
    return out.copy_to_host()


def _values_of_keys(keys, dtype):
    """The scores whose order keys are ``keys`` (the inverse of ``_bins.order_key``), as ``dtype``."""
    keys = np.asarray(keys, np.uint64)
    bits = np.where(keys & _SIGN, keys ^ _SIGN, ~keys)
    return bits.view(np.float64).astype(dtype)


# -- the contract ------------------------------------------------------------------------


def lesion_parts(scores, labels, label=None, connectivity=DEFAULT_CONNECTIVITY, name=None):
    """``(offsets, scores)``: every lesion's scores, ascending, lesions in canonical order.

    As ``clskern.cpu.lesion_parts``: ``offsets`` int64 of length L + 1;
    lesion ``j``'s scores are ``scores[offsets[j]:offsets[j + 1]]``
    (float32 for float16/32 volumes, float64 for float64; -0.0 as +0.0);
    lesions ordered by the C-order index of their first voxel. Host arrays.
    Raises ``NaNScoresError`` for a NaN lesion score (background not read).
    """
    connectivity = check_connectivity(connectivity)
    check_label(label, name)
    vol = _volume_3d(scores, labels, label, name)
    dtype = _lesion_dtype(vol)
    if vol.labels.size == 0:
        return np.zeros(1, np.int64), np.empty(0, dtype)
    lab = label_volume(vol, connectivity)
    offsets = np.zeros(lab.n_lesions + 1, np.int64)
    if lab.n_lesions == 0:
        return offsets, np.empty(0, dtype)
    sizes, grouped = _group(*_pairs(vol, lab, name), lab.n_lesions)
    np.cumsum(sizes, out=offsets[1:])
    return offsets, grouped if isinstance(grouped, np.ndarray) else grouped.copy_to_host()


def lesion_detection(scores, labels, label=None, connectivity=DEFAULT_CONNECTIVITY, overlap=0.0, name=None):
    """``(d, sizes)``: each lesion's detection score and voxel count, in canonical order.

    As ``clskern.cpu.lesion_detection``: ``d[j]`` is the ``r_j``-th largest
    score of lesion ``j``, ``r_j = max(1, ceil(overlap * m_j))`` (docs: lesions),
    dtype as in ``lesion_parts``; ``sizes`` int64. With ``overlap == 0`` each
    lesion's largest score is taken on the device without sorting.
    """
    connectivity = check_connectivity(connectivity)
    overlap = check_overlap(overlap)
    check_label(label, name)
    vol = _volume_3d(scores, labels, label, name)
    dtype = _lesion_dtype(vol)
    if vol.labels.size == 0:
        return np.empty(0, dtype), np.empty(0, np.int64)
    lab = label_volume(vol, connectivity)
    if lab.n_lesions == 0:
        return np.empty(0, dtype), np.empty(0, np.int64)
    if overlap == 0.0:
        best = zeros(lab.n_lesions, np.uint64)  # key 0 lies below every score's key
        sizes = zeros(lab.n_lesions)
        n_nan = zeros(1)
        grid = blocks_for(lab.voxel_offsets.size - 1, 1, 8, 2)
        launch(maxima_kernel, grid, TPB, vol.scores, lab.parent, lab.rank, best, sizes, n_nan)
        nans = int(n_nan.copy_to_host()[0])
        if nans:
            _raise_nan(name, nans, lab.n_voxels)
        return _values_of_keys(best.copy_to_host(), dtype), sizes.copy_to_host()
    sizes, grouped = _group(*_pairs(vol, lab, name), lab.n_lesions)
    positions = np.cumsum(sizes) - required_voxels(sizes, overlap)
    return _take(grouped, positions), sizes
