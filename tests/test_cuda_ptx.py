"""Every GPU kernel compiles for a real card (sm_90), for every score and label dtype.

The simulator runs kernels as Python and checks no types, so this is what
catches a kernel that a GPU would refuse. ``numba.cuda.compile_ptx`` needs
NVVM (``numba-cuda[cu13]``), not a GPU. Without NVVM these tests skip, unless
``CLSKERN_REQUIRE_PTX=1`` (set it in CI) turns the skip into a failure.
"""

import os

import numpy as np
import pytest

cuda = pytest.importorskip("numba.cuda")
from numba import config, types  # noqa: E402

if config.ENABLE_CUDASIM:
    pytest.skip("compile_ptx needs the real CUDA target, not the simulator", allow_module_level=True)

from clskern.cuda import _kernels as K  # noqa: E402

CC = (9, 0)
SCORES = [types.float16, types.float32, types.float64]
LABELS = [types.uint8, types.int8, types.uint16, types.int16, types.uint32, types.int32,
          types.uint64, types.int64, types.float32, types.float64]  # bool as uint8, float16 widened
COMMON_LABELS = [types.uint8, types.int32, types.float32]


def vec(t):
    return t[::1]


def lesion_type(s):
    return types.float64 if s == types.float64 else types.float32


@pytest.fixture(scope="module")
def compile_ptx():
    """``compile_ptx`` for sm_90, usable without a GPU.

    numba-cuda compiles the device functions a kernel calls for the current
    device's compute capability; with no device, it is told sm_90 here.
    """
    try:
        cuda.compile_ptx(lambda a: None, (vec(types.float32),), cc=CC)
    except Exception as exc:  # NVVM missing: numba-cuda without the cu13 extra
        if os.environ.get("CLSKERN_REQUIRE_PTX") == "1":
            raise
        pytest.skip(f"numba.cuda.compile_ptx unavailable ({type(exc).__name__}: {exc}); install numba-cuda[cu13]")
    from numba.cuda import dispatcher

    patch = pytest.MonkeyPatch()
    if not cuda.is_available():

        class _Device:
            compute_capability = CC

        patch.setattr(dispatcher, "get_current_device", lambda: _Device())

    def build(kernel, signature):
        ptx, _ = cuda.compile_ptx(kernel.py_func, signature, cc=CC)
        assert ".entry" in ptx and f"sm_{CC[0]}{CC[1]}" in ptx
        # No external functions: float16 arithmetic would call numba-cuda's C++
        # fp16 shims, which need NVRTC and LTO linking on the user's machine.
        assert ".extern .func" not in ptx, [line for line in ptx.splitlines() if ".extern" in line]
        return ptx

    yield build
    patch.undo()


def _label_sigs():
    for lab in LABELS:
        yield pytest.param(lab, id=str(lab))


@pytest.mark.parametrize("lab", list(_label_sigs()))
def test_label_kernels_compile(compile_ptx, lab):
    compile_ptx(K.count_kernel, (vec(lab), lab, types.boolean, vec(types.int64)))
    # the gather tests labels with the same is_lesion as the stats kernel
    compile_ptx(K.gather_kernel, _gather_sig(types.float32, lab))


def _stats_sig(s, lab):
    return (vec(s), vec(lab), lab, types.boolean, vec(types.int64), types.int64,
            vec(lesion_type(s)), vec(types.uint64), vec(types.int64), vec(types.uint64))


def _gather_sig(s, lab):
    return (vec(s), vec(lab), lab, types.boolean, vec(types.int64), vec(lesion_type(s)), vec(types.int64))


@pytest.mark.parametrize("s", SCORES, ids=str)
def test_score_kernels_compile(compile_ptx, s):
    for lab in COMMON_LABELS:
        ptx = compile_ptx(K.stats_kernel, _stats_sig(s, lab))
        assert "atom.shared.add.u32" in ptx  # the privatised histogram is in shared memory
        compile_ptx(K.gather_kernel, _gather_sig(s, lab))
    compile_ptx(K.mask_kernel, (vec(s), types.float64, vec(types.uint8), vec(types.int64)))
    ptx = compile_ptx(K.range_kernel, (vec(s), vec(types.uint64), vec(types.int64)))
    assert "atom.global.min.u64" in ptx and "atom.global.max.u64" in ptx  # one atomic per block after the reduction


