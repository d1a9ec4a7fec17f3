"""Per-volume statistics from one pass: ``volume_stats`` and ``critical_threshold``.

A ``VolumeStats`` holds what every later step needs from a volume, so that no
epsilon, alpha, method or curve ever needs the voxels again (docs: exact and approximate numbers): the
sorted lesion scores (exact FN/FNR/TP at any threshold, exact critical
thresholds) and a histogram of background scores (FP, FPR, Dice and PC at the
histogram's resolution, see ``clskern._binning``).

The passes themselves are the backends' (``clskern.cpu``, ``clskern.cuda``,
chosen by ``clskern._backend``); they return arrays, and this module makes
the public results of them.
"""

from __future__ import annotations

import io
import json
import numbers
import zipfile
from typing import TYPE_CHECKING, Any, overload

import numpy as np

from . import _backend
from ._binning import N_BINS, bin_lower_edges
from ._lesions import (
    DEFAULT_CONNECTIVITY,
    check_connectivity,
    check_level_overlap,
    detection_scores,
    lesion_critical_threshold,
)
from ._normalize import check_normalize, check_range, minmax, score_cut
from ._ranks import largest_rank
from ._validate import (
    check_empty_policy,
    check_label,
    empty_error,
    empty_threshold,
    epsilon_array,
    real_array,
    scalar_or_array,
)
from .errors import ArgumentError, ArgumentTypeError, InputError, volume_name

if TYPE_CHECKING:  # annotations only: nothing more is imported at run time
    from numpy.typing import ArrayLike, NDArray

    FloatOrArray = float | NDArray[np.float64]
    IntOrArray = int | NDArray[np.int64]

