"""clskern on a busy host, in a fresh process, and beside PyTorch (SPEC section 4b; issue 22).

Each figure comes from fresh processes (the slowdown on a busy host is a
lottery per process: where the scheduler puts its threads), with the load
started first: ``idle``, ``1 busy`` (one spinning process) and ``busy/core``
(one spinning process per usable core). Every process times each call's median
over ``--repeat`` calls after one warm-up; the table shows, per cell, the
worst process's median (and the best, to show the spread).

Calls, on Fortran-ordered float32 scores with uint8 labels (about 1 % lesion,
``benchmarks/volumes.py``), 128x128x96 and 512x256x128:
``critical_threshold``, ``volume_stats`` at voxel level (``connectivity=None``)
and lesion level (the default), ``apply_threshold``, and the NumPy line they
replace (``p[y > 0]`` then ``np.partition``).

Threading layers compared (``--layers``): ``default`` (what clskern picks
itself: TBB where its wheel is installed, else workqueue), ``workqueue``,
``omp-passive`` (GNU OpenMP with ``OMP_WAIT_POLICY=passive``) and ``omp`` (GNU
OpenMP as Numba starts it, the default before issue 22), each with clskern's
own choice of threads per call.

First calls (``--first``): a fresh process's ``import clskern`` plus its first
``critical_threshold`` and ``volume_stats`` on 128x128x96, with an empty Numba
cache and after ``clskern warmup`` filled it.

Beside PyTorch (``--torch``, needs torch): a validation loop that runs a small
CPU model step (torch's own intra-op threads) and then ``volume_stats`` per
case, against the two run one after the other in separate processes.

    python benchmarks/bench_host_load.py                       # everything, about 6 minutes on 2 cores
    python benchmarks/bench_host_load.py --layers default --procs 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SIZES = {"128x128x96": (128, 128, 96), "512x256x128": (512, 256, 128)}
CALLS = ("critical_threshold", "volume_stats voxel", "volume_stats lesion", "apply_threshold", "numpy p[y>0]+partition")
LAYERS = {
    "default": {},
    "workqueue": {"NUMBA_THREADING_LAYER": "workqueue"},
    "omp-passive": {"NUMBA_THREADING_LAYER": "omp", "OMP_WAIT_POLICY": "passive"},
    "omp": {"NUMBA_THREADING_LAYER": "omp"},
}


def _cores():
    sys.path.insert(0, str(ROOT))
    from clskern._threads import usable_cores

    return usable_cores()


# -- worker: one fresh process ------------------------------------------------------------


def worker(folder, size, repeat):
    """Time every call on one volume in this (fresh) process; print JSON ``{call: median ms}``."""
    scores = np.asfortranarray(np.load(Path(folder) / f"{size}_scores.npy"))
    labels = np.asfortranarray(np.load(Path(folder) / f"{size}_labels.npy"))
    import clskern

    def numpy_line():
        lesion = scores[labels > 0]
        k = int(0.2 * lesion.size)
        return np.partition(lesion, k)[k]

    fns = {
        "critical_threshold": lambda: clskern.critical_threshold(scores, labels, 0.2),
        "volume_stats voxel": lambda: clskern.volume_stats(scores, labels, connectivity=None),
        "volume_stats lesion": lambda: clskern.volume_stats(scores, labels),
        "apply_threshold": lambda: clskern.apply_threshold(scores, 0.5),
        "numpy p[y>0]+partition": numpy_line,
    }
    out = {}
    for name, fn in fns.items():
        fn()
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        out[name] = 1e3 * statistics.median(times)
    from clskern._threads import threading_layer

    out["layer"] = threading_layer()
    print(json.dumps(out))


def first_call(folder):
    """import clskern + the first critical_threshold and volume_stats, in seconds (this process is fresh)."""
    scores = np.asfortranarray(np.load(Path(folder) / "128x128x96_scores.npy"))
    labels = np.asfortranarray(np.load(Path(folder) / "128x128x96_labels.npy"))
    t0 = time.perf_counter()
    import clskern

    clskern.critical_threshold(scores, labels, 0.2)
    clskern.volume_stats(scores, labels)
    print(json.dumps({"seconds": time.perf_counter() - t0}))


# -- driver -------------------------------------------------------------------------------


class Load:
    """``n`` processes spinning on the CPU while the block runs."""

    def __init__(self, n):
        self.n = n
        self.procs = []

    def __enter__(self):
        self.procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(self.n)]
        time.sleep(0.3 if self.n else 0)
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            p.kill()
        for p in self.procs:
            p.wait()


def _run(args, env=None, timeout=600):
    run = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, timeout=timeout,
                         env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})
    if run.returncode != 0:
        raise RuntimeError(f"worker {args} failed:\n{run.stderr[-2000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def make_volumes(folder):
    sys.path.insert(0, str(HERE))
    from volumes import benchmark_volume

    for name, shape in SIZES.items():
        scores, labels = benchmark_volume(shape=shape)
        np.save(Path(folder) / f"{name}_scores.npy", scores)
        np.save(Path(folder) / f"{name}_labels.npy", labels)


def host_load_table(folder, layers, procs, repeat):
    cores = _cores()
    loads = {"idle": 0, "1 busy": 1, "busy/core": cores}
    results = {}  # (layer, size, load) -> list of per-process dicts
    for layer in layers:
        for size in SIZES:
            for load_name, n in loads.items():
                with Load(n):
                    runs = [_run(["--worker", folder, size, str(repeat)], env=LAYERS[layer]) for _ in range(procs)]
                results[(layer, size, load_name)] = runs
                worst = {c: max(r[c] for r in runs) for c in CALLS}
                print(f"  {layer:11s} {size:11s} {load_name:9s} " + " ".join(f"{worst[c]:8.2f}" for c in CALLS)
                      + f"  ({runs[0]['layer']})", flush=True)
    return results, loads


def print_tables(results, loads, layers, cores):
    print(f"\nWorst (best) per-process median, ms; {cores} usable cores; x = over the same layer's idle worst\n")
    for layer in layers:
        print(f"### layer: {layer} ({results[(layer, next(iter(SIZES)), 'idle')][0]['layer']})\n")
        print("| size | host | " + " | ".join(CALLS) + " |")
        print("|---|---|" + "---:|" * len(CALLS))
        for size in SIZES:
            idle = {c: max(r[c] for r in results[(layer, size, "idle")]) for c in CALLS}
            for load_name in loads:
                runs = results[(layer, size, load_name)]
                cells = []
                for c in CALLS:
                    worst, best = max(r[c] for r in runs), min(r[c] for r in runs)
                    ratio = "" if load_name == "idle" else f", {worst / idle[c]:.1f}x"
                    cells.append(f"{worst:.2f} ({best:.2f}{ratio})")
                print(f"| {size} | {load_name} | " + " | ".join(cells) + " |")
        print()
        for size in SIZES:
            for load_name in loads:
                runs = results[(layer, size, load_name)]
                np_line = max(r["numpy p[y>0]+partition"] for r in runs)
                speedups = ", ".join(f"{c} {np_line / max(r[c] for r in runs):.0f}x" for c in CALLS[:4])
                print(f"- {size}, {load_name}: NumPy line over ours: {speedups}")
        print()


def first_call_table(folder, procs):
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        env = {"NUMBA_CACHE_DIR": cache}
        empty = [_run(["--first", folder], env=env)["seconds"]]  # the first one compiles and fills the cache
        for i in range(procs - 1):
            with tempfile.TemporaryDirectory() as fresh:
                empty.append(_run(["--first", folder], env={"NUMBA_CACHE_DIR": fresh})["seconds"])
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "clskern", "warmup", "-q"], check=True, timeout=3000,
                       env={**os.environ, "PYTHONPATH": str(ROOT), **env})
        warm_seconds = time.perf_counter() - t0
        warm = [_run(["--first", folder], env=env)["seconds"] for _ in range(procs)]
    rows.append(("empty cache", empty))
    rows.append(("after clskern warmup", warm))
    print(f"\nFirst calls, 128x128x96 (import clskern + first critical_threshold + first volume_stats), "
          f"{procs} fresh processes; clskern warmup (every dtype) took {warm_seconds:.0f} s\n")
    print("| cache | worst s | best s |")
    print("|---|---:|---:|")
    for name, values in rows:
        print(f"| {name} | {max(values):.2f} | {min(values):.2f} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", nargs=3, metavar=("FOLDER", "SIZE", "REPEAT"), help=argparse.SUPPRESS)
    parser.add_argument("--first", metavar="FOLDER", help=argparse.SUPPRESS)
    parser.add_argument("--layers", nargs="+", choices=tuple(LAYERS), default=list(LAYERS))
    parser.add_argument("--procs", type=int, default=3, help="fresh processes per cell (the worst is shown)")
    parser.add_argument("--repeat", type=int, default=15, help="timed calls per process")
    parser.add_argument("--skip-load", action="store_true", help="skip the host-load table")
    parser.add_argument("--skip-first", action="store_true", help="skip the first-call table")
    parser.add_argument("--torch", action="store_true", help="also time a validation loop beside PyTorch")
    args = parser.parse_args()
    if args.worker:
        return worker(*args.worker[:2], int(args.worker[2]))
    if args.first:
        return first_call(args.first)
    cores = _cores()
    print(f"bench_host_load: {cores} usable cores, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as folder:
        make_volumes(folder)
        if not args.skip_load:
            print("  layer       size        host      " + " ".join(f"{c[:8]:>8s}" for c in CALLS))
            results, loads = host_load_table(folder, args.layers, args.procs, args.repeat)
            print_tables(results, loads, args.layers, cores)
        if not args.skip_first:
            first_call_table(folder, args.procs)
        if args.torch:
            from bench_torch_loop import torch_table  # benchmarks/ is on sys.path when run as a script

            torch_table(folder)
            torch_table(folder, busy=cores)
    return 0


if __name__ == "__main__":
    sys.exit(main())
