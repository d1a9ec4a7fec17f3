"""clskern.adapters.torch: the calibrated-threshold transform and the validation-loop helper."""

import dataclasses
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
    mask = CalibratedThreshold(t, channel=1, spatial_dims=3)(img)
    assert isinstance(mask, torch.Tensor) and mask.dtype == torch.uint8 and mask.shape == (1, *img.shape[1:])
    assert torch.equal(mask[0], (img[1] >= t).to(torch.uint8))
    assert np.array_equal(mask.numpy(), clskern.apply_threshold(img[1:2].numpy(), t))
    every = CalibratedThreshold(t)(img)  # like AsDiscrete: every channel
    assert torch.equal(every, (img >= t).to(torch.uint8))
    as_float = CalibratedThreshold(t, channel=-1, batched=False, dtype=torch.float32)(img)
    assert as_float.dtype == torch.float32 and torch.equal(as_float, (img[1:2] >= t).float())


def test_transform_reads_calibrations_files_and_numpy(tmp_path):
    scores, labels = _batch(2)
    stats = ValidationStats()
    stats.update(scores, labels)
    calibration = stats.calibrate(epsilon=0.3, alpha=0.5)
    path = tmp_path / "cal.json"
    path.write_text(calibration.to_json())
    assert calibration.reading == {"label": None, "channel": 1}  # the channel the cases were read from
    a = CalibratedThreshold(calibration, spatial_dims=3)(scores[0])  # cuts channel 1, as calibrated
    b = CalibratedThreshold(path, channel=1, spatial_dims=3)(scores[0])
    assert torch.equal(a, b) and a.shape == (1, *scores.shape[2:])
    with pytest.raises(clskern.InputError, match="calibrated on channel 1, but channel=0"):
        CalibratedThreshold(path, channel=0)
    n = CalibratedThreshold(str(path), batched=False)(scores[0].numpy())
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
        CalibratedThreshold(0.5, channel=2, spatial_dims=3)(torch.zeros(2, 4, 4, 4))
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
    batch = torch.zeros(2, 3, 3, 3, 3).as_subclass(FakeCudaTensor)  # each case cut on the device
    assert CalibratedThreshold(0.5, channel=1, batched=True)(batch).shape == (2, 1, 3, 3, 3)
    assert calls == ["cuda"] * 3


def test_requires_grad_tensors_are_read_without_their_graph():
    x = torch.rand(1, 5, 5, 5, requires_grad=True)
    assert torch.equal(CalibratedThreshold(0.5)(x), (x.detach() >= 0.5).to(torch.uint8))


def test_dictionary_transform():
    scores, labels = _batch(3, b=1)
    data = {"pred": scores[0], "label": labels[0], "id": "c"}
    out = CalibratedThresholdd("pred", 0.4, channel=1, spatial_dims=3)(data)
    assert out["label"] is data["label"] and out["id"] == "c" and out["pred"].shape == (1, *scores.shape[2:])
    with pytest.raises(KeyError, match="'nope'.*allow_missing_keys"):
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
    mask = CalibratedThreshold(0.5, channel=1, spatial_dims=3)(img)
    assert isinstance(mask, monai_data.MetaTensor)
    assert mask.meta["filename_or_obj"] == "case_7.nii.gz" and torch.equal(mask.affine, affine)
    assert torch.equal(mask.as_tensor(), (scores[0, 1:2] >= 0.5).to(torch.uint8))
    view, _ = read_in_place(img[1:2])
    assert np.shares_memory(view, scores.numpy())


