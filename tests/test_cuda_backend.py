"""``backend=`` dispatch without a GPU: what runs where, and the errors."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import clskern
from clskern._backend import CudaUnavailableError, on_device, use_cuda

ROOT = Path(__file__).resolve().parents[1]


class FakeCudaArray:
    """Looks like a GPU array to the dispatch (it is never read)."""

    __cuda_array_interface__ = {"shape": (2,), "typestr": "<f4", "data": (0, False), "version": 3}


class FakeDLPack:
    def __init__(self, device_type):
        self.device_type = device_type

    def __dlpack_device__(self):
        return (self.device_type, 0)


class GradTensor:
    """A CUDA tensor that requires grad: PyTorch raises on the interface."""

    @property
    def __cuda_array_interface__(self):
        raise RuntimeError("Can't get __cuda_array_interface__ on Variable that requires grad")


def _gpu_usable():
    from numba import config

    if config.ENABLE_CUDASIM:
        return True
    try:
        from numba import cuda
    except ImportError:  # numba-cuda not installed: backend="cuda" must say so
        return False
    return cuda.is_available()


def test_on_device_by_interface():
    assert on_device(FakeCudaArray())
    assert on_device(GradTensor())
    assert on_device(FakeDLPack(2)) and on_device(FakeDLPack(13))
    assert not on_device(FakeDLPack(1))  # kDLCPU
    assert not on_device(np.zeros(3)) and not on_device([0.5]) and not on_device(None)


def test_torch_cpu_tensors_stay_on_the_cpu():
    torch = pytest.importorskip("torch")
    p = torch.rand(4, 5, 6)
    assert not on_device(p) and not on_device(p.requires_grad_(True))
    y = p.detach() > 0.7
    assert clskern.critical_threshold(p.detach(), y, 0.2) == clskern.critical_threshold(p.detach().numpy(), y.numpy(), 0.2)


def test_cpu_inputs_under_auto_never_import_numba_cuda():
    code = textwrap.dedent(
        """
        import sys
        import numpy as np
        import clskern
        p = np.random.default_rng(0).random((4, 5, 6), dtype=np.float32)
        y = p > 0.7
        stats = clskern.volume_stats(p, y)
        clskern.critical_threshold(p, y, 0.2)
        clskern.lesion_scores(p, y)
        clskern.apply_threshold(p, 0.5)
        clskern.calibrate([stats] * 9, epsilon=0.2, alpha=0.2)
        cuda = sorted(m for m in sys.modules if m == "numba.cuda" or m.startswith(("numba.cuda.", "numba_cuda")))
        assert not cuda, cuda
        assert "clskern.cuda" not in sys.modules
        """
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]


def test_backend_names_are_checked():
    p = np.zeros((2, 2), np.float32)
    with pytest.raises(ValueError, match="backend must be one of"):
        clskern.volume_stats(p, p > 0, backend="gpu")
    with pytest.raises(ValueError, match="backend must be one of"):
        clskern.apply_threshold(p, 0.5, backend="CUDA")


def test_cpu_backend_refuses_gpu_arrays():
    with pytest.raises(clskern.InputError, match="backend='cpu'.*GPU"):
        clskern.critical_threshold(FakeCudaArray(), np.zeros(2), 0.1, backend="cpu", name="c3")
    assert use_cuda("cpu", np.zeros(2)) is False
    assert use_cuda("auto", np.zeros(2), None) is False


@pytest.mark.skipif("_gpu_usable()", reason="a GPU (or the simulator) is usable here")
def test_cuda_without_a_gpu_is_a_clear_error():
    p = np.zeros((2, 2), np.float32)
    for call in (
        lambda: clskern.volume_stats(p, p > 0, backend="cuda"),
        lambda: clskern.critical_threshold(p, p >= 0, 0.1, backend="cuda"),
        lambda: clskern.lesion_scores(p, p >= 0, backend="cuda"),
        lambda: clskern.apply_threshold(p, 0.5, backend="cuda"),
        lambda: clskern.volume_stats(FakeCudaArray(), np.zeros(2)),  # auto follows the GPU array
    ):
        with pytest.raises(CudaUnavailableError, match="NUMBA_ENABLE_CUDASIM") as err:
            call()
        assert isinstance(err.value, clskern.ClsKernError)


def test_device_of_gpu_inputs_is_found():
    from clskern._backend import _device_index

    class Device:
        def __init__(self, **kw):
            self.__dict__.update(kw)

    cupy_like = FakeCudaArray()
    cupy_like.device = Device(id=1)
    torch_like = FakeCudaArray()
    torch_like.device = Device(type="cuda", index=2)
    assert _device_index([np.zeros(2), cupy_like]) == 1
    assert _device_index([None, torch_like]) == 2
    assert _device_index([FakeDLPack(2)]) == 0
    assert _device_index([np.zeros(2), FakeDLPack(1)]) is None
