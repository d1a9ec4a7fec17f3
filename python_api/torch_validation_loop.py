"""Calibrate inside a PyTorch validation loop: one ``update`` per batch, ``calibrate`` at the end.

    python python_api/torch_validation_loop.py [--output calibration.json]

The "model" here is a stand-in that returns synthetic softmax scores; put your
network (in eval mode, under torch.no_grad) in its place.

A ``DataLoader`` with ``num_workers > 0`` whose workers run clskern (a
``CalibratedThreshold`` in the dataset's transform) works forked or spawned
under clskern's default threading layer; only under a GNU OpenMP layer you
chose (``NUMBA_THREADING_LAYER=omp``) does a forked worker raise
``OpenMPForkError``. The model step and clskern share the cores: set
``OMP_WAIT_POLICY=passive`` for torch's OpenMP threads (docs/threads.md).
Under ``torch.distributed``, each
rank updates with its own cases and ``calibrate`` (on every rank) gathers
them all; default case ids carry the rank.
"""

import argparse
import os
import tempfile

import numpy as np
import torch

from clskern.adapters.torch import CalibratedThreshold, ValidationStats
from clskern.synthetic import synthetic_case


def validation_loader(n_cases=24, batch_size=4, shape=(32, 32, 24), seed=0):
    """Batches of (scores (B, 2, ...), labels (B, 1, ...)), as a model and a DataLoader give them."""
    rng = np.random.default_rng(seed)
    cases = [synthetic_case(rng, shape, lesion_free=i % 8 == 7) for i in range(n_cases)]
    p = torch.from_numpy(np.stack([c[0] for c in cases]))
    scores = torch.stack([1 - p, p], dim=1)
    labels = torch.from_numpy(np.stack([c[1] for c in cases]))[:, None]
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(scores, labels), batch_size=batch_size)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=os.path.join(tempfile.gettempdir(), "clskern_calibration.json"))
    args = parser.parse_args(argv)

    stats = ValidationStats(channel=1)  # channel 1: the lesion class of a 2-class softmax
    with torch.no_grad():
        for scores, labels in validation_loader():
            stats.update(scores, labels)  # one pass per case; only the statistics are kept
    calibration = stats.calibrate(epsilon=0.2, alpha=0.2)  # P(FNR <= 0.2) >= 0.8 on new cases
    with open(args.output, "w") as f:
        f.write(calibration.to_json())
    print(f"{len(stats)} cases ({calibration.n_skipped} without lesion): threshold {calibration.threshold!r}")
    print(calibration.guarantee)

    # At test time: binarise new cases' scores with the calibrated threshold, on the channel it was
    # calibrated on (recorded in the file). spatial_dims=3 tells one case (C, X, Y, Z) from a batch.
    to_mask = CalibratedThreshold(args.output, spatial_dims=3)
    new_scores, _ = next(iter(validation_loader(n_cases=2, batch_size=2, seed=99)))
    mask = to_mask(new_scores)  # (B, 1, X, Y, Z): each case cut on its own; to_mask(new_scores[0]) for one
    print(f"mask of shape {tuple(mask.shape)}, {int(mask.sum())} lesion voxels -> {args.output}")
    return calibration


if __name__ == "__main__":
    main()
