"""The GPU path of clskern (numba-cuda), imported only when a call runs on the GPU.

It offers the contract of ``clskern.cpu`` (same arguments, results equal bit
for bit), arrays in and arrays out: ``volume_stats_parts``,
``lesion_scores``, ``critical_threshold``, ``apply_threshold``,
``lesion_parts``, ``lesion_detection``; and, for many
volumes at once, ``critical_thresholds`` (batched). The dispatch
(``clskern._backend``) calls them; users reach them through the ordinary
functions with ``backend="cuda"`` (or ``"auto"`` with GPU arrays) and
through ``clskern.batch`` (many volumes, calibration).

Layout: ``_bins`` (the histogram bin and order key on the device; the grid is
``clskern._binning``), ``_kernels`` (every kernel), ``_intake`` (zero-copy
views of CuPy, PyTorch, ``__cuda_array_interface__`` and DLPack arrays),
``_launch`` (launch helpers), ``_ops`` (the contract: launches and the small
host-side steps), ``_components`` (lesions: union-find labelling and
per-lesion scores), ``batch`` (many volumes).
"""

import numpy as _np

# numba-cuda 0.30 registers an overload of np.row_stack when its CUDA target loads, and NumPy 2.5
# removed that alias of np.vstack: every kernel then fails to compile (AttributeError). numba-cuda
# is in maintenance mode and will not fix it (NVIDIA/numba-cuda#907), so the alias is put back here,
# before any submodule imports numba-cuda, and only where NumPy lacks it.
if not hasattr(_np, "row_stack"):
    _np.row_stack = _np.vstack

from ._components import lesion_detection, lesion_parts
from ._ops import apply_threshold, critical_threshold, lesion_scores, score_range, volume_stats_parts
from .batch import critical_thresholds

__all__ = [
    "apply_threshold", "critical_threshold", "critical_thresholds", "lesion_detection", "lesion_parts",
    "lesion_scores", "score_range", "volume_stats_parts",
]