def test_batches_are_cut_item_by_item_and_ambiguous_shapes_refused():
    scores, _ = _batch(5, b=3)  # (3, 2, 24, 20, 16)
    t = 0.45
    expected = (scores[:, 1:2] >= t).to(torch.uint8)
    for transform in (CalibratedThreshold(t, channel=1, spatial_dims=3), CalibratedThreshold(t, channel=1, batched=True)):
        mask = transform(scores)
        assert mask.shape == (3, 1, 24, 20, 16) and torch.equal(mask, expected)
        assert np.array_equal(transform(scores.numpy()), expected.numpy())
    one_case = CalibratedThreshold(t, channel=1, spatial_dims=3)(scores[2])
    assert torch.equal(one_case, expected[2])
    # A 4-D tensor with a channel to pick and nothing saying the layout: refused, never batch element 1.
    with pytest.raises(clskern.adapters.torch.AmbiguousLayoutError, match=r"spatial_dims=3 \(or 2\).*batched=False"):
        CalibratedThreshold(t, channel=1)(scores[0])
    assert issubclass(clskern.adapters.torch.AmbiguousLayoutError, clskern.InputError)
    # A batch of 2-D slices, said so: each slice's channel 1.
    slices = scores[:, :, :, :, 0]  # (3, 2, 24, 20), strided
    assert torch.equal(CalibratedThreshold(t, channel=1, spatial_dims=2)(slices), (slices[:, 1:2] >= t).to(torch.uint8))
    assert torch.equal(CalibratedThreshold(t, channel=1, batched=True)(slices), (slices[:, 1:2] >= t).to(torch.uint8))
    with pytest.raises(clskern.InputError, match=r"do not fit spatial_dims=3.*\(B, C, 3 spatial axes\)"):
        CalibratedThreshold(t, channel=1, spatial_dims=3, batched=True)(scores[0])
    with pytest.raises(clskern.InputError, match="do not fit spatial_dims=2"):
        CalibratedThreshold(t, channel=1, spatial_dims=2)(scores)
    with pytest.raises(clskern.InputError, match="channel 2 does not exist"):
        CalibratedThreshold(t, channel=2, batched=True)(scores)
    # Every channel (AsDiscrete): the layout does not change the mask, so it need not be given.
    assert torch.equal(CalibratedThreshold(t)(scores), (scores >= t).to(torch.uint8))
    assert torch.equal(CalibratedThreshold(t)(scores[0]), (scores[0] >= t).to(torch.uint8))
    for bad in ({"batched": 1}, {"spatial_dims": 0}, {"spatial_dims": True}, {"channel": 1.0}):
        with pytest.raises(TypeError):
            CalibratedThreshold(t, **bad)


def test_validation_stats_takes_lists_of_cases_and_aggregates_like_a_monai_metric():
    batches = [_batch(30 + i) for i in range(3)]
    batched = ValidationStats(epsilon=0.2, alpha=0.3)
    listed = ValidationStats(epsilon=0.2, alpha=0.3)
    for scores, labels in batches:
        batched.update(scores, labels)
        listed(y_pred=list(scores), y=[labels[i] for i in range(len(labels))])  # as decollate_batch gives them
    assert len(listed) == 9 and listed.get_buffer() == batched.get_buffer() == batched.stats
    direct = clskern.calibrate(listed.get_buffer(), epsilon=0.2, alpha=0.3)
    assert listed.aggregate() == dataclasses.replace(direct, reading={"label": None, "channel": 1})
    assert listed.aggregate(epsilon=0.4, alpha=None, method="crc").threshold == clskern.calibrate(
        listed.get_buffer(), epsilon=0.4, method="crc").threshold
    with pytest.raises(TypeError, match="epsilonn"):
        listed.aggregate(epsilonn=0.1)
    with pytest.raises(TypeError, match="epsilonn"):
        ValidationStats(epsilonn=0.1)
    with pytest.raises(clskern.InputError, match="no epsilon"):
        ValidationStats().aggregate()
    with pytest.raises(clskern.InputError, match="ground truth"):
        listed(batches[0][0])
    with pytest.raises(clskern.InputError, match="holds 3 cases but y holds 2"):
        listed(list(batches[0][0]), list(batches[0][1])[:2])
    listed.reset()
    assert len(listed) == 0 and listed.get_buffer() == {}
    listed.update(*batches[0])  # ids start again at case_000000
    assert list(listed.get_buffer()) == ["case_000000", "case_000001", "case_000002"]
    with pytest.raises(clskern.InputError, match="earlier cases were read from channel 1"):
        listed.update(batches[1][0][:, 1:], batches[1][1])  # one channel: channel 0 would be read