@pytest.mark.parametrize("les", [types.float32, types.float64], ids=str)
def test_selection_kernels_compile(compile_ptx, les):
    u64 = types.uint64
    compile_ptx(K.digit_kernel, (vec(les), u64, u64, u64, u64, vec(types.int64)))


def test_scan_zero_and_widen_kernels_compile(compile_ptx):
    compile_ptx(K.widen_kernel, (vec(types.float16), vec(types.float32)))
    compile_ptx(K.scan_kernel, (vec(types.int64), vec(types.int64)))
    for t in (types.int64, types.uint64):
        compile_ptx(K.zero_kernel, (vec(t),))


def test_shared_memory_fits_a_block():
    # Static shared memory is limited to 48 KiB per block without opt-in.
    window = K.WINDOW_SLOTS * np.dtype(np.uint32).itemsize
    scan = 2 * K.TPB * np.dtype(np.int64).itemsize
    assert window + scan <= 48 * 1024


def test_small_grid_warning_is_the_one_silenced():
    # numba-cuda warns below 128 blocks with its own warning class; launches
    # silence exactly that class (pytest here turns warnings into errors).
    from numba.cuda import dispatcher

    from clskern.cuda import _launch

    assert dispatcher.errors.NumbaPerformanceWarning is _launch.PerformanceWarning


@pytest.mark.parametrize("parent", [types.int32, types.int64], ids=str)
def test_lesion_labelling_kernels_compile(compile_ptx, parent):
    from clskern.cuda import _components as C

    i64 = types.int64
    for lab in COMMON_LABELS:
        compile_ptx(C.init_kernel, (vec(lab), lab, types.boolean, vec(parent)))
    ptx = compile_ptx(C.merge_kernel, (vec(parent), i64, i64, i64))
    assert f"atom.global.min.s{parent.bitwidth}" in ptx  # union: atomicMin on the parent array
    compile_ptx(C.flatten_kernel, (vec(parent), vec(i64), vec(i64)))
    compile_ptx(C.number_kernel, (vec(parent), vec(i64)))
    compile_ptx(C.first_voxel_kernel, (vec(parent), i64, i64, vec(i64)))


@pytest.mark.parametrize("s", SCORES, ids=str)
def test_lesion_score_kernels_compile(compile_ptx, s):
    from clskern.cuda import _components as C

    i64, les = types.int64, lesion_type(s)
    for parent in (types.int32, types.int64):
        compile_ptx(C.pairs_kernel, (vec(s), vec(parent), vec(i64), vec(i64), vec(les), vec(i64), vec(i64)))
        ptx = compile_ptx(C.maxima_kernel, (vec(s), vec(parent), vec(i64), vec(types.uint64), vec(i64), vec(i64)))
        assert "atom.global.max.u64" in ptx
    compile_ptx(C.take_kernel, (vec(les), vec(i64), vec(les)))


def test_kernels_compile_on_numpy_without_row_stack(compile_ptx):
    # NumPy 2.5 removed np.row_stack; numba-cuda 0.30 overloads it when its CUDA target loads, so
    # without clskern.cuda's alias every kernel failed to compile on NumPy 2.5 (seen on an H200).
    import subprocess
    import sys

    code = (
        "import numpy as np\n"
        "if hasattr(np, 'row_stack'): del np.row_stack\n"
        "from clskern.cuda import _kernels as K\n"
        "from numba import cuda, types\n"
        "cuda.compile_ptx(K.widen_kernel.py_func, (types.float16[::1], types.float32[::1]), cc=(9, 0))\n"
        "assert np.row_stack is np.vstack\n"
        "print('compiled')\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and run.stdout.strip() == "compiled", run.stderr[-2000:]
