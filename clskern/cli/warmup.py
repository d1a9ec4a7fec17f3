"""``clskern warmup``: compile every kernel into Numba's cache, so that later processes start fast."""

from .._warmup import LABEL_DTYPES, SCORE_DTYPES
from ._common import add_quiet

HELP = "compile every kernel ahead of time into Numba's cache (for containers and CI images)"


def add_parser(subparsers):
    p = subparsers.add_parser(
        "warmup", help=HELP, description=(
            "Compile every CPU kernel signature that the command line and the Python API use (each score and "
            "label dtype the readers deliver, C and Fortran order, voxel and lesion level, masks, the calibration "
            "and evaluation searches) into Numba's on-disk cache, and print what was compiled. Run it where the "
            "cache can be written, e.g. `RUN clskern warmup` in a container build: a later process then loads "
            "the kernels instead of compiling them (seconds each)."
        ),
    )
    p.add_argument("--cache-dir", metavar="DIR", default=None,
                   help="Numba's cache folder (created if missing); processes that should read it need "
                        "NUMBA_CACHE_DIR=DIR (default: NUMBA_CACHE_DIR, else the installed package's __pycache__, "
                        "else Numba's user-wide folder)")
    p.add_argument("--score-dtypes", nargs="+", choices=SCORE_DTYPES, default=list(SCORE_DTYPES), metavar="D",
                   help=f"score dtypes to compile for (default: all of {', '.join(SCORE_DTYPES)})")
    p.add_argument("--label-dtypes", nargs="+", choices=LABEL_DTYPES, default=list(LABEL_DTYPES), metavar="D",
                   help=f"label dtypes to compile for (default: all of {', '.join(LABEL_DTYPES)})")
    add_quiet(p)
    return p


def run(args):
    import time

    from .._warmup import set_cache_dir, warmup

    where = set_cache_dir(args.cache_dir) if args.cache_dir is not None else None

    def progress(step):
        if not args.quiet:
            print(f"  {step.what}: {step.compiled} compiled, {step.loaded} from the cache, {step.seconds:.1f} s",
                  flush=True)

    started = time.perf_counter()
    steps = warmup(args.score_dtypes, args.label_dtypes, on_step=progress)
    if not args.quiet:
        compiled, loaded = sum(s.compiled for s in steps), sum(s.loaded for s in steps)
        import numba

        folder = where or numba.config.CACHE_DIR or "the package's __pycache__ (or Numba's user-wide folder)"
        print(f"clskern warmup: {compiled} kernel signatures compiled, {loaded} loaded from the cache, "
              f"{time.perf_counter() - started:.1f} s; cache: {folder}")
        if where:
            print(f"  processes that should use it need NUMBA_CACHE_DIR={where}")
    return 0
