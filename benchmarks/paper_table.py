"""Every method on every (lesion type, backbone) pair of the synthetic suite: a table like the paper's.

Usage:
    PYTHONPATH=. python benchmarks/paper_table.py [--cases 200] [--splits 100] [--epsilon 0.2] [--alpha 0.2]
        [--delta 0.1] [--seed 0] [-o benchmarks/paper_table.md]

Writes one Markdown file: the setting, then four tables (mean ECR with its
target, V-FNR, P-FNR, Dice; mean over the splits, pair by pair, one column
per method) and a last table averaged over all pairs.
"""

import argparse
import time

import numpy as np

from clskern.evaluation import evaluate
from clskern.evaluation.synthetic_suite import BACKBONES, LESION_TYPES, suite

METHODS = ("cls", "cls-pac", "crc", "rcps", "authors", "fixed-0.5")
METRICS = (("ecr", "ECR"), ("v_fnr", "V-FNR"), ("p_fnr", "P-FNR"), ("dice", "Dice"))


def _cell(value, flag=""):
    return "n/a" if value is None else f"{value:.3f}{flag}"


def _small_n_table(args):
    """Where the authors' clipped rank loses coverage: few calibration cases, small alpha."""
    stats = next(suite(args.cases, seed=args.seed, kinds=["liver"], backbones=["calibrated"]))[2]
    lines = [
        "",
        "## Small calibration sets: exact `cls` against the authors' recipe (liver, calibrated)",
        "",
        "ECR mean over splits; `cls` refuses (\"refuses\") when n + 1 < 1/alpha instead of clipping the rank.",
        "",
        "| alpha | target | n_cal | cls ECR | authors ECR |",
        "|---|---|---|---|---|",
    ]
    for alpha in (0.05, 0.1):
        for n_cal in (4, 9, 19, 39):
            result = evaluate(stats, epsilon=args.epsilon, alpha=alpha, splits=args.splits, seed=args.seed,
                              cal_fraction=n_cal / len(stats), methods=("cls", "authors"), sweeps=False)
            summary = result.to_dict()["methods"]
            cls = summary["cls"]["ecr"]["mean"]
            cls_cell = "refuses" if cls is None else f"{cls:.3f}"
            lines.append(f"| {alpha:g} | {1 - alpha:g} | {n_cal} | {cls_cell} | "
                         f"{summary['authors']['ecr']['mean']:.3f} |")
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=200)
    parser.add_argument("--splits", type=int, default=100)
    parser.add_argument("--epsilon", type=float, default=0.2)
    parser.add_argument("--alpha", type=float, default=0.2)
    parser.add_argument("--delta", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--output", default="benchmarks/paper_table.md")
    args = parser.parse_args()

    start = time.perf_counter()
    rows = {}
    for kind, backbone, stats in suite(args.cases, seed=args.seed):
        result = evaluate(stats, epsilon=args.epsilon, alpha=args.alpha, delta=args.delta, splits=args.splits,
                          seed=args.seed, methods=METHODS, sweeps=False).to_dict()["methods"]
        rows[(kind, backbone)] = result
        print(f"{kind:12s} {backbone:15s} cls ECR {result['cls']['ecr']['mean']:.3f}", flush=True)
    seconds = time.perf_counter() - start

    target = 1 - args.alpha
    lines = [
        "# Every method on the synthetic suite",
        "",
        f"{len(LESION_TYPES)} lesion types x {len(BACKBONES)} simulated backbones, {args.cases} cases each "
        f"(volumes 16 x 32 x 32), {args.splits} random 50/50 splits (seed {args.seed}); "
        f"epsilon = {args.epsilon:g}, alpha = {args.alpha:g}, delta = {args.delta:g}. "
        f"Generated and evaluated in {seconds:.0f} s by `PYTHONPATH=. python benchmarks/paper_table.py "
        f"--cases {args.cases} --splits {args.splits}`.",
        "",
        f"Targets: `cls` and `authors` promise mean ECR >= {target:g}; `cls-pac` ECR >= {target:g} with "
        f"probability {1 - args.delta:g} per split; `crc` V-FNR <= {args.epsilon:g}; `rcps` V-FNR <= "
        f"{args.epsilon:g} with probability {1 - args.delta:g}; `fixed-0.5` promises nothing. In the ECR table "
        f"`*` marks a mean below {target:g} by more than 3 standard errors over the splits.",
    ]
    for key, title in METRICS:
        lines += ["", f"## {title} (mean over splits)", "", "| lesion | backbone | " + " | ".join(METHODS) + " |",
                  "|---|---|" + "---|" * len(METHODS)]
        for (kind, backbone), result in rows.items():
            cells = []
            for m in METHODS:
                entry = result[m][key]
                flag = ""
                if key == "ecr" and m in ("cls", "authors") and entry["mean"] is not None:
                    if entry["mean"] < target - 3 * entry["std"] / np.sqrt(args.splits):
                        flag = "*"
                cells.append(_cell(entry["mean"], flag))
            lines.append(f"| {kind} | {backbone} | " + " | ".join(cells) + " |")
    lines += ["", "## Averaged over all pairs", "", "| method | " + " | ".join(t for _, t in METRICS) + " |",
              "|---|" + "---|" * len(METRICS)]
    for m in METHODS:
        cells = []
        for key, _ in METRICS:
            values = [r[m][key]["mean"] for r in rows.values() if r[m][key]["mean"] is not None]
            cells.append(_cell(float(np.mean(values)) if values else None))
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines += _small_n_table(args)
    with open(args.output, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
