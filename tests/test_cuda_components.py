"""The GPU lesion kernels (``clskern.cuda.lesion_parts``, ``lesion_detection``) against the CPU's, bit for bit.

The simulator has to be chosen before ``numba.cuda`` is first imported, so
in an ordinary run the one test here starts a child pytest on this file with
``NUMBA_ENABLE_CUDASIM=1``, where the cases below run (and the launcher does
not). Volumes are tiny (at most 6x5x4): the simulator runs a Python thread
per GPU thread. The PTX of these kernels is checked in ``test_cuda_ptx.py``.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SIMULATED = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
CASES = 12  # the cases below: the child run must pass at least this many

if not SIMULATED:

    def test_lesion_kernels_equal_cpu_under_the_simulator():
        pytest.importorskip("numba.cuda")
        env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(Path(__file__).resolve())]
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        report = done.stdout[-8000:] + done.stderr[-4000:]
        assert done.returncode == 0, report
        passed = re.search(r"(\d+) passed", done.stdout.strip().splitlines()[-1])
        assert passed and int(passed.group(1)) >= CASES, report

else:
    from numba import cuda

    from clskern.cuda import _components as G
    from clskern.errors import InputError, NaNScoresError

    try:
        from clskern.cpu import lesion_detection as cpu_detection
        from clskern.cpu import lesion_parts as cpu_parts
    except ImportError:  # before the lesion kernel moved to clskern.cpu
        from clskern._components import detection_scores, lesions

        def cpu_parts(scores, labels, label=None, connectivity=26, name=None):
            return lesions(scores, labels, label=label, connectivity=connectivity, name=name)

        def cpu_detection(scores, labels, label=None, connectivity=26, overlap=0.0, name=None):
            offsets, grouped = cpu_parts(scores, labels, label, connectivity, name)
            return detection_scores(offsets, grouped, overlap), np.diff(offsets)

    SHAPE = (6, 5, 4)  # the chains below
    SMALL = (4, 3, 4)  # random volumes: 3 tiles of the simulator's 16 voxels

    def _same(a, b):
        """Equal dtype, shape and bits (so -0.0 and +0.0 differ)."""
        a, b = np.asarray(a), np.asarray(b)
        assert a.dtype == b.dtype and a.shape == b.shape, (a.dtype, b.dtype, a.shape, b.shape)
        assert a.tobytes() == b.tobytes(), (a, b)

    def _check_parts(scores, labels, **kw):
        expected = cpu_parts(scores, labels, **kw)
        got = G.lesion_parts(scores, labels, **kw)
        _same(got[0], expected[0])
        _same(got[1], expected[1])
        return got

    def _check_detection(scores, labels, **kw):
        expected = cpu_detection(scores, labels, **kw)
        got = G.lesion_detection(scores, labels, **kw)
        _same(got[0], expected[0])
        _same(got[1], expected[1])
        return got

    def _chains():
        """A body-diagonal chain (4 voxels), an edge-diagonal chain (3), a face line (3), one isolated voxel."""
        y = np.zeros(SHAPE, np.uint8)
        for i in range(4):
            y[i, i, i] = 1
        for v in [(5, 4, 0), (4, 3, 0), (3, 2, 0)]:
            y[v] = 1
        y[0, 4, :3] = 1
        y[5, 0, 3] = 1
        return y

    def _scores(dtype, seed, order="C", shape=SHAPE):
        """Scores with ties, signed zeros and a run of equal values."""
        rng = np.random.default_rng(seed)
        p = rng.integers(0, 6, shape) / 5.0
        p[rng.random(shape) < 0.2] = -0.0
        p[rng.random(shape) < 0.1] = rng.standard_normal() * 3
        return np.asarray(p.astype(dtype), order=order)

    @pytest.mark.parametrize("connectivity, lesions", [(6, 9), (18, 7), (26, 4)])
    def test_diagonal_chains_per_connectivity(connectivity, lesions):
        scores = _scores(np.float32, 1)
        offsets, _ = _check_parts(scores, _chains(), connectivity=connectivity)
        assert offsets.size - 1 == lesions

    def test_fortran_order_gives_the_c_order_result():
        scores, labels = _scores(np.float64, 2), _chains()
        labels[2, 0, 1] = labels[5, 3, 2] = 1  # lesions whose first voxels come in another order in F
        _check_parts(np.asfortranarray(scores), np.asfortranarray(labels), connectivity=6)

    @pytest.mark.parametrize("dtype, order", [(np.float16, "C"), (np.float32, "F"), (np.float64, "C")])
    def test_random_volumes_and_detection(dtype, order):
        rng = np.random.default_rng(3)
        labels = np.asarray(rng.random(SMALL) < 0.3, order=order)
        scores = _scores(dtype, 3, order, SMALL)
        if dtype == np.float32:  # no sort: each lesion's largest score, by atomicMax
            _, sizes = _check_detection(scores, labels, connectivity=6)
        else:
            _, grouped = _check_parts(scores, labels, connectivity=6)
            zeros = grouped[grouped == 0]
            assert zeros.size and not np.signbit(zeros).any()  # -0.0 stored as +0.0
            _, sizes = _check_detection(scores, labels, connectivity=6, overlap=0.5)
        assert sizes.size > 3 and np.all(sizes > 0)

    def test_touching_lesions_of_a_multi_label_mask():
        rng = np.random.default_rng(4)
        labels = rng.integers(0, 3, SMALL).astype(np.int16)  # labels 1 and 2 touch everywhere
        scores = _scores(np.float32, 4, shape=SMALL)
        _check_parts(scores, labels, label=2, connectivity=6)
        _check_detection(scores, labels.astype(np.float32), label=1.0, connectivity=26, overlap=1.0)

    def test_device_inputs_equal_host_inputs():
        labels, scores = _chains(), _scores(np.float32, 5)
        host = cpu_parts(scores, labels, connectivity=18)
        device = G.lesion_parts(cuda.to_device(scores), cuda.to_device(labels), connectivity=18)
        _same(device[0], host[0])
        _same(device[1], host[1])

    def test_grouping_on_the_device(monkeypatch):
        # The simulator has neither CuPy nor PyTorch: a stand-in sort returns a
        # device array, as theirs do, so the device side (take_kernel) runs.
        def fake(values, ranks, n_lesions):
            sizes, grouped = G._host_group(values, ranks, n_lesions)
            return sizes, cuda.to_device(grouped)

        monkeypatch.setattr(G, "_device_group", lambda: fake)
        rng = np.random.default_rng(6)
        labels = rng.random(SMALL) < 0.4
        _check_detection(_scores(np.float64, 6, shape=SMALL), labels, overlap=0.7)

    def test_nan_lesion_scores_raise_like_cpu_and_background_is_not_read():
        labels, scores = _chains(), _scores(np.float32, 7)
        scores[labels == 0] = np.nan  # background NaN: never read
        _check_detection(scores, labels)
        scores[0, 0, 0] = scores[0, 4, 1] = np.nan
        for function, cpu in ((G.lesion_parts, cpu_parts), (G.lesion_detection, cpu_detection)):
            with pytest.raises(NaNScoresError) as expected:
                cpu(scores, labels, name="n")
            with pytest.raises(NaNScoresError, match="2 NaN scores among its 11 lesion voxels") as got:
                function(scores, labels, name="n")
            assert str(got.value) == str(expected.value)

    def test_no_lesions_empty_volumes_and_shapes():
        scores = _scores(np.float64, 8, shape=SMALL)
        _check_parts(scores, np.zeros(SMALL, bool))
        _check_detection(scores, np.zeros(SMALL, np.int32), overlap=0.5)
        empty = np.zeros((0, 3, 4), np.float32)
        _check_parts(empty, empty.astype(bool))
        _check_detection(empty, empty.astype(bool))
        with pytest.raises(InputError, match="3-D"):
            G.lesion_parts(np.zeros((4, 5), np.float32), np.zeros((4, 5), bool))
