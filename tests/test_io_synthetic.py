"""The synthetic data set behind ``clskern demo``: what it promises to contain."""

import nibabel as nib
import numpy as np

import clskern
from clskern.synthetic import synthetic_case, write_dataset


def test_cases_look_like_model_outputs():
    rng = np.random.default_rng(11)
    fnr, n_lesion_voxels = [], []
    for _ in range(24):
        p, y = synthetic_case(rng, (40, 40, 24))
        assert p.dtype == np.float32 and y.dtype == np.uint8 and p.flags.f_contiguous
        assert 0 <= p.min() and p.max() <= 1 and set(np.unique(y)) <= {0, 1}
        stats = clskern.volume_stats(p, y)
        n_lesion_voxels.append(stats.n_fg)
        if stats.n_fg:
            fnr.append(float(stats.fnr(0.5)))
            assert np.median(p[y == 1]) > np.median(p[y == 0])  # lesions score higher
    fnr = np.array(fnr)
    assert (fnr <= 0.05).any() and (fnr >= 0.5).any()  # confident and under-confident cases
    assert max(n_lesion_voxels) > 5 * np.median(n_lesion_voxels)  # lesion sizes vary widely


def test_smooth_boundaries_and_lesion_free_cases():
    p, y = synthetic_case(np.random.default_rng(3), (40, 40, 24), lesion_free=True)
    assert not y.any() and p.max() < 0.999
    p, y = synthetic_case(np.random.default_rng(4), (40, 40, 24))
    edge = np.abs(np.diff(p, axis=0))
    assert np.percentile(edge, 99.9) < 0.9  # no hard steps: scores fall off over a few voxels


def test_write_dataset_is_reproducible(tmp_path):
    ids = write_dataset(tmp_path / "a", 4, shape=(12, 12, 8), seed=5, lesion_free_every=4)
    write_dataset(tmp_path / "b", 4, shape=(12, 12, 8), seed=5, lesion_free_every=4)
    assert ids == ["case_000", "case_001", "case_002", "case_003"]
    for case in ids:
        a = nib.load(tmp_path / "a" / "scores" / f"{case}.nii.gz")
        b = nib.load(tmp_path / "b" / "scores" / f"{case}.nii.gz")
        np.testing.assert_array_equal(a.get_fdata(), b.get_fdata())
    last = np.asanyarray(nib.load(tmp_path / "a" / "labels" / "case_003.nii.gz").dataobj)
    assert not last.any()  # every 4th case is lesion-free