class VolumeStats:
    """One volume's lesion scores and background histogram.

    Attributes
    ----------
    n_voxels, n_fg : int
        Voxels in the volume and lesion (foreground) voxels among them.
    lesion_scores : ndarray
        The lesion voxels' scores, sorted ascending (float32 for float16/32
        volumes, float64 for float64 volumes).
    bg_bins, bg_counts : ndarray
        Indices (uint32, ascending) and counts (int64) of the non-empty bins
        of the background-score histogram.
    name : str or None
        The case id, used in error messages and stores.
    connectivity : {6, 18, 26} or None
        How the lesions (connected components of the lesion mask, docs: lesions)
        were found; None: statistics without lesion information (voxel level
        only).
    lesion_offsets, lesion_groups : ndarray or None
        Every lesion's scores, ascending: lesion ``j``'s are
        ``lesion_groups[lesion_offsets[j]:lesion_offsets[j + 1]]`` (offsets
        int64 from 0 to ``n_fg``; groups of ``lesion_scores``' dtype, the same
        multiset), lesions by the C-order index of their first voxel. Enough
        for the lesion level at any ``overlap`` (``at_lesion_level``).

    Exactness: ``fn``, ``tp``, ``fnr`` and ``critical_threshold`` are exact at
    every threshold. ``fp`` is exact when ``t`` is a bin edge (256 bins per
    power of two: 0, 0.5, every multiple of 2**-9 in [0.5, 1) ...) and linearly
    interpolated inside a bin otherwise, so it errs by less than that one bin's
    count; ``fpr``, ``dice`` and ``pc`` inherit this.
    """

    __slots__ = ("n_voxels", "n_fg", "lesion_scores", "bg_bins", "bg_counts", "name", "_fp_table",
                 "connectivity", "lesion_offsets", "lesion_groups", "score_min", "score_max")

    n_voxels: int
    n_fg: int
    lesion_scores: NDArray[np.floating[Any]]
    bg_bins: NDArray[np.uint32]
    bg_counts: NDArray[np.int64]
    name: str | None
    connectivity: int | None
    lesion_offsets: NDArray[np.int64] | None
    lesion_groups: NDArray[np.floating[Any]] | None
    score_min: Any
    score_max: Any

    def __init__(self, n_voxels: int, n_fg: int, lesion_scores: ArrayLike, bg_bins: ArrayLike, bg_counts: ArrayLike,
                 name: str | None = None, *, connectivity: int | None = None, lesion_offsets: ArrayLike | None = None,
                 lesion_groups: ArrayLike | None = None, score_min: float | None = None,
                 score_max: float | None = None) -> None:
        self.n_voxels = _count(n_voxels, "n_voxels", name)
        self.n_fg = _count(n_fg, "n_fg", name)
        self.lesion_scores = np.asarray(lesion_scores)
        self.bg_bins = np.asarray(bg_bins)
        self.bg_counts = np.asarray(bg_counts)
        self.name = name
        self._fp_table = None
        self.connectivity = check_connectivity(connectivity, optional=True)
        given = (lesion_offsets is not None, lesion_groups is not None)
        if given != ((self.connectivity is not None),) * 2:
            raise InputError(f"{volume_name(name)}: inconsistent statistics (lesion offsets and groups come "
                             "together, with a connectivity, or not at all)")
        self.lesion_offsets = None if lesion_offsets is None else np.asarray(lesion_offsets)
        self.lesion_groups = None if lesion_groups is None else np.asarray(lesion_groups)
        self.score_min, self.score_max = _score_extremes(score_min, score_max, self.lesion_scores, name)
        problem = self._inconsistency()
        if problem:
            raise InputError(f"{volume_name(name)}: inconsistent statistics ({problem})")
        self.bg_bins = self.bg_bins.astype(np.uint32, copy=False)
        self.bg_counts = self.bg_counts.astype(np.int64, copy=False)

    @classmethod
    def _from_kernels(cls, n_voxels, lesion_scores, bg_bins, bg_counts, name, lesions=None, connectivity=None,
                      score_min=None, score_max=None):
        """Statistics straight from the kernels: already consistent, so not re-checked.

        The checks of ``__init__`` read every lesion score twice (0.2 ms on
        the benchmark volume); they guard data from outside (stores, ``from_bytes``).
        ``lesions``: ``(offsets, groups)`` of ``lesion_parts``, or None.
        """
        self = cls.__new__(cls)
        self.n_voxels, self.n_fg, self.name, self._fp_table = int(n_voxels), int(lesion_scores.size), name, None
        self.lesion_scores, self.bg_bins, self.bg_counts = lesion_scores, bg_bins, bg_counts
        self.connectivity = None if lesions is None else connectivity
        self.lesion_offsets, self.lesion_groups = (None, None) if lesions is None else lesions
        self.score_min, self.score_max = score_min, score_max
        return self

    def _inconsistency(self):
        """What is wrong with these statistics (a damaged store, say), or None.

        Cheap next to the pass that made them: one look at each array.
        """
        scores, bins, counts = self.lesion_scores, self.bg_bins, self.bg_counts
        if scores.ndim != 1 or scores.dtype not in (np.float32, np.float64):
            return f"lesion scores must be a 1-D float32/float64 array, not {scores.dtype} of shape {scores.shape}"
        if not 0 <= self.n_fg == scores.size <= self.n_voxels:
            return f"n_fg={self.n_fg}, {scores.size} lesion scores, n_voxels={self.n_voxels}"
        if np.isnan(scores).any() or np.any(scores[1:] < scores[:-1]):
            return "lesion scores must be sorted and free of NaN"
        integral = bins.size == counts.size == 0 or (bins.dtype.kind in "iu" and counts.dtype.kind in "iu")
        if bins.ndim != 1 or bins.shape != counts.shape or not integral:
            return "histogram bins and counts must be integer arrays of one length"
        if bins.size and (bins[0] < 0 or bins[-1] >= N_BINS or np.any(bins[1:] <= bins[:-1]) or counts.min() <= 0):
            return "histogram bins must be increasing and in range, counts positive"
        if int(counts.sum()) != self.n_voxels - self.n_fg:
            return "counts do not add up"
        if self.score_min is not None:
            problem = self._range_inconsistency()
            if problem:
                return problem
        if self.connectivity is not None:
            return self._lesion_inconsistency()
        return None

    def _range_inconsistency(self):
        """What is wrong with ``score_min``/``score_max``, or None.

        They must bracket every lesion score and, where there is a histogram,
        fall in its lowest and highest occupied bins (background and lesion
        scores together). Lesion-side statistics without a histogram (the
        store's ``lesion_stats``) are checked against the lesion scores only.
        """
        low, high, scores, bins = self.score_min, self.score_max, self.lesion_scores, self.bg_bins
        if not low <= high:
            return f"score_min {low!r} above score_max {high!r}"
        if scores.size and not (low <= scores[0] and scores[-1] <= high):
            return f"the lesion scores [{scores[0]!r}, {scores[-1]!r}] are not within [score_min, score_max]"
        if bins.size:
            occupied = [int(bins[0]), int(bins[-1])] + ([_bin_of(scores[0]), _bin_of(scores[-1])] if scores.size else [])
            if (_bin_of(low), _bin_of(high)) != (min(occupied), max(occupied)):
                return "score_min and score_max are not in the lowest and highest occupied histogram bins"
        return None

    def _lesion_inconsistency(self):
        """What is wrong with the lesion information (offsets, groups), or None.

        Offsets int, from 0 to ``n_fg``, strictly increasing (every lesion has
        a voxel); groups of the lesion scores' dtype, each sorted (descents
        only where a lesion starts), and as a whole the same multiset as
        ``lesion_scores`` (a stable sort of the groups: a merge of sorted runs).
        """
        offsets, groups, scores = self.lesion_offsets, self.lesion_groups, self.lesion_scores
        if offsets.ndim != 1 or offsets.dtype.kind not in "iu" or offsets.size == 0:
            return "lesion offsets must be a non-empty 1-D integer array"
        if offsets[0] != 0 or offsets[-1] != self.n_fg or np.any(offsets[1:] <= offsets[:-1]):
            return f"lesion offsets must increase strictly from 0 to n_fg={self.n_fg}"
        if groups.ndim != 1 or groups.dtype != scores.dtype or groups.size != self.n_fg:
            return f"lesion groups must be {self.n_fg} scores of dtype {scores.dtype}"
        descents = np.flatnonzero(groups[1:] < groups[:-1]) + 1
        if np.isnan(groups).any() or not np.isin(descents, offsets[1:-1]).all():
            return "each lesion's scores must be sorted and free of NaN"
        if not np.array_equal(np.sort(groups, kind="stable"), scores):
            return "the lesions' scores are not the lesion scores"
        return None

    def __repr__(self) -> str:
        return (
            f"VolumeStats(name={self.name!r}, n_voxels={self.n_voxels}, n_fg={self.n_fg}, "
            f"bins={self.bg_bins.size}, nbytes={self.nbytes})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, VolumeStats):
            return NotImplemented
        return (
            self.n_voxels == other.n_voxels
            and self.n_fg == other.n_fg
            and self.name == other.name
            and self.lesion_scores.dtype == other.lesion_scores.dtype
            and np.array_equal(self.lesion_scores, other.lesion_scores)
            and np.array_equal(self.bg_bins, other.bg_bins)
            and np.array_equal(self.bg_counts, other.bg_counts)
            and self.connectivity == other.connectivity
            and _same(self.lesion_offsets, other.lesion_offsets)
            and _same(self.lesion_groups, other.lesion_groups)
            and _same_value(self.score_min, other.score_min)
            and _same_value(self.score_max, other.score_max)
        )

    __hash__ = None  # type: ignore[assignment]

    @property
    def n_bg(self) -> int:
        """Background voxels."""
        return self.n_voxels - self.n_fg

    @property
    def nbytes(self) -> int:
        """Memory held by the arrays (the statistics are small: keep thousands)."""
        lesions = 0 if self.connectivity is None else self.lesion_offsets.nbytes + self.lesion_groups.nbytes  # type: ignore[union-attr]
        return self.lesion_scores.nbytes + self.bg_bins.nbytes + self.bg_counts.nbytes + lesions

    @property
    def n_lesions(self) -> int | None:
        """Lesions (connected components) in the volume; None without lesion information."""
        return None if self.connectivity is None else self.lesion_offsets.size - 1  # type: ignore[union-attr]

    # -- lesion level (docs: lesions) ---------------------------------------------------------

    def at_lesion_level(self, overlap: float = 0.0) -> VolumeStats:
        """These statistics at lesion level: a ``VolumeStats`` whose "voxels" are the lesions.

        Its ``lesion_scores`` are the lesions' detection scores ``d_j`` (the
        ``r_j``-th largest score of lesion ``j``, ``r_j = max(1, ceil(overlap
        * m_j))``), sorted, and its ``n_fg`` (and ``n_voxels``) the number of
        lesions, so ``fn``, ``fnr``, ``critical_threshold`` and every
        calibration method read lesion-level quantities from it: ``fnr(t)``
        is L-FNR, the share of lesions missed at ``t``. It has no background
        (FP, FPR, Dice and PC mean nothing there) and no lesion information.
        """
        if self.connectivity is None:
            raise ArgumentError(
                f"{volume_name(self.name)}: statistics made without lesions (connectivity=None); run "
                "volume_stats with connectivity=6, 18 or 26 (clskern stats --connectivity) for lesion level"
            )
        d = np.sort(detection_scores(self.lesion_offsets, self.lesion_groups, overlap))
        return VolumeStats._from_kernels(d.size, d, _NO_BINS, _NO_COUNTS, self.name, score_min=self.score_min,
                                         score_max=self.score_max)  # the volume's range: normalize='minmax' holds

    def _level(self, level, overlap):
        """``self`` or its lesion-level view (``level``, ``overlap`` checked)."""
        level, overlap = check_level_overlap(level, overlap)
        return self if level == "voxel" else self.at_lesion_level(overlap)

    # -- exact lesion-side quantities -------------------------------------------------

    @overload
    def critical_threshold(self, epsilon: float, *, level: str = ..., overlap: float = ..., empty: str = ...,
                           normalize: str = ...) -> float | None: ...
    @overload
    def critical_threshold(self, epsilon: ArrayLike, *, level: str = ..., overlap: float = ...,
                           empty: str = ..., normalize: str = ...) -> FloatOrArray | None: ...

    def critical_threshold(self, epsilon: ArrayLike, *, level: str = "voxel", overlap: float = 0.0,
                           empty: str = "error", normalize: str = "none") -> FloatOrArray | None:
        """Largest ``t`` with ``FNR(t) <= epsilon`` (docs: one case), exactly.

        Returns ``lesion_scores[k]`` with ``k`` the largest ``j < n_fg`` with
        ``j / n_fg <= epsilon``: a float, or a float64 array for array
        ``epsilon``. Without lesion voxels: ``empty="error"`` raises,
        ``"pass"`` gives +inf, ``"skip"`` gives None. ``level="lesion"``:
        the largest ``t`` with ``L-FNR(t) <= epsilon`` at ``overlap`` (docs:
        lesions), from the stored lesions (``at_lesion_level``).
        ``normalize="minmax"``: in the volume's min-max normalised scores
        (docs: min-max normalisation), ``q(lesion_scores[k])``, exactly (``q`` is monotone).
        """
        check_empty_policy(empty)
        if check_normalize(normalize) != "none":
            low, high = check_range(self.score_min, self.score_max, self.name)
            value = self.critical_threshold(epsilon, level=level, overlap=overlap, empty=empty)
            return None if value is None else _normalized(value, low, high)
        if level != "voxel" or overlap != 0.0:
            return self._level(level, overlap).critical_threshold(epsilon, empty=empty)
        eps = epsilon_array(epsilon)
        if self.n_fg == 0:
            return empty_threshold(empty, eps, self.name)
        k = largest_rank(eps, self.n_fg, self.n_fg - 1)
        return scalar_or_array(self.lesion_scores[k].astype(np.float64), eps)

    def fn(self, t: ArrayLike, *, level: str = "voxel", overlap: float = 0.0, normalize: str = "none") -> IntOrArray:
        """False negatives ``#{lesion and p < t}`` (exact; int or int64 array).

        ``level="lesion"``: lesions missed at ``t`` (``at_lesion_level``).
        ``normalize="minmax"``: ``t`` is in normalised scores, ``#{lesion and
        q(p) < t}``, exact (counted at ``score_cut(t)``); so for every
        curve method.
        """
        if normalize != "none":
            return self.fn(self._score_cut(t, normalize), level=level, overlap=overlap)
        if level != "voxel" or overlap != 0.0:
            return self._level(level, overlap).fn(t)
        t = _thresholds(t)
        return scalar_or_array(np.searchsorted(self.lesion_scores, t, side="left").astype(np.int64), t)

    def tp(self, t: ArrayLike, *, level: str = "voxel", overlap: float = 0.0, normalize: str = "none") -> IntOrArray:
        """True positives ``#{lesion and p >= t}`` (exact); lesions detected at lesion level."""
        if normalize != "none":
            return self.tp(self._score_cut(t, normalize), level=level, overlap=overlap)
        if level != "voxel" or overlap != 0.0:
            return self._level(level, overlap).tp(t)
        return self.n_fg - self.fn(t)

    def fnr(self, t: ArrayLike, *, level: str = "voxel", overlap: float = 0.0, normalize: str = "none") -> FloatOrArray:
        """``FN(t) / n_fg`` in float64 (exact; undefined without lesion voxels); L-FNR at lesion level."""
        if normalize != "none":
            return self.fnr(self._score_cut(t, normalize), level=level, overlap=overlap)
        if level != "voxel" or overlap != 0.0:
            return self._level(level, overlap).fnr(t)
        if self.n_fg == 0:
            raise empty_error(self.name)
        return np.asarray(self.fn(t), dtype=np.float64)[()] / self.n_fg

    # -- background-side quantities (histogram resolution) ----------------------------

    def fp(self, t: ArrayLike, *, normalize: str = "none") -> FloatOrArray:
        """False positives ``#{background and p >= t}`` (float64; exact at bin edges).

        ``normalize="minmax"``: ``#{background and q(p) >= t}``, counted at
        ``score_cut(t)``: exact when that score cut is a bin edge (as for
        ``t = q(e)`` of a bin edge ``e`` that no smaller score shares its
        ``q`` with), interpolated within its bin otherwise; so for ``fpr``,
        ``dice`` and ``pc``.
        """
        if normalize != "none":
            return self.fp(self._score_cut(t, normalize))
        t = _thresholds(t)
        if self.bg_counts.size == 0:
            return scalar_or_array(np.zeros(t.shape), t)
        lower, upper, above = self._fp_lookup()
        j = np.searchsorted(lower, t, side="left")  # first bin lying wholly at or above t
        count = above[j].astype(np.float64)
        inside = j > 0
        i = np.where(inside, j - 1, 0)
        width = upper[i] - lower[i]
        partial = inside & np.isfinite(width) & (upper[i] > t)  # the end bins are infinitely wide
        with np.errstate(invalid="ignore", divide="ignore"):  # inf - inf where not partial
            share = np.where(partial, (upper[i] - t) / width, 0.0)
        count += share * self.bg_counts[i]
        return scalar_or_array(count, t)

    def fpr(self, t: ArrayLike, *, normalize: str = "none") -> FloatOrArray:
        """``FP(t) / n_bg`` (0 when there is no background)."""
        if normalize != "none":
            return self.fpr(self._score_cut(t, normalize))
        fp = self.fp(t)
        return fp / self.n_bg if self.n_bg else fp * 0.0

    def dice(self, t: ArrayLike, *, normalize: str = "none") -> FloatOrArray:
        """``2 TP / (2 TP + FP + FN)``; 1 when the volume and the mask are both empty."""
        if normalize != "none":
            return self.dice(self._score_cut(t, normalize))
        tp = np.asarray(self.tp(t), dtype=np.float64)
        fn = self.n_fg - tp
        fp = np.asarray(self.fp(t), dtype=np.float64)
        denominator = 2 * tp + fp + fn
        safe = np.where(denominator > 0, denominator, 1.0)
        return np.where(denominator > 0, 2 * tp / safe, 1.0)[()]

    def pc(self, t: ArrayLike, *, normalize: str = "none") -> FloatOrArray:
        """Prediction compactness ``(TP + FP) / n_voxels``."""
        if normalize != "none":
            return self.pc(self._score_cut(t, normalize))
        return (np.asarray(self.tp(t), dtype=np.float64) + self.fp(t))[()] / max(self.n_voxels, 1)

    def _score_cut(self, t, normalize):
        """Thresholds ``t`` in normalised scores as score cuts (``clskern._normalize.score_cut``)."""
        check_normalize(normalize)
        low, high = check_range(self.score_min, self.score_max, self.name)
        t = _thresholds(t)
        return scalar_or_array(np.asarray(score_cut(t, low, high, self.lesion_scores.dtype)), t)

    def _fp_lookup(self):
        if self._fp_table is None:
            edges = bin_lower_edges()
            bins = self.bg_bins.astype(np.int64)
            above = np.zeros(bins.size + 1, np.int64)
            above[:-1] = np.cumsum(self.bg_counts[::-1])[::-1]
            self._fp_table = (edges[bins], edges[bins + 1], above)
        return self._fp_table

    # -- serialisation ------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """A self-describing ``.npz`` image of the statistics (see ``from_bytes``).

        Members ``meta`` (JSON: ``format`` 2, ``n_voxels``, ``n_fg``,
        ``name``, ``connectivity``, and ``score_min``/``score_max`` as
        ``float.hex`` strings when known), ``lesion_scores``, ``bg_bins``,
        ``bg_counts``, and with lesion information ``lesion_offsets`` and
        ``lesion_groups``.
        """
        buffer = io.BytesIO()
        meta = json.dumps({"format": STATS_FORMAT, "n_voxels": self.n_voxels, "n_fg": self.n_fg, "name": self.name,
                           "connectivity": self.connectivity, **_range_meta(self.score_min, self.score_max)})
        lesions: dict[str, Any] = {} if self.connectivity is None else {
            "lesion_offsets": self.lesion_offsets, "lesion_groups": self.lesion_groups}
        np.savez(
            buffer,
            meta=np.frombuffer(meta.encode(), dtype=np.uint8),
            lesion_scores=self.lesion_scores,
            bg_bins=self.bg_bins,
            bg_counts=self.bg_counts,
            **lesions,
        )
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> VolumeStats:
        """Rebuild statistics written by ``to_bytes`` (bit for bit); format 1 (before lesion level) reads as
        statistics without lesion information (``connectivity`` None)."""
        if not bytes(data[:4]) == b"PK\x03\x04":  # np.load would try other formats and advise allow_pickle
            raise InputError("not clskern volume statistics (not an .npz archive)")
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                meta = json.loads(z["meta"].tobytes().decode())
                connectivity, lesions = stats_lesion_meta(meta)
                if connectivity is not None:
                    lesions = {"lesion_offsets": z["lesion_offsets"], "lesion_groups": z["lesion_groups"]}
                return cls(meta["n_voxels"], meta["n_fg"], z["lesion_scores"], z["bg_bins"], z["bg_counts"], meta["name"],
                           connectivity=connectivity, **lesions, **range_from_meta(meta))
        except (OSError, KeyError, ValueError, EOFError, TypeError, RecursionError, zipfile.BadZipFile, RuntimeError,
                NotImplementedError) as exc:
            if isinstance(exc, InputError):
                raise
            raise InputError(f"not clskern volume statistics ({exc or type(exc).__name__})") from None


STATS_FORMAT = 2  # 1: no lesion information (read as connectivity None); 2: connectivity and lesions
_NO_BINS, _NO_COUNTS = np.empty(0, np.uint32), np.empty(0, np.int64)


def stats_lesion_meta(meta):
    """``(connectivity, {})`` from the ``meta`` record of ``to_bytes`` (format 1 or 2); InputError otherwise."""
    if not isinstance(meta, dict):
        raise InputError("statistics metadata is not a record")
    version = meta.get("format")
    if isinstance(version, bool) or version not in (1, STATS_FORMAT):
        raise InputError(f"statistics of format {version!r}; this clskern reads formats 1 and {STATS_FORMAT}")
    if version == 1:
        return None, {}
    if "connectivity" not in meta:
        raise InputError("statistics of format 2 without a connectivity")
    try:
        return check_connectivity(meta["connectivity"], optional=True), {}
    except ValueError as exc:
        raise InputError(f"statistics with {exc}") from None


def _normalized(value, low, high):
    """``minmax(value, low, high)``: a Python float for a scalar, else a float64 array."""
    q = minmax(value, low, high)
    return q.item() if q.ndim == 0 else q


def _score_extremes(score_min, score_max, lesion_scores, name):
    """``(score_min, score_max)`` as scalars of the lesion scores' dtype (-0.0 as +0.0), or both None.

    A value that the dtype does not hold exactly, NaN, or only one of the two
    is refused; their agreement with the rest is ``_inconsistency``'s.
    """
    if score_min is None and score_max is None:
        return None, None
    where = volume_name(name)
    if score_min is None or score_max is None:
        raise InputError(f"{where}: inconsistent statistics (score_min and score_max come together or not at all)")
    dtype = lesion_scores.dtype.type if lesion_scores.dtype in (np.float32, np.float64) else np.float64
    values = []
    for what, value in (("score_min", score_min), ("score_max", score_max)):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise ArgumentTypeError(f"{where}: {what} must be a real number, got {value!r}")
        cast = dtype(value)
        if np.isnan(cast) or cast != value:
            raise InputError(f"{where}: inconsistent statistics ({what} {value!r} is not a {np.dtype(dtype)} value)")
        values.append(cast + dtype(0.0))
    return values[0], values[1]


def _range_meta(score_min, score_max):
    """The ``meta`` keys of a score range: exact ``float.hex`` strings (``"inf"``, ``"-inf"`` too), or none."""
    if score_min is None:
        return {}
    return {"score_min": float(score_min).hex(), "score_max": float(score_max).hex()}


def range_from_meta(meta):
    """``{"score_min": float, "score_max": float}`` from a ``to_bytes`` meta record; both None where it has
    none (statistics written before clskern recorded them). InputError for anything but hex strings."""
    out = {}
    for key in ("score_min", "score_max"):
        value = meta.get(key)
        if value is not None:
            try:
                value = float.fromhex(value)
            except (TypeError, ValueError):
                raise InputError(f"statistics with {key} {value!r}, not a float.hex string") from None
        out[key] = value
    return out


def _bin_of(x):
    """The histogram bin of one score (``clskern._binning``'s grid, in NumPy; -0.0 in the bin of +0.0)."""
    return min(int(np.searchsorted(bin_lower_edges(), float(x), side="right")) - 1, N_BINS - 1)


def _same_value(a, b):
    """Two optional scalars: both None, or equal with one dtype."""
    if a is None or b is None:
        return a is None and b is None
    return np.asarray(a).dtype == np.asarray(b).dtype and a == b


def _same(a, b):
    """Two optional arrays: both None, or equal with one dtype."""
    if a is None or b is None:
        return a is None and b is None
    return a.dtype == b.dtype and np.array_equal(a, b)


def _count(value, what, name):
    """A voxel count: an integer (Python's or NumPy's), never a bool, float or string."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise ArgumentTypeError(f"{volume_name(name)}: {what} must be an integer, got {value!r}")
    return int(value)


def _thresholds(t: ArrayLike) -> NDArray[np.float64]:
    """Thresholds ``t``: real numbers (+-inf allowed), never NaN, strings or bools."""
    return real_array(t, "thresholds t", finite=False)


def volume_stats(scores: ArrayLike, labels: ArrayLike, *, label: float | None = None, name: str | None = None,
                 connectivity: int | None = DEFAULT_CONNECTIVITY, backend: str = "auto") -> VolumeStats:
    """Gather a volume's statistics in one pass over scores and labels.

    The statistics serve raw and min-max normalised scores alike: they carry
    the volume's exact score range (``score_min``, ``score_max``), so
    ``normalize=`` is chosen where a threshold is taken or a cut is made
    (``VolumeStats.critical_threshold`` and its curves, ``calibrate``,
    ``apply_threshold``), never fixed here. With ``connectivity`` the lesion
    labelling reads the labels a second time (the lesion-level
    ``critical_threshold`` reads them once).

    Parameters
    ----------
    scores : array_like of float16, float32 or float64
        Voxel scores (probabilities or logits), any shape, C or Fortran order
        (read in place), native or big-endian.
    labels : array_like of bool, int or float, same shape
        Ground truth: lesion where ``labels > 0``, or ``labels == label``.
    label : number, optional
        The lesion label value in a multi-label mask.
    name : str, optional
        Case id, kept in the statistics and used in error messages.
    connectivity : {6, 18, 26} or None
        Also keep every lesion's sorted scores (lesions: the connected
        components of the lesion mask, docs: lesions), so that lesion level at any
        ``overlap`` needs no voxel again; volumes of at most three axes. None:
        voxel statistics only.
    backend : {"auto", "cpu", "cuda"}
        Where to run: ``auto`` follows the inputs' device (GPU arrays run
        the CUDA kernels, host arrays the CPU ones), ``cuda`` copies host
        arrays to the GPU. Results are equal bit for bit.

    Returns
    -------
    VolumeStats

    Raises
    ------
    NaNScoresError
        If any score is NaN (the count is in the message).
    InputError, ScoreDtypeError
        For shape mismatches and unreadable dtypes.
    """
    check_label(label, name)
    connectivity = check_connectivity(connectivity, optional=True)
    kernels = _backend.kernels(backend, scores, labels, name=name)
    n_voxels, lesion, bins, counts, low, high = kernels.volume_stats_parts(scores, labels, label, name)
    lesions = None
    if connectivity is not None:  # NaN anywhere was refused by the pass above
        lesions = kernels.lesion_parts(scores, labels, label, connectivity, name)
    if kernels is _backend.CUDA:  # the device's arrays are checked as outside data are
        parts = {} if lesions is None else {"lesion_offsets": lesions[0], "lesion_groups": lesions[1]}
        return VolumeStats(n_voxels, lesion.size, lesion, bins, counts, name, connectivity=connectivity, **parts,
                           score_min=low, score_max=high)
    return VolumeStats._from_kernels(n_voxels, lesion, bins, counts, name, lesions, connectivity, low, high)


def lesion_scores(scores: ArrayLike, labels: ArrayLike, *, label: float | None = None, name: str | None = None,
                  backend: str = "auto") -> NDArray[np.floating[Any]]:
    """The lesion voxels' scores in memory order (unsorted), reading only what it must.

    The labels are read once; scores are read only in the 16-voxel groups that
    hold lesion voxels (see ``clskern.cpu._gather``). Raises ``NaNScoresError`` when a lesion score is NaN. ``backend``
    as in ``volume_stats``; the result is a host array either way.
    """
    check_label(label, name)
    return _backend.kernels(backend, scores, labels, name=name).lesion_scores(scores, labels, label, name)


def lesions(scores: ArrayLike, labels: ArrayLike, *, label: float | None = None, connectivity: int = DEFAULT_CONNECTIVITY,
            name: str | None = None, backend: str = "auto") -> tuple[NDArray[np.int64], NDArray[np.floating[Any]]]:
    """The lesions of a volume and their voxels' scores (docs: lesions).

    Parameters
    ----------
    scores, labels, label, name, backend
        As in ``volume_stats``; volumes of at most three axes.
    connectivity : {6, 18, 26}
        Face, face+edge, or face+edge+corner neighbours.

    Returns
    -------
    offsets : int64 ndarray of length L + 1
        ``offsets[0] == 0``; lesion ``j`` has ``offsets[j + 1] - offsets[j]`` voxels.
    grouped : ndarray (float32 for float16/32 scores, float64 for float64)
        Lesion ``j``'s scores, ascending, are ``grouped[offsets[j]:offsets[j + 1]]``;
        -0.0 is stored as +0.0. Lesions are ordered by the C-order index of their first
        voxel, so the memory order of the inputs never changes the result.

    Raises
    ------
    NaNScoresError
        When a lesion voxel's score is NaN (background scores are not read).
    """
    connectivity = check_connectivity(connectivity)
    check_label(label, name)
    return _backend.kernels(backend, scores, labels, name=name).lesion_parts(scores, labels, label, connectivity, name)


@overload
def critical_threshold(scores: ArrayLike, labels: ArrayLike, epsilon: float, *, level: str = ..., overlap: float = ...,
                       connectivity: int = ..., label: float | None = ..., empty: str = ..., normalize: str = ...,
                       name: str | None = ..., backend: str = ...) -> float | None: ...
@overload
def critical_threshold(scores: ArrayLike, labels: ArrayLike, epsilon: ArrayLike, *, level: str = ...,
                       overlap: float = ..., connectivity: int = ..., label: float | None = ..., empty: str = ...,
                       normalize: str = ..., name: str | None = ..., backend: str = ...) -> FloatOrArray | None: ...


def critical_threshold(scores: ArrayLike, labels: ArrayLike, epsilon: ArrayLike, *, level: str = "voxel",
                       overlap: float = 0.0, connectivity: int = DEFAULT_CONNECTIVITY, label: float | None = None,
                       empty: str = "error", normalize: str = "none", name: str | None = None,
                       backend: str = "auto") -> FloatOrArray | None:
    """The exact critical threshold of one volume (docs: one case, or lesions at lesion level).

    The largest ``t`` with ``FNR(t) <= epsilon``: ``sort(scores[lesion])[k]``
    with ``k`` the largest ``j < n_fg`` with ``j / n_fg <= epsilon``, equal to
    the sorted-order reference bit for bit, ties included. It reads the
    labels once and only the scores of 16-voxel groups holding lesion voxels,
    and selects the k-th score without sorting (``clskern.cpu._gather``), so NaN
    scores are detected among lesion voxels (the only ones that decide the
    result); ``volume_stats`` checks every voxel.

    Parameters
    ----------
    scores, labels, label, name
        As in ``volume_stats``.
    epsilon : float or array_like
        Tolerated FNR, in [0, 1).
    level : {"voxel", "lesion"}
        ``"lesion"``: the largest ``t`` with ``L-FNR(t) <= epsilon``, the
        share of lesions (connected components) missed, a lesion counting as
        detected when at least ``max(1, ceil(overlap * size))`` of its voxels
        score ``>= t``. Each lesion's detection score is found without
        sorting it (its largest score when ``overlap`` is 0).
    overlap : float
        In [0, 1]; lesion level only.
    connectivity : {6, 18, 26}
        Lesion level: which neighbours join voxels into one lesion.
    empty : {"error", "pass", "skip"}
        Volumes without lesion voxels (lesions): raise, return +inf, or return None.
    normalize : {"none", "minmax"}
        ``"minmax"`` (docs: min-max normalisation): the threshold in the volume's min-max
        normalised scores, ``q(s[k])`` with ``q = (p - min) / (max - min)``
        in float64 over every voxel (exact: ``q`` is monotone). The minimum
        and maximum need every score: one more parallel pass at memory speed
        (``score_range``), so a NaN anywhere then raises.
    backend : {"auto", "cpu", "cuda"}
        Where to run: ``auto`` follows the inputs' device (GPU arrays run
        the CUDA kernels, host arrays the CPU ones), ``cuda`` copies host
        arrays to the GPU. On the GPU the k-th score is selected
        on the device; results are equal bit for bit.

    Returns
    -------
    float, or float64 ndarray of ``epsilon``'s shape
    """
    if check_normalize(normalize) != "none":
        low, high = check_range(*score_range(scores, name=name, backend=backend), name)  # type: ignore[call-arg]
        value = critical_threshold(scores, labels, epsilon, level=level, overlap=overlap, connectivity=connectivity,
                                   label=label, empty=empty, name=name, backend=backend)
        return None if value is None else _normalized(value, low, high)
    check_empty_policy(empty)
    eps = epsilon_array(epsilon)
    level, overlap = check_level_overlap(level, overlap)
    connectivity = check_connectivity(connectivity)
    check_label(label, name)
    kernels = _backend.kernels(backend, scores, labels, name=name)
    if level == "lesion":
        d, _ = kernels.lesion_detection(scores, labels, label, connectivity, overlap, name)
        return lesion_critical_threshold(d, eps, empty, name)
    return kernels.critical_threshold(scores, labels, eps, label, empty, name)


def score_range(scores: ArrayLike, *, name: str | None = None,
                backend: str = "auto") -> tuple[np.floating[Any], np.floating[Any]] | tuple[None, None]:
    """The exact ``(min, max)`` of every score of a volume, in one parallel pass (the range of docs: min-max normalisation).

    Scalars of the volume's lesion-score dtype (float32 for float16/32
    scores, float64 for float64; -0.0 as +0.0), ``(None, None)`` for an
    empty volume. ``volume_stats`` records the same values
    (``VolumeStats.score_min``/``score_max``) in its own pass. Raises
    ``NaNScoresError`` when any score is NaN.
    """
    return _backend.kernels(backend, scores, name=name).score_range(scores, name)