def test_minmax_calibrations_are_cut_per_case_in_their_scale():
    import inspect

    if "normalize" not in inspect.signature(clskern.calibrate).parameters:
        pytest.skip("this clskern has no normalize (SPEC 1d)")
    scores, labels = _batch(40, b=4)
    scores = scores * 0.5  # each case's maximum below 1: minmax rescaling changes the cut
    acc = ValidationStats(channel=1)
    acc.update(scores, labels)
    calibration = acc.aggregate(epsilon=0.2, alpha=0.4, normalize="minmax")
    assert calibration.normalize == "minmax"
    mask = CalibratedThreshold(calibration, spatial_dims=3)(scores)
    for i in range(4):
        expected = clskern.apply_threshold(scores[i, 1:2].numpy(), calibration.threshold, normalize="minmax")
        assert np.array_equal(mask[i].numpy(), expected)
    with pytest.raises(clskern.InputError, match="normalize='minmax'.*channel="):
        CalibratedThreshold(dataclasses.replace(calibration, reading=None))


def test_validation_stats_gather_every_process_under_torch_distributed(monkeypatch):
    """Two ranks, each with its own cases: get_buffer/aggregate see all (all_gather_object, faked here)."""
    import torch.distributed as dist

    mine, theirs = ValidationStats(epsilon=0.2, alpha=0.4), ValidationStats()
    mine.update(*_batch(50), case_ids=["a", "b", "c"])
    theirs.update(*_batch(51), case_ids=["d", "e", "f"])

    def all_gather_object(parts, obj):
        parts[0], parts[1] = obj, theirs._payload()  # what the other process contributes

    monkeypatch.setattr(dist, "is_available", lambda: True)
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda group=None: 2)
    monkeypatch.setattr(dist, "all_gather_object", all_gather_object)
    everything = {**mine.stats, **theirs.stats}
    assert mine.get_buffer() == everything and len(mine) == 3  # len: this process's cases
    assert mine.aggregate().threshold == clskern.calibrate(everything, epsilon=0.2, alpha=0.4).threshold
    theirs.update(*_batch(52, b=1), case_ids=["a"])
    with pytest.raises(clskern.InputError, match=r"'a' was counted on two processes \(ranks 0 and 1\).*even_divisible"):
        mine.get_buffer()
    # A process with no case of its own records the channel the others read.
    other = {"stats": theirs}

    def gather_other(parts, obj):
        parts[0], parts[1] = obj, other["stats"]._payload()

    monkeypatch.setattr(dist, "all_gather_object", gather_other)
    idle = ValidationStats(epsilon=0.2, alpha=0.4)
    assert idle.aggregate().reading == {"label": None, "channel": 1}
    # Default ids carry the rank: unique across processes.
    monkeypatch.setattr(dist, "get_rank", lambda group=None: 1)
    idle.update(*_batch(54, b=2))
    assert list(idle.stats) == ["rank1_case_000000", "rank1_case_000001"]
    # Padded repeats: the same case on two processes under default ids is refused by its statistics.
    padded = ValidationStats()
    monkeypatch.setattr(dist, "get_rank", lambda group=None: 0)
    repeated = _batch(57, b=2)
    padded.update(*repeated)
    other["stats"] = ValidationStats()
    monkeypatch.setattr(dist, "get_rank", lambda group=None: 1)
    other["stats"].update(repeated[0][:1], repeated[1][:1])  # rank 1 was handed rank 0's first case again
    with pytest.raises(clskern.InputError, match=r"'rank0_case_000000' and 'rank1_case_000000' \(default ids\) hold "
                                                 r"the same statistics.*even_divisible=False"):
        padded.get_buffer()
    other["stats"] = ValidationStats()
    other["stats"].update(*_batch(58, b=1))  # another case: fine
    assert len(padded.get_buffer()) == 3
    # Processes that read different channels are refused on each.
    one_channel = ValidationStats()
    scores, labels = _batch(56, b=1)
    one_channel.update(scores[:, 1:], labels, case_ids=["u"])  # one channel: channel 0 read
    other["stats"] = one_channel
    two_channels = ValidationStats()
    two_channels.update(*_batch(55, b=1), case_ids=["w"])  # channel 1 read
    with pytest.raises(clskern.InputError, match=r"processes read different channels \(rank 0: channel 1, rank 1: "
                                                 r"channel 0\): pass the same ValidationStats\(channel=...\)"):
        two_channels.aggregate(epsilon=0.3, alpha=0.5)


