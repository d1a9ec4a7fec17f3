"""Synthetic data sets that imitate the paper's setting, scored by simulated backbones.

Six lesion types differ in size, shape, count and contrast (after the
paper's kidney, liver, lymph-node, lung-nodule, colon and pancreas tumour
sets); five "backbones" turn a case into voxel scores with distinct failure
modes. Volumes are small (default 16 x 32 x 32 voxels) so a whole suite is
generated and reduced to ``VolumeStats`` through ``clskern.volume_stats`` in
seconds, yet every score passes through the same code path as a real
volume's.

The score model: a lesion "evidence" field (the lesion mask, blurred, times
the case's contrast) plus spatially smooth noise, turned into a probability
by a sigmoid whose gain and bias the backbone sets. Contrast varies from
case to case, so critical thresholds spread out as they do on real data.
"""

from dataclasses import dataclass

import numba
import numpy as np

from ..volume import volume_stats

SHAPE = (16, 32, 32)
_BACKGROUND = 3.0  # background logit of every backbone before gain and bias


@dataclass(frozen=True)
class LesionType:
    """How lesions of one kind look: radii in voxels, count, elongation and contrast."""

    name: str
    radius: tuple  # (low, high) of the mean semi-axis, voxels
    count: tuple  # (low, high) lesions per case, inclusive
    elongation: float  # ratio of the longest to the shortest semi-axis
    contrast: float  # mean evidence at the lesion centre, in logits
    spread: float  # case-to-case spread of contrast (log-normal sigma)


@dataclass(frozen=True)
class Backbone:
    """A simulated segmentation model: sigmoid gain and bias, noise, blur and failure modes."""

    name: str
    gain: float  # > 1 overconfident, < 1 underconfident
    bias: float  # logit offset (negative: conservative)
    noise: float  # smooth noise amplitude, logits
    blur: int  # boundary blur half-width, voxels
    small_radius: float = 0.0  # lesions with mean radius below this are mostly missed
    boundary_noise: float = 0.0  # extra voxel-wise noise on the lesion boundary


LESION_TYPES = {
    "kidney": LesionType("kidney", (4.0, 6.5), (1, 1), 1.3, 3.0, 0.35),
    "liver": LesionType("liver", (2.5, 5.0), (1, 3), 1.2, 2.2, 0.45),
    "lymph_node": LesionType("lymph_node", (1.5, 3.0), (1, 4), 1.5, 1.6, 0.45),
    "lung_nodule": LesionType("lung_nodule", (1.0, 2.5), (1, 2), 1.1, 3.2, 0.40),
    "colon": LesionType("colon", (2.0, 3.5), (1, 1), 3.0, 1.4, 0.50),
    "pancreas": LesionType("pancreas", (2.5, 4.5), (1, 1), 1.8, 1.0, 0.55),
}

BACKBONES = {
    "calibrated": Backbone("calibrated", 1.0, 0.0, 0.8, 1),
    "overconfident": Backbone("overconfident", 3.0, -0.5, 0.8, 1),
    "underconfident": Backbone("underconfident", 0.35, -0.3, 0.8, 1),
    "misses_small": Backbone("misses_small", 1.0, 0.0, 0.8, 1, small_radius=2.5),
    "noisy_boundary": Backbone("noisy_boundary", 1.0, 0.0, 0.6, 2, boundary_noise=1.5),
}


def _blur(volume, width):
    """Separable box blur of half-width ``width`` (edges replicated), twice: a smooth bump."""
    out = np.asarray(volume, dtype=np.float64)
    size = 2 * width + 1
    for _ in range(2):
        for axis in range(out.ndim):
            moved = np.moveaxis(out, axis, 0)
            padded = np.pad(moved, [(width + 1, width)] + [(0, 0)] * (out.ndim - 1), mode="edge")
            padded[0] = 0.0
            csum = np.cumsum(padded, axis=0)
            out = np.moveaxis((csum[size:] - csum[:-size]) / size, 0, axis)
    return out


def _ellipsoid(rng, mean_radius, elongation, shape):
    """Slices of a random ellipsoid's bounding box and its mask inside that box."""
    stretch = np.sqrt(elongation)
    axes = rng.permutation(mean_radius * np.array([1.0 / stretch, 1.0, stretch]))
    margin = np.ceil(axes).astype(int) + 1
    centre = [rng.uniform(min(m, s / 2), max(s - 1 - m, s / 2)) for m, s in zip(margin, shape)]
    box = tuple(
        slice(max(int(np.floor(c - a)), 0), min(int(np.ceil(c + a)) + 1, s)) for c, a, s in zip(centre, axes, shape)
    )
    grid = np.ogrid[tuple(slice(b.start, b.stop) for b in box)]
    r2 = sum(((g - c) / a) ** 2 for g, c, a in zip(grid, centre, axes))
    return box, r2 <= 1.0


