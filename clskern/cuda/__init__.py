"""The GPU path of clskern (numba-cuda), imported only when a call runs on the GPU.

The public entry points are the ordinary ones with ``backend="cuda"`` (or
``"auto"`` with GPU arrays): ``clskern.volume_stats``,
``clskern.critical_threshold``, ``clskern.lesion_scores`` and
``clskern.apply_threshold`` give the CPU results bit for bit. This package adds
batched helpers for many volumes: ``critical_thresholds`` and ``calibrate``.

Layout: ``_bins`` (the histogram bin and order key on the device),
``_kernels`` (every kernel), ``_intake`` (zero-copy views of CuPy, PyTorch,
``__cuda_array_interface__`` and DLPack arrays), ``_ops`` (launches and the
small host-side steps), ``batch`` (many volumes).
"""

from .batch import calibrate, critical_thresholds

__all__ = ["calibrate", "critical_thresholds"]
