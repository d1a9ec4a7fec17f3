"""The lesion-level critical threshold (SPEC 1b) against the memory limit and the usual tools.

    PYTHONPATH=. python benchmarks/bench_lesions.py [--repeat 20] [--overlap 0.0]

On a 512x256x128 float32 volume with about 400 blob lesions of varied size
(about 1 % of the voxels), for each memory order it times (median of
``--repeat`` runs, interleaved so machine noise hits all alike) the streaming
pass of ``ratio_table.py``, clskern's lesion-level critical threshold
(labelling + detection scores + selection), clskern's ``lesions`` (every
lesion's scores, sorted: what statistics would keep), ``scipy.ndimage.label`` + a
per-component partition, and ``cc3d.connected_components`` + the same
partition when cc3d is installed; every answer is checked against scipy's,
and the table is printed in Markdown. It also times ``volume_stats`` with
``connectivity=None`` (voxel statistics) and with the connectivity asked
(every lesion's sorted scores kept too), and prints what the lesions add.
"""

import argparse
import os
import sys
import time

import numba
import numpy as np
from scipy import ndimage

sys.path.insert(0, os.path.dirname(__file__))

from baselines import stream_pass  # noqa: E402
from volumes import SHAPE  # noqa: E402

from clskern import critical_threshold, lesions, volume_stats  # noqa: E402
from clskern._lesions import required_voxels  # noqa: E402

try:
    import cc3d
except ImportError:  # optional: for comparison only
    cc3d = None

EPSILON = 0.2
STRUCTURES = {6: 1, 18: 2, 26: 3}


def lesion_volume(shape=SHAPE, order="F", n_lesions=400, lesion_fraction=0.01, seed=0):
    """Scores and labels with about ``n_lesions`` blobs (ellipsoids of varied size), ``lesion_fraction`` of the voxels.

    Radii follow a log-uniform law (many small lesions, a few large ones), scaled
    so the blobs cover about ``lesion_fraction`` of the volume; blobs that touch
    merge, so the count of lesions is a little below ``n_lesions``. Scores as in
    ``volumes.benchmark_volume``.
    """
    rng = np.random.default_rng(seed)
    size = rng.uniform(np.log(1.0), np.log(4.0), n_lesions)
    radii = np.exp(size)[:, None] * rng.uniform(0.6, 1.4, (n_lesions, 3))
    volume = 4 / 3 * np.pi * np.prod(radii, axis=1).sum()
    radii *= (lesion_fraction * np.prod(shape) / volume) ** (1 / 3)
    labels = np.zeros(shape, np.uint8)
    for axes_radii in radii:
        centre = [rng.uniform(0, s) for s in shape]
        box = tuple(
            slice(int(max(0, c - r)), int(min(s, c + r + 1))) for c, r, s in zip(centre, axes_radii, shape)
        )
        grids = np.ix_(*((np.arange(b.start, b.stop) - c) / r for b, c, r in zip(box, centre, axes_radii)))
        labels[box][sum(g**2 for g in grids) <= 1.0] = 1
    scores = rng.beta(1.0, 12.0, shape).astype(np.float32)
    lesion = labels.astype(bool)
    scores[lesion] = rng.beta(6.0, 2.0, int(lesion.sum())).astype(np.float32)
    if order == "F":
        return np.asfortranarray(scores), np.asfortranarray(labels)
    return scores, labels


def _threshold_from_components(components, n_components, scores, overlap, epsilon):
    """Detection scores by one sort of (component, score), then the k-th of them (the reference approach)."""
    inside = components > 0
    which = components[inside]
    values = scores[inside].astype(np.float64)
    order = np.lexsort((values, which))
    values = values[order]
    sizes = np.bincount(which, minlength=n_components + 1)[1:]
    ends = np.cumsum(sizes)
    d = values[ends - required_voxels(sizes, overlap)]
    n = d.size
    k = max(j for j in range(max(0, int(epsilon * n) - 1), min(n, int(epsilon * n) + 2)) if j / n <= epsilon)
    return float(np.partition(d, k)[k])


def scipy_threshold(scores, labels, epsilon, overlap=0.0, connectivity=26):
    """``scipy.ndimage.label`` + a per-component partition."""
    structure = ndimage.generate_binary_structure(3, STRUCTURES[connectivity])
    components, n = ndimage.label(labels > 0, structure)
    return _threshold_from_components(components, n, scores, overlap, epsilon)


