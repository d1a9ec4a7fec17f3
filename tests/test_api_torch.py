"""clskern.adapters.torch: the calibrated-threshold transform and the validation-loop helper."""

import subprocess
import sys

import numpy as np
import pytest

import clskern
from clskern.adapters.torch import (
    CalibratedThreshold,
    CalibratedThresholdd,
    DeviceError,
    ValidationStats,
    read_in_place,
)
from clskern.synthetic import synthetic_case

torch = pytest.importorskip("torch")


def _batch(seed, b=3, shape=(24, 20, 16)):
    """A validation batch as a model gives it: softmax ``(B, 2, ...)``, labels ``(B, 1, ...)``."""
    rng = np.random.default_rng(seed)
    cases = [synthetic_case(rng, shape, lesion_free=(seed + i) % 5 == 4) for i in range(b)]
    p = np.stack([c[0] for c in cases])
    scores = torch.from_numpy(np.stack([1 - p, p], axis=1).copy())
    labels = torch.from_numpy(np.stack([c[1] for c in cases])[:, None].astype(np.float32))
    return scores, labels


def test_import_does_not_import_torch_or_monai():
    code = "import clskern.adapters.torch, clskern.adapters.nnunet, sys; print('torch' in sys.modules, 'monai' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_transform_matches_apply_threshold_and_shares_memory():
    scores, _ = _batch(1, b=1)
    img = scores[0]  # (2, x, y, z) channel-first
    t = float(img[1].flatten()[123])  # a threshold equal to a score: ">=" must include it
    view, device = read_in_place(img[1:2])
    assert device == "cpu" and np.shares_memory(view, img.numpy())  # no host copy of the scores
    mask = CalibratedThreshold(t, channel=1)(img)
    assert isinstance(mask, torch.Tensor) and mask.dtype == torch.uint8 and mask.shape == (1, *img.shape[1:])
    assert torch.equal(mask[0], (img[1] >= t).to(torch.uint8))
    assert np.array_equal(mask.numpy(), clskern.apply_threshold(img[1:2].numpy(), t))
    every = CalibratedThreshold(t)(img)  # like AsDiscrete: every channel
    assert torch.equal(every, (img >= t).to(torch.uint8))
    as_float = CalibratedThreshold(t, channel=-1, dtype=torch.float32)(img)
    assert as_float.dtype == torch.float32 and torch.equal(as_float, (img[1:2] >= t).float())


def test_transform_reads_calibrations_files_and_numpy(tmp_path):
    scores, labels = _batch(2)
    stats = ValidationStats()
    stats.update(scores, labels)
    calibration = stats.calibrate(epsilon=0.3, alpha=0.5)
    path = tmp_path / "cal.json"
    path.write_text(calibration.to_json())
    a = CalibratedThreshold(calibration, channel=1)(scores[0])
    b = CalibratedThreshold(path, channel=1)(scores[0])
    assert torch.equal(a, b)
    n = CalibratedThreshold(str(path), channel=1)(scores[0].numpy())
    assert isinstance(n, np.ndarray) and np.array_equal(n, a.numpy())
    (tmp_path / "bad.json").write_text('{"threshold": 1}')
    with pytest.raises(clskern.InputError, match="bad.json"):
        CalibratedThreshold(tmp_path / "bad.json")
    with pytest.raises(TypeError):
        CalibratedThreshold([0.5])
    with pytest.raises(ValueError, match="NaN"):
        CalibratedThreshold(float("nan"))


def test_transform_refuses_what_it_cannot_read_in_place():
    with pytest.raises(DeviceError, match="device meta"):
        CalibratedThreshold(0.5)(torch.empty(1, 4, 4, 4, device="meta"))
    with pytest.raises(clskern.ScoreDtypeError, match="bfloat16"):
        CalibratedThreshold(0.5)(torch.zeros(1, 4, 4, 4, dtype=torch.bfloat16))
    with pytest.raises(clskern.InputError, match="channel 2"):
        CalibratedThreshold(0.5, channel=2)(torch.zeros(2, 4, 4, 4))
    nan = torch.zeros(1, 4, 4, 4)
    nan[0, 1, 2, 3] = float("nan")
    with pytest.raises(clskern.NaNScoresError):
        CalibratedThreshold(0.5)(nan)


