"""The CPU path of clskern (Numba): the kernels and the contract the dispatch calls.

The contract, offered by ``clskern.cuda`` too (same arguments, same results
bit for bit), arrays in and arrays out; ``clskern._backend`` picks the
backend and ``clskern.volume`` / ``clskern.apply`` build the public results:

- ``volume_stats_parts(scores, labels, label, name)``: ``(n_voxels, sorted
  lesion scores, background bins, their counts, score min, score max)``, one
  pass (the extremes exact, over every voxel, in the lesion scores' dtype);
- ``score_range(scores, name)``: ``(min, max)`` of every score, one pass;
- ``lesion_scores(scores, labels, label, name)``: lesion scores in memory order;
- ``critical_threshold(scores, labels, eps, label, empty, name)``: at the
  checked float64 array ``eps``;
- ``apply_threshold(scores, threshold, out, name)``: the uint8 mask;
- ``lesion_parts(scores, labels, label, connectivity, name)``: ``(offsets,
  grouped scores)``, every lesion's scores sorted (docs: lesions);
- ``lesion_detection(scores, labels, label, connectivity, overlap, name)``:
  ``(d, sizes)``, each lesion's detection score and size, no lesion sorted.

Layout: ``_ops`` (the contract: one call per volume), ``_gather`` (the lesion
gather: labels read once, scores only near lesions), ``_components`` (lesions
as connected components: runs, union-find, per-lesion sort or selection), ``_kernels`` (whole-volume
passes: histogram, NaN count, mask), ``_simd`` (the gather's vector
primitives), ``_radix`` (exact radix sort and rank selection), ``_bins`` (a
score's histogram bin; the grid itself is ``clskern._binning``), ``_scalars``
(float16 as uint16 bits).

Numba caches every kernel (``cache=True``) under ``clskern/cpu/__pycache__``,
keyed on each function's own source file. Functions inlined into their callers
(``_bins``, ``_scalars``, ``_simd``, the overloads of ``_radix``) and the
constants of ``clskern._binning`` do not invalidate their callers' entries:
after editing one of them, delete that folder so the kernels recompile.
"""

from .._threads import choose_layer

choose_layer()  # before anything starts Numba's pool: TBB, else workqueue (clskern._threads)

from ._ops import (  # noqa: E402
    apply_threshold,
    critical_threshold,
    lesion_detection,
    lesion_parts,
    lesion_scores,
    score_range,
    volume_stats_parts,
)

__all__ = [
    "apply_threshold", "critical_threshold", "lesion_detection", "lesion_parts", "lesion_scores", "score_range",
    "volume_stats_parts",
]
