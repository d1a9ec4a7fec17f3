"""The benchmark volume: a 512x256x128 float32 CT-like score map.

About 1 % of voxels are lesion, in a few dozen ball-shaped clusters; scores
are model-like: high inside lesions, low and noisy elsewhere, with soft
boundaries around each lesion (so the background has many distinct values).
"""

import numpy as np

SHAPE = (512, 256, 128)


def benchmark_volume(shape=SHAPE, order="F", lesion_fraction=0.01, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.uint8)
    target = lesion_fraction * np.prod(shape)
    while labels.sum(dtype=np.int64) < target:
        radius = rng.uniform(3, 12)
        centre = [rng.uniform(radius, s - radius) for s in shape]
        box = tuple(slice(int(max(0, c - radius)), int(min(s, c + radius + 1))) for c, s in zip(centre, shape))
        axes = np.ix_(*(np.arange(b.start, b.stop) - c for b, c in zip(box, centre)))
        dist2 = sum(a**2 for a in axes)
        labels[box][dist2 <= radius**2] = 1
    scores = rng.beta(1.0, 12.0, shape).astype(np.float32)
    lesion = labels.astype(bool)
    scores[lesion] = rng.beta(6.0, 2.0, int(lesion.sum())).astype(np.float32)
    if order == "F":
        return np.asfortranarray(scores), np.asfortranarray(labels)
    return scores, labels