_TWO_RANKS = r"""
import os, sys
import torch, torch.distributed as dist, torch.multiprocessing as mp


def run(rank, init, out):
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    import clskern
    from clskern.adapters.torch import CalibratedThreshold, ValidationStats

    g = torch.Generator().manual_seed(rank)
    lines = []
    uneven = ValidationStats(epsilon=0.3, alpha=0.3)  # rank 1 gets no case
    if rank == 0:
        uneven(y_pred=torch.rand(8, 2, 6, 6, 6, generator=g), y=torch.rand(8, 1, 6, 6, 6, generator=g) > 0.7)
    cal = uneven.aggregate()
    mask = CalibratedThreshold(cal, batched=False)(torch.rand(2, 6, 6, 6))
    lines.append(f"uneven {cal.reading['channel']} {cal.n} {tuple(mask.shape)}")
    plain = ValidationStats()  # default ids on both ranks
    for _ in range(2):
        plain(y_pred=torch.rand(2, 2, 6, 6, 6, generator=g), y=torch.rand(2, 1, 6, 6, 6, generator=g) > 0.7)
    lines.append("ids " + ",".join(sorted(plain.get_buffer())))
    named = ValidationStats()  # ids given: a clash is still refused
    named(y_pred=torch.rand(1, 2, 6, 6, 6, generator=g), y=torch.rand(1, 1, 6, 6, 6, generator=g) > 0.7, case_ids=["same"])
    try:
        named.get_buffer()
        lines.append("clash none")
    except clskern.InputError as e:
        lines.append("clash " + str(e).split(":")[0])
    mixed = ValidationStats()  # 2 channels on rank 0, 1 on rank 1: channel 1 and channel 0
    mixed(y_pred=torch.rand(1, 2 - rank, 6, 6, 6, generator=g), y=torch.rand(1, 1, 6, 6, 6, generator=g) > 0.7,
          case_ids=[f"m{rank}"])
    try:
        mixed.aggregate(epsilon=0.3, alpha=0.5)
        lines.append("channels none")
    except clskern.InputError as e:
        lines.append("channels " + str(e))
    with open(os.path.join(out, f"rank{rank}.txt"), "w") as f:
        f.write("\n".join(lines))
    dist.destroy_process_group()


if __name__ == "__main__":
    mp.spawn(run, args=(sys.argv[1], sys.argv[2]), nprocs=2)
"""


def test_validation_stats_on_two_gloo_ranks(tmp_path):
    """Two real processes (gloo, CPU): the channel is gathered, default ids do not clash, given ids still do."""
    dist = pytest.importorskip("torch.distributed")
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    script = tmp_path / "two_ranks.py"
    script.write_text(_TWO_RANKS)
    init = (tmp_path / "rendezvous").as_uri()
    subprocess.run([sys.executable, str(script), init, str(tmp_path)], check=True, timeout=300)
    ranks = [(tmp_path / f"rank{r}.txt").read_text().splitlines() for r in range(2)]
    assert ranks[0] == ranks[1]  # every rank builds the same Calibration, and refuses alike
    lines = ranks[0]
    assert lines[0] == "uneven 1 8 (1, 6, 6, 6)"  # rank 1 had no case, yet cuts channel 1 as rank 0 read it
    assert lines[1] == "ids " + ",".join(f"rank{r}_case_00000{i}" for r in range(2) for i in range(4))
    assert lines[2] == "clash case 'same' was counted on two processes (ranks 0 and 1)"
    assert lines[3] == ("channels processes read different channels (rank 0: channel 1, rank 1: channel 0): "
                        "pass the same ValidationStats(channel=...) on every process")


