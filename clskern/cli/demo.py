"""``clskern demo``: synthetic cases through stats -> calibrate -> apply, and a table."""

import argparse
import json
import math
import os
import sys
import time

import numpy as np

from ..io import pair_cases, read_labels, read_nifti, read_scores
from ..synthetic import DEMO_SHAPE, write_dataset
from ._common import (DEFAULT_ALPHA, NO_PASS, _number, add_alpha, add_empty, add_epsilon, add_jobs, add_output,
                      add_overwrite, add_quiet, add_seed, positive_int)
from ._output import refuse_existing, write_text_atomic

HELP = "run stats -> calibrate -> apply on a synthetic data set and compare with the 0.5 cut"


def add_parser(subparsers):
    p = subparsers.add_parser(
        "demo", help=HELP, description=(
            "Generate realistic synthetic cases (lesions of varied size, over- and under-confident "
            "score maps, missed small lesions, lesion-free cases), calibrate on half of them with "
            "clskern stats and calibrate, cut the other half with clskern apply, and print how the "
            "calibrated threshold and the 0.5 cut do on the test half."
        ),
    )
    add_output(p, aliases=("--dir",), metavar="DIR", required=False, default=DEFAULT_DIR,
               help=f"folder for everything the demo writes: data, stores, calibration, masks, report "
                    f"(default ./{DEFAULT_DIR}; kept afterwards)")
    p.add_argument("--cases", type=positive_int, default=DEFAULT_CASES, metavar="N",
                   help=f"cases in all, half for calibration (default {DEFAULT_CASES}; every {LESION_FREE_EVERY}th "
                        f"has no lesion)")
    p.add_argument("--shape", type=side, nargs=3, default=list(DEMO_SHAPE), metavar=("X", "Y", "Z"),
                   help=f"volume shape, each at least {MIN_SIDE} (default {' '.join(map(str, DEMO_SHAPE))})")
    add_epsilon(p, default=DEFAULT_EPSILON, help=f"tolerated FNR per case, in [0, 1) (default {DEFAULT_EPSILON})")
    add_alpha(p, f"miscoverage (default {DEFAULT_ALPHA}, as clskern calibrate)")
    add_seed(p, help="seed of the synthetic cases and of the validation splits (default 0)")
    add_empty(p, NO_PASS)
    add_jobs(p)
    add_overwrite(p, help="replace an earlier demo's files in DIR (only files a demo wrote)")
    add_quiet(p)
    return p


DEFAULT_DIR = "clskern-demo"
# 72 cases, 36 calibrating (32 with lesions): cls at alpha 0.1 then takes the 3rd smallest critical threshold.
# With 40 cases (18 calibrating with lesions) it took the smallest, and a case whose only lesions are tiny and
# missed (synthetic.py scores them about 0.001 to 0.03) set the cut alone: threshold 0.0014, Dice 0.017.
DEFAULT_CASES = 72
DEFAULT_EPSILON = 0.2
LESION_FREE_EVERY = 8  # write_dataset's default: every 8th case of each half has no lesion
MIN_SIDE = 8  # room for a lesion (radius up to a quarter of the smallest side) and its border


def side(text):
    """--shape: one volume size, at least ``MIN_SIDE``."""
    value = _number(text, int, "a whole number")
    if value < MIN_SIDE:
        raise argparse.ArgumentTypeError(f"each size must be at least {MIN_SIDE}, got {value}")
    return value


def _lesion_free(n):
    return n // LESION_FREE_EVERY


def cls_needs(alpha):
    """Smallest n of calibration cases for which cls can certify ``alpha`` (rank floor(alpha (n + 1)) >= 1)."""
    from ..calibration.record import cls_rank

    n = max(1, math.floor(1 / alpha) - 3)  # the closed form is n >= 1/alpha - 1; searched for exactness
    while cls_rank(n, alpha) < 1:
        n += 1
    return n


