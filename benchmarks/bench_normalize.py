"""Time score normalisation (SPEC 1d) on the benchmark volume: what normalize="minmax" costs.

    python benchmarks/bench_normalize.py [--repeat 30]

For each memory order of the 512x256x128 float32 benchmark volume it times,
interleaved (so machine noise hits all alike), the streaming pass, the score
range pass (``clskern.score_range``), ``critical_threshold`` and
``apply_threshold`` with ``normalize="none"`` and ``"minmax"``, and prints the
minimum and median of each in ms. Answers are checked against a per-voxel
float64 ``q`` first.
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))

import clskern  # noqa: E402
from baselines import stream_pass  # noqa: E402
from volumes import benchmark_volume  # noqa: E402

EPSILON = 0.2


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    print("| order | call | min ms | median ms |")
    print("|---|---|---|---|")
    for order in ("F", "C"):
        scores, labels = benchmark_volume(order=order)
        q = (scores.astype(np.float64) - float(scores.min())) / (float(scores.max()) - float(scores.min()))
        t = float(np.sort(q[labels > 0])[int(EPSILON * np.count_nonzero(labels))])
        assert clskern.critical_threshold(scores, labels, EPSILON, normalize="minmax") == t
        assert np.array_equal(clskern.apply_threshold(scores, t, normalize="minmax"), q >= t)
        del q
        out = np.empty(scores.shape, np.uint8, order=order)
        calls = {
            "stream pass (memory limit)": lambda: stream_pass(scores, labels),
            "score_range": lambda: clskern.score_range(scores),
            "critical_threshold, none": lambda: clskern.critical_threshold(scores, labels, EPSILON),
            "critical_threshold, minmax": lambda: clskern.critical_threshold(
                scores, labels, EPSILON, normalize="minmax"),
            "apply_threshold, none": lambda: clskern.apply_threshold(scores, 0.5, out=out),
            "apply_threshold, minmax": lambda: clskern.apply_threshold(scores, 0.5, normalize="minmax", out=out),
            "volume_stats (range included)": lambda: clskern.volume_stats(scores, labels, connectivity=None),
        }
        times = {name: [] for name in calls}
        for call in calls.values():
            call()
        for _ in range(args.repeat):
            for name, call in calls.items():
                start = time.perf_counter()
                call()
                times[name].append(time.perf_counter() - start)
        for name, values in times.items():
            print(f"| {order} | {name} | {min(values) * 1e3:.2f} | {np.median(values) * 1e3:.2f} |")


if __name__ == "__main__":
    main()