def test_mask_dtype_given_any_way_on_tensors_and_arrays():
    x = torch.rand(2, 6, 6, 4)
    expected = x >= 0.5
    for dtype in (torch.float32, np.float32, np.dtype("float32"), "float32", "torch.float32"):
        t = CalibratedThreshold(0.5, dtype=dtype)
        as_tensor, as_array = t(x), t(x.numpy())
        assert as_tensor.dtype == torch.float32 and torch.equal(as_tensor, expected.float())
        assert as_array.dtype == np.float32 and np.array_equal(as_array, expected.numpy().astype(np.float32))
    assert CalibratedThreshold(0.5, dtype=torch.bool)(x.numpy()).dtype == np.bool_
    assert CalibratedThreshold(0.5, dtype="bool")(x).dtype == torch.bool
    assert CalibratedThreshold(0.5, dtype=np.int64)(x).dtype == torch.int64
    assert CalibratedThreshold(0.5, dtype="bfloat16")(x).dtype == torch.bfloat16  # tensors only
    with pytest.raises(clskern.ScoreDtypeError, match="no NumPy equivalent"):
        CalibratedThreshold(0.5, dtype=torch.bfloat16)(x.numpy())
    for bad in ("nonsense", object, "U8", torch.complex64, np.complex64, True, 3):
        with pytest.raises(clskern.ArgumentTypeError, match="dtype"):  # refused when created, not on first use
            CalibratedThreshold(0.5, dtype=bad)
    for ambiguous in ("float", "int"):  # NumPy's float is float64, torch's float32: which was meant?
        with pytest.raises(clskern.ArgumentTypeError, match="name the width"):
            CalibratedThreshold(0.5, dtype=ambiguous)
    assert repr(CalibratedThreshold(0.5, dtype=torch.float32)) == \
        "CalibratedThreshold(threshold=0.5, channel=None, dtype=torch.float32)"
    assert repr(CalibratedThresholdd("pred", 0.5, spatial_dims=3, dtype="float32", allow_missing_keys=True)) == (
        "CalibratedThresholdd(keys=('pred',), threshold=0.5, channel=None, spatial_dims=3, dtype='float32', "
        "allow_missing_keys=True)")
    assert repr(CalibratedThresholdd("pred", 0.5)) == "CalibratedThresholdd(keys=('pred',), threshold=0.5, channel=None)"


def test_validation_stats_say_which_shapes_were_expected():
    scores, labels = _batch(60, b=1)
    one, label = scores[0], labels[0]  # one case (2, ...) and its label (1, ...), no batch axis
    with pytest.raises(clskern.InputError, match=r"y_pred holds 2 cases \(a tensor of shape \(2, 24, 20, 16\)\) but y "
                                                 r"holds 1 .*\(B, C, \*spatial\).*\(C, \*spatial\).*x\[None\]"):
        ValidationStats()(y_pred=one, y=label)
    with pytest.raises(clskern.InputError) as info:  # one sigmoid case (1, ...): its labels have the same shape
        ValidationStats()(y_pred=scores[0, 1:], y=label)
    message = str(info.value)
    assert "one case without its batch axis" in message and "x[None]" in message and "one-hot" in message
    assert "read as C=24 channels of spatial shape (20, 16)" in message and "labels (1, 20, 16) or (20, 16)" in message
    with pytest.raises(clskern.InputError, match=r"one-hot labels are not supported: pass the lesion channel's labels, "
                                                 r"y\[:, c:c \+ 1\].*labels \(1, 24, 20, 16\) or \(24, 20, 16\)"):
        ValidationStats()(y_pred=[one], y=[torch.cat([1 - label, label])])


def test_aggregate_uses_the_constructors_alpha_only_for_methods_that_take_one():
    acc = ValidationStats(epsilon=0.2, alpha=0.5, delta=0.5)
    acc.update(*_batch(70, b=4))
    stats = acc.get_buffer()
    crc = acc.aggregate(method="crc")  # the constructor's alpha and delta are defaults crc has no use for
    assert crc.method == "crc" and crc.alpha is None and crc.delta is None
    assert crc.threshold == clskern.calibrate(stats, epsilon=0.2, method="crc").threshold
    cls = acc.aggregate()
    assert cls.alpha == 0.5 and cls.delta is None
    assert cls.threshold == clskern.calibrate(stats, epsilon=0.2, alpha=0.5).threshold
    assert acc.aggregate(method="cls-pac").delta == 0.5
    with pytest.raises(clskern.ArgumentError, match="'crc' takes no alpha"):
        acc.aggregate(method="crc", alpha=0.5)  # given to aggregate itself: still refused