def cc3d_threshold(scores, labels, epsilon, overlap=0.0, connectivity=26):
    """``cc3d.connected_components`` + the same partition."""
    components, n = cc3d.connected_components(labels > 0, connectivity=connectivity, return_N=True)
    return _threshold_from_components(components, n, scores, overlap, epsilon)


def clskern_threshold(scores, labels, epsilon, overlap=0.0, connectivity=26):
    return critical_threshold(scores, labels, epsilon, level="lesion", overlap=overlap, connectivity=connectivity)


def clskern_lesions(scores, labels, connectivity=26):
    return lesions(scores, labels, connectivity=connectivity)


def measure(order, repeat, overlap, connectivity):
    scores, labels = lesion_volume(order=order)
    expected = scipy_threshold(scores, labels, EPSILON, overlap, connectivity)
    n_lesions = ndimage.label(labels > 0, ndimage.generate_binary_structure(3, STRUCTURES[connectivity]))[1]
    cases = {
        "stream pass (memory limit)": (stream_pass, (scores, labels)),
        "clskern lesion critical threshold": (clskern_threshold, (scores, labels, EPSILON, overlap, connectivity)),
        "clskern lesions() (every lesion's scores, sorted)": (clskern_lesions, (scores, labels, connectivity)),
        "volume_stats(connectivity=None)": (lambda p, y: volume_stats(p, y, connectivity=None), (scores, labels)),
        f"volume_stats(connectivity={connectivity})": (lambda p, y: volume_stats(p, y, connectivity=connectivity),
                                                       (scores, labels)),
        "scipy.ndimage.label + partition": (scipy_threshold, (scores, labels, EPSILON, overlap, connectivity)),
    }
    if cc3d is not None:
        cases["cc3d.connected_components + partition"] = (cc3d_threshold, (scores, labels, EPSILON, overlap, connectivity))
    slow = {"scipy.ndimage.label + partition", "cc3d.connected_components + partition"}
    times = {name: [] for name in cases}
    for r in range(repeat):
        for name, (function, args) in cases.items():
            if name in slow and r >= max(3, repeat // 4):
                continue
            start = time.perf_counter()
            result = function(*args)
            times[name].append(time.perf_counter() - start)
            if name.startswith(("clskern lesion critical", "scipy", "cc3d")) and result != expected:
                raise SystemExit(f"{name} gave {result!r}, scipy {expected!r}, on the {order}-order volume")
    summary = {name: (float(np.median(t)), float(np.min(t))) for name, t in times.items()}
    return summary, scores.nbytes + labels.nbytes, n_lesions, int(np.count_nonzero(labels))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--overlap", type=float, default=0.0)
    parser.add_argument("--connectivity", type=int, default=26, choices=(6, 18, 26))
    args = parser.parse_args()
    for order in ("F", "C"):  # warm every compiled path before timing
        clskern_threshold(*lesion_volume(shape=(16, 32, 8), order=order, n_lesions=4), EPSILON, args.overlap, args.connectivity)
    rows = []
    for order in ("F", "C"):
        medians, nbytes, n_lesions, n_fg = measure(order, args.repeat, args.overlap, args.connectivity)
        rows.append((order, medians, nbytes))
    print(
        f"volume {SHAPE} float32 + uint8 labels, {n_lesions} lesions ({n_fg} voxels, {n_fg / np.prod(SHAPE):.2%}), "
        f"connectivity {args.connectivity}, overlap {args.overlap}, epsilon {EPSILON}, numba threads {numba.get_num_threads()}, "
        f"cc3d {'installed' if cc3d is not None else 'not installed'}\n"
    )
    print("| order | function | median ms | min ms | x stream pass (median) | clskern faster by (median) |")
    print("|---|---|---:|---:|---:|---:|")
    for order, summary, nbytes in rows:
        base = summary["stream pass (memory limit)"][0]
        ours = summary["clskern lesion critical threshold"][0]
        for name, (seconds, fastest) in summary.items():
            print(f"| {order} | {name} | {seconds * 1e3:.2f} | {fastest * 1e3:.2f} | {seconds / base:.2f} | {seconds / ours:.1f} x |")
    for order, summary, _ in rows:
        plain = summary["volume_stats(connectivity=None)"][0]
        with_lesions = summary[f"volume_stats(connectivity={args.connectivity})"][0]
        print(f"\n{order}: volume_stats(connectivity={args.connectivity}) / volume_stats(connectivity=None) = "
              f"{with_lesions / plain:.2f} (+{(with_lesions - plain) * 1e3:.2f} ms)", end="")
    print()


if __name__ == "__main__":
    main()
