"""GPU kernels under numba-cuda's simulator, against the CPU path, bit for bit.

Run by ``test_cuda_simulator.py`` in a child process with
``NUMBA_ENABLE_CUDASIM=1`` (the simulator must be chosen before numba.cuda is
imported). Volumes are tiny: the simulator runs a Python thread per GPU thread.
"""

import math
import os

import numpy as np
import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
    pytest.skip("needs NUMBA_ENABLE_CUDASIM=1 (run through test_cuda_simulator.py)", allow_module_level=True)

from numba import cuda  # noqa: E402

import clskern  # noqa: E402
from clskern import _binning  # noqa: E402
from clskern.batch import calibrate as gpu_calibrate  # noqa: E402
from clskern.batch import critical_thresholds  # noqa: E402
from clskern.cpu import _bins as cpu_bins  # noqa: E402
from clskern.cuda import _bins, _kernels, _ops  # noqa: E402

SHAPE = (3, 5, 7)  # 105 voxels: several tiles of 16 in the simulator, two blocks


@cuda.jit
def _bin_kernel(values, bins, keys):
    for i in range(cuda.grid(1), values.size, cuda.gridsize(1)):
        bins[i] = _bins.bin_index(values[i])
        keys[i] = _bins.order_key(values[i])


def _special_values():
    f64 = np.finfo(np.float64)
    edges = _binning.bin_lower_edges()
    picked = np.concatenate([edges[:4], edges[1:-1:977], edges[-4:-1]])
    base = [0.0, 1.0, 0.5, 2.0**-32, 2.0**32, np.inf, f64.max, f64.smallest_subnormal, f64.smallest_normal, 0.3]
    base = np.array(base + list(picked))
    near = np.concatenate([np.nextafter(base, np.inf), np.nextafter(base, -np.inf)])
    rng = np.random.default_rng(5)
    spread = rng.standard_normal(64) * 2.0 ** rng.integers(-40, 40, 64)
    values = np.concatenate([base, near, spread])
    values = np.concatenate([values, -values, [-0.0]])
    return values[np.isfinite(values) | np.isinf(values)]


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
def test_device_bin_index_and_order_key_equal_cpu(dtype):
    with np.errstate(over="ignore"):
        values = _special_values().astype(dtype)
    if dtype == np.float16:
        bits = np.arange(0, 1 << 16, 37, dtype=np.uint16).view(np.float16)
        values = np.concatenate([values, bits[~np.isnan(bits)], np.array([-0.0, 6.0e-8, -6.0e-8], dtype)])
    values = values[~np.isnan(values)]
    bins = cuda.device_array(values.size, np.int64)
    keys = cuda.device_array(values.size, np.uint64)
    _bin_kernel[2, 8](cuda.to_device(values), bins, keys)
    expected = np.array([cpu_bins.bin_index(np.float64(v)) for v in values])
    np.testing.assert_array_equal(bins.copy_to_host(), expected)
    keys = keys.copy_to_host()
    wide = values.astype(np.float64)
    order = np.argsort(keys, kind="stable")
    ranked = wide[order]
    assert np.all(ranked[1:] >= ranked[:-1])  # key order is value order
    back = np.array([_ops._key_value(k) for k in keys])
    np.testing.assert_array_equal(back.view(np.uint64), wide.view(np.uint64))  # exact inverse, -0.0 kept


def _volume(dtype, seed, *, order="C", lesion=0.35):
    """Scores that hit every path: the shared window, the zero bin, global bins, ties, +-inf."""
    rng = np.random.default_rng(seed)
    n = math.prod(SHAPE)
    p = rng.random(n)
    p[rng.random(n) < 0.3] = 0.5 + rng.random() * 0.02  # a run in the shared window
    p[rng.random(n) < 0.15] = 0.5 + rng.random(n)[: 1] * 0.03
    p[rng.random(n) < 0.1] = 0.0
    p[rng.random(n) < 0.05] = -0.0
    p[rng.random(n) < 0.1] = rng.standard_normal() * 40  # logits, global bins
    p[3] = np.inf
    p[5] = -np.inf
    p[7] = 2.0**-40
    p[9] = 0.53125  # the simulator's shared window ends here
    p[11] = 0.53125 - 2.0**-12
    p[13] = 0.5 - 2.0**-12  # ... and starts above this
    scores = p.astype(dtype).reshape(SHAPE, order=order)
    labels = (rng.random(n) < lesion).reshape(SHAPE, order=order)
    return scores, labels


