"""Lesions as connected components (docs: lesions): the CPU labelling kernel and detection scores.

``clskern.cpu._ops`` offers it to the dispatch as ``lesion_parts`` (every
lesion's scores, sorted) and ``lesion_detection`` (detection scores without
sorting a lesion); the exact ``r_j`` and the checks of ``level``, ``overlap``
and ``connectivity`` are ``clskern._lesions``, shared with the GPU.

The lesions of a volume are the connected components of its lesion mask
(``labels > 0`` or ``labels == label``) under 6-, 18- or 26-connectivity. One
read of the labels finds them, and only lesion scores are read besides:

1. **Runs** (``_scan_task``, parallel over tasks of whole rows). The flat
   volume, in memory order, is a stack of *rows* along its fastest axis (the
   last axis of a C-ordered volume, the first of a Fortran-ordered one; unit
   axes are dropped first, see ``_memory_layout``). Each row's labels are
   read 64 at a time (one vector compare, ``clskern.cpu._simd.lesion_mask64``);
   a word of zeros, most of a volume, costs one test, and in the others the
   bits where the mask changes (``m ^ (m << 1 | carry)``) give the starts and
   ends of *runs*, maximal spans of consecutive lesion voxels of a row. A
   task's runs go to its own row of a buffer of fixed capacity; a task with
   more runs only counts them and is scanned again into a buffer of its exact
   size (a second read of that task's labels only, never of the volume).
   When only each lesion's largest score is wanted (``overlap == 0``), each
   run's largest score is read right there, while the run's labels are in
   cache.
2. **Union-find over runs** (``_link``). The connectivities are symmetric
   under any permutation and reflection of the axes, so the components do not
   depend on which axis is fastest: a run is joined to the runs of the four
   rows scanned before it that can touch it (the previous row of its slice,
   and three rows of the previous slice). Under 26-connectivity two runs in
   neighbouring rows touch when their spans, widened by one voxel, overlap;
   under 18-connectivity that holds for the two face-neighbour rows while the
   two diagonal rows need a true overlap; under 6-connectivity only the face
   rows count, with a true overlap. Four pointers walk the run list behind
   the current run, so linking is linear in the number of runs. The runs are
   cut into one part per thread at slice boundaries, each part linked on its
   own, then the seams between parts. A set's root is its first run in scan
   order.
3. **Scores** (``_fill``, parallel over runs, then over lesions): each run's
   scores, contiguous in memory, are decoded (float16 bit patterns to
   float32), -0.0 stored as +0.0 and NaN counted, into its lesion's segment
   of one ragged array; each segment is then sorted ascending (``lesions``)
   or partitioned around the one rank it needs (``detection_scores_flat``).

Lesions come in a canonical order: by the C-order flat index of their first
voxel (the smallest ``(i, j, k)`` in lexicographic order), so C- and
Fortran-ordered copies of a volume give identical results.

Exactness: lesion scores are only moved and compared, never computed on, so
the ragged scores, detection scores and thresholds equal a sort of the
volume's values bit for bit; ``r_j`` is computed with rationals
(``clskern._lesions.required_voxels``).
"""

import numba
import numpy as np
from numba import prange
from numba.cpython.unsafe.numbers import trailing_zeros

from .._jit import njit
from .._lesions import DEFAULT_CONNECTIVITY, required_voxels
from .._validate import flat_labels, flat_scores, label_target
from ..errors import InputError, volume_name
from ._radix import insertion_sort, sort_floats
from ._scalars import score_value
from ._simd import MASK_LANES, is_lesion, lesion_mask64

TASK = 1 << 15  # voxels per scan task (whole rows): its labels stay in L2
_CAPACITY_SHARE = 32  # a task's run buffer holds one run per this many voxels (+ a row's worth)
_INSERTION_MAX = 24  # lesions of at most this many voxels are sorted by insertion

# -- 1. runs -----------------------------------------------------------------------


@njit(cache=True, inline="always")
def _emit(runs, o, r, lo, hi, scores, base, with_max):
    """Record run ``(r, lo, hi)`` as number ``o`` if it fits (and its largest score); returns its NaN count."""
    run_row, run_lo, run_hi, run_max = runs
    if o >= run_row.size:
        return 0
    run_row[o] = r
    run_lo[o] = lo
    run_hi[o] = hi
    if not with_max:
        return 0
    best = score_value(scores[base + lo]) + 0.0  # -0.0 becomes +0.0
    nan = 0
    for i in range(lo, hi):
        x = score_value(scores[base + i]) + 0.0
        nan += x != x
        if x > best:
            best = x
    run_max[o] = best
    return nan


