"""Write the committed demo report: one synthetic data set through ``evaluate`` and ``write_report``.

Usage:
    PYTHONPATH=. python benchmarks/make_demo_report.py [-o benchmarks/demo_report]
"""

import argparse

from clskern.evaluation import evaluate, write_report
from clskern.evaluation.synthetic_suite import make_dataset


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--outdir", default="benchmarks/demo_report")
    args = parser.parse_args()
    stats = make_dataset("lymph_node", "overconfident", 200, seed=0)
    result = evaluate(stats, epsilon=0.2, alpha=0.2, delta=0.1, splits=100, cal_fraction=0.5, seed=0,
                      methods=("cls", "cls-pac", "crc", "rcps", "authors", "fixed-0.5"))
    for path in write_report(result, args.outdir, overwrite=True):
        print(path)


if __name__ == "__main__":
    main()