DTYPES = [np.float32, np.float16, np.float64]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("order", ["C", "F"])
def test_volume_stats_equal_cpu(dtype, order):
    scores, labels = _volume(dtype, 1, order=order)
    cpu = clskern.volume_stats(scores, labels, name="c1", backend="cpu")
    gpu = clskern.volume_stats(scores, labels, name="c1", backend="cuda")
    assert gpu == cpu
    assert gpu.lesion_scores.dtype == cpu.lesion_scores.dtype
    np.testing.assert_array_equal(gpu.lesion_scores.view(np.uint8), cpu.lesion_scores.view(np.uint8))


def test_volume_stats_label_rules_and_layouts():
    scores, labels = _volume(np.float32, 2)
    multi = (labels.astype(np.int16) * 2 + (np.arange(labels.size).reshape(SHAPE) % 3 == 0)).astype(np.int16)
    for args in [
        (scores, multi, {"label": 2}),
        (scores, multi.astype(np.float64), {"label": 1.0}),
        (scores, multi.astype(np.int64), {}),
        (scores[:, ::2, 1:], labels[:, ::2, 1:], {}),  # strided: copied, as on the CPU
        (scores.astype(">f4"), labels, {}),  # big-endian
        (scores, np.asfortranarray(labels), {}),  # labels in the other order
    ]:
        s, y, kw = args
        assert clskern.volume_stats(s, y, backend="cuda", **kw) == clskern.volume_stats(s, y, backend="cpu", **kw)
    # float16 labels (which the CPU kernels cannot read) act as their float32 values
    half = multi.astype(np.float16)
    expected = clskern.volume_stats(scores, multi.astype(np.float32), label=2.0, backend="cpu")
    assert clskern.volume_stats(scores, half, label=2.0, backend="cuda") == expected
    assert clskern.volume_stats(cuda.to_device(scores), cuda.to_device(half), label=2.0) == expected


def test_volume_stats_without_lesion_or_background():
    scores, labels = _volume(np.float32, 3)
    for y in (np.zeros(SHAPE, bool), np.ones(SHAPE, bool)):
        assert clskern.volume_stats(scores, y, backend="cuda") == clskern.volume_stats(scores, y, backend="cpu")


@pytest.mark.parametrize("dtype", DTYPES)
def test_critical_threshold_equal_cpu(dtype):
    scores, labels = _volume(dtype, 4)
    for eps in (0.0, 0.2, 0.29, [0.05, 0.5, 0.9]):
        cpu = clskern.critical_threshold(scores, labels, eps, backend="cpu")
        gpu = clskern.critical_threshold(scores, labels, eps, backend="cuda")
        np.testing.assert_array_equal(np.asarray(gpu), np.asarray(cpu))
        assert type(gpu) is type(cpu)
        assert np.array_equal(np.signbit(gpu), np.signbit(cpu))


def test_critical_threshold_many_epsilons_sorts():
    scores, labels = _volume(np.float32, 5)
    eps = np.linspace(0, 0.95, 12)  # more distinct ranks than SORT_ABOVE
    cpu = clskern.critical_threshold(scores, labels, eps, backend="cpu")
    np.testing.assert_array_equal(clskern.critical_threshold(scores, labels, eps, backend="cuda"), cpu)


def test_critical_threshold_exact_rank_and_signed_zeros():
    # 100 lesion voxels: 0.29 * 100 = 28.999999999999996, yet k = 29.
    scores = np.zeros(SHAPE, np.float32)
    labels = np.zeros(SHAPE, bool)
    labels.flat[:100] = True
    scores.flat[:100] = np.arange(100, dtype=np.float32) / 100
    assert clskern.critical_threshold(scores, labels, 0.29, backend="cuda") == np.float32(0.29)
    # -0.0 and +0.0 both among the lesion scores at the chosen rank: +0.0 on both
    scores.flat[:100:2] = -0.0
    scores.flat[1:100:4] = 0.0
    for eps in (0.1, 0.6, [0.1, 0.3]):
        cpu = clskern.critical_threshold(scores, labels, eps, backend="cpu")
        gpu = clskern.critical_threshold(scores, labels, eps, backend="cuda")
        assert not np.any(np.signbit(cpu))
        np.testing.assert_array_equal(np.signbit(gpu), np.signbit(cpu))
        np.testing.assert_array_equal(gpu, cpu)
    assert clskern.volume_stats(scores, labels, backend="cuda") == clskern.volume_stats(scores, labels, backend="cpu")


