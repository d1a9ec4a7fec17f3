"""A realistic synthetic lesion data set, for the demo, tests and benchmarks.

Each case is a 3-D volume with a few ellipsoidal lesions of varied size and a
model-like score map: the logit falls off smoothly with the distance to a
lesion's boundary, a smooth random field adds false-positive blobs and ragged
edges, each case has its own confidence (over- or under-confident: a case
bias and gain), some small lesions are missed outright, and a few cases have
no lesion at all. Scores are float32 probabilities in Fortran order, labels
uint8 (1 = lesion), as nibabel would load them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

DEMO_SHAPE = (64, 64, 48)
SPACING = (1.0, 1.0, 2.0)


def _grid(shape):
    return np.meshgrid(*(np.arange(n, dtype=np.float32) for n in shape), indexing="ij", sparse=True)


def _smooth_field(rng, grid, shape, n_waves=8, wavelength=12.0):
    """Sum of random plane waves: smooth noise of unit scale, no scipy needed."""
    field = np.zeros(shape, np.float32)
    for _ in range(n_waves):
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        k = direction * (2 * np.pi / (wavelength * rng.uniform(0.6, 1.6)))
        phase = rng.uniform(0, 2 * np.pi)
        field += np.cos(k[0] * grid[0] + k[1] * grid[1] + k[2] * grid[2] + phase).astype(np.float32)
    return field * np.float32(np.sqrt(2.0 / n_waves))


def synthetic_case(rng: np.random.Generator, shape: Sequence[int] = DEMO_SHAPE, *,
                   lesion_free: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """One case: ``(scores, labels)``.

    Parameters
    ----------
    rng : numpy.random.Generator
    shape : tuple of 3 ints
    lesion_free : bool
        A case without lesions (its score map still has noise blobs).

    Returns
    -------
    scores : ndarray of float32, Fortran order
        Probabilities in [0, 1].
    labels : ndarray of uint8, Fortran order
        1 on lesion voxels, 0 elsewhere.
    """
    shape = tuple(int(n) for n in shape)
    grid = _grid(shape)
    bias = rng.normal(-0.6, 0.9)  # case confidence: < 0 under-, > 0 over-confident
    gain = rng.lognormal(0.3, 0.3)
    softness = rng.uniform(0.5, 1.0)  # voxels over which the boundary blurs
    noise = _smooth_field(rng, grid, shape)
    logit = -8.0 + 1.6 * noise  # background
    labels = np.zeros(shape, np.uint8)
    n_lesions = 0 if lesion_free else int(rng.integers(1, 6))
    scale = min(shape) / 64.0
    for _ in range(n_lesions):
        radii = np.clip(rng.lognormal(np.log(3.5 * scale), 0.5) * rng.uniform(0.7, 1.3, 3), 1.2, min(shape) / 4)
        radii[2] /= SPACING[2]  # anisotropic voxels, as in CT/MR
        centre = [rng.uniform(r + 1, n - r - 2) for r, n in zip(radii, shape, strict=True)]
        rho = np.sqrt(sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii, strict=True)))
        labels[rho <= 1.0] = 1
        distance = (rho - 1.0) * float(radii.min())  # ~ signed distance to the boundary, voxels
        missed = radii.max() < 3.0 * scale and rng.random() < 0.35
        offset = -6.0 if missed else rng.normal(0.0, 0.5)
        lesion_logit = gain * (-distance / softness) + 0.5 + bias + offset + 0.6 * noise
        np.maximum(logit, lesion_logit, out=logit)
    scores = (1.0 / (1.0 + np.exp(-logit))).astype(np.float32)
    return np.asfortranarray(scores), np.asfortranarray(labels)


def affine(shape: Sequence[int] = DEMO_SHAPE, spacing: Sequence[float] = SPACING) -> np.ndarray:
    """A plausible voxel-to-world affine (RAS, centred on the volume)."""
    a = np.diag([*spacing, 1.0])
    a[:3, 3] = [-(n - 1) * s / 2 for n, s in zip(shape, spacing, strict=True)]
    return a


def write_dataset(directory: str | os.PathLike[str], n_cases: int, *, shape: Sequence[int] = DEMO_SHAPE, seed: int = 0,
                  lesion_free_every: int = 8, prefix: str = "case") -> list[str]:
    """Write ``n_cases`` cases as ``scores/ID.nii.gz`` and ``labels/ID.nii.gz``.

    Every ``lesion_free_every``-th case has no lesion (0: none). Returns the
    case ids, in order.
    """
    import nibabel as nib

    rng = np.random.default_rng(seed)
    scores_dir = os.path.join(directory, "scores")
    labels_dir = os.path.join(directory, "labels")
    os.makedirs(scores_dir, exist_ok=True)
    os.makedirs(labels_dir, exist_ok=True)
    a = affine(shape)
    ids = []
    for i in range(n_cases):
        case_id = f"{prefix}_{i:03d}"
        free = bool(lesion_free_every) and i % lesion_free_every == lesion_free_every - 1
        scores, labels = synthetic_case(rng, shape, lesion_free=free)
        nib.save(nib.Nifti1Image(scores, a), os.path.join(scores_dir, f"{case_id}.nii.gz"))
        nib.save(nib.Nifti1Image(labels, a), os.path.join(labels_dir, f"{case_id}.nii.gz"))
        ids.append(case_id)
    return ids
