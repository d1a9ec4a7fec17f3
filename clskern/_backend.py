"""Where a call runs: ``backend="auto" | "cpu" | "cuda"``.

- ``auto`` follows the inputs: any of them in GPU memory (CuPy, a PyTorch
  CUDA tensor, ``__cuda_array_interface__``, DLPack on a CUDA device) runs the
  GPU kernels; host arrays run the CPU kernels and never import ``numba.cuda``.
- ``cpu`` runs the CPU kernels; GPU inputs are refused (copy them to the host
  yourself: the copy is the expensive part).
- ``cuda`` runs the GPU kernels, copying host inputs over once. It needs a GPU
  with a working driver, or numba-cuda's simulator (``NUMBA_ENABLE_CUDASIM=1``,
  slow, for tests); otherwise it raises ``CudaUnavailableError``.

This module only decides; the GPU work lives in ``clskern.cuda`` and is
imported on first use.
"""

from .errors import ClsKernError, InputError, volume_name

BACKENDS = ("auto", "cpu", "cuda")
_DLPACK_CUDA = (2, 13)  # kDLCUDA, kDLCUDAManaged


class CudaUnavailableError(ClsKernError):
    """``backend="cuda"`` on a machine where numba-cuda cannot reach a GPU."""


def on_device(obj):
    """Whether ``obj`` is an array in GPU memory (decided by interface, not by library)."""
    if getattr(obj, "__cuda_ndarray__", False):  # numba device arrays, simulated ones too
        return True
    try:
        if getattr(obj, "__cuda_array_interface__", None) is not None:
            return True
    except Exception:  # PyTorch raises for CUDA tensors that require grad
        return True
    dlpack_device = getattr(obj, "__dlpack_device__", None)
    if dlpack_device is None:
        return False
    try:
        return int(dlpack_device()[0]) in _DLPACK_CUDA
    except Exception:
        return False


def check_cuda():
    """Raise ``CudaUnavailableError`` unless GPU kernels can run (a GPU, or the simulator)."""
    from numba import config

    if config.ENABLE_CUDASIM:
        return
    try:
        from numba import cuda

        available = cuda.is_available()
        reason = "numba.cuda.is_available() is False: no GPU or no driver"
    except Exception as exc:  # numba-cuda missing or broken
        available = False
        reason = f"numba-cuda cannot be used ({type(exc).__name__}: {exc})"
    if not available:
        raise CudaUnavailableError(
            f"backend='cuda' needs an NVIDIA GPU ({reason}); use backend='cpu' or 'auto', "
            "or set NUMBA_ENABLE_CUDASIM=1 before importing numba to run the kernels in the simulator"
        )


def use_cuda(backend, *arrays, name=None):
    """True when the call should run on the GPU (see the module docstring)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(map(repr, BACKENDS))}, got {backend!r}")
    if backend == "cpu":
        if any(on_device(a) for a in arrays):
            raise InputError(
                f"{volume_name(name)}: backend='cpu' was asked for arrays in GPU memory; "
                "use backend='auto' or 'cuda', or copy them to the host first"
            )
        return False
    if backend == "auto" and not any(on_device(a) for a in arrays):
        return False
    check_cuda()
    return True


def _ops():
    from .cuda import _ops

    return _ops


def _device_index(arrays):
    """The CUDA device ordinal of the first GPU array that names one (CuPy, torch, DLPack), else None."""
    for a in arrays:
        if a is None or not on_device(a):
            continue
        device = getattr(a, "device", None)
        for attribute in ("id", "index"):  # cupy.cuda.Device.id, torch.device.index
            index = getattr(device, attribute, None)
            if isinstance(index, int):
                return index
        try:
            return int(a.__dlpack_device__()[1])
        except Exception:
            continue
    return None


def _run(fn, arrays, *args):
    """Run ``fn(*args)`` with the device of the input arrays current (multi-GPU machines)."""
    from numba import config, cuda

    index = None if config.ENABLE_CUDASIM else _device_index(arrays)
    if index is None or index == cuda.get_current_device().id:
        return fn(*args)
    with cuda.gpus[index]:
        return fn(*args)


def volume_stats_parts(scores, labels, label, name):
    """``(n_voxels, sorted lesion scores, bins, counts)`` from the GPU."""
    return _run(_ops().volume_stats_parts, (scores, labels), scores, labels, label, name)


def lesion_scores(scores, labels, label, name):
    return _run(_ops().lesion_scores, (scores, labels), scores, labels, label, name)


def critical_threshold(scores, labels, epsilon, label, empty, name):
    return _run(_ops().critical_threshold, (scores, labels), scores, labels, epsilon, label, empty, name)


def apply_threshold(scores, threshold, out, name):
    return _run(_ops().apply_threshold, (scores, out), scores, threshold, out, name)
