"""How fast can any exact per-voxel histogram be here? A lower bound for volume_stats.

    python benchmarks/histogram_floor.py [--repeat 20]

``volume_stats`` must add every voxel to a histogram bin. The bin arithmetic
vectorises; the increment ``row[bin] += 1`` cannot (two voxels may share a
bin). This script times that increment alone, with the bins precomputed and
the row resident in L1 (the most favourable case there is), on one thread,
and compares ``n_voxels / threads`` such increments with the streaming pass
of ``ratio_table.py`` on the 512x256x128 benchmark volume: no exact histogram
of this volume can take less, whatever else it does.
"""

import argparse
import os
import sys
import time

import numba
import numpy as np
from numba import njit

sys.path.insert(0, os.path.dirname(__file__))

from baselines import stream_pass  # noqa: E402
from volumes import benchmark_volume  # noqa: E402

from clskern._binning import N_BINS  # noqa: E402
from clskern.cpu._bins import score_bin  # noqa: E402


@njit(cache=True)
def _bins(values):
    out = np.empty(values.size, np.uint16)
    for i in range(values.size):
        out[i] = score_bin(values[i])
    return out


@njit(cache=True)
def _increments(bins, row, times):
    for _ in range(times):
        for i in range(bins.size):
            row[bins[i]] += 1


def median_seconds(function, repeat):
    function()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    scores, labels = benchmark_volume(order="F")
    bins = _bins(scores.ravel(order="F")[:4096])  # the benchmark's own score distribution
    row = np.zeros(N_BINS, np.int32)
    times = 512
    per_increment = median_seconds(lambda: _increments(bins, row, times), args.repeat) / (bins.size * times)
    threads = numba.get_num_threads()
    floor = per_increment * scores.size / threads
    stream = median_seconds(lambda: stream_pass(scores, labels), args.repeat)
    print(f"one histogram increment, bins precomputed, row in L1: {per_increment * 1e9:.2f} ns (one thread)")
    print(f"{scores.size} voxels on {threads} threads: {floor * 1e3:.2f} ms")
    print(f"streaming pass over scores + labels: {stream * 1e3:.2f} ms")
    print(f"lower bound of any exact per-voxel histogram: {floor / stream:.2f} x the streaming pass")


if __name__ == "__main__":
    main()
