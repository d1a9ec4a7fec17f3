"""On a real GPU only: zero-copy intake from CuPy, PyTorch and DLPack, device masks.

Skipped without a GPU (CI); ``benchmarks/gpu_check.sh`` runs them on a card.
"""

import numpy as np
import pytest

import clskern

cuda = pytest.importorskip("numba.cuda")
from numba import config  # noqa: E402

if config.ENABLE_CUDASIM or not cuda.is_available():
    pytest.skip("needs a CUDA GPU", allow_module_level=True)

SHAPE = (37, 41, 29)


def _volume(dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    p = rng.random(SHAPE)
    p[rng.random(SHAPE) < 0.2] = 0.0
    return p.astype(dtype), rng.random(SHAPE) < 0.05


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_numba_device_arrays_equal_cpu(dtype):
    p, y = _volume(dtype)
    dp, dy = cuda.to_device(p), cuda.to_device(y)
    assert clskern.volume_stats(dp, dy) == clskern.volume_stats(p, y)
    eps = [0.0, 0.1, 0.29]
    np.testing.assert_array_equal(clskern.critical_threshold(dp, dy, eps), clskern.critical_threshold(p, y, eps))
    np.testing.assert_array_equal(clskern.apply_threshold(dp, 0.5).copy_to_host(), clskern.apply_threshold(p, 0.5))


def test_cupy_arrays_read_in_place():
    cupy = pytest.importorskip("cupy")
    p, y = _volume()
    cp_p, cp_y = cupy.asarray(p), cupy.asarray(y)
    assert clskern.volume_stats(cp_p, cp_y) == clskern.volume_stats(p, y)
    mask = clskern.apply_threshold(cp_p, 0.5)
    assert isinstance(mask, cupy.ndarray) and mask.dtype == cupy.uint8
    np.testing.assert_array_equal(cupy.asnumpy(mask), clskern.apply_threshold(p, 0.5))
    fortran = cupy.asfortranarray(cp_p)
    assert clskern.volume_stats(fortran, cp_y) == clskern.volume_stats(np.asfortranarray(p), y)
    strided = cp_p[:, ::2]
    assert clskern.volume_stats(strided, cp_y[:, ::2]) == clskern.volume_stats(p[:, ::2], y[:, ::2])


def test_torch_tensors_and_dlpack():
    torch = pytest.importorskip("torch")
    p, y = _volume()
    tp = torch.as_tensor(p, device="cuda").requires_grad_(True)
    ty = torch.as_tensor(y, device="cuda")
    assert clskern.volume_stats(tp, ty) == clskern.volume_stats(p, y)
    assert clskern.critical_threshold(tp, ty, 0.2) == clskern.critical_threshold(p, y, 0.2)
    mask = clskern.apply_threshold(tp, 0.5)
    assert isinstance(mask, torch.Tensor) and mask.is_cuda and mask.dtype == torch.uint8
    np.testing.assert_array_equal(mask.cpu().numpy(), clskern.apply_threshold(p, 0.5))

    class DLPackOnly:  # a producer with DLPack and nothing else
        def __init__(self, tensor):
            self.tensor = tensor

        def __dlpack__(self, **kwargs):
            return self.tensor.__dlpack__(**kwargs)

        def __dlpack_device__(self):
            return self.tensor.__dlpack_device__()

    half = torch.as_tensor(p.astype(np.float16), device="cuda")
    assert clskern.volume_stats(DLPackOnly(half), DLPackOnly(ty)) == clskern.volume_stats(p.astype(np.float16), y)