def check_request(args):
    """Every value checked together before anything is generated or removed (one line naming the options)."""
    root = args.output
    if os.path.exists(root) and not os.path.isdir(root):
        raise ValueError(f"{root}: -o names a file; the demo writes a folder there")
    n_cal = args.cases // 2
    n_test = args.cases - n_cal
    if n_cal < 2:
        raise ValueError(f"--cases {args.cases}: the demo needs at least 4 (half calibrate, half test)")
    free = _lesion_free(n_cal) + _lesion_free(n_test)
    if args.empty == "error" and free:
        raise ValueError(f"--empty error: the demo's data has {free} lesion-free case(s) (every "
                         f"{LESION_FREE_EVERY}th of each half), which would stop it; use --empty skip, or --cases "
                         f"{2 * LESION_FREE_EVERY - 2} or fewer")
    need = cls_needs(args.alpha)
    usable = n_cal - _lesion_free(n_cal)  # calibrate skips the lesion-free cases (--empty error: there are none)
    if usable < need:
        cases = 2 * need
        while (cases // 2) - _lesion_free(cases // 2) < need:
            cases += 2
        raise ValueError(f"--cases {args.cases} with --alpha {args.alpha:g}: cls needs n >= {need} calibration "
                         f"cases with lesions (n + 1 >= 1/alpha), the demo would have {usable}; use --cases "
                         f"{cases} or more, or a larger --alpha")


def _metrics(labels, mask):
    """FNR (None without lesion voxels) and Dice of a boolean mask."""
    lesion = labels > 0
    n_fg = int(np.count_nonzero(lesion))
    tp = int(np.count_nonzero(lesion & mask))
    fp = int(np.count_nonzero(mask)) - tp
    fnr = None if n_fg == 0 else (n_fg - tp) / n_fg
    denominator = n_fg + tp + fp
    return fnr, (2 * tp / denominator if denominator else 1.0)


def evaluate(test_dir, masks_dir, epsilon):
    """Per-column (0.5 cut, calibrated) mean FNR, mean Dice and share with FNR <= epsilon."""
    pairs, _ = pair_cases(os.path.join(test_dir, "scores"), os.path.join(test_dir, "labels"))
    rows = {"cut": [], "cls": []}
    n_empty = 0
    for pair in pairs:
        labels = read_labels(pair.labels)[0]
        scores = read_scores(pair.scores).array
        mask = read_nifti(os.path.join(masks_dir, pair.case_id + ".nii.gz")).array.astype(bool)
        for key, m in (("cut", scores >= 0.5), ("cls", mask)):
            rows[key].append(_metrics(labels, m))
        n_empty += not np.any(labels)
    out = {}
    for key, values in rows.items():
        fnr = np.array([f for f, _ in values if f is not None])
        dice = np.array([d for f, d in values if f is not None])
        out[key] = (fnr.mean(), dice.mean(), np.mean(fnr <= epsilon))
    return out, len(pairs), n_empty


def _run(argv, main):
    code = main(argv)
    if code:
        raise SystemExit(code)


def _table(calibration, results, args, n_test, n_empty):
    cut, cls = results["cut"], results["cls"]
    name = f"calibrated ({calibration.method})"
    lines = [
        f"{'':22s}{'0.5 cut':>10s}{name:>20s}",
        f"{'threshold':22s}{0.5:10.4f}{calibration.threshold:20.4f}",
        f"{'mean FNR (test)':22s}{cut[0]:10.3f}{cls[0]:20.3f}",
        f"{'mean Dice (test)':22s}{cut[1]:10.3f}{cls[1]:20.3f}",
        f"{f'FNR <= {args.epsilon:g} (test)':22s}{cut[2]:10.0%}{cls[2]:20.0%}"
        f"   target >= {1 - args.alpha:.0%}",
        "",
        f"{n_test} test cases ({n_empty} without lesions: left out of FNR and Dice); "
        f"calibrated on {calibration.n} cases ({calibration.n_skipped} lesion-free skipped).",
        calibration.guarantee,
    ]
    return "\n".join(lines)


EVALUATION_SPLITS = 50
STORES = ("stats.sqlite", "all-cases.sqlite")
SQLITE_SIDECARS = ("-wal", "-shm", "-journal")  # SQLite's files beside a store, left by an interrupted run
PARTS = ("calibration", "test", "stats.sqlite", "calibration.json", "masks", "all-cases.sqlite", "report",
         *(store + suffix for store in STORES for suffix in SQLITE_SIDECARS))
MANIFEST = ".clskern-demo.json"  # the files a demo wrote in its folder: all that --overwrite may remove
STAGED = ".clskern-staged-"  # apply's hidden staging folder (io/_atomic.StagedFolder) inside masks/


def _files_under(root, part):
    """Relative paths of the files (and links) at or below ``root/part``."""
    path = os.path.join(root, part)
    if not os.path.isdir(path) or os.path.islink(path):
        return [part] if os.path.lexists(path) else []
    found = []
    for folder, dirs, files in os.walk(path):
        found += [os.path.relpath(os.path.join(folder, f), root) for f in files]
        found += [os.path.relpath(os.path.join(folder, d), root) for d in dirs
                  if os.path.islink(os.path.join(folder, d))]
    return found


def record_demo_files(root, planned=()):
    """Add to the manifest the files a step is about to write (``planned``) and those the demo has written.

    Called before each step, so a demo that fails or is interrupted leaves a
    manifest naming its own files, and ``--overwrite`` can remove them.
    """
    present = (f for part in PARTS for f in _files_under(root, part))
    files = sorted(_manifest(root) | set(planned) | set(present))
    write_text_atomic(os.path.join(root, MANIFEST), json.dumps({"written_by": "clskern demo", "files": files}))


def _case_files(folder, prefix, n):
    return [os.path.join(folder, kind, f"{prefix}_{i:03d}.nii.gz") for kind in ("scores", "labels") for i in range(n)]


def _store_files(name):
    return [name, *(name + suffix for suffix in SQLITE_SIDECARS)]


def _manifest(root):
    try:
        with open(os.path.join(root, MANIFEST), encoding="utf-8") as f:
            return set(json.load(f)["files"])
    except FileNotFoundError:
        return set()
    except (ValueError, KeyError, TypeError, RecursionError):
        raise ValueError(f"{os.path.join(root, MANIFEST)}: unreadable demo manifest; "
                         "remove the earlier demo's files by hand") from None


def _temporary_of(path, ours):
    """Whether ``path`` is a temporary file the demo's steps make while writing one of ``ours``: a staged mask,
    or ``.NAME.*.tmp`` beside a listed ``NAME`` (io/_atomic.atomic_path)."""
    parts = path.split(os.sep)
    if any(p.startswith(STAGED) for p in parts[1:-1]):
        return parts[0] == "masks"
    folder, name = os.path.split(path)
    return name.startswith(".") and any(
        os.path.dirname(f) == folder and name.startswith(f".{os.path.basename(f)}.") for f in ours)


def clear_previous_demo(root, overwrite):
    """Make room in the demo's folder for a new demo, removing only what an earlier demo wrote."""
    _remove_previous_demo(root, previous_demo(root, overwrite))


def previous_demo(root, overwrite):
    """The files of an earlier demo in ``root`` that a new one would remove; removes nothing.

    Without ``overwrite`` any earlier output is an error. With it, a file that
    the manifest does not list (a user's own) is an error.
    """
    existing = [os.path.join(root, p) for p in PARTS if os.path.lexists(os.path.join(root, p))]
    refuse_existing(existing, overwrite)
    if not existing:
        return []
    ours = _manifest(root)
    present = [f for part in PARTS for f in _files_under(root, part)]
    foreign = [f for f in present if f not in ours and not _temporary_of(f, ours)]
    if foreign:
        raise ValueError(f"{os.path.join(root, foreign[0])}: not written by clskern demo"
                         f"{f' (and {len(foreign) - 1} more)' if len(foreign) > 1 else ''}; "
                         "--overwrite removes only a demo's own files: choose another -o folder")
    return present


def _remove_previous_demo(root, present):
    for f in present:
        os.unlink(os.path.join(root, f))
    for part in PARTS:  # the folders the demo made, now empty of its files
        path = os.path.join(root, part)
        if os.path.isdir(path) and not os.path.islink(path):
            for folder, _, _ in sorted(os.walk(path), key=lambda w: -len(w[0])):
                os.rmdir(folder)
    _forget(root)


def _forget(root):
    """Remove the manifest of files no longer there: the new demo starts its own."""
    if os.path.lexists(os.path.join(root, MANIFEST)):
        os.unlink(os.path.join(root, MANIFEST))


def _evaluate_argv(args, store, outdir):
    return ["evaluate", "--store", store, "--epsilon", f"{args.epsilon:g}", "--alpha", f"{args.alpha:g}",
            "--empty", args.empty, "--splits", str(EVALUATION_SPLITS), "--seed", str(args.seed), "-o", outdir]


def _evaluation(args, main, cal_dir, test_dir, root):
    """A short ``clskern evaluate`` over every demo case, its report in ``root/report``; returns its path."""
    from ..evaluation.report import REPORT_FILES

    store = os.path.join(root, "all-cases.sqlite")
    outdir = os.path.join(root, "report")
    record_demo_files(root, [*_store_files("all-cases.sqlite"), *(os.path.join("report", f) for f in REPORT_FILES)])
    if not args.quiet:  # one store of every case: stats into an existing store adds the cases it lacks
        print()
    for folder in (cal_dir, test_dir):
        argv = ["stats", "--scores", os.path.join(folder, "scores"), "--labels", os.path.join(folder, "labels"),
                "-o", store, "-j", str(args.jobs)]
        if not args.quiet:
            print("  $ " + _shown(argv, root))
        _run(argv + ["--quiet"], main)
    if not args.quiet:
        print("  $ clskern " + " ".join(_evaluate_argv(args, "all-cases.sqlite", "report")))
    _run(_evaluate_argv(args, store, outdir) + ["--overwrite", "--quiet"], main)
    return os.path.join(outdir, "report.md")


def _shown(argv, root):
    return "clskern " + " ".join(os.path.relpath(a, root) if a.startswith(root) else a for a in argv)


def run(args):
    from .apply import load_calibration
    from .main import main

    root = args.output
    if os.path.exists(root) and not os.path.isdir(root):
        raise ValueError(f"{root}: -o names a file; the demo writes a folder there")
    previous = previous_demo(root, args.overwrite)  # every refusal before anything is written or removed
    check_request(args)
    started = time.perf_counter()
    _remove_previous_demo(root, previous)
    n_cal = args.cases // 2
    n_test = args.cases - n_cal
    cal_dir, test_dir = os.path.join(root, "calibration"), os.path.join(root, "test")
    os.makedirs(root, exist_ok=True)
    record_demo_files(root, [*_case_files("calibration", "cal", n_cal), *_case_files("test", "test", n_test)])
    rng = np.random.SeedSequence(args.seed).spawn(2)
    write_dataset(cal_dir, n_cal, shape=args.shape, seed=rng[0], prefix="cal", lesion_free_every=LESION_FREE_EVERY)
    write_dataset(test_dir, n_test, shape=args.shape, seed=rng[1], prefix="test",
                  lesion_free_every=LESION_FREE_EVERY)
    store, cal_json, masks = (os.path.join(root, p) for p in ("stats.sqlite", "calibration.json", "masks"))
    test_masks = [os.path.join("masks", f"test_{i:03d}.nii.gz") for i in range(n_test)]
    steps = [
        (_store_files("stats.sqlite"),
         ["stats", "--scores", os.path.join(cal_dir, "scores"), "--labels", os.path.join(cal_dir, "labels"),
          "-o", store, "-j", str(args.jobs)]),
        (["calibration.json"],
         ["calibrate", "--store", store, "--epsilon", f"{args.epsilon:g}", "--alpha", f"{args.alpha:g}",
          "--empty", args.empty, "-o", cal_json]),
        (test_masks,
         ["apply", "--calibration", cal_json, "--scores", os.path.join(test_dir, "scores"), "-o", masks,
          "-j", str(args.jobs)]),
    ]
    if not args.quiet:
        shape = "x".join(map(str, args.shape))
        print(f"clskern demo: {n_cal} calibration + {n_test} test synthetic cases of {shape} "
              f"in {os.path.abspath(root)} (kept); the commands, run in that folder:")
    for planned, argv in steps:
        if not args.quiet:
            print("  $ " + _shown(argv, root))
        record_demo_files(root, planned)
        _run(argv + ["--quiet"], main)
    calibration = load_calibration(cal_json)
    results, n_test, n_empty = evaluate(test_dir, masks, args.epsilon)
    if not args.quiet:
        print()
        print(_table(calibration, results, args, n_test, n_empty))
        if calibration.warnings:
            print(f"clskern calibrate warned ({len(calibration.warnings)} warning(s) above, kept in "
                  f"calibration.json): the calibrated cut is degenerate on the calibration cases; "
                  f"the guarantee holds regardless.")
    report = _evaluation(args, main, cal_dir, test_dir, root)
    record_demo_files(root)
    if not args.quiet:
        print(f"\nvalidation report ({EVALUATION_SPLITS} random splits of all {args.cases} cases): {report}")
        print("to run the commands yourself in that folder: put clskern on PATH (source .venv/bin/activate), "
              "and add --overwrite to replace the demo's outputs")
        print(f"({time.perf_counter() - started:.1f} s; files kept in {os.path.abspath(root)})")
    sys.stdout.flush()
    return 0
