"""Per-case statistics on a Dask cluster, written to one resumable store, then calibrated.

    python python_api/dask_stats.py                          # a LocalCluster on this machine
    python python_api/dask_stats.py --scheduler tcp://HOST:8786

Workers read the files themselves (shared storage); only file paths go out
and each case's statistics (kilobytes) come back. Stop it and run it again:
stored cases are not read twice.
"""

import argparse
import os
import tempfile

from clskern import calibrate
from clskern.distributed import stats_to_store
from clskern.io import pair_cases
from clskern.store import StatsStore
from clskern.synthetic import write_dataset


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scheduler", default="local", help="scheduler address, or 'local' (default)")
    parser.add_argument("--data", help="folder with scores/ and labels/ (default: synthetic cases)")
    parser.add_argument("--cases", type=int, default=12, help="synthetic cases to write")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        if args.data is None:
            args.data = tmp
            write_dataset(tmp, args.cases, shape=(32, 32, 24))
        pairs, _ = pair_cases(os.path.join(args.data, "scores"), os.path.join(args.data, "labels"))
        with StatsStore(os.path.join(tmp, "stats.sqlite")) as store:
            result = stats_to_store(pairs, store, scheduler=args.scheduler)
            calibration = calibrate(store.lesion_stats(), epsilon=0.2, alpha=0.2)
        print(f"{result.read} cases read on the cluster, {result.reused} already stored; "
              f"threshold {calibration.threshold!r}")
        return calibration


if __name__ == "__main__":
    main()
