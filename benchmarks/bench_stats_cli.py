"""End-to-end figures for issue 3: ``clskern stats`` throughput, peak memory, re-calibration.

Prints a table (and writes nothing else outside ``--data``):

1. gzip decompression of one score volume per backend (stdlib zlib, isal, libdeflate);
2. ``clskern stats`` over N cases of 256x256x128 ``.nii.gz`` (a fresh store, process start
   included) against a plain loop of ``nibabel.load`` + ``p[y > 0]`` + ``np.partition`` in the
   same run, both in MB/s of decompressed scores + labels;
3. peak resident memory of ``clskern stats`` on 512x512x300 cases, against one volume;
4. re-calibrating from a store of 1000 cases (``clskern calibrate --store``, process start
   included, and the in-process load + calibrate).

Usage: PYTHONPATH=. python benchmarks/bench_stats_cli.py [--cases 20] [--big-cases 3] [--data DIR]
"""

import argparse
import os
import resource
import shutil
import subprocess
import sys
import time

import nibabel as nib
import numpy as np

import clskern
from clskern.io import collect_stats, gunzip, gzip_backends, pair_cases, read_nifti
from clskern.store import StatsStore
from clskern.synthetic import affine, synthetic_case

# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent through fork + exec
LAUNCH = (
    "import sys\n"
    "from clskern.cli.main import main\n"
    "code = main(sys.argv[1:])\n"
    "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
    "print('MAXRSS_KB', hwm, file=sys.stderr)\n"
    "sys.exit(code)\n"
)


PLAIN = (
    "import os, sys\n"
    "import nibabel as nib, numpy as np\n"
    "scores, labels = sys.argv[1:3]\n"
    "for name in sorted(os.listdir(scores)):\n"
    "    p = np.asanyarray(nib.load(os.path.join(scores, name)).dataobj)\n"
    "    y = np.asanyarray(nib.load(os.path.join(labels, name)).dataobj)\n"
    "    lesion = p[y > 0]\n"
    "    if lesion.size:\n"
    "        np.partition(lesion, min(int(0.2 * lesion.size), lesion.size - 1))\n"
    "print('MAXRSS_KB', 0, file=sys.stderr)\n"
)


