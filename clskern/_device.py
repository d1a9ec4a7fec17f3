"""Is an array in GPU memory? Decided by interface, not by library.

Neutral ground: the dispatch (``clskern._backend``, which routes GPU arrays
to the GPU kernels) and the GPU intake (``clskern.cuda._intake``, which reads
them in place) ask the same question here, without importing each other or
any array library.
"""

_DLPACK_CUDA = (2, 13)  # kDLCUDA, kDLCUDAManaged


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

