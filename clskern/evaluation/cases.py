"""The evaluation's view of a data set: per-case statistics in flat arrays.

``Cases`` is built once from ``VolumeStats`` and then answers every split,
method and sweep without touching a volume again (docs: checking the promise, exact and approximate numbers): critical
thresholds per epsilon (cached), the pooled lesion scores for ``crc`` and
``rcps``, and each case's score range for the authors' baseline.
Cases without lesion voxels are left out (the ``skip`` policy of
``calibrate``: their FNR is undefined) and counted in ``n_skipped``.
``at_lesion_level(overlap)`` gives the same cases at lesion level (docs: lesions):
each case's "lesion scores" become its lesions' sorted detection scores, so
critical thresholds, FNR curves and every method read L-FNR from it exactly
as they read voxel FNR from the voxel level (a case has lesions exactly when
it has lesion voxels, so the same cases are kept).
"""

from collections.abc import Mapping

import numpy as np

from .._lesions import check_overlap
from ..errors import ArgumentError, InputError
from .._binning import bin_lower_edges
from ..volume import VolumeStats


class Cases:
    """Statistics of the evaluated cases, in one fixed order.

    Attributes
    ----------
    ids : list of str
        Case ids of the kept cases (those with lesion voxels).
    stats : list of VolumeStats
    n_fg, n_bg, n_voxels : int64 ndarray
    n_skipped : int
        Cases left out for lacking lesion voxels.
    scores, offsets : ndarray
        Every kept case's sorted lesion scores (float64), concatenated; case
        ``i`` is ``scores[offsets[i]:offsets[i + 1]]``.
    """

    def __init__(self, stats):
        if isinstance(stats, Mapping):
            items = [(str(k), v) for k, v in stats.items()]
        else:
            items = [(v.name if getattr(v, "name", None) is not None else f"#{i}", v) for i, v in enumerate(stats)]
        for name, value in items:
            if not isinstance(value, VolumeStats):
                hint = (" (several classes per case: clskern.evaluation.evaluate_classes)"
                        if isinstance(value, Mapping) else "")
                raise TypeError(f"case {name}: expected VolumeStats, got {type(value).__name__}{hint}")
        kept = [(name, value) for name, value in items if value.n_fg > 0]
        self.n_skipped = len(items) - len(kept)
        if len(kept) < 2:
            raise InputError(f"evaluation needs at least 2 cases with lesion voxels, got {len(kept)}")
        self.ids = [name for name, _ in kept]
        self.stats = [value for _, value in kept]
        self.n_fg = np.array([s.n_fg for s in self.stats], np.int64)
        self.n_voxels = np.array([s.n_voxels for s in self.stats], np.int64)
        self.n_bg = self.n_voxels - self.n_fg
        self.offsets = np.zeros(len(self.stats) + 1, np.int64)
        np.cumsum(self.n_fg, out=self.offsets[1:])
        self.scores = np.concatenate([s.lesion_scores.astype(np.float64) for s in self.stats])
        self.lowest = self.scores[self.offsets[:-1]]
        self.highest = self.scores[self.offsets[1:] - 1]
        self.pooled = np.unique(self.scores)  # sorted distinct lesion scores of all cases
        self._critical = {}
        self._range = None
        self._lesion_level = {}
        found = {s.connectivity for s in self.stats}
        self.connectivity = found.pop() if len(found) == 1 else None
        """The one connectivity of every case's lesions; None if a case has none or they differ."""

    def __len__(self):
        return len(self.stats)

    def critical(self, epsilon):
        """Critical thresholds of every case at ``epsilon`` (float64, cached)."""
        key = float(epsilon)
        if key not in self._critical:
            self._critical[key] = np.array([s.critical_threshold(key) for s in self.stats], np.float64)
        return self._critical[key]

    def at_lesion_level(self, overlap=0.0):
        """These cases at lesion level (``VolumeStats.at_lesion_level``), cached per overlap.

        Raises ``ArgumentError`` naming a case without lesion information, or
        when the cases' lesions were found with different connectivities.
        """
        key = check_overlap(overlap)
        if key not in self._lesion_level:
            if self.connectivity is None:
                plain = [i for i, s in zip(self.ids, self.stats) if s.connectivity is None]
                if plain:
                    raise ArgumentError(
                        f"case {plain[0]}: statistics without lesions (connectivity=None); lesion level needs "
                        "volume_stats with connectivity=6, 18 or 26 (clskern stats --connectivity)")
                found = sorted({s.connectivity for s in self.stats})
                raise ArgumentError(f"the cases' lesions were found with different connectivities {found}; "
                                    "lesion level needs one")
            self._lesion_level[key] = Cases({i: s.at_lesion_level(key) for i, s in zip(self.ids, self.stats)})
        return self._lesion_level[key]

    def score_range(self):
        """Estimated ``(min, max)`` score of every case, from its statistics.

        The lesion scores are exact; the background is known only to its
        histogram bin, so its minimum is taken as the lower edge of the lowest
        occupied bin and its maximum as the lower edge of the highest one
        (exact when those scores are bin edges, e.g. 0.0 or 1.0; otherwise
        off by less than one bin, at most 2**-8 of the value).
        """
        if self._range is None:
            edges = bin_lower_edges()
            low, high = self.lowest.copy(), self.highest.copy()
            for i, s in enumerate(self.stats):
                if s.bg_bins.size:
                    low[i] = min(low[i], edges[int(s.bg_bins[0])])
                    high[i] = max(high[i], edges[int(s.bg_bins[-1])])
            self._range = (low, high)
        return self._range
