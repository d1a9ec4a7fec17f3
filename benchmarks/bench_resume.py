"""Resuming a complete store: `clskern stats` over cases it already holds (issue 10).

Builds N small cases (16x16x16 float32 .nii.gz scores, uint8 .nii.gz labels) in a
temporary folder, then, for each repetition, times as subprocesses of this
interpreter (`python -m clskern stats ... -q`, what a user runs):

- first: a run into a fresh store (every case hashed, read, passed, stored);
- re-run: the same command again over the complete store (every file hashed,
  every fingerprint looked up, nothing read);
- start-up: `python -c "import clskern.cli.main, clskern.io.batch, clskern.store"`,
  the floor of any run (interpreter, NumPy, Numba, nibabel imports);
- in-process: the same two runs through `clskern.cli.main.main` in this
  process (imports and Numba's thread pool already up): the work alone.

A run that compiles nothing is measured: one untimed run first fills Numba's
cache. The files are in the page cache (just written), as on a re-run right
after a first one.

    .venv/bin/python benchmarks/bench_resume.py [--cases 1000] [--repeat 5] [--shape 16 16 16] [--profile]

It runs the clskern of the tree it sits in (its root goes first on the path).

``--profile`` prints a cProfile of the re-run's work, in-process.
"""

import argparse
import gzip
import os
import statistics
import subprocess
import sys
import tempfile
import time

import nibabel as nib
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
SHAPE = (16, 16, 16)


def build(root, n, shape=SHAPE, seed=0):
    scores, labels = os.path.join(root, "scores"), os.path.join(root, "labels")
    os.makedirs(scores)
    os.makedirs(labels)
    rng = np.random.default_rng(seed)
    for i in range(n):
        p = rng.random(shape, dtype=np.float32)
        y = (p > 0.9).astype(np.uint8)
        for folder, array in ((scores, p), (labels, y)):
            data = nib.Nifti1Image(array, np.eye(4)).to_bytes()
            with open(os.path.join(folder, f"case_{i:04d}.nii.gz"), "wb") as f:
                f.write(gzip.compress(data, compresslevel=6, mtime=0))
    return scores, labels


def timed(cmd):
    started = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=REPO)  # `python -m clskern` from REPO: this tree's clskern
    return time.perf_counter() - started


def timed_in_process(argv):
    from clskern.cli.main import main as cli

    started = time.perf_counter()
    assert cli(argv) == 0
    return time.perf_counter() - started


def _remove_store(store):
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(store + suffix):
            os.unlink(store + suffix)


def profile(scores, labels, store):
    import cProfile
    import pstats

    from clskern.cli.main import main

    assert main(["stats", "--scores", scores, "--labels", labels, "-o", store, "-q"]) == 0
    pr = cProfile.Profile()
    pr.enable()
    assert main(["stats", "--scores", scores, "--labels", labels, "-o", store, "-q"]) == 0
    pr.disable()
    pstats.Stats(pr).sort_stats("cumulative").print_stats(25)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--shape", type=int, nargs="+", default=list(SHAPE))
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="clskern-resume-") as root:
        scores, labels = build(root, args.cases, tuple(args.shape))
        nbytes = sum(os.path.getsize(os.path.join(d, f)) for d in (scores, labels) for f in os.listdir(d))
        args_of = ["stats", "--scores", scores, "--labels", labels, "-q", "-o"]
        stats = [sys.executable, "-m", "clskern", *args_of]
        store = os.path.join(root, "store.sqlite")
        timed(stats + [os.path.join(root, "warm.sqlite")])  # fills Numba's cache; not counted
        if args.profile:
            profile(scores, labels, os.path.join(root, "profile.sqlite"))
            return
        timed_in_process(args_of + [os.path.join(root, "warm2.sqlite")])  # imports, thread pool; not counted
        rows = []
        for rep in range(args.repeat):
            _remove_store(store)
            first = timed(stats + [store])
            rerun = timed(stats + [store])
            start = timed([sys.executable, "-c", "import clskern.cli.main, clskern.io.batch, clskern.store"])
            _remove_store(store)
            first_in = timed_in_process(args_of + [store])
            rerun_in = timed_in_process(args_of + [store])
            rows.append((first, rerun, start, first_in, rerun_in))
        print(f"{args.cases} cases {'x'.join(map(str, args.shape))} float32 .nii.gz scores + uint8 .nii.gz labels "
              f"({nbytes / 1e6:.1f} MB on disk), {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
        head = ("rep", "first run s", "re-run s", "ratio", "start-up s", "in-process first s", "re-run s", "ratio")
        print(" | ".join(f"{h:>{max(5, len(h))}}" for h in head))
        print("-|-".join("-" * max(5, len(h)) for h in head))

        def line(label, r):
            cells = (label, f"{r[0]:.2f}", f"{r[1]:.2f}", f"{r[1] / r[0]:.1%}", f"{r[2]:.2f}",
                     f"{r[3]:.2f}", f"{r[4]:.3f}", f"{r[4] / r[3]:.1%}")
            print(" | ".join(f"{c:>{max(5, len(h))}}" for c, h in zip(cells, head)))

        for i, r in enumerate(rows):
            line(str(i), r)
        line("med", [statistics.median(c) for c in zip(*rows)])


if __name__ == "__main__":
    main()
