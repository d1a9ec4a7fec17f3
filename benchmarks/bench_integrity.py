"""What the readers' integrity checks cost (issue 10): CRC-32 of npz members, gzip trailer and
trailing-data checks, declared sizes checked before inflating.

Builds N cases of synthetic float32 scores (default 128x128x64) as ``.nii.gz`` (scores and
uint8 labels) and as nnU-Net ``.npz`` (key ``probabilities``, shape ``(2, z, y, x)``), both
stored (``np.savez``) and deflated (``np.savez_compressed``), then times, in rounds that run
each variant in a fresh process of its own, in turn (so every variant sees the same
conditions: Numba's OpenMP threads, page cache, neighbours on a shared machine):

- ``checks``: ``clskern.io.read_nifti`` / ``read_npz`` as they are;
- ``no CRC``: the same code with the npz member CRC-32 check replaced by a no-op
  (``clskern.io._gzip.check_crc32``, the one place it is done; for ``.nii.gz`` libdeflate and
  zlib check the gzip CRC-32 inside the library, which cannot be turned off, so the column is
  the same code);
- ``before``: the readers of the commit before the checks (``--before REV``, default the
  parent of the commit that added them), extracted with ``git archive`` and run in a
  subprocess per round (everything the checks added is then off, .nii.gz included).

``volume_stats`` runs on one Numba thread by default (``--threads``): with its OpenMP threads
on every core of a shared 2-core VM, one descheduled thread stalls the others at each barrier
and the pass moved by 50x between processes, which drowned what is measured here.

Each timed unit reads every case's scores (and for ``.nii.gz`` its labels: what ``clskern
stats`` reads per case), and ``+ stats`` adds ``volume_stats`` on them, the per-case work of
``clskern stats`` end to end minus process start and the store.

Usage: PYTHONPATH=. python benchmarks/bench_integrity.py [--cases 20] [--shape 128 128 64]
       [--rounds 7] [--repeat 2] [--threads 1] [--data DIR] [--before REV]
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KINDS = ("nii.gz", "npz stored", "npz deflated")


def build(data, n, shape):
    import nibabel as nib

    from clskern.synthetic import affine, synthetic_case

    os.makedirs(data, exist_ok=True)
    marker = os.path.join(data, f"built-{n}-{'x'.join(map(str, shape))}")
    if os.path.exists(marker):
        return
    rng = np.random.default_rng(10)
    for i in range(n):
        p, y = synthetic_case(rng, shape)
        nib.save(nib.Nifti1Image(p, affine(shape)), os.path.join(data, f"c{i:03d}_scores.nii.gz"))
        nib.save(nib.Nifti1Image(y.astype(np.uint8), affine(shape)), os.path.join(data, f"c{i:03d}_labels.nii.gz"))
        probs = np.stack([1 - p.T, p.T]).astype(np.float32)  # nnU-Net: (C, z, y, x)
        np.savez(os.path.join(data, f"c{i:03d}_stored.npz"), probabilities=probs)
        np.savez_compressed(os.path.join(data, f"c{i:03d}_deflated.npz"), probabilities=probs)
    open(marker, "w").close()


def _unit(data, n, kind, stats):
    """One timed unit: read (and with ``stats`` gather) every case of one kind; seconds."""
    from clskern.io import read_nifti, read_npz

    if stats:
        from clskern import volume_stats
    t = time.perf_counter()
    for i in range(n):
        labels = read_nifti(os.path.join(data, f"c{i:03d}_labels.nii.gz")).array
        if kind == "nii.gz":
            scores = read_nifti(os.path.join(data, f"c{i:03d}_scores.nii.gz")).array
        else:
            name = "stored" if kind == "npz stored" else "deflated"
            scores = read_npz(os.path.join(data, f"c{i:03d}_{name}.npz"))
        if stats:
            volume_stats(scores, labels)
    return time.perf_counter() - t


def _warm(data):
    """Imports and Numba compilation (npz scores are a transposed view: their own signature)."""
    for stats in (False, True):
        for kind in KINDS:
            _unit(data, 1, kind, stats)


def worker(data, n, repeat, variant):
    """Time every kind ``repeat`` times in this process; print JSON.

    ``variant`` "no CRC" replaces the npz CRC-32 check by a no-op; the clskern imported is
    whichever ``PYTHONPATH`` names (this checkout, or the ``before`` tree).
    """
    if variant == "no CRC":
        from clskern.io import _gzip

        _gzip.check_crc32 = lambda data, expected, path, what: None
    _warm(data)
    out = {}
    for stats in (False, True):
        for kind in KINDS:
            out[f"{kind}|{stats}"] = [_unit(data, n, kind, stats) for _ in range(repeat)]
    print(json.dumps(out))


def before_tree(rev):
    """The ``clskern`` package at ``rev``, extracted into a temporary folder (the index is not touched)."""
    tree = tempfile.mkdtemp(prefix="clskern-before-")
    archive = subprocess.run(["git", "-C", REPO, "archive", rev, "clskern"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", tree], input=archive, check=True)
    return tree


def default_before():
    """The parent of the commit that added the CRC-32 check of npz members."""
    log = subprocess.run(
        ["git", "-C", REPO, "log", "--format=%H", "-S", "check_crc32(data, info.CRC", "--", "clskern/io/arrays.py"],
        check=True, capture_output=True, text=True,
    ).stdout.split()
    return f"{log[-1]}^" if log else "HEAD"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--shape", type=int, nargs=3, default=(128, 128, 64))
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=2, help="timed units per kind in each process")
    parser.add_argument("--data", default=os.path.join(tempfile.gettempdir(), "clskern-bench-integrity"))
    parser.add_argument("--threads", type=int, default=1, help="Numba threads of volume_stats (see the docstring)")
    parser.add_argument("--before", default=None, help="git revision of the readers without the checks")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--variant", default="checks", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.data, args.cases, args.repeat, args.variant)

    build(args.data, args.cases, tuple(args.shape))
    rev = args.before or default_before()
    tree = before_tree(rev)
    variants = {"checks": REPO, "no CRC": REPO, "before": tree}
    times = {}
    try:
        for r in range(args.rounds):
            names = list(variants)
            for name in names[r % 3 :] + names[: r % 3]:  # each variant first in turn
                run = subprocess.run(
                    [sys.executable, os.path.abspath(__file__), "--worker", "--variant", name, "--data", args.data,
                     "--cases", str(args.cases), "--repeat", str(args.repeat)],
                    env=dict(os.environ, PYTHONPATH=variants[name], NUMBA_NUM_THREADS=str(args.threads)), check=True, capture_output=True, text=True,
                    cwd=variants[name],
                )
                for key, values in json.loads(run.stdout.splitlines()[-1]).items():
                    kind, stats = key.split("|")
                    times.setdefault((kind, stats == "True", name), []).extend(values)
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    finally:
        shutil.rmtree(tree, ignore_errors=True)

    print(f"{args.cases} cases of {'x'.join(map(str, args.shape))} float32 scores (+ uint8 labels); "
          f"{args.rounds} rounds, each running the 3 variants in a process of their own, in turn, "
          f"{args.repeat} units per kind and process, volume_stats on {args.threads} Numba thread(s); "
          f"median seconds of a unit; before = {rev}")
    print("| what | kind | checks (s) | no CRC (s) | before (s) | checks / no CRC | checks / before |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for stats in (False, True):
        for kind in KINDS:
            med = {v: statistics.median(times[(kind, stats, v)]) for v in variants}
            what = "read + volume_stats" if stats else "read"
            print(f"| {what} | {kind} | {med['checks']:.3f} | {med['no CRC']:.3f} | {med['before']:.3f} | "
                  f"{med['checks'] / med['no CRC']:.3f} | {med['checks'] / med['before']:.3f} |")


if __name__ == "__main__":
    main()
