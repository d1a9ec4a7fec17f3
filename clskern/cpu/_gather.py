"""The lesion gather: one read of the labels, scores read only where lesions are.

The volume (flat, in memory order) is cut into tasks of ``TASK`` voxels, dealt
to the threads in chunks of consecutive tasks. A task walks its labels 64 at a
time (one vector compare gives a 64-bit lesion mask); a mask of zeros, most of
the volume, costs nothing more, and for the rest only the 16-voxel groups
holding lesion voxels read their scores (one cache line of float32) and
compress them into the task's row of a buffer, packed and in memory order
(``clskern.cpu._simd``). The labels are read once and no counting pass comes
first, so rows have a fixed ``CAPACITY``: a denser task only counts, and is
gathered again afterwards into a buffer of its exact size (a second read of
that task's labels, never of the whole volume).

Each complete row, still in L1, is added to its chunk's lesion histogram.
``critical_threshold`` then needs no assembled array: the histogram names the
bin holding rank k, and only that bin's scores are collected and sorted
(``select_in_rows``). ``volume_stats`` adds every score of a task to a second
histogram just before gathering it (``every_score``), and ``assemble_lesions``
lays the rows end to end in one exact-size array, decoding float16 bit
patterns, storing -0.0 as +0.0 (one bit pattern per value: sorted scores and
thresholds are the same bits whatever sorts them) and counting NaN.
"""

import typing

import numba
import numpy as np
from numba import prange

from .._binning import N_BINS
from .._jit import njit
from .._threads import CHUNKS_PER_THREAD
from ._bins import score_bin
from ._kernels import HISTOGRAM_RUN, extremes_buffers, fill_bins, fold_extremes, histogram
from ._radix import sort_floats
from ._scalars import score_value
from ._simd import COMPRESS_LANES, MASK_LANES, SLACK, compress16, is_lesion, lesion_mask64, popcount64

TASK = 1 << 15  # voxels per task: its labels and lesion scores stay in L2 while it runs
CAPACITY = TASK // 16  # lesion scores a row holds (6.25 %); denser tasks are gathered again


