"""How long ``evaluate`` takes from statistics: 1000 splits of 500 cases.

Usage:
    PYTHONPATH=. python benchmarks/eval_speed.py [--cases 500] [--splits 1000]
"""

import argparse
import time

from clskern.evaluation import evaluate
from clskern.evaluation.cases import Cases
from clskern.evaluation.synthetic_suite import make_dataset


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=500)
    parser.add_argument("--splits", type=int, default=1000)
    args = parser.parse_args()
    stats = make_dataset("liver", "calibrated", args.cases, seed=4)
    evaluate(stats, epsilon=0.2, alpha=0.2, splits=2, sweeps=False, methods=("cls", "crc", "rcps", "authors"))
    print(f"| what | seconds ({args.cases} cases, {args.splits} splits) |\n|---|---|")
    start = time.perf_counter()
    cases = Cases(stats)
    print(f"| flatten statistics (Cases) | {time.perf_counter() - start:.3f} |")
    for methods in (("cls",), ("cls-pac",), ("crc",), ("rcps",), ("authors",), ("fixed-0.5",)):
        start = time.perf_counter()
        evaluate(cases, epsilon=0.2, alpha=0.2, splits=args.splits, methods=methods, sweeps=False)
        print(f"| {methods[0]} | {time.perf_counter() - start:.2f} |")
    for sweeps in (False, True):
        start = time.perf_counter()
        evaluate(stats, epsilon=0.2, alpha=0.2, splits=args.splits, sweeps=sweeps,
                 methods=("cls", "cls-pac", "crc", "rcps", "authors", "fixed-0.5"))
        print(f"| all six methods{', with every sweep' if sweeps else ''} | {time.perf_counter() - start:.2f} |")


if __name__ == "__main__":
    main()
