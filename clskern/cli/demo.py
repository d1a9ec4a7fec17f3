"""``clskern demo``: synthetic cases through stats -> calibrate -> apply, and a table."""

import json
import os
import sys
import time

import numpy as np

from ..io import pair_cases, read_labels, read_nifti, read_scores
from ..synthetic import DEMO_SHAPE, write_dataset
from ._common import DEFAULT_ALPHA, add_alpha, add_empty, add_jobs, add_output, add_overwrite, add_quiet, positive_int
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
    p.add_argument("--cases", type=positive_int, default=40, metavar="N",
                   help="cases in all, half for calibration (default 40)")
    p.add_argument("--shape", type=positive_int, nargs=3, default=list(DEMO_SHAPE), metavar=("X", "Y", "Z"),
                   help="volume shape (default %(default)s)")
    p.add_argument("--epsilon", type=float, default=0.2, help="tolerated FNR (default 0.2)")
    add_alpha(p, f"miscoverage (default {DEFAULT_ALPHA}, as clskern calibrate)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    add_empty(p)
    add_jobs(p)
    add_overwrite(p, help="replace an earlier demo's files in DIR (only files a demo wrote)")
    add_quiet(p, help="print only the table")
    return p


DEFAULT_DIR = "clskern-demo"


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
PARTS = ("calibration", "test", "stats.sqlite", "calibration.json", "masks", "all-cases.sqlite", "report")
MANIFEST = ".clskern-demo.json"  # the files a demo wrote in --dir: all that --overwrite may remove


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


def record_demo_files(root):
    """Write the manifest of every file the demo has written in ``root`` so far."""
    files = sorted(f for part in PARTS for f in _files_under(root, part))
    write_text_atomic(os.path.join(root, MANIFEST), json.dumps({"written_by": "clskern demo", "files": files}))


def _manifest(root):
    try:
        with open(os.path.join(root, MANIFEST), encoding="utf-8") as f:
            return set(json.load(f)["files"])
    except FileNotFoundError:
        return set()
    except (ValueError, KeyError, TypeError, RecursionError):
        raise ValueError(f"{os.path.join(root, MANIFEST)}: unreadable demo manifest; "
                         "remove the earlier demo's files by hand") from None


def clear_previous_demo(root, overwrite):
    """Make room in ``--dir`` for a new demo, removing only what an earlier demo wrote.

    Without ``overwrite`` any earlier output is an error. With it, a file that
    the manifest does not list (a user's own) stops the demo before anything
    is removed.
    """
    existing = [os.path.join(root, p) for p in PARTS if os.path.lexists(os.path.join(root, p))]
    refuse_existing(existing, overwrite)
    if not existing:
        return
    ours = _manifest(root)
    present = [f for part in PARTS for f in _files_under(root, part)]
    foreign = [f for f in present if f not in ours]
    if foreign:
        raise ValueError(f"{os.path.join(root, foreign[0])}: not written by clskern demo"
                         f"{f' (and {len(foreign) - 1} more)' if len(foreign) > 1 else ''}; "
                         "--overwrite removes only a demo's own files: choose another --dir")
    for f in present:
        os.unlink(os.path.join(root, f))
    for part in PARTS:  # the folders the demo made, now empty of its files
        path = os.path.join(root, part)
        if os.path.isdir(path) and not os.path.islink(path):
            for folder, _, _ in sorted(os.walk(path), key=lambda w: -len(w[0])):
                os.rmdir(folder)


def _evaluation(args, main, cal_dir, test_dir, root):
    """A short ``clskern evaluate`` over every demo case, its report in ``root/report``; returns its path."""
    store = os.path.join(root, "all-cases.sqlite")
    for folder in (cal_dir, test_dir):
        _run(["stats", "--scores", os.path.join(folder, "scores"), "--labels", os.path.join(folder, "labels"),
              "-o", store, "-j", str(args.jobs), "--quiet"], main)
    outdir = os.path.join(root, "report")
    if not args.quiet:
        print(f"\n  $ clskern evaluate --store all-cases.sqlite --epsilon {args.epsilon} --alpha {args.alpha} "
              f"--empty {args.empty} --splits {EVALUATION_SPLITS} -o report")
    _run(["evaluate", "--store", store, "--epsilon", str(args.epsilon), "--alpha", str(args.alpha),
          "--empty", args.empty, "--splits", str(EVALUATION_SPLITS), "--seed", str(args.seed), "-o", outdir,
          "--overwrite", "--quiet"], main)
    return os.path.join(outdir, "report.md")


def run(args):
    from .apply import load_calibration
    from .main import main

    if args.cases < 4:
        raise ValueError("demo needs --cases 4 or more (half calibrate, half test)")
    if args.empty == "pass":
        raise ValueError("demo: --empty pass is not available (its validation report leaves lesion-free cases "
                         "out: no FNR to test); use skip or error")
    started = time.perf_counter()
    root = args.output
    clear_previous_demo(root, args.overwrite)
    n_cal = args.cases // 2
    cal_dir, test_dir = os.path.join(root, "calibration"), os.path.join(root, "test")
    rng = np.random.SeedSequence(args.seed).spawn(2)
    write_dataset(cal_dir, n_cal, shape=args.shape, seed=rng[0], prefix="cal")
    write_dataset(test_dir, args.cases - n_cal, shape=args.shape, seed=rng[1], prefix="test")
    record_demo_files(root)
    store, cal_json, masks = (os.path.join(root, p) for p in ("stats.sqlite", "calibration.json", "masks"))
    commands = [
        ["stats", "--scores", os.path.join(cal_dir, "scores"), "--labels", os.path.join(cal_dir, "labels"),
         "-o", store, "-j", str(args.jobs)],
        ["calibrate", "--store", store, "--epsilon", str(args.epsilon), "--alpha", str(args.alpha),
         "--empty", args.empty, "-o", cal_json],
        ["apply", "--calibration", cal_json, "--scores", os.path.join(test_dir, "scores"), "-o", masks,
         "-j", str(args.jobs)],
    ]
    if not args.quiet:
        shape = "x".join(map(str, args.shape))
        print(f"clskern demo: {n_cal} calibration + {args.cases - n_cal} test synthetic cases of {shape} "
              f"in {os.path.abspath(root)} (kept); the commands, run in that folder:")
    for argv in commands:
        if not args.quiet:
            print("  $ clskern " + " ".join(os.path.relpath(a, root) if a.startswith(root) else a for a in argv))
        _run(argv + ["--quiet"], main)
    calibration = load_calibration(cal_json)
    results, n_test, n_empty = evaluate(test_dir, masks, args.epsilon)
    if not args.quiet:
        print()
    print(_table(calibration, results, args, n_test, n_empty))
    record_demo_files(root)
    report = _evaluation(args, main, cal_dir, test_dir, root)
    record_demo_files(root)
    print(f"\nvalidation report ({EVALUATION_SPLITS} random splits of all {args.cases} cases): {report}")
    if not args.quiet:
        print(f"({time.perf_counter() - started:.1f} s; files kept in {os.path.abspath(root)})")
    sys.stdout.flush()
    return 0
