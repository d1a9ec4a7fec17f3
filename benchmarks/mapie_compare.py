"""Time and peak memory of MAPIE's and clskern's risk control on the same calibration set.

Usage:
    PYTHONPATH=. python benchmarks/mapie_compare.py [--sizes 64x64x64 64x128x128 ...] [--epsilon 0.3]

Each size ``n x h x w`` is a synthetic volume (suite lesion type "liver",
backbone "calibrated") cut into its ``n`` axial slices; slices without
lesion are dropped (MAPIE refuses them), and both libraries calibrate
``crc`` on the remaining slices with MAPIE's default grid of 100
thresholds. clskern's time includes ``volume_stats`` of every slice (its one
pass over the voxels), the exact ``calibrate`` and the grid answer; MAPIE's
is ``SemanticSegmentationController.calibrate``. Times are the best of 3 runs. Peak memory is the largest
traced allocation above the inputs (``tracemalloc``, which sees NumPy
buffers), measured in a second, untimed run. The two thresholds are checked
to agree.
"""

import argparse
import dataclasses
import math
import platform
import time
import tracemalloc
import warnings

import numpy as np

import clskern
from clskern.evaluation.peers import MAPIE_DEFAULT_GRID, grid_risk_control, restrict_to_grid
from clskern.evaluation.synthetic_suite import LESION_TYPES, SHAPE, make_volume


def _clskern(scores, labels, epsilon):
    stats = [clskern.volume_stats(s, l) for s, l in zip(scores, labels)]
    exact = clskern.calibrate(stats, epsilon=epsilon, method="crc")
    grid, _ = grid_risk_control(stats, MAPIE_DEFAULT_GRID, epsilon=epsilon, method="crc")
    return grid, exact.threshold


def _mapie(scores, labels, epsilon):
    from mapie.risk_control import SemanticSegmentationController

    controller = SemanticSegmentationController(
        predict_function=lambda x: x, risk="recall", method="crc", target_level=1 - epsilon
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        controller.calibrate(scores, labels)
    return float(controller.best_predict_param[0])


def _measure(fn, *args, repeat=3):
    """(result, best wall time of ``repeat`` runs, peak traced bytes of one more run)."""
    seconds = math.inf
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn(*args)
        seconds = min(seconds, time.perf_counter() - start)
    tracemalloc.start()
    fn(*args)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return result, seconds, peak


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["16x64x64", "32x128x128", "64x128x128", "32x256x256", "64x256x256"])
    parser.add_argument("--epsilon", type=float, default=0.3)
    args = parser.parse_args()
    print(f"# {platform.processor() or platform.machine()}, numpy {np.__version__}")
    print("| volume | slices used | voxels | clskern s | clskern peak MB | MAPIE s | MAPIE peak MB | MAPIE bytes/voxel "
          "| clskern crc (exact) | on grid | MAPIE |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    _clskern(*_slices("8x32x32"), args.epsilon)  # compile the kernels outside the timings
    for size in args.sizes:
        scores, labels = _slices(size)
        (grid, exact), c_s, c_peak = _measure(_clskern, scores, labels, args.epsilon)
        mapie, m_s, m_peak = _measure(_mapie, scores, labels, args.epsilon)
        assert restrict_to_grid(exact, MAPIE_DEFAULT_GRID) == grid == mapie, (exact, grid, mapie)
        print(f"| {size} | {len(scores)} | {scores.size:,} | {c_s:.3f} | {c_peak / 2**20:.1f} | {m_s:.2f} | "
              f"{m_peak / 2**20:.0f} | {m_peak / scores.size:.0f} | {exact:.6f} | {grid:.2f} | {mapie:.2f} |", flush=True)


def _slices(size):
    shape = tuple(int(x) for x in size.split("x"))
    liver = LESION_TYPES["liver"]
    scale = shape[0] / SHAPE[0]  # lesions grow with the volume, so most slices hold some
    kind = dataclasses.replace(liver, radius=tuple(r * scale for r in liver.radius), count=(3, 4))
    scores, labels = make_volume(kind, "calibrated", np.random.default_rng(0), shape)
    keep = labels.reshape(shape[0], -1).any(axis=1)
    return np.ascontiguousarray(scores[keep]), np.ascontiguousarray(labels[keep])


if __name__ == "__main__":
    main()