@njit(cache=True)
def _scan_task(labels, target, use_target, n2, first_row, last_row, runs, scores, with_max):
    """The runs of rows ``first_row..last_row-1`` into the run buffers ``runs``, in scan order.

    ``runs`` = ``(row, lo, hi, max)`` arrays; ``max`` (each run's largest
    score, decoded) is filled only ``with_max``, reading the run's scores
    while its labels are in cache. Returns ``(how many runs, NaN scores among
    the written runs)``; only the first ``runs[0].size`` runs are written (the
    task is scanned again with room for all when there are more).
    """
    whole = n2 - n2 % MASK_LANES
    one = np.uint64(1)
    top = np.uint64(MASK_LANES - 1)
    o = 0
    nan = 0
    for r in range(first_row, last_row):
        base = r * n2
        row = labels[base : base + n2]
        carry = np.uint64(0)  # 1 while a run is open
        start = 0
        for lo in range(0, whole, MASK_LANES):
            m = lesion_mask64(row, lo, target, use_target)
            edges = m ^ ((m << one) | carry)  # bit i: the mask changes at lo + i
            while edges:
                i = np.int64(trailing_zeros(edges))
                edges &= edges - one
                if (m >> np.uint64(i)) & one:
                    start = lo + i
                else:
                    nan += _emit(runs, o, r, start, lo + i, scores, base, with_max)
                    o += 1
            carry = m >> top
        for i in range(whole, n2):
            if is_lesion(row[i], target, use_target):
                if not carry:
                    start = i
                    carry = one
            elif carry:
                nan += _emit(runs, o, r, start, i, scores, base, with_max)
                o += 1
                carry = np.uint64(0)
        if carry:
            nan += _emit(runs, o, r, start, n2, scores, base, with_max)
            o += 1
    return o, nan


@njit(parallel=True, cache=True)
def _scan(labels, target, use_target, n2, rows_per_task, n_rows, run_row, run_lo, run_hi, run_max, counts, nans, scores, with_max):
    """Every task's runs into its row of the run buffers (one read of the labels)."""
    n_tasks = counts.size
    for t in prange(n_tasks):
        first = t * rows_per_task
        last = min(n_rows, first + rows_per_task)
        runs = (run_row[t], run_lo[t], run_hi[t], run_max[t])
        counts[t], nans[t] = _scan_task(labels, target, use_target, n2, first, last, runs, scores, with_max)


@njit(parallel=True, cache=True)
def _compact(run_row, run_lo, run_hi, run_max, counts, starts, row, lo, hi, maxima, with_max):
    """Lay the tasks' runs end to end (tasks in order: runs stay in scan order)."""
    for t in prange(counts.size):
        s = starts[t]
        for i in range(counts[t]):
            row[s + i] = run_row[t, i]
            lo[s + i] = run_lo[t, i]
            hi[s + i] = run_hi[t, i]
            if with_max:
                maxima[s + i] = run_max[t, i]


@njit(parallel=True, cache=True)
def _rescan(labels, target, use_target, n2, rows_per_task, n_rows, tasks, starts, counts, row, lo, hi, maxima, nans, scores, with_max):
    """Scan the listed (overflowed) tasks again, straight into their place in the flat run arrays."""
    for i in prange(tasks.size):
        t = tasks[i]
        first = t * rows_per_task
        last = min(n_rows, first + rows_per_task)
        s, e = starts[t], starts[t] + counts[t]
        runs = (row[s:e], lo[s:e], hi[s:e], maxima[s:e])  # maxima is empty unless with_max
        nans[t] = _scan_task(labels, target, use_target, n2, first, last, runs, scores, with_max)[1]


