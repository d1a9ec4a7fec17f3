"""clskern.adapters.torch as MONAI sees it: real transforms, dictionary form, batches, ValidationStats."""

import copy
import pickle
import subprocess
import sys

import numpy as np
import pytest

import clskern
from clskern.synthetic import synthetic_case

torch = pytest.importorskip("torch")
monai = pytest.importorskip("monai")
from monai.data import (
    DataLoader,
    Dataset,
    MetaTensor,
    decollate_batch,
    list_data_collate,
)
from monai.transforms import (
    Activations,
    Activationsd,
    Compose,
    Flipd,
    Invertd,
    MapTransform,
    Transform,
)
from monai.transforms.utils import allow_missing_keys_mode

from clskern.adapters.torch import (
    AmbiguousLayoutError,
    CalibratedThreshold,
    CalibratedThresholdd,
    ValidationStats,
)

SHAPE = (20, 18, 12)
AFFINE = torch.diag(torch.tensor([0.8, 0.8, 2.0, 1.0], dtype=torch.float64))


def _case(seed, name):
    """One case as a MONAI pipeline holds it: softmax scores (2, ...) and a label (1, ...), MetaTensors."""
    p, y = synthetic_case(np.random.default_rng(seed), SHAPE, lesion_free=seed % 5 == 4)
    scores = torch.from_numpy(np.stack([1 - p, p]).copy())
    meta = {"filename_or_obj": name}
    return MetaTensor(scores, affine=AFFINE, meta=dict(meta)), MetaTensor(torch.from_numpy(y[None].astype(np.uint8)),
                                                                         affine=AFFINE, meta=dict(meta))


def test_transforms_are_monai_transforms_once_monai_is_imported():
    t, d = CalibratedThreshold(0.5, spatial_dims=3), CalibratedThresholdd("pred", 0.5, spatial_dims=3)
    assert isinstance(t, Transform) and isinstance(t, CalibratedThreshold) and not isinstance(t, MapTransform)
    assert isinstance(d, MapTransform) and isinstance(d, CalibratedThresholdd) and isinstance(d.transform, Transform)
    assert type(t).__name__ == "CalibratedThreshold" and repr(t).startswith("CalibratedThreshold(threshold=0.5")
    for obj in (t, d):  # DataLoader workers get transforms by pickle; Compose/CacheDataset copy them
        for clone in (pickle.loads(pickle.dumps(obj)), copy.deepcopy(obj)):
            assert type(clone) is type(obj) and clone.__dict__.keys() == obj.__dict__.keys()
    assert pickle.loads(pickle.dumps(d)).keys == ("pred",)