def _lesions(rng, kind, shape):
    """Lesion ids (0 background, 1.. per lesion) and each lesion's mean radius."""
    mask = np.zeros(shape, np.int32)
    radii = []
    for index in range(rng.integers(kind.count[0], kind.count[1] + 1)):
        mean_radius = rng.uniform(*kind.radius)
        box, inside = _ellipsoid(rng, mean_radius, kind.elongation, shape)
        region = mask[box]
        region[inside & (region == 0)] = index + 1
        radii.append(mean_radius)
    return mask, radii


def _mimic_radii(rng, kind):
    """Radii of the case's lesion mimics (vessels, cysts, bowel...): Poisson(1) of them."""
    return [rng.uniform(*kind.radius) * 0.8 for _ in range(rng.poisson(1.0))]


def make_volume(kind, backbone, rng, shape=SHAPE):
    """One synthetic case: float32 scores and uint8 labels of ``shape``.

    Parameters
    ----------
    kind : LesionType or str
    backbone : Backbone or str
    rng : numpy.random.Generator
    shape : tuple of int
    """
    kind = LESION_TYPES[kind] if isinstance(kind, str) else kind
    backbone = BACKBONES[backbone] if isinstance(backbone, str) else backbone
    lesion_ids, radii = _lesions(rng, kind, shape)
    labels = (lesion_ids > 0).astype(np.uint8)
    contrast = kind.contrast * rng.lognormal(0.0, kind.spread)
    weight = np.zeros(shape)
    for index, radius in enumerate(radii):
        seen = 0.15 if radius < backbone.small_radius else 1.0
        weight[lesion_ids == index + 1] = seen
    for radius in _mimic_radii(rng, kind):  # lesion-like structures in the background
        box, inside = _ellipsoid(rng, radius, kind.elongation, shape)
        weight[box][inside & (labels[box] == 0)] = rng.uniform(0.3, 0.75)
    # Half sharp, half blurred: lesion voxels keep at least half their evidence
    # even in small lesions, and evidence leaks just past the boundary.
    evidence = 0.5 * weight + 0.5 * _blur(weight, backbone.blur)
    noise = _blur(rng.standard_normal(shape), 1)
    noise /= noise.std()  # smooth, unit variance
    logit = (contrast + _BACKGROUND) * evidence - _BACKGROUND + backbone.noise * noise
    if backbone.boundary_noise:
        edge = (evidence > 0.05) & (evidence < 0.95)
        logit += backbone.boundary_noise * edge * rng.standard_normal(shape)
    logit = backbone.gain * (logit + backbone.bias)
    scores = (1.0 / (1.0 + np.exp(-logit))).astype(np.float32)
    return scores, labels


def _stable_id(name):
    """A seed component from a name, the same in every process (unlike ``hash``)."""
    return int.from_bytes(name.encode()[:8].ljust(8, b"\0"), "little")


def make_dataset(kind, backbone, n_cases, *, seed=0, shape=SHAPE):
    """``n_cases`` synthetic cases reduced to statistics: dict case id -> VolumeStats."""
    kind = LESION_TYPES[kind] if isinstance(kind, str) else kind
    backbone = BACKBONES[backbone] if isinstance(backbone, str) else backbone
    rng = np.random.default_rng([seed, _stable_id(kind.name), _stable_id(backbone.name)])
    out = {}
    threads = numba.get_num_threads()
    numba.set_num_threads(1)  # volumes this small gain nothing from threads
    try:
        for i in range(n_cases):
            name = f"{kind.name}-{backbone.name}-{i:04d}"
            scores, labels = make_volume(kind, backbone, rng, shape)
            out[name] = volume_stats(scores, labels, name=name)
    finally:
        numba.set_num_threads(threads)
    return out


def suite(n_cases, *, seed=0, shape=SHAPE, kinds=None, backbones=None):
    """Every (lesion type, backbone) pair: yields ``(kind, backbone, stats)``."""
    for kind in kinds or LESION_TYPES:
        for backbone in backbones or BACKBONES:
            yield kind, backbone, make_dataset(kind, backbone, n_cases, seed=seed, shape=shape)