@njit(cache=True)
def _gather_task(scores, labels, target, use_target, row):
    """Compress a task's lesion scores into ``row``; ``(count, complete)``.

    ``complete`` is False when the scores did not fit (the row is then
    unusable and ``count`` is still exact).
    """
    capacity = row.size - SLACK
    n = labels.size
    whole = n - n % MASK_LANES
    o = 0
    complete = True
    for lo in range(0, whole, MASK_LANES):
        m = lesion_mask64(labels, lo, target, use_target)
        if m == 0:
            continue
        if complete and o + popcount64(m) > capacity:
            complete = False
        if not complete:
            o += popcount64(m)
            continue
        for g in range(MASK_LANES // COMPRESS_LANES):
            part = (m >> np.uint64(COMPRESS_LANES * g)) & np.uint64((1 << COMPRESS_LANES) - 1)
            if part:
                o += compress16(scores, lo + COMPRESS_LANES * g, part, row, o)
    for i in range(whole, n):
        if is_lesion(labels[i], target, use_target):
            if o < capacity:
                row[o] = scores[i]
            else:
                complete = False
            o += 1
    return o, complete


@njit(cache=True, inline="always")
def _chunk(c, n_chunks, n_tasks):
    """Tasks ``first..last-1`` of chunk c: the tasks a histogram row counts.

    ``gather_tasks`` fills row c of the histograms from these tasks and
    ``_bin_members_by_chunk`` trusts row c for them, so both deal tasks here.
    """
    return c * n_tasks // n_chunks, (c + 1) * n_tasks // n_chunks


@njit(parallel=True, cache=True)
def gather_tasks(scores, labels, target, use_target, rows, counts, complete, lesion_hist, all_hist, signed, unsigned,
                 low_high, top):
    """Every task's lesion scores into its row of ``rows`` (one read of the labels).

    The tasks are dealt to chunks of consecutive tasks, one per row of
    ``lesion_hist`` (int32 histogram rows, zeroed here by their own thread;
    the caller sums them), so threads never share a counter. A task's row, still in L1, is added to its
    chunk's ``lesion_hist`` row if it is complete. If ``all_hist`` has rows
    (same shape), every score of the task is first added to it too: the
    ``volume_stats`` pass, with each task's scores still in cache when its
    lesion scores are gathered; the task's scores (``signed``/``unsigned``:
    int and uint views of the same memory) are then folded into row c of
    ``low_high``/``top`` (``fold_extremes``: the exact minimum and maximum),
    whose rows the caller seeds.
    """
    n = labels.size
    n_tasks = counts.size
    n_chunks = lesion_hist.shape[0]
    every_score = all_hist.shape[0] > 0
    for c in prange(n_chunks):
        lesion_hist[c, :] = 0
        if every_score:
            all_hist[c, :] = 0
        bins = np.empty(HISTOGRAM_RUN, np.uint16)
        first, last = _chunk(c, n_chunks, n_tasks)
        for t in range(first, last):
            lo, hi = t * TASK, min(n, (t + 1) * TASK)
            if every_score:
                histogram(scores[lo:hi], all_hist[c], bins)
                fold_extremes(signed[lo:hi], unsigned[lo:hi], low_high, top, c)
            count, fits = _gather_task(scores[lo:hi], labels[lo:hi], target, use_target, rows[t])
            counts[t], complete[t] = count, fits
            if fits:
                histogram(rows[t, :count], lesion_hist[c], bins)


@njit(cache=True)
def _copy_row(row, out):
    nan = 0
    for i in range(out.size):
        x = score_value(row[i]) + 0.0
        out[i] = x
        nan += x != x
    return nan


@njit(parallel=True, cache=True)
def regather_tasks(scores, labels, target, use_target, tasks, starts, counts, extra):
    """Gather the listed tasks again, into ``extra[starts[i]:]`` (their exact size + SLACK)."""
    n = labels.size
    for i in prange(tasks.size):
        t = tasks[i]
        lo, hi = t * TASK, min(n, (t + 1) * TASK)
        _gather_task(scores[lo:hi], labels[lo:hi], target, use_target, extra[starts[i] : starts[i] + counts[t] + SLACK])


@njit(parallel=True, cache=True)
def assemble(rows, counts, extra, extra_start, offsets, out):
    """Lay the rows end to end in ``out`` (exact size); returns the NaN count.

    A task whose row overflowed takes its scores from ``extra`` instead
    (``extra_start[t] >= 0``).
    """
    n_tasks = counts.size
    nans = np.zeros(n_tasks, np.int64)
    for t in prange(n_tasks):
        target_slice = out[offsets[t] : offsets[t + 1]]
        if extra_start[t] < 0:
            nans[t] = _copy_row(rows[t], target_slice)
        else:
            nans[t] = _copy_row(extra[extra_start[t] :], target_slice)
    return nans.sum()


def task_count(n_voxels):
    """Tasks a volume of ``n_voxels`` is cut into."""
    return max(1, -(-n_voxels // TASK))


class Gathered(typing.NamedTuple):
    """Every task's lesion scores (raw score elements), in memory order.

    Task t's ``counts[t]`` scores are ``rows[t, :counts[t]]``, or, when its row
    overflowed, ``extra[extra_start[t]:][:counts[t]]`` (``extra_start[t] >= 0``).
    ``lesion_hist``: histogram rows of the lesion scores (None when a row
    overflowed); ``all_hist``: of every score (no rows unless asked for).
    """

    rows: np.ndarray
    counts: np.ndarray
    extra: np.ndarray
    extra_start: np.ndarray
    lesion_hist: typing.Optional[np.ndarray]
    all_hist: np.ndarray
    extremes: tuple = ()  # with every_score: ``(low_high, top)`` rows of ``fold_extremes``

    @property
    def complete(self):
        """Whether every task fitted its row (``rows`` alone hold every score)."""
        return not self.extra.size


def gather(flat_s, flat_l, target, use_target, every_score=False, capacity=CAPACITY):
    """Gather a flat volume's lesion scores (see the module docstring).

    With ``every_score``, every score is also added to ``Gathered.all_hist``
    and folded into ``Gathered.extremes`` in the same read (``volume_stats``). ``capacity`` (scores per row) is
    only ever changed by tests, to reach the overflow path on small volumes.
    """
    n_tasks = task_count(flat_s.size)
    # int32 histogram rows (half the cache footprint of int64), one per chunk, each counting at most
    # 2**30 voxels; several chunks per thread when there are several: TBB hands a preempted thread's
    # untouched chunks to the others (clskern._threads.CHUNKS_PER_THREAD; measured on a busy host)
    threads = numba.get_num_threads()
    chunks = threads * CHUNKS_PER_THREAD if threads > 1 else 1
    n_chunks = max(1, min(n_tasks, max(chunks, -(-flat_s.size // 2**30))))
    rows = np.empty((n_tasks, min(capacity, flat_s.size) + SLACK), flat_s.dtype)
    counts = np.empty(n_tasks, np.int64)
    complete = np.empty(n_tasks, np.bool_)
    lesion_hist = np.empty((n_chunks, N_BINS), np.int32)
    all_hist = np.empty((n_chunks if every_score else 0, N_BINS), np.int32)
    signed, unsigned, low_high, top = extremes_buffers(flat_s, n_chunks if every_score else 0)
    gather_tasks(flat_s, flat_l, target, use_target, rows, counts, complete, lesion_hist, all_hist, signed, unsigned,
                 low_high, top)
    extremes = (low_high, top) if every_score else ()
    extra_start = np.full(n_tasks, -1, np.int64)
    overflowed = np.flatnonzero(~complete)
    if not overflowed.size:
        return Gathered(rows, counts, rows[:0, 0], extra_start, lesion_hist, all_hist, extremes)
    sizes = counts[overflowed] + SLACK
    starts = np.zeros(overflowed.size, np.int64)
    np.cumsum(sizes[:-1], out=starts[1:])
    extra = np.empty(int(sizes.sum()), flat_s.dtype)
    regather_tasks(flat_s, flat_l, target, use_target, overflowed, starts, counts, extra)
    extra_start[overflowed] = starts
    return Gathered(rows, counts, extra, extra_start, None, all_hist, extremes)


def assemble_lesions(gathered, lesion_dtype):
    """``(lesion scores in memory order, NaN count among them)``: one exact-size array."""
    offsets = np.zeros(gathered.counts.size + 1, np.int64)
    np.cumsum(gathered.counts, out=offsets[1:])
    lesion = np.empty(offsets[-1], lesion_dtype)
    n_nan = assemble(gathered.rows, gathered.counts, gathered.extra, gathered.extra_start, offsets, lesion)
    return lesion, int(n_nan)


# -- the k-th lesion score straight from the rows (critical_threshold) --------------


@njit(cache=True)
def _rows_nan(rows, counts):
    nan = 0
    for t in range(counts.size):
        row = rows[t]
        for i in range(counts[t]):
            x = score_value(row[i])
            nan += x != x
    return nan


@njit(cache=True)
def _bin_members(rows, counts, b, out):
    """Copy the rows' raw scores whose histogram bin is ``b`` to ``out`` (+ ``SLACK``).

    64 scores at a time: their bins (vectorised, as in ``histogram``), one
    compare into a mask, a compress: no branch per score, and a mask of zeros
    (nearly all of them) costs one test. Returns how many, or -1 if more than
    ``out`` holds (the histogram said otherwise: never written past).
    """
    bins = np.empty(MASK_LANES, np.uint16)
    target = np.uint16(b)
    room = out.size - SLACK
    m = 0
    for t in range(counts.size):
        row = rows[t, : counts[t]]
        whole = row.size - row.size % MASK_LANES
        for lo in range(0, whole, MASK_LANES):
            fill_bins(row[lo : lo + MASK_LANES], bins)
            mask = lesion_mask64(bins, 0, target, True)
            if mask == 0:
                continue
            if m + popcount64(mask) > room:
                return -1
            for g in range(MASK_LANES // COMPRESS_LANES):
                part = (mask >> np.uint64(COMPRESS_LANES * g)) & np.uint64((1 << COMPRESS_LANES) - 1)
                if part:
                    m += compress16(row, lo + COMPRESS_LANES * g, part, out, m)
        for i in range(whole, row.size):
            if score_bin(score_value(row[i])) == b:
                if m == room:
                    return -1
                out[m] = row[i]
                m += 1
    return m


_LOCATE_BLOCK = 256  # bins summed at a time while looking for a rank's bin


@njit(cache=True)
def _locate_ranks(hist, ranks):
    """Bin of each rank (ascending ranks) and the rank's place inside its bin.

    Walks blocks of ``_LOCATE_BLOCK`` bins (vectorised sums over the rows),
    then the bins of the block holding the rank.
    """
    bins = np.empty(ranks.size, np.int64)
    within = np.empty(ranks.size, np.int64)
    n_bins = hist.shape[1]
    j = 0
    below = 0  # scores in the bins before ``lo``
    lo = 0
    while j < ranks.size and lo < n_bins:
        hi = min(n_bins, lo + _LOCATE_BLOCK)
        in_block = 0
        for c in range(hist.shape[0]):
            row = hist[c, lo:hi]
            for b in range(row.size):
                in_block += row[b]
        if ranks[j] >= below + in_block:
            below += in_block
            lo = hi
            continue
        for b in range(lo, hi):
            in_bin = 0
            for c in range(hist.shape[0]):
                in_bin += hist[c, b]
            while j < ranks.size and ranks[j] < below + in_bin:
                bins[j] = b
                within[j] = ranks[j] - below
                j += 1
            below += in_bin
        lo = hi
    return bins, within


@njit(parallel=True, cache=True)
def _bin_members_by_chunk(rows, counts, hist, b):
    """The raw scores in bin ``b``, collected by the chunks of ``hist`` in parallel."""
    n_chunks, n_tasks = hist.shape[0], counts.size
    starts = np.zeros(n_chunks + 1, np.int64)
    for c in range(n_chunks):
        starts[c + 1] = starts[c] + hist[c, b] + SLACK
    raw = np.empty(starts[-1], rows.dtype)
    found = np.empty(n_chunks, np.int64)
    for c in prange(n_chunks):
        first, last = _chunk(c, n_chunks, n_tasks)
        found[c] = _bin_members(rows[first:last], counts[first:last], b, raw[starts[c] : starts[c + 1]])
    for c in range(n_chunks):
        if found[c] != hist[c, b]:
            raise RuntimeError("clskern: the lesion histogram and the rows disagree (a stale Numba cache? delete clskern/cpu/__pycache__)")
    m = 0
    for c in range(n_chunks):
        for i in range(hist[c, b]):
            raw[m] = raw[starts[c] + i]
            m += 1
    return raw[:m]


@njit(cache=True)
def _select(rows, counts, hist, ranks, out):
    """``out[j] = sorted(scores)[ranks[j]]`` (ranks ascending); returns the NaN count."""
    last = hist.shape[1] - 1
    if hist[:, 0].sum() + hist[:, last].sum():
        n_nan = _rows_nan(rows, counts)
        if n_nan:
            return n_nan
    bins, within = _locate_ranks(hist, ranks)
    j = 0
    while j < ranks.size:
        raw = _bin_members_by_chunk(rows, counts, hist, bins[j])
        members = np.empty(raw.size, out.dtype)
        _copy_row(raw, members)
        sort_floats(members)
        b = bins[j]
        while j < ranks.size and bins[j] == b:
            out[j] = members[within[j]]
            j += 1
    return 0


def select_in_rows(gathered, ranks, lesion_dtype):
    """``(sorted(lesion scores)[ranks], NaN count)`` of a complete gather, no assembly.

    ``ranks`` ascending. Bins are disjoint value ranges in order, so the bin
    holding rank k is known from the lesion histogram; only that bin's scores
    are then collected and sorted. NaN lands in an end bin: it is counted only
    when those are not empty.
    """
    values = np.empty(len(ranks), lesion_dtype)
    n_nan = _select(gathered.rows, gathered.counts, gathered.lesion_hist, np.asarray(ranks, np.int64), values)
    return (None, int(n_nan)) if n_nan else (values, 0)
