"""Every runnable example in python_api/ runs here, and its result is checked independently."""

import os
import runpy

import nibabel as nib
import numpy as np
import pytest

import clskern
from clskern.io import read_npz
from clskern.synthetic import synthetic_case, write_dataset

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def example(name):
    """The example's functions, without running its ``__main__`` block."""
    return runpy.run_path(os.path.join(REPO, "python_api", name + ".py"), run_name="example")


def test_every_example_is_tested():
    tested = {"torch_validation_loop", "monai_postprocess", "nnunet_folders", "dask_stats"}
    found = {f[:-3] for f in os.listdir(os.path.join(REPO, "python_api")) if f.endswith(".py")}
    assert found == tested


def test_torch_validation_loop(tmp_path):
    pytest.importorskip("torch")
    ex = example("torch_validation_loop")
    calibration = ex["main"](["--output", str(tmp_path / "cal.json")])
    stats = [clskern.volume_stats(s[1].numpy(), y[0].numpy())
             for scores, labels in ex["validation_loader"]() for s, y in zip(scores, labels)]
    assert calibration.threshold == clskern.calibrate(stats, epsilon=0.2, alpha=0.2).threshold
    assert clskern.Calibration.from_json((tmp_path / "cal.json").read_text()).threshold == calibration.threshold


def test_monai_postprocess():
    pytest.importorskip("monai")
    import torch

    ex = example("monai_postprocess")
    mask, calibration = ex["main"]()
    p, _ = synthetic_case(np.random.default_rng(7), (32, 32, 24))
    logits = torch.from_numpy(np.stack([np.zeros_like(p), np.log(p) - np.log1p(-p)]))
    expected = torch.softmax(logits, dim=0)[1:2] >= calibration.threshold
    assert torch.equal(mask.as_tensor(), expected.to(torch.uint8))
    assert mask.meta["filename_or_obj"] == "case_007.nii.gz" and float(mask.affine[2, 2]) == 2.0


def test_nnunet_folders(tmp_path):
    ex = example("nnunet_folders")
    validation, labels, predictions = ex["write_synthetic_nnunet"](str(tmp_path))
    calibration, masks = ex["main"](["--validation", validation, "--labels", labels, "--predictions", predictions])
    stats = {}
    for name in sorted(os.listdir(validation)):
        if name.endswith(".npz"):
            case_id = name[:-4]
            y = np.asarray(nib.load(os.path.join(labels, case_id + ".nii.gz")).dataobj)
            stats[case_id] = clskern.volume_stats(read_npz(os.path.join(validation, name)), y, name=case_id)
    assert calibration.threshold == clskern.calibrate(stats, epsilon=0.2, alpha=0.2).threshold
    assert sorted(masks) == ["LESION_016", "LESION_017", "LESION_018"]
    for case_id, mask in masks.items():
        scores = read_npz(os.path.join(predictions, case_id + ".npz"))
        assert np.array_equal(mask, (scores >= calibration.threshold).astype(np.uint8))


def test_dask_stats(tmp_path, monkeypatch):
    pytest.importorskip("distributed")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (REPO, os.environ.get("PYTHONPATH")) if p))
    calibration = example("dask_stats")["main"](["--cases", "8"])  # its own LocalCluster
    ids = write_dataset(str(tmp_path), 8, shape=(32, 32, 24))
    stats = [clskern.volume_stats(np.asarray(nib.load(tmp_path / "scores" / f"{i}.nii.gz").dataobj),
                                  np.asarray(nib.load(tmp_path / "labels" / f"{i}.nii.gz").dataobj)) for i in ids]
    assert calibration.threshold == clskern.calibrate(stats, epsilon=0.2, alpha=0.2).threshold
