"""2-D slices of the synthetic suite, for peers that work on images (MAPIE)."""

import numpy as np

from .synthetic_suite import SHAPE, make_volume


def lesion_slices(kind, backbone, n_slices, *, seed=0, shape=SHAPE):
    """``(scores, labels)`` stacks of ``n_slices`` axial slices that contain lesion voxels.

    Slices come from consecutive synthetic volumes (every slice of a volume
    holding lesion voxels is kept, in order), so they share the suite's
    lesion and backbone models. Shapes ``(n_slices, y, x)``: float32 and uint8.
    """
    rng = np.random.default_rng([seed, 2])
    scores, labels = [], []
    while len(scores) < n_slices:
        s, l = make_volume(kind, backbone, rng, shape)
        for z in np.flatnonzero(l.reshape(l.shape[0], -1).any(axis=1)):
            scores.append(s[z])
            labels.append(l[z])
    return np.stack(scores[:n_slices]), np.stack(labels[:n_slices])