def clskern_cmd(*argv, script=LAUNCH):
    """Run the command (or ``script``) in a fresh process; (seconds, peak RSS in MB)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.getcwd(), *sys.path])}
    started = time.perf_counter()
    run = subprocess.run([sys.executable, "-c", script, *map(str, argv)], capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    if run.returncode:
        raise SystemExit(f"clskern {' '.join(map(str, argv))} failed:\n{run.stderr}")
    kb = [int(line.split()[1]) for line in run.stderr.splitlines() if line.startswith("MAXRSS_KB")][0]
    return seconds, kb / 1024


def make_cases(directory, n, shape, distinct, seed=0):
    """``n`` cases, ``distinct`` of them generated and the rest copies under new names."""
    s, l = os.path.join(directory, "scores"), os.path.join(directory, "labels")
    if os.path.isdir(s) and len(os.listdir(s)) == n:
        return s, l
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(s)
    os.makedirs(l)
    rng = np.random.default_rng(seed)
    a = affine(shape)
    for i in range(n):
        name = f"case_{i:03d}.nii.gz"
        if i < distinct:
            p, y = synthetic_case(rng, shape)
            nib.save(nib.Nifti1Image(p, a), os.path.join(s, name))
            nib.save(nib.Nifti1Image(y, a), os.path.join(l, name))
        else:
            src = f"case_{i % distinct:03d}.nii.gz"
            shutil.copy(os.path.join(s, src), os.path.join(s, name))
            shutil.copy(os.path.join(l, src), os.path.join(l, name))
    return s, l


def make_big_cases(directory, n, shape=(512, 512, 300), seed=1):
    """Large cases cheaply: a quarter-resolution synthetic case, upsampled, plus fine noise."""
    s, l = os.path.join(directory, "scores"), os.path.join(directory, "labels")
    if os.path.isdir(s) and len(os.listdir(s)) == n:
        return s, l
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(s)
    os.makedirs(l)
    rng = np.random.default_rng(seed)
    small = tuple(n_ // 4 for n_ in shape)
    for i in range(n):
        p, y = synthetic_case(rng, small)
        p = np.asfortranarray(np.kron(p, np.ones((4, 4, 4), np.float32)))
        p += rng.random(shape, dtype=np.float32) * np.float32(1e-4)
        y = np.asfortranarray(np.kron(y, np.ones((4, 4, 4), np.uint8)))
        nib.save(nib.Nifti1Image(p, affine(shape)), os.path.join(s, f"big_{i}.nii.gz"))
        nib.save(nib.Nifti1Image(y, affine(shape)), os.path.join(l, f"big_{i}.nii.gz"))
    return s, l


def plain_loop(scores_dir, labels_dir, epsilon=0.2):
    """The baseline: nibabel.load + p[y > 0] + np.partition, per case."""
    nbytes = 0
    started = time.perf_counter()
    for name in sorted(os.listdir(scores_dir)):
        p = np.asanyarray(nib.load(os.path.join(scores_dir, name)).dataobj)
        y = np.asanyarray(nib.load(os.path.join(labels_dir, name)).dataobj)
        lesion = p[y > 0]
        if lesion.size:
            k = int(np.floor(epsilon * lesion.size))
            np.partition(lesion, min(k, lesion.size - 1))
        nbytes += p.nbytes + y.nbytes
    return time.perf_counter() - started, nbytes


def decompression(path):
    """MB/s of decompressed bytes per way of reading one ``.nii.gz`` (best of 3)."""
    raw = open(path, "rb").read()
    size = len(gunzip(raw, path))
    ways = [(f"clskern.io.gunzip, backend {b}", lambda b=b: gunzip(raw, path, b)) for b in gzip_backends()]
    ways.append(("nibabel.load + np.asanyarray(dataobj) (stdlib gzip)",
                 lambda: np.asanyarray(nib.load(path).dataobj)))
    try:
        import indexed_gzip

        def whole_file():
            with indexed_gzip.IndexedGzipFile(path) as f:
                return f.read()

        ways.append(("indexed_gzip, whole file", whole_file))
    except ImportError:
        pass
    ways.append(("clskern.io.read_nifti (mmap + fastest backend)", lambda: read_nifti(path)))
    return [(name, size / 1e6 / min(_timed(fn) for _ in range(3))) for name, fn in ways]


def _timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def recalibration(directory, n=1000):
    store = os.path.join(directory, "store1000.sqlite")
    if not os.path.exists(store):
        rng = np.random.default_rng(5)
        with StatsStore(store) as st:
            for i in range(n):
                p, y = synthetic_case(rng, (64, 64, 48), lesion_free=i % 8 == 7)
                st.put(f"c{i:04d}", "synthetic", clskern.volume_stats(p, y, name=f"c{i:04d}"))
    out = os.path.join(directory, "cal1000.json")
    cmd, _ = clskern_cmd("calibrate", "--store", store, "--epsilon", 0.2, "--alpha", 0.1, "-o", out,
                         "--overwrite", "-q")
    started = time.perf_counter()
    with StatsStore(store) as st:
        volumes = st.lesion_stats()
    loaded = time.perf_counter() - started
    clskern.calibrate(volumes, epsilon=0.3, alpha=0.05)
    total = time.perf_counter() - started
    return cmd, loaded, total, os.path.getsize(store) / 1e6


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="/tmp/clskern-bench", help="where generated data is kept")
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--shape", type=int, nargs=3, default=[256, 256, 128])
    parser.add_argument("--big-cases", type=int, default=3, help="512x512x300 cases (0: skip)")
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", nargs="+", choices=["throughput", "memory", "recalibration"],
                        default=["throughput", "memory", "recalibration"])
    args = parser.parse_args()
    os.makedirs(args.data, exist_ok=True)
    print(f"clskern {clskern.__version__}, {os.cpu_count()} CPUs, numpy {np.__version__}, nibabel {nib.__version__}, "
          f"gzip backends {', '.join(gzip_backends())}; load average at start {os.getloadavg()[0]:.1f}")

    if "throughput" in args.only:
        throughput(args)
    if args.big_cases and "memory" in args.only:
        memory(args)
    if "recalibration" in args.only:
        cmd, loaded, total, size = recalibration(args.data)
        print(f"\n4. re-calibrating from a store of 1000 cases of 64x64x48 ({size:.0f} MB)")
        print(f"   clskern calibrate --store (process start included)  {cmd:6.2f} s")
        print(f"   in process: read the lesion scores {loaded:6.3f} s, read + calibrate {total:6.3f} s")


def throughput(args):
    s, l = make_cases(os.path.join(args.data, "mid"), args.cases, tuple(args.shape), distinct=4)
    first = os.path.join(s, sorted(os.listdir(s))[0])
    print(f"\n1. gzip decompression of one {'x'.join(map(str, args.shape))} float32 score volume "
          f"({os.path.getsize(first) / 1e6:.1f} MB compressed)")
    for name, rate in decompression(first):
        print(f"   {name:56s} {rate:7.0f} MB/s")

    store = os.path.join(args.data, "mid.sqlite")
    clskern_cmd("stats", "--scores", s, "--labels", l, "-o", store, "--overwrite", "-q")  # warm caches
    print(f"\n2. {args.cases} cases of {'x'.join(map(str, args.shape))} .nii.gz: wall time, CPU time, and MB/s of "
          f"decompressed scores + labels (best of {args.repeat}, runs interleaved)")
    runs = {"plain": [], "plain-process": [], **{jobs: [] for jobs in args.jobs}, "inproc": []}
    for _ in range(args.repeat):  # interleaved, so that a busy machine hits every variant alike
        cpu = time.process_time()
        wall, nbytes = plain_loop(s, l)
        runs["plain"].append((wall, time.process_time() - cpu))
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        wall, _ = clskern_cmd(s, l, script=PLAIN)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        runs["plain-process"].append((wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime))
        for jobs in args.jobs:
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            wall, _ = clskern_cmd("stats", "--scores", s, "--labels", l, "-o", store, "--overwrite", "-q",
                                  "--jobs", jobs)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            runs[jobs].append((wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime))
        cpu = time.process_time()
        started = time.perf_counter()
        collect_stats(pair_cases(s, l)[0], jobs=max(args.jobs))
        runs["inproc"].append((time.perf_counter() - started, time.process_time() - cpu))
    rows = [("plain loop as a script (process start included)", runs["plain-process"], "plain-process")]
    rows += [(f"clskern stats --jobs {jobs} (process start included)", runs[jobs], "plain-process")
             for jobs in args.jobs]
    rows += [("plain loop in process (nibabel.load + p[y>0] + np.partition)", runs["plain"], "plain")]
    rows += [(f"collect_stats(jobs={max(args.jobs)}) in process", runs["inproc"], "plain")]
    print(f"   {'':62s} {'wall':>8s} {'CPU':>8s} {'MB/s':>6s} {'vs plain':>8s}")
    for name, values, against in rows:
        wall = min(v[0] for v in values)
        cpu = min(v[1] for v in values)
        base = min(v[0] for v in runs[against])
        print(f"   {name:62s} {wall:6.2f} s {cpu:6.2f} s {nbytes / 1e6 / wall:6.0f} {base / wall:7.2f} x")
    resumed = clskern_cmd("stats", "--scores", s, "--labels", l, "-o", store, "-q")[0]
    print(f"   clskern stats again, every case already stored: {resumed:.2f} s")


def memory(args):
    if True:
        bs, bl = make_big_cases(os.path.join(args.data, "big"), args.big_cases)
        tiny_s, tiny_l = make_cases(os.path.join(args.data, "tiny"), 2, (16, 16, 8), distinct=2)
        _, base_rss = clskern_cmd("stats", "--scores", tiny_s, "--labels", tiny_l, "-o",
                                  os.path.join(args.data, "tiny.sqlite"), "--overwrite", "-q")
        volume = 512 * 512 * 300 * 4 / 1e6
        print(f"\n3. peak memory of clskern stats on {args.big_cases} cases of 512x512x300 "
              f"(one float32 volume = {volume:.0f} MB, its labels {volume / 4:.0f} MB)")
        print(f"   interpreter + numba + clskern, tiny case: {base_rss:6.0f} MB")
        for jobs in args.jobs:
            t, rss = clskern_cmd("stats", "--scores", bs, "--labels", bl, "-o",
                                 os.path.join(args.data, "big.sqlite"), "--overwrite", "-q", "--jobs", jobs)
            print(f"   --jobs {jobs}: peak {rss:6.0f} MB, above the interpreter {rss - base_rss:6.0f} MB"
                  f" = {(rss - base_rss) / volume:4.2f} x one volume  ({t:.1f} s)")


    print(f"\nload average at the end {os.getloadavg()[0]:.1f} (other work on the machine slows every row)")


if __name__ == "__main__":
    main()