def test_no_monai_no_monai_classes_and_no_import():
    code = (
        "import sys; import clskern.adapters.torch as a\n"
        "t = a.CalibratedThreshold(0.5); d = a.CalibratedThresholdd('x', 0.5)\n"
        "print('monai' in sys.modules, type(t).__mro__[1].__name__, type(d).__mro__[1].__name__)\n"
        "import monai.transforms as mt\n"
        "t2 = a.CalibratedThreshold(0.5); d2 = a.CalibratedThresholdd('x', 0.5)\n"
        "print(isinstance(t, mt.Transform), isinstance(t2, mt.Transform), isinstance(d2, mt.MapTransform))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "_MonaiWhenImported", "_MonaiWhenImported", "False", "True", "True"]


def test_compose_cuts_the_calibrated_channel_and_keeps_metadata():
    scores, _ = _case(1, "case_1.nii.gz")
    logits = MetaTensor(torch.log(scores.as_tensor()), affine=AFFINE, meta={"filename_or_obj": "case_1.nii.gz"})
    t = float(scores[1].flatten()[77])  # a threshold equal to a score: ">=" includes it
    post = Compose([Activations(softmax=True), CalibratedThreshold(t, channel=1, spatial_dims=3)])
    mask = post(logits)
    probabilities = Activations(softmax=True)(logits)
    assert isinstance(mask, MetaTensor) and mask.dtype == torch.uint8 and mask.shape == (1, *SHAPE)
    assert torch.equal(mask.as_tensor(), (probabilities[1:2].as_tensor() >= t).to(torch.uint8))
    assert mask.meta["filename_or_obj"] == "case_1.nii.gz" and torch.equal(mask.affine, AFFINE)
    assert np.array_equal(mask.numpy(), clskern.apply_threshold(probabilities[1:2].numpy(), t))
    as_float = CalibratedThreshold(t, channel=1, batched=False, dtype=torch.float32)(scores)
    assert as_float.dtype == torch.float32 and torch.equal(as_float.as_tensor(), (scores[1:2] >= t).float().as_tensor())


def test_batched_metatensors_are_cut_item_by_item():
    cases = [_case(10 + i, f"case_{i}.nii.gz") for i in range(3)]
    batch = list_data_collate([{"pred": s} for s, _ in cases])["pred"]  # (3, 2, ...), is_batch
    assert batch.is_batch and batch.shape == (3, 2, *SHAPE)
    transform = CalibratedThreshold(0.4, channel=1, spatial_dims=3)
    mask = transform(batch)
    assert isinstance(mask, MetaTensor) and mask.shape == (3, 1, *SHAPE) and mask.is_batch
    items = decollate_batch(mask)
    for (scores, _), item in zip(cases, items):
        assert torch.equal(item.as_tensor(), (scores[1:2].as_tensor() >= 0.4).to(torch.uint8))
        assert item.meta["filename_or_obj"] == scores.meta["filename_or_obj"]
        assert torch.equal(transform(scores), item)  # one case: the same mask
    with pytest.raises(AmbiguousLayoutError, match="batched=False"):
        CalibratedThreshold(0.4, channel=1)(cases[0][0])  # (2, 20, 18, 12): one 3-D case or a 2-D batch?
    with pytest.raises(AmbiguousLayoutError):
        CalibratedThresholdd("pred", 0.4, channel=1)({"pred": cases[0][0]})


def test_dictionary_form_keys_and_missing_keys_as_monai_does():
    scores, label = _case(3, "case_3.nii.gz")
    data = {"pred": scores, "label": label, "id": "c"}
    post = Compose([Activationsd(keys="pred", softmax=False, sigmoid=False),
                    CalibratedThresholdd(["pred", "other"], 0.4, channel=1, spatial_dims=3, allow_missing_keys=True)])
    out = post(data)
    assert out["label"] is label and out["id"] == "c" and "other" not in out
    assert torch.equal(out["pred"].as_tensor(), (scores[1:2].as_tensor() >= 0.4).to(torch.uint8))
    assert out["pred"].meta["filename_or_obj"] == "case_3.nii.gz"
    strict = CalibratedThresholdd(["pred", "other"], 0.4, channel=1, spatial_dims=3)
    with pytest.raises(KeyError, match="'other'"):
        strict(data)
    with allow_missing_keys_mode(Compose([strict])):  # MONAI's own switch reaches ours
        assert strict(data)["pred"].shape == (1, *SHAPE)
    assert not strict.allow_missing_keys
    with pytest.raises(KeyError, match="allow_missing_keys is False"):
        list(strict.key_iterator(data, ["a", "b"]))
    lenient = CalibratedThresholdd(["pred", "other"], 0.4, allow_missing_keys=True)
    assert list(lenient.key_iterator(data, ["a", "b"])) == [("pred", "a")]  # MapTransform's extra iterables


def test_dictionary_form_after_invertd():
    """Pre-processing inverted on the prediction (Invertd), then the calibrated cut: both in one Compose."""
    scores, _ = _case(4, "case_4.nii.gz")
    pre = Compose([Flipd(keys="image", spatial_axis=0)])
    data = pre({"image": scores})
    data["pred"] = data["image"].clone()  # a model keeping the flipped geometry, as networks do
    post = Compose([Invertd(keys="pred", transform=pre, orig_keys="image", nearest_interp=False),
                    CalibratedThresholdd("pred", 0.4, channel=1, spatial_dims=3)])
    out = post(data)
    assert torch.equal(out["pred"].as_tensor(), (scores[1:2].as_tensor() >= 0.4).to(torch.uint8))  # unflipped
    assert out["pred"].meta["filename_or_obj"] == "case_4.nii.gz"


def test_cache_dataset_caches_the_cut():
    """A real Transform lets CacheDataset cache through it (it stops at the first non-Transform)."""
    from monai.data import CacheDataset

    scores, _ = _case(5, "case_5.nii.gz")
    ds = CacheDataset([{"pred": scores}], transform=Compose([CalibratedThresholdd("pred", 0.4, spatial_dims=3,
                                                                                  channel=1)]), progress=False)
    assert ds._cache[0]["pred"].dtype == torch.uint8
    assert torch.equal(ds[0]["pred"].as_tensor(), (scores[1:2].as_tensor() >= 0.4).to(torch.uint8))


def test_validation_stats_in_a_monai_loop_equal_direct_calibration():
    cases = [_case(20 + i, f"val_{i:02d}.nii.gz") for i in range(10)]
    loader = DataLoader(Dataset([{"pred": s, "label": y} for s, y in cases]), batch_size=3)
    stats = ValidationStats(epsilon=0.2, alpha=0.3)  # channel 1 of the 2-channel softmax
    batched = ValidationStats(epsilon=0.2, alpha=0.3)
    for batch in loader:
        stats(y_pred=decollate_batch(batch["pred"]), y=decollate_batch(batch["label"]))  # DiceMetric's call
        batched.update(batch["pred"], batch["label"])
    direct = {s.meta["filename_or_obj"]: clskern.volume_stats(s[1].numpy(), y[0].numpy(), name=s.meta["filename_or_obj"])
              for s, y in cases}
    assert stats.get_buffer() == direct == batched.get_buffer()  # ids: the MetaTensors' filename_or_obj
    calibration = stats.aggregate()
    reference = clskern.calibrate(direct, epsilon=0.2, alpha=0.3)
    assert calibration.threshold == reference.threshold and calibration.case_ids == reference.case_ids
    assert calibration.reading == {"label": None, "channel": 1}
    post = CalibratedThreshold(calibration, spatial_dims=3)  # cuts channel 1, the one calibrated
    assert torch.equal(post(cases[0][0]).as_tensor(), (cases[0][0][1:2].as_tensor() >= calibration.threshold)
                       .to(torch.uint8))
    with pytest.raises(clskern.InputError, match="val_00.nii.gz.*filename_or_obj.*reset"):
        stats(y_pred=[cases[0][0]], y=[cases[0][1]])  # the same case twice in a round
    stats.reset()
    stats(y_pred=[cases[0][0]], y=[cases[0][1]])
    assert list(stats.get_buffer()) == ["val_00.nii.gz"]


def test_lazy_metatensor_keeps_its_pending_operations_as_asdiscrete_does():
    from monai.transforms import AsDiscrete, Spacing

    img = MetaTensor(torch.rand(1, 16, 16, 8), affine=torch.diag(torch.tensor([1.0, 1.0, 2.0, 1.0])),
                     meta={"filename_or_obj": "lazy.nii.gz"})
    lazy = Spacing(pixdim=(2.0, 2.0, 2.0), lazy=True)(img)
    assert len(lazy.pending_operations) == 1
    mask, reference = CalibratedThreshold(0.5)(lazy), AsDiscrete(threshold=0.5)(lazy)
    assert len(mask.pending_operations) == len(reference.pending_operations) == 1
    assert mask.pending_operations is not lazy.pending_operations  # a copy, like applied_operations
    assert mask.peek_pending_shape() == reference.peek_pending_shape()
    assert torch.equal(mask.peek_pending_affine(), reference.peek_pending_affine())
    assert torch.equal(mask.as_tensor(), reference.as_tensor().to(torch.uint8))
