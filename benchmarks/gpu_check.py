"""GPU check: kernels against the CPU on fresh random volumes, then timings.

Run by ``benchmarks/gpu_check.sh`` on a machine with a CUDA GPU, numba-cuda,
PyTorch and (optionally) CuPy; installs nothing. Every section catches its own
failure, prints it and goes on; the exit status is 1 if any check failed.

Timings are medians of a few runs, wall clock around synchronised calls, on a
512x512x300 float32 score volume with uint8 labels (393 MB together):

- ``d2d copy``: a device-to-device copy of the same bytes (scores + labels),
  the memory-bandwidth yardstick; "% copy" is copy time / our time.
- ``torch kthvalue``: ``p[y > 0]`` then ``torch.kthvalue``, the obvious PyTorch code.
- ``authors' bisection``: our reconstruction of the authors' method on the
  GPU: scores rescaled to [min, max] -> [0, 1], then bisection on t to a
  tolerance of 1e-4, one pass over the volume per step (FNR(t) <= epsilon).
- batched calibration: ``clskern.batch.calibrate`` of 100 volumes (10 distinct
  volumes, each listed 10 times: 39 GB read in all, so caches do not help).
"""

import argparse
import math
import statistics
import sys
import time
import traceback

import numpy as np

FAILURES = []
EPS = 0.2


def section(title):
    def wrap(fn):
        def run(*args, **kwargs):
            print(f"\n== {title} ==", flush=True)
            t0 = time.perf_counter()
            try:
                result = fn(*args, **kwargs)
            except Exception:
                FAILURES.append(title)
                print(f"FAILED: {title}", flush=True)
                traceback.print_exc(file=sys.stdout)
                return None
            print(f"   ({time.perf_counter() - t0:.1f} s)", flush=True)
            return result

        return run

    return wrap


def check(ok, what):
    print(f"  {'ok  ' if ok else 'FAIL'} {what}", flush=True)
    if not ok:
        FAILURES.append(what)


@section("environment")
def environment():
    import numba
    from numba import cuda

    import clskern.cuda  # noqa: F401  (first: it makes numba-cuda load on NumPy >= 2.5)

    print(f"  python {sys.version.split()[0]}, numpy {np.__version__}, numba {numba.__version__}")
    try:
        import numba_cuda

        print(f"  numba-cuda {numba_cuda.__version__}")
    except Exception as exc:
        print(f"  numba-cuda version unknown ({exc})")
    device = cuda.get_current_device()
    name = getattr(device, "name", "numba-cuda simulator")
    name = name.decode() if isinstance(name, bytes) else str(name)
    sms = getattr(device, "MULTIPROCESSOR_COUNT", "?")
    print(f"  device: {name}, cc {device.compute_capability}, {sms} SMs")
    for lib in ("torch", "cupy"):
        try:
            module = __import__(lib)
            print(f"  {lib} {module.__version__}")
        except Exception as exc:
            print(f"  {lib} not usable: {exc}")
    return name


# -- correctness on fresh random volumes ------------------------------------------------


def random_volume(rng, shape, dtype, order):
    n = math.prod(shape)
    kind = rng.integers(3)
    if kind == 0:  # probabilities with runs, zeros of both signs, ties
        p = rng.random(n) ** 4
        p[rng.random(n) < 0.05] = 0.0
        p[rng.random(n) < 0.01] = -0.0
        p[rng.random(n) < 0.05] = 0.5
    elif kind == 1:  # logits, infinities
        p = rng.standard_normal(n) * 8
        p[rng.random(n) < 0.001] = np.inf
        p[rng.random(n) < 0.001] = -np.inf
    else:  # coarse scores: many ties
        p = np.round(rng.random(n) * 20) / 20
    scores = p.astype(dtype).reshape(shape, order=order)
    lesion = rng.choice([0.0, 0.02, 0.3, 1.0])
    labels = (rng.random(n) < lesion).astype(np.uint8) * rng.choice([1, 2], n).astype(np.uint8)
    return scores, labels.reshape(shape, order=order)


