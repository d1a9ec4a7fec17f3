"""class_stats (labels read once, one bit per class) against one volume_stats per class on np.isin masks.

    python benchmarks/bench_classes.py [--shape 240 240 155] [--repeat 5]

BraTS-like: channel-first float32 scores (4, *shape), uint8 labels 0..3, three
regions WT = (1, 2, 3), TC = (1, 3), ET = (3,). Prints min and median seconds
of each way and checks that both give equal statistics.
"""

import argparse
import time

import numpy as np

import clskern
from clskern.classes import class_bits, class_stats

CLASSES = {"WT": (1, (1, 2, 3)), "TC": (2, (1, 3)), "ET": (3, (3,))}


def _time(f, repeat):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return min(times), float(np.median(times))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", type=int, nargs=3, default=(240, 240, 155))
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    shape = tuple(args.shape)
    labels = np.zeros(shape, np.uint8)
    x, y, z = (np.arange(n) for n in shape)
    r = np.sqrt(((x[:, None, None] - shape[0] / 2) / 30) ** 2 + ((y[None, :, None] - shape[1] / 2) / 25) ** 2
                + ((z[None, None, :] - shape[2] / 2) / 20) ** 2)
    labels[r < 1.0] = 2
    labels[r < 0.6] = 1
    labels[r < 0.3] = 3
    scores = rng.random((4, *shape), dtype=np.float32)

    def separate():
        return {n: clskern.volume_stats(scores[c], np.isin(labels, v)) for n, (c, v) in CLASSES.items()}

    def once():
        return class_stats(scores, labels, CLASSES)

    assert separate() == once()
    rows = [
        ("class_bits (the one pass over the labels)", lambda: class_bits(labels, CLASSES)),
        ("np.isin masks, 3 classes", lambda: [np.isin(labels, v) for _, v in CLASSES.values()]),
        ("class_stats (labels once)", once),
        ("3 x volume_stats(np.isin)", separate),
        ("1 x volume_stats (one channel, uint8 labels)", lambda: clskern.volume_stats(scores[1], labels)),
    ]
    print(f"shape {shape}, {labels.size / 1e6:.1f} M voxels, repeat {args.repeat} (interleaved)")
    times = {name: [] for name, _ in rows}
    for _ in range(args.repeat):  # interleaved: a busy machine slows every row alike
        for name, f in rows:
            times[name] += [_time(f, 1)[0]]
    for name, _ in rows:
        best, median = min(times[name]), float(np.median(times[name]))
        print(f"  {name:46s} min {best * 1e3:8.1f} ms   median {median * 1e3:8.1f} ms")


if __name__ == "__main__":
    main()