def test_empty_policies_and_errors_match_cpu():
    scores, _ = _volume(np.float32, 6)
    none = np.zeros(SHAPE, np.uint8)
    assert clskern.critical_threshold(scores, none, 0.1, empty="skip", backend="cuda") is None
    assert clskern.critical_threshold(scores, none, [0.1, 0.2], empty="pass", backend="cuda").tolist() == [math.inf] * 2
    with pytest.raises(clskern.EmptyGroundTruthError, match="'case7'"):
        clskern.critical_threshold(scores, none, 0.1, name="case7", backend="cuda")
    with pytest.raises(clskern.ScoreDtypeError):
        clskern.volume_stats(np.zeros(SHAPE, np.int32), none, backend="cuda")
    with pytest.raises(clskern.InputError, match="shape"):
        clskern.volume_stats(scores, none[:1], backend="cuda")


def test_nan_scores_raise_like_cpu():
    scores, labels = _volume(np.float32, 7)
    scores = scores.copy()
    scores.flat[np.flatnonzero(labels)[:2]] = np.nan
    scores.flat[np.flatnonzero(~labels)[:3]] = np.nan
    for fn in (clskern.volume_stats, clskern.lesion_scores):
        with pytest.raises(clskern.NaNScoresError) as cpu:
            fn(scores, labels, name="n", backend="cpu")
        with pytest.raises(clskern.NaNScoresError) as gpu:
            fn(scores, labels, name="n", backend="cuda")
        assert str(gpu.value) == str(cpu.value)
    with pytest.raises(clskern.NaNScoresError, match="5 NaN"):
        clskern.apply_threshold(scores, 0.5, backend="cuda")


@pytest.mark.parametrize("dtype", DTYPES)
def test_lesion_scores_in_memory_order(dtype):
    scores, labels = _volume(dtype, 8, order="F")
    cpu = clskern.lesion_scores(scores, labels, backend="cpu")
    gpu = clskern.lesion_scores(scores, labels, backend="cuda")
    assert gpu.dtype == cpu.dtype
    np.testing.assert_array_equal(gpu.view(np.uint8), cpu.view(np.uint8))


@pytest.mark.parametrize("dtype", DTYPES)
def test_apply_threshold_host_and_device(dtype):
    scores, _ = _volume(dtype, 9, order="F")
    for t in (0.5, float(scores.flat[10]), -math.inf, 0.0):
        cpu = clskern.apply_threshold(scores, t, backend="cpu")
        gpu = clskern.apply_threshold(scores, t, backend="cuda")
        assert gpu.flags.f_contiguous and gpu.dtype == np.uint8
        np.testing.assert_array_equal(gpu, cpu)
    out = np.empty(SHAPE, np.uint8, order="F")
    assert clskern.apply_threshold(scores, 0.5, out=out, backend="cuda") is out
    np.testing.assert_array_equal(out, clskern.apply_threshold(scores, 0.5))
    with pytest.raises(clskern.InputError, match="contiguous"):
        clskern.apply_threshold(scores, 0.5, out=np.empty(SHAPE, np.uint8), backend="cuda")
    device = cuda.to_device(np.ascontiguousarray(scores))  # auto follows the device
    mask = clskern.apply_threshold(device, 0.5)
    assert getattr(mask, "__cuda_ndarray__", False)
    np.testing.assert_array_equal(mask.copy_to_host(), clskern.apply_threshold(np.ascontiguousarray(scores), 0.5))
    device_out = cuda.device_array(SHAPE, np.uint8)
    assert clskern.apply_threshold(device, 0.25, out=device_out) is device_out
    np.testing.assert_array_equal(device_out.copy_to_host(), np.ascontiguousarray(scores) >= 0.25)


