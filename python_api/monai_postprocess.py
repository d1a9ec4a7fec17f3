"""MONAI post-processing with a calibrated threshold in place of ``AsDiscrete(threshold=0.5)``.

    python python_api/monai_postprocess.py

``CalibratedThreshold`` takes a ``Calibration``, its JSON file, or a number,
and keeps the ``MetaTensor``'s metadata, so ``SaveImage`` writes the mask with
the image's affine.
"""

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Activations, Compose

import clskern
from clskern.adapters.torch import CalibratedThreshold
from clskern.synthetic import synthetic_case


def calibration_from_held_out_cases(n=20, shape=(32, 32, 24)):
    rng = np.random.default_rng(1)
    stats = [clskern.volume_stats(*synthetic_case(rng, shape), name=f"val_{i:02d}") for i in range(n)]
    return clskern.calibrate(stats, epsilon=0.2, alpha=0.2)


def main():
    calibration = calibration_from_held_out_cases()
    post = Compose([
        Activations(softmax=True),                      # network logits -> class probabilities
        CalibratedThreshold(calibration, channel=1),    # lesion channel >= calibrated threshold
    ])
    p, _ = synthetic_case(np.random.default_rng(7), (32, 32, 24))
    logits = torch.from_numpy(np.stack([np.zeros_like(p), np.log(p) - np.log1p(-p)]))  # softmax gives p back
    affine = torch.diag(torch.tensor([0.8, 0.8, 2.0, 1.0], dtype=torch.float64))
    image = MetaTensor(logits, affine=affine, meta={"filename_or_obj": "case_007.nii.gz"})
    mask = post(image)
    print(f"threshold {calibration.threshold!r}: {type(mask).__name__} {tuple(mask.shape)} {mask.dtype}, "
          f"{int(mask.sum())} lesion voxels, source {mask.meta['filename_or_obj']}")
    return mask, calibration


if __name__ == "__main__":
    main()
