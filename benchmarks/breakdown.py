"""Where critical_threshold and volume_stats spend their time, step by step.

    python benchmarks/breakdown.py [--order F|C] [--repeat 20]

Runs the steps of both functions by hand on the benchmark volume, each
sequence right after a streaming pass (so every cache is cold, as in
``ratio_table.py``), and prints the median milliseconds of each step next to
the whole call.
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))

import clskern  # noqa: E402
from baselines import stream_pass  # noqa: E402
from clskern.cpu import _gather  # noqa: E402
from clskern.cpu import _kernels as _cpu_kernels  # noqa: E402
from clskern.cpu._radix import sort_scores  # noqa: E402
from clskern._validate import prepare  # noqa: E402
from volumes import benchmark_volume  # noqa: E402

EPSILON = 0.2


def timed_steps(steps):
    """Run ``(name, function)`` pairs in order; ``{name: seconds}``, last result."""
    seconds, result = {}, None
    for name, function in steps:
        start = time.perf_counter()
        result = function(result)
        seconds[name] = time.perf_counter() - start
    return seconds


def critical_threshold_steps(scores, labels):
    flat = prepare(scores, labels)
    n_fg = int(np.count_nonzero(labels))
    rank = np.array([int(EPSILON * n_fg)])
    return [
        ("gather (labels once, scores near lesions)", lambda _: _gather.gather(*flat)),
        ("select rank k from the rows", lambda g: _gather.select_in_rows(g, rank, np.float32)),
    ]


def volume_stats_steps(scores, labels):
    flat = prepare(scores, labels)
    return [
        ("one pass: histogram + gather", lambda _: _gather.gather(*flat, every_score=True)),
        ("assemble lesion scores", lambda g: (g, _gather.assemble_lesions(g, np.float32)[0])),
        ("background bins", lambda r: (r[1], _cpu_kernels.background_bins(r[0].all_hist, r[0].lesion_hist))),
        ("radix sort of the lesion scores", lambda r: sort_scores(r[0])),
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--order", choices=["F", "C"], default="F")
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    scores, labels = benchmark_volume(order=args.order)
    plans = {
        "critical_threshold": (critical_threshold_steps(scores, labels), lambda: clskern.critical_threshold(scores, labels, EPSILON)),
        "volume_stats": (volume_stats_steps(scores, labels), lambda: clskern.volume_stats(scores, labels)),
    }
    samples = {}
    for r in range(args.repeat + 1):
        for name, (steps, whole) in plans.items():
            stream_pass(scores, labels)
            parts = timed_steps(steps)
            stream_pass(scores, labels)
            parts["whole call"] = timed_steps([("whole call", lambda _: whole())])["whole call"]
            if r:  # the first round compiles or loads the caches
                for step, seconds in parts.items():
                    samples.setdefault(name, {}).setdefault(step, []).append(seconds)
    print(f"{args.order}-order volume, medians of {args.repeat}, each sequence after a streaming pass")
    for name, steps in samples.items():
        print(f"\n{name}")
        for step, values in steps.items():
            print(f"  {step:45s} {np.median(values) * 1e3:6.2f} ms")


if __name__ == "__main__":
    main()