def test_cuda_tensors_go_to_the_gpu_kernels_or_fail_clearly(monkeypatch):
    import clskern.adapters.torch as adapter

    class FakeCudaTensor(torch.Tensor):  # a CPU tensor reporting a CUDA device: tests the dispatch only
        @property
        def device(self):
            return torch.device("cuda", 0)

    fake = torch.zeros(1, 3, 3, 3).as_subclass(FakeCudaTensor)
    monkeypatch.setattr(adapter, "_plain", lambda t: t)
    if not adapter._takes_backend(adapter.apply_threshold):
        with pytest.raises(DeviceError, match="no GPU kernels"):
            CalibratedThreshold(0.5)(fake)
    calls = []

    def fake_apply(scores, threshold, *, out=None, name=None, backend="auto"):
        calls.append(backend)
        return torch.ones(scores.shape, dtype=torch.uint8)

    monkeypatch.setattr(adapter, "apply_threshold", fake_apply)
    assert CalibratedThreshold(0.5)(fake).shape == (1, 3, 3, 3) and calls == ["cuda"]


def test_requires_grad_tensors_are_read_without_their_graph():
    x = torch.rand(1, 5, 5, 5, requires_grad=True)
    assert torch.equal(CalibratedThreshold(0.5)(x), (x.detach() >= 0.5).to(torch.uint8))


def test_dictionary_transform():
    scores, labels = _batch(3, b=1)
    data = {"pred": scores[0], "label": labels[0], "id": "c"}
    out = CalibratedThresholdd("pred", 0.4, channel=1)(data)
    assert out["label"] is data["label"] and out["id"] == "c" and out["pred"].shape == (1, *scores.shape[2:])
    with pytest.raises(KeyError, match="'nope'"):
        CalibratedThresholdd(["nope"], 0.4)(data)
    assert CalibratedThresholdd(["nope"], 0.4, allow_missing_keys=True)(data).keys() == data.keys()


def test_validation_stats_equal_per_case_stats_and_calibrate():
    acc = ValidationStats()
    batches = [_batch(10 + i) for i in range(4)]
    for scores, labels in batches:
        acc.update(scores, labels)
    assert len(acc) == 12
    reference = {}
    for scores, labels in batches:
        for i in range(scores.shape[0]):
            case_id = f"case_{len(reference):06d}"
            reference[case_id] = clskern.volume_stats(scores[i, 1].numpy(), labels[i, 0].numpy(), name=case_id)
    assert acc.stats == reference
    for method, kw in [("cls", {"alpha": 0.3}), ("crc", {}), ("cls-pac", {"alpha": 0.5, "delta": 0.5})]:
        ours = acc.calibrate(epsilon=0.2, method=method, **kw)
        theirs = clskern.calibrate(reference, epsilon=0.2, method=method, **kw)
        assert ours.threshold == theirs.threshold and ours.n_skipped == theirs.n_skipped


def test_validation_stats_ids_shapes_and_channels():
    scores, labels = _batch(20, b=2)
    acc = ValidationStats(channel=1)
    acc.update(scores, labels[:, 0], case_ids=["a", "b"])  # labels without a channel axis
    with pytest.raises(clskern.InputError, match="seen before: a"):
        acc.update(scores, labels, case_ids=["a", "c"])
    assert len(acc) == 2  # the refused batch added nothing
    with pytest.raises(clskern.InputError, match="2 case ids for a batch of 3"):
        acc.update(*_batch(21, b=3), case_ids=["x", "y"])
    with pytest.raises(clskern.InputError, match="do not match"):
        acc.update(scores, labels[:, :, :-1])
    with pytest.raises(clskern.InputError, match="channel 5"):
        ValidationStats(channel=5).update(scores, labels)
    with pytest.raises(clskern.InputError, match="no cases"):
        ValidationStats().calibrate(epsilon=0.1, alpha=0.1)
    single = ValidationStats()  # one channel (sigmoid): channel 0 by default
    single.update(scores[:, 1:], labels, case_ids=["a", "b"])
    assert single.stats == acc.stats


def test_metatensor_metadata_is_kept():
    monai_data = pytest.importorskip("monai.data")
    scores, _ = _batch(4, b=1)
    affine = torch.diag(torch.tensor([0.8, 0.8, 2.0, 1.0], dtype=torch.float64))
    img = monai_data.MetaTensor(scores[0], affine=affine, meta={"filename_or_obj": "case_7.nii.gz"})
    mask = CalibratedThreshold(0.5, channel=1)(img)
    assert isinstance(mask, monai_data.MetaTensor)
    assert mask.meta["filename_or_obj"] == "case_7.nii.gz" and torch.equal(mask.affine, affine)
    assert torch.equal(mask.as_tensor(), (scores[0, 1:2] >= 0.5).to(torch.uint8))
    view, _ = read_in_place(img[1:2])
    assert np.shares_memory(view, scores.numpy())
