"""Cases per second of ``clskern.distributed.stats_to_store``: in-process, 1 and 2 Dask workers.

    PYTHONPATH=$PWD python benchmarks/bench_dask.py [--cases 32] [--shape 160 160 96] [--format nii.gz]

Writes a synthetic data set (``clskern.synthetic``: float32 scores, uint8
labels) to a temporary folder, then times the statistics pass of all cases
into a fresh store: in this process (``scheduler=None``), and on a
``LocalCluster`` of 1 worker (all cores to Numba) and of N single-threaded
worker processes (``cores // N`` Numba threads each). Cluster start-up is
timed apart; every worker passes one warm-up case first (Numba's cache load),
and each configuration is checked to store the same statistics.
"""

import argparse
import os
import sys
import tempfile
import time

import nibabel as nib
import numpy as np

from clskern.distributed import stats_to_store, usable_cores
from clskern.io import pair_cases
from clskern.store import StatsStore
from clskern.synthetic import synthetic_case


def write_cases(root, n, shape, fmt):
    os.makedirs(os.path.join(root, "scores"))
    os.makedirs(os.path.join(root, "labels"))
    rng = np.random.default_rng(0)
    base = [synthetic_case(rng, shape, lesion_free=i == 3) for i in range(4)]  # 4 distinct, reused
    for i in range(n):
        scores, labels = base[i % 4]
        case_id = f"case_{i:04d}"
        if fmt == "npy":
            np.save(os.path.join(root, "scores", case_id + ".npy"), scores)
        else:
            nib.save(nib.Nifti1Image(scores, np.eye(4)), os.path.join(root, "scores", f"{case_id}.{fmt}"))
        nib.save(nib.Nifti1Image(labels, np.eye(4)), os.path.join(root, "labels", f"{case_id}.{fmt if fmt != 'npy' else 'nii'}"))
    return pair_cases(os.path.join(root, "scores"), os.path.join(root, "labels"))[0]


def timed_run(pairs, root, tag, scheduler):
    path = os.path.join(root, f"{tag}.sqlite")
    with StatsStore(path) as store:
        started = time.perf_counter()
        result = stats_to_store(pairs, store, scheduler)
        seconds = time.perf_counter() - started
        stats = store.load()
    return seconds, result.nbytes, stats


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=32)
    parser.add_argument("--shape", type=int, nargs=3, default=(160, 160, 96))
    parser.add_argument("--format", choices=("npy", "nii", "nii.gz"), default="nii.gz")
    parser.add_argument("--workers", type=int, nargs="+", default=(1, 2))
    parser.add_argument("--repeat", type=int, default=2, help="runs per configuration (best is reported)")
    args = parser.parse_args(argv)
    from distributed import Client, LocalCluster

    cores = usable_cores()
    rows = []
    with tempfile.TemporaryDirectory() as root:
        pairs = write_cases(os.path.join(root, "data"), args.cases, tuple(args.shape), args.format)
        reference = None
        configs = [("in-process", None, None)] + [(f"{w} worker(s)", w, None) for w in args.workers]
        for label, workers, _ in configs:
            cluster = client = None
            startup = 0.0
            if workers is not None:
                started = time.perf_counter()
                cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                       host="127.0.0.1", dashboard_address=None)
                client = Client(cluster)
                client.wait_for_workers(workers)
                startup = time.perf_counter() - started
                warm = pairs[:workers]  # every worker loads Numba's cache once
                with StatsStore(os.path.join(root, f"warm{workers}.sqlite")) as store:
                    stats_to_store(warm, store, client)
            else:
                timed_run(pairs[:1], root, "warm-local", None)
            best = None
            for r in range(args.repeat):
                seconds, nbytes, stats = timed_run(pairs, root, f"{workers}-{r}", client)
                if reference is None:
                    reference = stats
                assert stats == reference, f"{label}: statistics differ from the in-process run"
                best = seconds if best is None else min(best, seconds)
            rows.append((label, best, nbytes, startup))
            if client is not None:
                client.close()
                cluster.close()
    print(f"{args.cases} cases of {tuple(args.shape)} ({args.format}), {cores} cores, "
          f"Python {sys.version.split()[0]}, best of {args.repeat}")
    print("| run | seconds | cases/s | MB/s (decompressed) | cluster start-up s |")
    print("|---|---|---|---|---|")
    for label, seconds, nbytes, startup in rows:
        print(f"| {label} | {seconds:.2f} | {args.cases / seconds:.1f} | {nbytes / 1e6 / seconds:.0f} | "
              f"{startup:.1f} |" if startup else
              f"| {label} | {seconds:.2f} | {args.cases / seconds:.1f} | {nbytes / 1e6 / seconds:.0f} | - |")


if __name__ == "__main__":
    main()