def find_runs(flat_l, target, use_target, n_rows, n2, capacity=None, flat_s=None):
    """``(row, lo, hi, maxima, n_nan)``: every run ``labels[row * n2 + lo : row * n2 + hi]``, in scan order.

    ``row``, ``lo``, ``hi`` are int64. Given the flat scores ``flat_s``, each
    run's largest score (decoded: float32 for float16/32, float64 for float64;
    -0.0 as +0.0) is read in the same pass into ``maxima``, with the NaN count
    among those runs' scores in ``n_nan``; otherwise ``maxima`` is empty and
    ``n_nan`` 0. ``capacity`` (runs a task's buffer holds) is only ever
    changed by tests, to reach the rescan path on small volumes.
    """
    rows_per_task = max(1, TASK // max(n2, 1))
    n_tasks = max(1, -(-n_rows // rows_per_task))
    if capacity is None:
        capacity = rows_per_task * n2 // _CAPACITY_SHARE + rows_per_task
    capacity = max(0, min(capacity, rows_per_task * ((n2 + 1) // 2)))
    with_max = flat_s is not None
    if not with_max:
        flat_s = np.zeros(1, np.float32)
    max_dtype = np.float64 if flat_s.dtype == np.float64 else np.float32
    buffers = [np.empty((n_tasks, capacity), np.int64) for _ in range(3)]
    buffers.append(np.empty((n_tasks, capacity if with_max else 0), max_dtype))
    counts = np.empty(n_tasks, np.int64)
    nans = np.empty(n_tasks, np.int64)
    _scan(flat_l, target, use_target, n2, rows_per_task, n_rows, *buffers, counts, nans, flat_s, with_max)
    starts = np.zeros(n_tasks + 1, np.int64)
    np.cumsum(counts, out=starts[1:])
    n_runs = int(starts[-1])
    runs = [np.empty(n_runs, np.int64) for _ in range(3)]
    runs.append(np.empty(n_runs if with_max else 0, max_dtype))
    kept = np.minimum(counts, capacity)
    _compact(*buffers, kept, starts, *runs, with_max)
    overflowed = np.flatnonzero(counts > capacity)
    if overflowed.size:
        _rescan(flat_l, target, use_target, n2, rows_per_task, n_rows, overflowed, starts, counts, *runs, nans, flat_s, with_max)
    return (*runs, int(nans.sum()))


# -- 2. union-find over runs --------------------------------------------------------


@njit(cache=True, inline="always")
def _find(parent, x):
    while parent[x] != x:
        parent[x] = parent[parent[x]]  # path halving
        x = parent[x]
    return x


@njit(cache=True, inline="always")
def _union(parent, a, b):
    """Join the sets of ``a`` and ``b``; a set's root is its first run in scan order."""
    a = _find(parent, a)
    b = _find(parent, b)
    if a < b:
        parent[b] = a
    elif b < a:
        parent[a] = b


@njit(cache=True)
def _link_range(row, lo, hi, n1, connectivity, first, last, lowest, same_slice, parent):
    """Join runs ``first..last-1`` to the runs before them, from ``lowest`` on, that they touch.

    ``same_slice`` False leaves out the previous row of a run's own slice
    (the seams between parts: that row lies inside the part, already linked).
    Four pointers, one per neighbour row, only ever move forward.
    """
    face_ext = 0 if connectivity == 6 else 1  # spans widened by this many voxels must overlap
    diagonal = connectivity != 6
    diagonal_ext = 1 if connectivity == 26 else 0
    pointer = np.full(4, lowest, np.int64)
    previous_row, a, b = -1, 0, 0
    for q in range(first, last):
        r = row[q]
        if r != previous_row:  # one division per row, not per run
            a = r // n1
            b = r - a * n1
            previous_row = r
        q_lo, q_hi = lo[q], hi[q]
        for kind in range(4):
            if kind == 0:  # (a, b - 1): face neighbour row in the same slice
                if b == 0 or not same_slice:
                    continue
                target, ext = r - 1, face_ext
            elif kind == 1:  # (a - 1, b): face neighbour row in the previous slice
                if a == 0:
                    continue
                target, ext = r - n1, face_ext
            elif kind == 2:  # (a - 1, b - 1)
                if a == 0 or b == 0 or not diagonal:
                    continue
                target, ext = r - n1 - 1, diagonal_ext
            else:  # (a - 1, b + 1)
                if a == 0 or b == n1 - 1 or not diagonal:
                    continue
                target, ext = r - n1 + 1, diagonal_ext
            j = pointer[kind]
            while j < q and (row[j] < target or (row[j] == target and hi[j] + ext <= q_lo)):
                j += 1
            pointer[kind] = j
            while j < q and row[j] == target and lo[j] < q_hi + ext:
                _union(parent, q, j)
                j += 1


_RUNS_PER_PART = 1 << 12  # fewer runs than this a part: link on one thread


@njit(cache=True)
def _slice_start(row, n1, q):
    """The first run at or after ``q`` that starts a slice (``row // n1`` changes)."""
    while 0 < q < row.size and row[q] // n1 == row[q - 1] // n1:
        q += 1
    return q


@njit(parallel=True, cache=True)
def _link(row, lo, hi, n1, connectivity, n_parts, runs_per_part=_RUNS_PER_PART):
    """Each run's component, numbered by the scan order of the components' first runs.

    The runs are cut into ``n_parts`` parts at slice boundaries and each part
    is linked on its own thread (a part's unions stay inside it, so threads
    never write the same entry); the seams (the first slice of a part against
    the last slice of the one before) are linked afterwards on one thread.
    Parts hold at least ``runs_per_part`` runs (tests lower it). Returns
    ``(component per run, number of components)``.
    """
    n = row.size
    n_parts = max(1, min(n_parts, n // max(1, runs_per_part)))
    bounds = np.empty(n_parts + 1, np.int64)
    for p in range(n_parts + 1):
        bounds[p] = _slice_start(row, n1, p * n // n_parts)
    parent = np.arange(n)
    for p in prange(n_parts):
        _link_range(row, lo, hi, n1, connectivity, bounds[p], bounds[p + 1], bounds[p], True, parent)
    for p in range(1, n_parts):
        first = bounds[p]
        if first == 0 or first >= n:  # (empty parts repeat a seam: joining twice changes nothing)
            continue
        seam_end = _slice_start(row, n1, first + 1)
        previous_slice = first - 1
        while previous_slice > 0 and row[previous_slice - 1] // n1 == row[first - 1] // n1:
            previous_slice -= 1
        _link_range(row, lo, hi, n1, connectivity, first, seam_end, previous_slice, False, parent)
    component = np.empty(n, np.int64)
    n_components = 0
    for q in range(n):
        if parent[q] == q:
            component[q] = n_components
            n_components += 1
        else:
            component[q] = component[_find(parent, q)]  # the root came first: numbered already
    return component, n_components


@njit(cache=True)
def _canonical(row, lo, hi, component, n_components, n2, fortran, s0, s1, s2):
    """``(sizes, place, lesion)``: lesion sizes in canonical order, each run's place in the ragged array and its lesion.

    Canonical order: by the C-order index of a lesion's first voxel. For a
    C-ordered volume that is the scan order already (the flat index is the C
    index). For a Fortran-ordered one of shape ``(s0, s1, s2)`` the flat
    index ``f`` of a run's first voxel (its smallest C index: C indices grow
    along every axis) is voxel ``(f % s0, f // s0 % s1, f // (s0 s1))``.
    """
    n = row.size
    rank = np.arange(n_components)
    if fortran:
        key = np.full(n_components, np.iinfo(np.int64).max, np.int64)
        for q in range(n):
            f = row[q] * n2 + lo[q]
            c_index = (f % s0) * s1 * s2 + (f // s0 % s1) * s2 + f // (s0 * s1)
            c = component[q]
            if c_index < key[c]:
                key[c] = c_index
        order = np.argsort(key)
        for i in range(n_components):
            rank[order[i]] = i
    sizes = np.zeros(n_components, np.int64)
    for q in range(n):
        sizes[rank[component[q]]] += hi[q] - lo[q]
    cursor = np.zeros(n_components + 1, np.int64)
    for c in range(n_components):
        cursor[c + 1] = cursor[c] + sizes[c]
    place = np.empty(n, np.int64)
    lesion = np.empty(n, np.int64)
    for q in range(n):
        c = rank[component[q]]
        lesion[q] = c
        place[q] = cursor[c]
        cursor[c] += hi[q] - lo[q]
    return sizes, place, lesion


# -- 3. scores ------------------------------------------------------------------------


@njit(parallel=True, cache=True)
def _fill(scores, row, lo, hi, n2, place, out):
    """Each run's decoded scores into ``out[place:]``; returns the NaN count."""
    nan = 0
    for q in prange(row.size):
        base = row[q] * n2
        o = place[q]
        run_nan = 0
        for i in range(lo[q], hi[q]):
            x = score_value(scores[base + i]) + 0.0  # -0.0 becomes +0.0
            out[o] = x
            run_nan += x != x
            o += 1
        nan += run_nan
    return nan


@njit(parallel=True, cache=True)
def _sort_segments(offsets, values):
    """Sort each lesion's segment ascending (NaN-free, -0.0 already +0.0: exact)."""
    for c in prange(offsets.size - 1):
        segment = values[offsets[c] : offsets[c + 1]]
        if segment.size <= _INSERTION_MAX:
            insertion_sort(segment)
        else:
            sort_floats(segment)


@njit(cache=True)
def _lesion_maxima(run_max, lesion, out):
    """``out[j]`` = the largest of lesion ``j``'s run maxima."""
    out[:] = -np.inf
    for q in range(run_max.size):
        if run_max[q] > out[lesion[q]]:
            out[lesion[q]] = run_max[q]


@njit(cache=True)
def _partition_below(values, lo, hi, pivot):
    """Move ``values[lo:hi + 1]`` below ``pivot`` to the front; returns where the rest starts.

    Branch-free Lomuto: every element is swapped and the boundary moves by
    the comparison's result, so random data costs no mispredicted branch
    (3.5 x faster than a Hoare partition here).
    """
    i = lo
    for j in range(lo, hi + 1):
        x = values[j]
        values[j] = values[i]
        values[i] = x
        i += x < pivot
    return i


@njit(cache=True)
def _partition_equal(values, lo, hi, pivot):
    """Move ``values[lo:hi + 1]`` equal to ``pivot`` to the front (none below it); returns where the rest starts."""
    i = lo
    for j in range(lo, hi + 1):
        x = values[j]
        values[j] = values[i]
        values[i] = x
        i += x == pivot
    return i


@njit(cache=True)
def _select(values, k):
    """``sorted(values)[k]`` of NaN-free ``values`` (-0.0 already +0.0), partitioning them in place.

    Quickselect with a median-of-three pivot and a three-way split (below,
    equal, above: ties never slow it down); after ``2 log2(n) + 8`` rounds
    without converging the remaining range is sorted outright, so the worst
    case stays ``n log n``.
    """
    lo, hi = 0, values.size - 1
    rounds = 8
    n = values.size
    while n > 1:
        rounds += 2
        n >>= 1
    while hi - lo > _INSERTION_MAX:
        rounds -= 1
        if rounds == 0:
            sort_floats(values[lo : hi + 1])
            return values[k]
        a, b, c = values[lo], values[(lo + hi) // 2], values[hi]
        pivot = max(min(a, b), min(max(a, b), c))
        i = _partition_below(values, lo, hi, pivot)
        if k < i:
            hi = i - 1
            continue
        e = _partition_equal(values, i, hi, pivot)
        if k < e:
            return pivot
        lo = e
    insertion_sort(values[lo : hi + 1])
    return values[k]


@njit(parallel=True, cache=True)
def _select_segments(offsets, values, ranks, out):
    """``out[j] = sorted(segment j)[ranks[j]]`` (segments partitioned in place)."""
    for c in prange(offsets.size - 1):
        out[c] = _select(values[offsets[c] : offsets[c + 1]], ranks[c])


# -- the pieces together ------------------------------------------------------------


def _memory_layout(shape, order):
    """``(n0, n1, n2)``: the volume's axes in memory order, ``n2`` the fastest, unit axes dropped.

    The connectivities are symmetric under permutations of the axes, and a
    unit axis has no neighbours along it, so the components of the volume are
    those of this layout (of the same flat array); dropping unit axes keeps
    rows long (a C-ordered ``(n, m, 1)`` volume is scanned as ``(1, n, m)``,
    not as ``n * m`` rows of one voxel).
    """
    axes = tuple(shape) if order == "C" else tuple(shape[::-1])
    if 0 in axes:
        return 0, 0, 0
    kept = tuple(n for n in axes if n != 1)
    return (1,) * (3 - len(kept)) + kept


def ragged_lesions(flat_s, flat_l, target, use_target, shape, order, connectivity=DEFAULT_CONNECTIVITY, capacity=None):
    """``(offsets, scores, n_nan)`` of flat views (``prepare``'s) of a 3-D volume.

    ``offsets``: int64, length L + 1; lesion ``j``'s scores are
    ``scores[offsets[j]:offsets[j + 1]]``, sorted ascending, lesions in
    canonical order (module docstring). ``scores``: float32 for float16/32
    volumes, float64 for float64 volumes. With ``n_nan > 0`` the segments
    are not sorted (the caller raises).
    """
    n0, n1, n2 = _memory_layout(shape, order)
    out_dtype = np.float64 if flat_s.dtype == np.float64 else np.float32
    n_rows = n0 * n1
    if n_rows * n2 == 0:
        return np.zeros(1, np.int64), np.empty(0, out_dtype), 0
    row, lo, hi, _, _ = find_runs(flat_l, target, use_target, n_rows, n2, capacity)
    component, n_components = _link(row, lo, hi, n1, connectivity, numba.get_num_threads())
    sizes, place, _ = _canonical(row, lo, hi, component, n_components, n2, order == "F", *shape)
    offsets = np.zeros(n_components + 1, np.int64)
    np.cumsum(sizes, out=offsets[1:])
    values = np.empty(int(offsets[-1]), out_dtype)
    n_nan = int(_fill(flat_s, row, lo, hi, n2, place, values))
    if not n_nan:
        _sort_segments(offsets, values)
    return offsets, values, n_nan


def detection_scores_flat(flat_s, flat_l, target, use_target, shape, order, connectivity=DEFAULT_CONNECTIVITY,
                          overlap=0.0, capacity=None):
    """``(d, sizes, n_nan)`` straight from flat views: no lesion is sorted.

    ``d`` (the lesions' detection scores, canonical order, dtype as in
    ``ragged_lesions``) equals ``detection_scores(*lesions(...), overlap)``:
    with ``overlap == 0`` it is each lesion's largest score (a maximum per
    run, then per lesion), otherwise the ``r_j``-th largest by selection.
    ``sizes``: int64 voxels per lesion. With ``n_nan > 0``, ``d`` is
    meaningless (the caller raises).
    """
    n0, n1, n2 = _memory_layout(shape, order)
    out_dtype = np.float64 if flat_s.dtype == np.float64 else np.float32
    n_rows = n0 * n1
    if n_rows * n2 == 0:
        return np.empty(0, out_dtype), np.empty(0, np.int64), 0
    maxima_only = overlap == 0.0
    row, lo, hi, run_max, n_nan = find_runs(flat_l, target, use_target, n_rows, n2, capacity, flat_s if maxima_only else None)
    component, n_components = _link(row, lo, hi, n1, connectivity, numba.get_num_threads())
    sizes, place, lesion = _canonical(row, lo, hi, component, n_components, n2, order == "F", *shape)
    d = np.empty(n_components, out_dtype)
    if maxima_only:
        _lesion_maxima(run_max, lesion, d)
        return d, sizes, n_nan
    offsets = np.zeros(n_components + 1, np.int64)
    np.cumsum(sizes, out=offsets[1:])
    values = np.empty(int(offsets[-1]), out_dtype)
    n_nan = int(_fill(flat_s, row, lo, hi, n2, place, values))
    if not n_nan:
        _select_segments(offsets, values, sizes - required_voxels(sizes, overlap), d)
    return d, sizes, n_nan


def prepare_volume(scores, labels, label, name):
    """``prepare`` plus the volume's shape as three axes and its memory order.

    A volume of fewer than three axes is one with unit axes in front (its
    lesions are those of the same array seen as 3-D: 8-connected pixels of an
    image under 26-connectivity, 4-connected under 6); more than three axes
    are refused.
    """
    flat_s, order, array = flat_scores(scores, name)
    if array.ndim > 3:
        raise InputError(
            f"{volume_name(name)}: lesions are connected components of a volume of at most 3 axes; "
            f"scores have shape {array.shape} (use connectivity=None for voxel statistics only)"
        )
    flat_l = flat_labels(labels, array.shape, order, name)
    target, use_target = label_target(label, flat_l.dtype, name)
    shape = (1,) * (3 - array.ndim) + tuple(array.shape)
    return flat_s, flat_l, target, use_target, shape, order