_FORK_AFTER_OPENMP = r"""
import os, sys
import numpy as np
import numba
import clskern.adapters.torch as adapter
from clskern.adapters.torch import CalibratedThreshold, CalibratedThresholdd, ValidationStats

OpenMPForkError = getattr(adapter, "OpenMPForkError", ValueError)

x = np.random.default_rng(0).random((1, 16, 16, 8), dtype=np.float32)
scores, labels = np.concatenate([1 - x, x]), (x > 0.7).astype(np.uint8)
calls = [lambda: CalibratedThreshold(0.5)(x), lambda: CalibratedThresholdd("p", 0.5, channel=0, batched=True)({"p": x[None]}),
         lambda: ValidationStats()(y_pred=[scores], y=[labels])]


def in_child():
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        out = []
        for call in calls:
            try:
                call()
                out.append("ran")
            except OpenMPForkError as e:
                out.append("refused" + (" spawn" if "multiprocessing_context=\"spawn\"" in str(e) else "")
                           + (" workqueue" if "NUMBA_THREADING_LAYER=workqueue" in str(e) else ""))
        os.write(w, ";".join(out).encode())
        os._exit(0)
    os.close(w)
    data = os.read(r, 4096).decode()
    _, status = os.waitpid(pid, 0)
    return f"{data} status {status}"


print("before", in_child())  # the parent ran no parallel kernel yet: a forked child may
try:
    CalibratedThreshold(0.5)(x)
    layer = numba.threading_layer()
except Exception as e:  # omp asked for but not installed
    print("SKIP", e)
    sys.exit(0)
from numba.np.ufunc import omppool
if layer != "omp" or omppool.openmp_vendor != "GNU":
    print("SKIP", layer)
    sys.exit(0)
print("after", in_child())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork and GNU OpenMP: Linux")
def test_a_worker_forked_after_openmp_is_refused_clearly_not_killed(tmp_path):
    """A real fork after the parent ran the kernels under GNU OpenMP: OpenMPForkError naming the fix."""
    import os

    pytest.importorskip("numba")
    script = tmp_path / "fork_after_openmp.py"
    script.write_text(_FORK_AFTER_OPENMP)
    env = {**os.environ, "NUMBA_THREADING_LAYER": "omp"}
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, env=env,
                         check=False)
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines())
    if "SKIP" in lines:
        pytest.skip(f"no GNU OpenMP threading layer here: {lines['SKIP']}")
    assert lines["before"] == "ran;ran;ran status 0"
    assert lines["after"] == ";".join(["refused spawn workqueue"] * 3) + " status 0"
    assert issubclass(clskern.adapters.torch.OpenMPForkError, ValueError)


_DATALOADER_AFTER_A_CALL = r"""
import numpy as np, torch
import clskern
from clskern.adapters.torch import CalibratedThreshold

rng = np.random.default_rng(0)
volumes = [rng.random((24, 20, 16), dtype=np.float32) for _ in range(6)]
cut = CalibratedThreshold(0.5)
want = [int(cut(v[None]).sum()) for v in volumes]  # the parent runs the kernels first (NumPy in, NumPy out)


class Cases(torch.utils.data.Dataset):
    def __len__(self):
        return len(volumes)

    def __getitem__(self, i):
        y = (volumes[i] > 0.9).astype(np.uint8)
        return int(cut(volumes[i][None]).sum()), float(clskern.critical_threshold(volumes[i], y, 0.2))


loader = torch.utils.data.DataLoader(Cases(), batch_size=None, num_workers=2, multiprocessing_context="fork")
got = list(loader)
assert [g[0] for g in got] == want, (got, want)
assert [g[1] for g in got] == [float(clskern.critical_threshold(v, (v > 0.9).astype(np.uint8), 0.2)) for v in volumes]
print("ok", clskern._threads.threading_layer())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork is Linux's default start method")
def test_forked_dataloader_workers_call_clskern_after_the_parent_did(tmp_path):
    """Under clskern's default layer, DataLoader workers forked after a call run the kernels (they were killed
    under GNU OpenMP, the layer Numba chose before)."""
    import os

    script = tmp_path / "dataloader.py"
    script.write_text(_DATALOADER_AFTER_A_CALL)
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER"}
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, env=env,
                         check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split()[0] == "ok"