def test_auto_follows_device_arrays():
    scores, labels = _volume(np.float32, 10)
    d_scores, d_labels = cuda.to_device(scores), cuda.to_device(labels)
    assert clskern.volume_stats(d_scores, d_labels) == clskern.volume_stats(scores, labels)
    assert clskern.volume_stats(d_scores, labels) == clskern.volume_stats(scores, labels)  # mixed: labels copied
    assert clskern.critical_threshold(d_scores, d_labels, 0.2) == clskern.critical_threshold(scores, labels, 0.2)
    half = cuda.to_device(scores.astype(np.float16))
    assert clskern.volume_stats(half, d_labels) == clskern.volume_stats(scores.astype(np.float16), labels)
    with pytest.raises(clskern.InputError, match="GPU"):
        clskern.volume_stats(d_scores, d_labels, backend="cpu")


def test_batched_thresholds_and_calibration_equal_cpu():
    cases = {f"c{i}": _volume(DTYPES[i], 20 + i, lesion=0.2 + 0.1 * i) for i in range(3)}
    cases["empty"] = (cases["c0"][0], np.zeros(SHAPE, bool))
    eps = 0.3
    expected = {
        k: clskern.critical_threshold(s, y, eps, empty="skip", backend="cpu") for k, (s, y) in cases.items()
    }
    got = critical_thresholds(cases, eps, chunk=2)
    assert got == expected
    empty_only = {"empty": cases["empty"]}
    assert critical_thresholds(list(empty_only.values()), [eps], empty="pass")[0].tolist() == [math.inf]
    with pytest.raises(clskern.EmptyGroundTruthError, match="'empty'"):
        critical_thresholds(empty_only, eps, empty="error")
    pairs = list(cases.values())
    cpu = clskern.calibrate(list(expected.values()), epsilon=eps, alpha=0.5, method="cls")
    assert gpu_calibrate(iter(pairs), epsilon=eps, alpha=0.5, method="cls") == cpu
    two = {k: cases[k] for k in ("c1", "empty")}
    stats = {k: clskern.volume_stats(s, y, name=k, backend="cpu") for k, (s, y) in two.items()}
    cpu = clskern.calibrate(stats, epsilon=0.5, method="crc", empty="pass")
    assert gpu_calibrate(two, epsilon=0.5, method="crc", empty="pass") == cpu


def test_radix_selection_every_rank_with_negatives():
    rng = np.random.default_rng(12)
    for dtype in (np.float32, np.float64):
        values = np.concatenate([rng.standard_normal(14), [-0.0, 0.0, -np.inf, np.inf, 1e-30, -1e-30]])
        values = values.astype(dtype)
        ranks = [0, 5, 6, 19]  # includes -0.0 (sorted before +0.0 by the key)
        device = cuda.to_device(values)
        got = _ops.select_ranks([device] * len(ranks), ranks)
        ordered = sorted(values.astype(np.float64), key=lambda v: (v, not np.signbit(v)))
        expected = np.array(ordered)[ranks]
        np.testing.assert_array_equal(np.array(got).view(np.uint64), expected.view(np.uint64))


def test_radix_digits_cover_the_key():
    for digits, low in ((_ops.DIGITS_F64, 0), (_ops.DIGITS_F32, 29)):
        covered = [b for shift, bits in digits for b in range(shift, shift + bits)]
        assert sorted(covered) == list(range(low, 64))  # each bit once, from the top
        assert [shift for shift, _ in digits] == sorted((shift for shift, _ in digits), reverse=True)
        assert max(1 << bits for _, bits in digits) <= _kernels.DIGITS_MAX


def test_zero_kernel_clears_device_buffers():
    # (the simulator path of zeros() copies zeros over, so run the kernel directly)
    for dtype in (np.int64, np.uint64):
        buffer = cuda.to_device(np.arange(1, 40, dtype=dtype))
        _kernels.zero_kernel[2, 8](buffer)
        assert not buffer.copy_to_host().any()


def test_selection_rule_matches_the_cpu_module():
    from clskern.cpu import _ops as cpu_ops

    assert _ops.SORT_ABOVE == cpu_ops.SORT_ABOVE


