"""Print clskern's CPU figures as ratios to the memory-limit pass, all in one run.

    python benchmarks/ratio_table.py [--repeat 30]

For each memory order of the 512x256x128 float32 benchmark volume it times
(median of ``--repeat`` runs, interleaved so machine noise hits all alike) the
streaming pass, ``critical_threshold``, ``volume_stats``, NumPy's boolean index
+ partition and the authors' bisection, checks every answer against the
sorted-order reference, and prints a Markdown table. It also times a fresh
process's first ``critical_threshold`` call with Numba's cache warm.
"""

import argparse
import os
import subprocess
import sys
import functools
import time

import numba
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))

import clskern  # noqa: E402
from baselines import authors_bisection, numpy_partition, stream_pass  # noqa: E402
from volumes import SHAPE, benchmark_volume  # noqa: E402

EPSILON = 0.2

STARTUP = """
import time; t0 = time.perf_counter()
import numpy as np, clskern
scores = np.random.default_rng(0).random((64, 64, 64), dtype=np.float32)
labels = (scores > 0.9).astype(np.uint8)
t1 = time.perf_counter(); clskern.critical_threshold(scores, labels, 0.2); t2 = time.perf_counter()
print(t2 - t0, t2 - t1)
"""


def timed(function, *args):
    start = time.perf_counter()
    result = function(*args)
    return time.perf_counter() - start, result


def measure(order, repeat):
    scores, labels = benchmark_volume(order=order)
    n_fg = int(np.count_nonzero(labels))
    expected = float(np.sort(scores[labels > 0])[int(EPSILON * n_fg)])
    cases = {
        "stream pass (memory limit)": (stream_pass, (scores, labels), None),
        "clskern.critical_threshold": (clskern.critical_threshold, (scores, labels, EPSILON), lambda r: r == expected),
        "clskern.volume_stats (connectivity=None)": (
            functools.partial(clskern.volume_stats, connectivity=None), (scores, labels),
            lambda r: r.critical_threshold(EPSILON) == expected),
        "clskern.volume_stats (default: + lesions)": (
            clskern.volume_stats, (scores, labels), lambda r: r.critical_threshold(EPSILON) == expected),
        "p[y > 0] + np.partition": (numpy_partition, (scores, labels, EPSILON), lambda r: r == expected),
        "authors' bisection (1e-4)": (authors_bisection, (scores, labels, EPSILON), lambda r: abs(r - expected) < 1e-3),
    }
    times = {name: [] for name in cases}
    slow = {"p[y > 0] + np.partition", "authors' bisection (1e-4)"}
    for r in range(repeat):
        for name, (function, args, check) in cases.items():
            if name in slow and r >= max(3, repeat // 5):
                continue
            seconds, result = timed(function, *args)
            if check is not None and not check(result):
                raise SystemExit(f"{name} gave a wrong answer on the {order}-order volume")
            times[name].append(seconds)
    return {name: float(np.median(t)) for name, t in times.items()}, scores.nbytes + labels.nbytes


def startup_seconds(runs=3):
    env = dict(os.environ)
    subprocess.run([sys.executable, "-c", STARTUP], check=True, capture_output=True, env=env)  # fill the cache
    results = []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", STARTUP], check=True, capture_output=True, text=True, env=env)
        results.append([float(x) for x in out.stdout.split()])
    return np.median(np.array(results), axis=0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    from clskern._threads import threading_layer

    layer = threading_layer()  # clskern's choice of layer, before anything starts Numba's pool
    print(f"volume {SHAPE} float32 + uint8 labels, epsilon={EPSILON}, numba threads={numba.get_num_threads()}, "
          f"layer {layer}\n")
    print("| order | function | median ms | GB/s | x stream pass |")
    print("|---|---|---:|---:|---:|")
    for order in ("F", "C"):
        medians, nbytes = measure(order, args.repeat)
        base = medians["stream pass (memory limit)"]
        for name, seconds in medians.items():
            print(f"| {order} | {name} | {seconds * 1e3:.2f} | {nbytes / seconds / 1e9:.1f} | {seconds / base:.2f} |")
    total, call = startup_seconds()
    print(f"\nfresh process, Numba cache warm: import + first critical_threshold {total:.3f} s (the call alone {call:.3f} s)")


if __name__ == "__main__":
    main()