def to_library(array, how, torch, cupy):
    from numba import cuda

    if how == "numba":
        return cuda.to_device(array)
    if how == "cupy":
        return cupy.asarray(array, order="K") if cupy is not None else cuda.to_device(array)
    if how == "torch":
        if torch is None or array.dtype == np.uint16 or not array.flags.c_contiguous:
            return cuda.to_device(array)
        return torch.as_tensor(array, device="cuda")
    return array  # host, with backend="cuda"


def same(a, b):
    a, b = np.atleast_1d(np.asarray(a)), np.atleast_1d(np.asarray(b))
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a.view(np.uint8), b.view(np.uint8))


@section("GPU == CPU on fresh random volumes")
def correctness(seed, n_cases, tiny=False):
    import clskern

    try:
        import torch

        torch = torch if torch.cuda.is_available() else None
    except Exception:
        torch = None
    try:
        import cupy

        cupy = cupy if cupy.cuda.runtime.getDeviceCount() > 0 else None
    except Exception:
        cupy = None
    print(f"  intake through: numba, host{', cupy' if cupy else ''}{', torch' if torch else ''}")
    rng = np.random.default_rng(seed)
    shapes = [(1,), (7,), (33, 17, 5), (64, 64, 64), (128, 96, 80), (300, 512, 4), (97, 201, 13)]
    if tiny:  # a smoke test of this script under the simulator
        shapes = [(1,), (7,), (3, 5, 4), (6, 2, 9)]
    dtypes = [np.float16, np.float32, np.float64]
    libs = ["numba", "cupy", "torch", "host"]
    bad = 0
    for i in range(n_cases):
        shape = shapes[i % len(shapes)]
        dtype = dtypes[i % 3]
        order = "F" if i % 4 == 3 else "C"
        how = libs[i % 4]
        label = 2 if i % 5 == 4 else None
        p, y = random_volume(rng, shape, dtype, order)
        backend = "cuda" if how == "host" else "auto"
        conn = 26 if len(shape) == 3 else None  # lesions are components of 3-D volumes only
        tag = f"case {i}: {shape} {np.dtype(dtype).name} {order} {how} label={label}"
        try:
            dp, dy = to_library(p, how, torch, cupy), to_library(y, how, torch, cupy)
            cpu = clskern.volume_stats(p, y, label=label, connectivity=conn, backend="cpu")
            gpu = clskern.volume_stats(dp, dy, label=label, connectivity=conn, backend=backend)
            ok = gpu == cpu and same(gpu.lesion_scores, cpu.lesion_scores)
            eps = [0.0, 0.1, 0.29, 0.5] if i % 2 else list(np.linspace(0, 0.99, 13))
            if cpu.n_fg:
                c = clskern.critical_threshold(p, y, eps, label=label, backend="cpu")
                g = clskern.critical_threshold(dp, dy, eps, label=label, backend=backend)
                ok &= same(g, c)
                c1 = clskern.critical_threshold(p, y, 0.2, label=label, backend="cpu")
                g1 = clskern.critical_threshold(dp, dy, 0.2, label=label, backend=backend)
                ok &= same(g1, c1)
            else:
                ok &= clskern.critical_threshold(dp, dy, 0.2, label=label, empty="skip", backend=backend) is None
            ok &= same(
                clskern.lesion_scores(dp, dy, label=label, backend=backend),
                clskern.lesion_scores(p, y, label=label, backend="cpu"),
            )
            t = float(np.asarray(p).flat[len(np.asarray(p).flat) // 2])
            mask = clskern.apply_threshold(dp, t, backend=backend)
            if hasattr(mask, "copy_to_host"):
                mask = mask.copy_to_host()
            elif hasattr(mask, "get"):
                mask = mask.get()
            elif hasattr(mask, "cpu"):
                mask = mask.cpu().numpy()
            ok &= same(np.ascontiguousarray(mask).ravel(), np.ascontiguousarray(clskern.apply_threshold(p, t)).ravel())
        except Exception as exc:
            ok = False
            print(f"  {tag}: {type(exc).__name__}: {exc}")
        if not ok:
            bad += 1
            print(f"  FAIL {tag}")
    check(bad == 0, f"{n_cases} random volumes (stats, thresholds, lesion scores, masks) equal bit for bit")


# -- timings ---------------------------------------------------------------------------


def make_volume(torch, shape, seed, smooth=True):
    """Scores and uint8 labels on the GPU: spherical lesions (~2 % of voxels)."""
    g = torch.Generator(device="cuda").manual_seed(seed)
    rand = lambda *s: torch.rand(*s, generator=g, device="cuda")  # noqa: E731
    z = torch.arange(shape[0], device="cuda", dtype=torch.float32).view(-1, 1, 1)
    yy = torch.arange(shape[1], device="cuda", dtype=torch.float32).view(1, -1, 1)
    x = torch.arange(shape[2], device="cuda", dtype=torch.float32).view(1, 1, -1)
    signed = None
    for _ in range(3):
        c = rand(3) * torch.tensor(shape, device="cuda", dtype=torch.float32)
        r = 30 + 30 * rand(1)
        d = torch.sqrt((z - c[0]) ** 2 + (yy - c[1]) ** 2 + (x - c[2]) ** 2) - r
        signed = d if signed is None else torch.minimum(signed, d)
        del d
    labels = (signed < 0).to(torch.uint8)
    if smooth:
        scores = torch.sigmoid(-signed / 4) * 0.98 + 0.02 * rand(shape)
    else:
        scores = rand(shape) ** 4
    del signed
    return scores.contiguous(), labels.contiguous()


def timed(fn, sync, repeat):
    fn()  # warm-up (JIT compile on first use)
    sync()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def authors_bisection(torch, p, y, eps, tol=1e-4):
    """Min-max rescaling, then bisection on t with one pass over the volume per step."""
    lo_v, hi_v = p.min(), p.max()
    q = (p - lo_v) / (hi_v - lo_v)
    lesion = y > 0
    n_fg = lesion.sum()
    lo, hi = 0.0, 1.0
    while hi - lo > tol:
        mid = (lo + hi) / 2
        fnr = ((q < mid) & lesion).sum() / n_fg
        if fnr.item() <= eps:
            lo = mid
        else:
            hi = mid
    return lo * (hi_v - lo_v).item() + lo_v.item()


@section("lesions: GPU == CPU, and timings (512x256x128, about 400 lesions)")
def lesions_check(repeat, tiny=False):
    """The lesion kernels (clskern.cuda.lesion_parts / lesion_detection) against the CPU's, bit for bit."""
    from numba import cuda

    from bench_lesions import lesion_volume  # benchmarks/ is on sys.path when run as a script
    from clskern import cpu
    from clskern import cuda as gpu

    shape, n_lesions = ((8, 6, 5), 3) if tiny else ((512, 256, 128), 400)
    for order in ("F", "C"):
        scores, labels = lesion_volume(shape=shape, order=order, n_lesions=n_lesions)
        d_s, d_l = cuda.to_device(scores), cuda.to_device(labels)
        for connectivity in (6, 18, 26):
            want = cpu.lesion_parts(scores, labels, None, connectivity)
            got = gpu.lesion_parts(d_s, d_l, None, connectivity)
            check(same(got[0], want[0]) and same(got[1], want[1]),
                  f"lesion_parts {order} conn {connectivity}: {want[0].size - 1} lesions, {want[1].size} voxels")
            for overlap in (0.0, 0.5, 1.0):
                want_d = cpu.lesion_detection(scores, labels, None, connectivity, overlap)
                got_d = gpu.lesion_detection(d_s, d_l, None, connectivity, overlap)
                check(same(got_d[0], want_d[0]) and same(got_d[1], want_d[1]),
                      f"lesion_detection {order} conn {connectivity} overlap {overlap}")
        if tiny:
            continue
        sync = cuda.synchronize
        for what, fn in [
            ("cpu lesion_parts", lambda: cpu.lesion_parts(scores, labels)),
            ("gpu lesion_parts", lambda: gpu.lesion_parts(d_s, d_l)),
            ("cpu lesion_detection 0.0", lambda: cpu.lesion_detection(scores, labels)),
            ("gpu lesion_detection 0.0", lambda: gpu.lesion_detection(d_s, d_l)),
            ("gpu lesion_detection 0.5", lambda: gpu.lesion_detection(d_s, d_l, None, 26, 0.5)),
        ]:
            print(f"  {order} {what:26s} {timed(fn, sync, repeat) * 1e3:8.2f} ms", flush=True)


@section("timings on a 512x512x300 float32 volume")
def timings(repeat, card):
    import torch

    import clskern
    from clskern._ranks import largest_rank

    sync = torch.cuda.synchronize
    shape = (300, 512, 512)
    p, y = make_volume(torch, shape, 1)
    nbytes = p.numel() * p.element_size() + y.numel() * y.element_size()
    n_fg = int(y.sum())
    print(f"  volume {tuple(p.shape)}, {nbytes / 1e6:.0f} MB, {n_fg} lesion voxels ({100 * n_fg / p.numel():.2f} %)")
    rows = []

    p2, y2 = torch.empty_like(p), torch.empty_like(y)

    def copy():
        p2.copy_(p)
        y2.copy_(y)

    t_copy = timed(copy, sync, repeat)
    del p2, y2
    rows.append(("d2d copy of scores + labels", t_copy))

    t_ct = timed(lambda: clskern.critical_threshold(p, y, EPS), sync, repeat)
    rows.append(("clskern critical_threshold", t_ct))
    t_vs = timed(lambda: clskern.volume_stats(p, y, connectivity=None), sync, repeat)
    rows.append(("clskern volume_stats, voxel level", t_vs))
    t_vl = timed(lambda: clskern.volume_stats(p, y), sync, repeat)
    rows.append(("clskern volume_stats, with lesions (26)", t_vl))
    mask = torch.empty(shape, dtype=torch.uint8, device=p.device)
    t_ap = timed(lambda: clskern.apply_threshold(p, 0.5, out=mask), sync, repeat)
    rows.append(("clskern apply_threshold (mask on device)", t_ap))

    def kth():
        v = p[y > 0]
        k = int(largest_rank(EPS, v.numel(), v.numel() - 1))
        return torch.kthvalue(v, k + 1).values.item()

    t_kth = timed(kth, sync, repeat)
    rows.append(("torch p[y > 0] + kthvalue", t_kth))
    t_bis = timed(lambda: authors_bisection(torch, p, y, EPS), sync, max(1, repeat // 2))
    rows.append(("authors' bisection (tol 1e-4) on GPU", t_bis))

    ours = clskern.critical_threshold(p, y, EPS)
    check(ours == kth(), f"critical_threshold {ours!r} == torch kthvalue")
    host_p, host_y = p.cpu().numpy(), y.cpu().numpy()
    check(ours == clskern.critical_threshold(host_p, host_y, EPS), "critical_threshold equals the CPU on this volume")
    check(clskern.volume_stats(p, y) == clskern.volume_stats(host_p, host_y), "volume_stats equals the CPU on this volume")
    print(f"  authors' bisection gives {authors_bisection(torch, p, y, EPS)!r} (exact: {ours!r})")

    noisy_p, _ = make_volume(torch, shape, 2, smooth=False)
    t_vs_noisy = timed(lambda: clskern.volume_stats(noisy_p, y, connectivity=None), sync, repeat)
    rows.append(("clskern volume_stats, iid noisy scores", t_vs_noisy))
    del noisy_p

    import clskern as _c

    print(f"\n  card: {card}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; clskern {_c.__version__}\n")
    print("  | operation | time (ms) | GB/s over scores + labels | % of copy rate |")
    print("  |---|---:|---:|---:|")
    for what, t in rows:
        print(f"  | {what} | {1e3 * t:.2f} | {nbytes / t / 1e9:.0f} | {100 * t_copy / t:.0f} % |")
    print("\n  goals: critical_threshold >= 70 %, volume_stats >= 40 % of the copy rate")
    return t_copy, nbytes


@section("where the time goes (512x512x300 float32)")
def breakdown(repeat):
    """Stage by stage, to tune against: intake, label pass, gather, selection, stats kernel, copies."""
    import torch
    from numba import cuda

    from clskern._ranks import largest_rank
    from clskern._binning import N_BINS
    from clskern.cuda import _kernels as K
    from clskern.cuda import _launch, _ops
    from clskern.cuda._intake import device_volume

    sync = cuda.synchronize
    p, y = make_volume(torch, (300, 512, 512), 1)
    torch.cuda.synchronize()
    vol = device_volume(p, y)
    offsets, n_fg = _ops._offsets(vol)
    lesion, n_nan = _ops.launch_gather(vol, offsets, n_fg)
    k = int(largest_rank(EPS, n_fg, n_fg - 1))
    hist = _launch.zeros(N_BINS, np.uint64)
    out = cuda.device_array(n_fg, lesion.dtype)
    key_range = _ops._key_range()

    def stats_kernel():
        _launch.launch(
            K.stats_kernel, _ops._stats_grid(vol), K.TPB,
            vol.scores, vol.labels, vol.target, vol.use_target, offsets, K.WINDOW_LO, out, hist, n_nan, key_range,
        )

    stages = [
        ("intake (views of torch tensors)", lambda: device_volume(p, y)),
        ("label pass + scan + total", lambda: _ops._offsets(vol)),
        ("lesion gather (+ NaN check)", lambda: _ops.check_gather(*_ops.launch_gather(vol, offsets, n_fg), None)),
        ("radix selection of one rank", lambda: _ops.select_ranks([lesion], [k])),
        ("stats kernel alone", stats_kernel),
        (f"histogram copy to host ({N_BINS * 8 // 1024} kB)", lambda: hist.copy_to_host()),
        ("lesion scores sorted, to host", lambda: _ops.sorted_scores(lesion)),
    ]
    print(f"  {n_fg} lesion voxels")
    for what, fn in stages:
        print(f"  {what:40s} {1e6 * timed(fn, sync, repeat):9.0f} us", flush=True)


@section("batched calibration of 100 volumes")
def batched(copy_info, distinct):
    import torch

    import clskern
    import clskern.batch

    shape = (300, 512, 512)
    volumes = [make_volume(torch, shape, 10 + i) for i in range(distinct)]
    cases = {f"case{i:03d}": volumes[i % distinct] for i in range(100)}
    torch.cuda.synchronize()
    clskern.batch.critical_thresholds(dict(list(cases.items())[:2]), EPS)  # warm-up
    t0 = time.perf_counter()
    cal = clskern.batch.calibrate(cases, epsilon=EPS, alpha=0.2)
    torch.cuda.synchronize()
    t = time.perf_counter() - t0
    singles = [clskern.critical_threshold(p, y, EPS) for p, y in volumes]
    check(
        cal.critical_thresholds == [singles[i % distinct] for i in range(100)],
        "batched thresholds equal one-volume calls",
    )
    check(cal == clskern.calibrate(dict(zip(cases, cal.critical_thresholds)), epsilon=EPS, alpha=0.2), "calibration")
    nbytes = 100 * (volumes[0][0].numel() * 4 + volumes[0][1].numel())
    line = f"  100 volumes: {t:.2f} s, {nbytes / t / 1e9:.0f} GB/s over scores + labels"
    if copy_info:
        t_copy, one = copy_info
        line += f", {100 * (100 * t_copy) / t:.0f} % of the copy rate"
    print(line + f"; threshold {cal.threshold!r}")


@section("pytest tests/test_cuda_gpu.py")
def gpu_tests():
    import pytest

    rc = pytest.main(["-q", "-p", "no:cacheprovider", "tests/test_cuda_gpu.py"])
    check(rc in (0, 5), f"GPU-only tests (exit {rc}{': nothing ran' if rc == 5 else ''})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=int(time.time()) % 100000)
    parser.add_argument("--cases", type=int, default=48)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--distinct", type=int, default=10, help="distinct volumes in the batch of 100")
    parser.add_argument("--skip-timings", action="store_true")
    parser.add_argument("--tiny", action="store_true", help="tiny volumes, no timings (simulator smoke test)")
    args = parser.parse_args()
    print(f"gpu_check: seed {args.seed}")
    start = time.perf_counter()
    card = environment()
    gpu_tests()
    correctness(args.seed, args.cases, args.tiny)
    lesions_check(args.repeat, args.tiny)
    if not (args.skip_timings or args.tiny):
        copy_info = timings(args.repeat, card)
        breakdown(args.repeat)
        batched(copy_info, args.distinct)
    print(f"\n{len(FAILURES)} failure(s) in {time.perf_counter() - start:.0f} s: {FAILURES or 'none'}")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