def test_kernel_grid_covers_many_tiles():
    # more tiles than blocks: every block loops; check the offsets against numpy
    labels = np.random.default_rng(11).random(1000) < 0.3
    vol = _ops.device_volume(np.zeros(1000, np.float32), labels)
    offsets, n_fg = _ops._offsets(vol)
    tiles = np.add.reduceat(labels, np.arange(0, 1000, _kernels.TILE))
    np.testing.assert_array_equal(offsets.copy_to_host(), np.concatenate([[0], np.cumsum(tiles)]))
    assert n_fg == labels.sum()


@pytest.mark.skipif(os.environ.get("CLSKERN_SIM_GPU_SIZES") != "1", reason="slow (16 s); CLSKERN_SIM_GPU_SIZES=1")
def test_real_gpu_block_sizes(monkeypatch):
    # The simulator reads the kernels' module constants at run time, so the
    # block, tile and window sizes of a real GPU can be simulated too.
    window = 33 * _kernels._OCTAVE
    sizes = {"TPB": 256, "ITEMS": 16, "WINDOW": window, "SCAN_TPB": 1024}
    sizes.update(TILE=256 * 16, WINDOW_SLOTS=window + 1, WINDOW_LO=_kernels._BIN_OF_ONE + _kernels._OCTAVE - window)
    for key, value in sizes.items():
        monkeypatch.setattr(_kernels, key, value)
    rng = np.random.default_rng(1)
    n = 3 * 4096 + 77
    p = rng.random(n) ** 3
    p[rng.random(n) < 0.2] = 0.0
    p[::97] = 1.999  # top of the window
    p = p.astype(np.float32)
    y = rng.random(n) < 0.1
    assert clskern.volume_stats(p, y, backend="cuda") == clskern.volume_stats(p, y, backend="cpu")
    assert clskern.critical_threshold(p, y, 0.3, backend="cuda") == clskern.critical_threshold(p, y, 0.3)


# -- score normalisation (SPEC 1d): the exact range on the device ------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_score_range_and_stats_extremes_equal_cpu(dtype, sign):
    scores, labels = _volume(dtype, 21)
    finite = np.where(np.isfinite(scores), scores * dtype(sign), dtype(0.25))  # negative volumes too
    for s in (scores, finite, np.full(SHAPE, -0.0, dtype)):
        cpu = clskern.score_range(s, backend="cpu")
        gpu = clskern.score_range(s, backend="cuda")
        assert [x.dtype for x in gpu] == [x.dtype for x in cpu]
        assert [x.tobytes() for x in gpu] == [x.tobytes() for x in cpu]  # -0.0 stored as +0.0 on both
        stats = clskern.volume_stats(s, labels, backend="cuda", connectivity=None)
        assert (stats.score_min.tobytes(), stats.score_max.tobytes()) == (cpu[0].tobytes(), cpu[1].tobytes())
    assert clskern.score_range(np.zeros(0, dtype), backend="cuda") == (None, None)
    bad = scores.copy()
    bad.flat[4] = np.nan
    with pytest.raises(clskern.NaNScoresError, match="1 NaN"):
        clskern.score_range(bad, backend="cuda")


@pytest.mark.parametrize("dtype", DTYPES)
def test_normalized_apply_and_threshold_equal_cpu(dtype):
    scores, labels = _volume(dtype, 22, order="F")
    scores = np.where(np.isfinite(scores), scores, dtype(3.0))  # min-max needs finite scores
    q = (scores.astype(np.float64) - float(scores.min())) / (float(scores.max()) - float(scores.min()))
    for t in (0.5, float(np.sort(q, axis=None)[40]), 0.0, 1.0):
        gpu = clskern.apply_threshold(scores, t, normalize="minmax", backend="cuda")
        np.testing.assert_array_equal(gpu, (q >= t).astype(np.uint8))
    cpu = clskern.critical_threshold(scores, labels, 0.2, normalize="minmax", connectivity=6, backend="cpu")
    assert clskern.critical_threshold(scores, labels, 0.2, normalize="minmax", connectivity=6, backend="cuda") == cpu
