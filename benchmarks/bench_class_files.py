"""Per-class statistics from files: each case's files read once, against one read per channel.

    python benchmarks/bench_class_files.py [--cases 6] [--shape 160 160 96] [--repeat 3]

BraTS-like cases written as gzipped NIfTI (float32 scores with 4 channels on
the last axis, uint8 labels 0..3, regions WT, TC, ET reading channels 1-3).
``collect_class_stats`` (``load_case_channels``: labels and scores inflated
once per case) is timed against the way it read before, ``load_case`` once per
channel (labels and scores inflated 3 times), in turn in the same run. Both
must give equal statistics. Prints min and median seconds per case and the
ratio.
"""

import argparse
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from clskern.classes import class_stats_from_channels
from clskern.io.cases import load_case, pair_cases
from clskern.io.class_batch import collect_class_stats

CLASSES = {"WT": (1, (1, 2, 3)), "TC": (2, (1, 3)), "ET": (3, (3,))}
ORDER = [1, 2, 3]


def write_cases(root, n, shape, seed=0):
    rng = np.random.default_rng(seed)
    (root / "scores").mkdir()
    (root / "labels").mkdir()
    x, y, z = (np.arange(k) for k in shape)
    r = np.sqrt(((x[:, None, None] - shape[0] / 2) / 30) ** 2 + ((y[None, :, None] - shape[1] / 2) / 25) ** 2
                + ((z[None, None, :] - shape[2] / 2) / 20) ** 2)
    for i in range(n):
        labels = np.zeros(shape, np.uint8)
        labels[r < 1.0], labels[r < 0.6], labels[r < 0.3] = 2, 1, 3
        scores = rng.random((*shape, 4), dtype=np.float32)
        nib.save(nib.Nifti1Image(scores, np.eye(4)), root / "scores" / f"c{i:02d}.nii.gz")
        nib.save(nib.Nifti1Image(labels, np.eye(4)), root / "labels" / f"c{i:02d}.nii.gz")


def per_channel_reads(pairs):
    """The way per-class statistics were read before: load_case once per channel."""
    out = {}
    for pair in pairs:
        cases = {c: load_case(pair, channel=c) for c in (1, 2, 3)}
        out[pair.case_id] = class_stats_from_channels({c: k.scores for c, k in cases.items()}, cases[1].labels,
                                                      CLASSES, name=pair.case_id)
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=6)
    parser.add_argument("--shape", type=int, nargs=3, default=(160, 160, 96))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_cases(root, args.cases, tuple(args.shape))
        pairs, _ = pair_cases(root / "scores", root / "labels")
        once = lambda: collect_class_stats(pairs, CLASSES, regions_class_order=ORDER).stats  # noqa: E731
        assert once() == per_channel_reads(pairs)
        times = {"once": [], "per channel": []}
        for _ in range(args.repeat):  # interleaved: the machine's noise hits both alike
            for name, f in (("once", once), ("per channel", lambda: per_channel_reads(pairs))):
                start = time.perf_counter()
                f()
                times[name].append((time.perf_counter() - start) / args.cases)
    print(f"{args.cases} cases of shape {tuple(args.shape)} x 4 channels (.nii.gz), 3 classes, "
          f"repeat {args.repeat}")
    print("| way | min s/case | median s/case |")
    print("|---|---|---|")
    for name, t in times.items():
        print(f"| {name} | {min(t):.3f} | {np.median(t):.3f} |")
    print(f"per channel / once (min): {min(times['per channel']) / min(times['once']):.2f} x")


if __name__ == "__main__":
    main()
