"""Where a call runs: ``backend="auto" | "cpu" | "cuda"``.

- ``auto`` follows the inputs: any of them in GPU memory (CuPy, a PyTorch
  CUDA tensor, ``__cuda_array_interface__``, DLPack on a CUDA device) runs the
  GPU kernels; host arrays run the CPU kernels and never import ``numba.cuda``.
- ``cpu`` runs the CPU kernels; GPU inputs are refused (copy them to the host
  yourself: the copy is the expensive part).
- ``cuda`` runs the GPU kernels, copying host inputs over once. It needs a GPU
  with a working driver, or numba-cuda's simulator (``NUMBA_ENABLE_CUDASIM=1``,
  slow, for tests); otherwise it raises ``CudaUnavailableError``.

This is the one module that knows both backends. Each offers the same
contract, arrays in and arrays out (``volume_stats_parts``, ``lesion_scores``,
``critical_threshold``, ``apply_threshold``, ``score_range``, ``lesion_parts``,
``lesion_detection``: see ``clskern.cpu``), and
``kernels(backend, *arrays)`` returns the one a call runs on: ``clskern.cpu``,
imported here, or ``CUDA``, which runs ``clskern.cuda`` (imported on first
use) with the inputs' device current. Device detection lives in
``clskern._device``, shared with the GPU intake.
"""

from . import cpu
from ._device import on_device
from ._lesions import DEFAULT_CONNECTIVITY
from .errors import ClsKernError, InputError, volume_name

BACKENDS = ("auto", "cpu", "cuda")


class CudaUnavailableError(ClsKernError):
    """``backend="cuda"`` on a machine where numba-cuda cannot reach a GPU."""


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


def kernels(backend, *arrays, name=None):
    """The backend a call on ``arrays`` runs on: ``clskern.cpu`` or ``CUDA`` (see ``use_cuda``)."""
    return CUDA if use_cuda(backend, *arrays, name=name) else cpu


def _cuda():
    from . import cuda

    return cuda


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


class _Cuda:
    """``clskern.cuda``'s contract, run with the device of the input arrays current."""

    @staticmethod
    def volume_stats_parts(scores, labels, label=None, name=None):
        """``(n_voxels, sorted lesion scores, bins, counts)`` from the GPU."""
        return _run(_cuda().volume_stats_parts, (scores, labels), scores, labels, label, name)

    @staticmethod
    def lesion_scores(scores, labels, label=None, name=None):
        return _run(_cuda().lesion_scores, (scores, labels), scores, labels, label, name)

    @staticmethod
    def critical_threshold(scores, labels, epsilon, label=None, empty="error", name=None):
        return _run(_cuda().critical_threshold, (scores, labels), scores, labels, epsilon, label, empty, name)

    @staticmethod
    def apply_threshold(scores, threshold, out=None, name=None):
        return _run(_cuda().apply_threshold, (scores, out), scores, threshold, out, name)

    @staticmethod
    def score_range(scores, name=None):
        """``(min, max)`` of every score, reduced on the GPU."""
        return _run(_cuda().score_range, (scores,), scores, name)

    @staticmethod
    def lesion_parts(scores, labels, label=None, connectivity=DEFAULT_CONNECTIVITY, name=None):
        """``(offsets, grouped sorted scores)`` of every lesion, from the GPU."""
        return _run(_lesion_kernel("lesion_parts"), (scores, labels), scores, labels, label, connectivity, name)

    @staticmethod
    def lesion_detection(scores, labels, label=None, connectivity=DEFAULT_CONNECTIVITY, overlap=0.0, name=None):
        """``(d, sizes)``: each lesion's detection score and size, from the GPU."""
        return _run(_lesion_kernel("lesion_detection"), (scores, labels), scores, labels, label, connectivity,
                    overlap, name)


def _lesion_kernel(name):
    """``clskern.cuda``'s lesion function ``name``, or a clear error where this build has none."""
    function = getattr(_cuda(), name, None)
    if function is None:
        raise CudaUnavailableError(
            f"backend='cuda': lesion level has no GPU kernel in this clskern yet (clskern.cuda.{name} is missing); "
            "run it with backend='cpu' (host arrays), or pass connectivity=None to volume_stats for voxel statistics"
        )
    return function


CUDA = _Cuda()


def gpu_critical_thresholds(pairs, names, eps, label, chunk):
    """Many volumes' thresholds at ``eps`` on the GPU, ``chunk`` volumes at a time (``clskern.batch``).

    A list in input order: per volume its thresholds, or None without lesion voxels.
    """
    check_cuda()
    return _cuda().critical_thresholds(pairs, names, eps, label, chunk)
