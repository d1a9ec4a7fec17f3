"""MONAI: calibrate in the validation loop, then a calibrated ``AsDiscrete`` in the post transforms.

    python python_api/monai_postprocess.py

``ValidationStats`` is used as MONAI's ``DiceMetric`` is: called once per
batch on the decollated scores and labels, ``aggregate()`` at the end of the
round (it gives the ``Calibration``), ``reset()`` before the next.
``CalibratedThreshold`` and ``CalibratedThresholdd`` are then MONAI
transforms (``Transform``, ``MapTransform``) in ``Compose``: they cut the
channel the calibration was read from and keep the ``MetaTensor``'s metadata,
so ``SaveImage`` writes the mask with the image's affine.

``DataLoader`` workers (``num_workers > 0``, forked on Linux) may run these
transforms: clskern's default threading layer (TBB, else workqueue) survives a
fork. Only if you chose ``NUMBA_THREADING_LAYER=omp`` (GNU OpenMP) does a worker
forked after this process ran clskern's kernels raise ``OpenMPForkError``; then
use ``multiprocessing_context="spawn"``. Under ``torch.distributed``, validate
with ``DistributedSampler(..., even_divisible=False)``: padding repeats cases.
"""

import numpy as np
import torch
from monai.data import DataLoader, Dataset, MetaTensor, decollate_batch
from monai.transforms import Activations, Activationsd, Compose

from clskern.adapters.torch import (
    CalibratedThreshold,
    CalibratedThresholdd,
    ValidationStats,
)
from clskern.synthetic import synthetic_case

SHAPE = (32, 32, 24)
AFFINE = torch.diag(torch.tensor([0.8, 0.8, 2.0, 1.0], dtype=torch.float64))


def as_logits(p):
    """Two-class logits whose softmax gives ``p`` back as channel 1."""
    return torch.from_numpy(np.stack([np.zeros_like(p), np.log(p) - np.log1p(-p)]))


def validation_loader(n=20, batch_size=4):
    """Held-out cases as a model leaves them: {"pred": logits (2, ...), "label": (1, ...)}, MetaTensors."""
    rng = np.random.default_rng(1)
    items = []
    for i in range(n):
        p, y = synthetic_case(rng, SHAPE)
        meta = {"filename_or_obj": f"val_{i:02d}.nii.gz"}
        items.append({"pred": MetaTensor(as_logits(p), affine=AFFINE, meta=dict(meta)),
                      "label": MetaTensor(torch.from_numpy(y[None]), affine=AFFINE, meta=dict(meta))})
    # With workers that run CalibratedThreshold(d): DataLoader(..., num_workers=4, multiprocessing_context="spawn").
    return DataLoader(Dataset(items), batch_size=batch_size)


def calibrate_in_validation_loop():
    softmax = Activations(softmax=True)
    stats = ValidationStats(epsilon=0.2, alpha=0.2)  # lesion channel 1; P(FNR <= 0.2) >= 0.8 on new cases
    with torch.no_grad():
        for batch in validation_loader():
            # With a network: logits = sliding_window_inference(batch["image"], roi, 4, model)
            scores = [softmax(x) for x in decollate_batch(batch["pred"])]  # scores, not thresholded masks
            stats(y_pred=scores, y=decollate_batch(batch["label"]))  # case ids: the files' names
    calibration = stats.aggregate()  # a Calibration; stats.reset() before the next round
    stats.reset()
    return calibration


def main():
    calibration = calibrate_in_validation_loop()

    # Array form, in place of AsDiscrete(threshold=0.5): one channel-first case (C, X, Y, Z).
    post = Compose([
        Activations(softmax=True),                            # network logits -> class probabilities
        CalibratedThreshold(calibration, spatial_dims=3),     # the calibrated channel (1) >= threshold
    ])
    p, _ = synthetic_case(np.random.default_rng(7), SHAPE)
    image = MetaTensor(as_logits(p), affine=AFFINE, meta={"filename_or_obj": "case_007.nii.gz"})
    mask = post(image)

    # Dictionary form, as in an Invertd pipeline; and a whole batch (B, C, X, Y, Z) at once, item by item.
    post_d = Compose([Activationsd(keys="pred", softmax=True),
                      CalibratedThresholdd(keys="pred", calibration=calibration, spatial_dims=3)])
    assert torch.equal(post_d({"pred": image})["pred"], mask)
    batch = torch.softmax(torch.stack([image.as_tensor()] * 2), dim=1)
    assert torch.equal(CalibratedThreshold(calibration, spatial_dims=3)(batch)[1], mask.as_tensor())

    print(f"threshold {calibration.threshold!r} ({calibration.n} validation cases, channel "
          f"{calibration.reading['channel']}): {type(mask).__name__} {tuple(mask.shape)} {mask.dtype}, "
          f"{int(mask.sum())} lesion voxels, source {mask.meta['filename_or_obj']}")
    return mask, calibration


if __name__ == "__main__":
    main()
