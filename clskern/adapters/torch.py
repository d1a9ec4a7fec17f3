"""PyTorch and MONAI: a calibrated-threshold transform and a validation-loop helper.

- ``CalibratedThreshold`` (and the dictionary form ``CalibratedThresholdd``)
  cuts a channel-first score tensor at a calibration's threshold, like MONAI's
  ``AsDiscrete(threshold=t)`` (``score >= t``), and keeps a ``MetaTensor``'s
  metadata (affine, filename, applied operations).
- ``ValidationStats`` gathers one ``VolumeStats`` per case from a validation
  loop (``update`` once per batch) and calibrates at the end.

No copies on the host: a CPU tensor is read through ``Tensor.numpy()``, a
view of its memory, and the mask is written into a NumPy array that the
returned tensor wraps (``torch.from_numpy``). CUDA tensors go to clskern's
GPU kernels (``backend="cuda"``) when this clskern has them, and are refused
with a clear error otherwise: a silent device-to-host copy is the expensive
part. torch is imported only when a tensor is passed; monai never is (a
``MetaTensor`` is recognised by its methods).
"""

import inspect
import os
import sys

import numpy as np

from ..apply import apply_threshold
from ..calibration import calibrate
from ..errors import ClsKernError, InputError, ScoreDtypeError
from ..volume import volume_stats
from ._threshold import load_threshold


class DeviceError(ClsKernError):
    """A tensor on a device clskern cannot read in place (say, CUDA without clskern's GPU kernels)."""


def _takes_backend(function):
    return "backend" in inspect.signature(function).parameters


def _torch_tensor_type():
    torch = sys.modules.get("torch")  # a tensor can exist only if torch is imported
    return None if torch is None else torch.Tensor


def _is_meta_tensor(obj):
    return hasattr(obj, "copy_meta_from") and hasattr(obj, "applied_operations")


def _plain(tensor):
    """The tensor's data as a plain ``torch.Tensor`` (no autograd graph, no copy)."""
    import torch

    return tensor.as_subclass(torch.Tensor).detach()


def read_in_place(x, *, name=None, what="scores"):
    """A tensor or array as something clskern's kernels read without a copy.

    Returns ``(array, device)``: a NumPy view sharing the tensor's memory and
    ``"cpu"``, or the (detached) CUDA tensor itself and ``"cuda"``.

    Raises
    ------
    DeviceError
        For tensors on another device (``meta``, ``mps`` ...), and for CUDA
        tensors when this clskern has no GPU kernels.
    ScoreDtypeError
        For dtypes NumPy cannot view (``bfloat16``).
    """
    tensor_type = _torch_tensor_type()
    if tensor_type is None or not isinstance(x, tensor_type):
        return np.asarray(x), "cpu"
    t = _plain(x)
    where = "" if name is None else f" of case {name!r}"
    if t.device.type == "cpu":
        try:
            return t.numpy(), "cpu"
        except TypeError as exc:
            raise ScoreDtypeError(f"{what}{where}: {t.dtype} tensors cannot be read in place ({exc}); "
                                  "convert them to float32 first") from None
    if t.device.type == "cuda":
        if not _takes_backend(apply_threshold):
            raise DeviceError(
                f"{what}{where} are a CUDA tensor, but this clskern has no GPU kernels (clskern.cuda); "
                "install a clskern with CUDA support, or move the tensor with .cpu() (a device-to-host copy)"
            )
        return t, "cuda"
    raise DeviceError(f"{what}{where} are on device {t.device}; clskern reads CPU or CUDA tensors")


class CalibratedThreshold:
    """Binarise a channel-first score tensor at a calibrated threshold: ``score >= threshold``.

    Parameters
    ----------
    calibration : Calibration, str, os.PathLike or float
        A ``Calibration``, a JSON file written by ``clskern calibrate`` (or
        ``Calibration.to_json``), or a threshold.
    channel : int, optional
        Keep only this channel (as a channel of size 1). Default: every
        channel, like ``AsDiscrete``.
    dtype : torch.dtype or numpy dtype, optional
        The mask's dtype. Default uint8 (0/1), written in place with no extra
        pass; MONAI's ``AsDiscrete`` returns the score dtype, so pass
        ``torch.float32`` to match it (one more pass over the mask).

    Call it on one case's channel-first scores ``(C, ...)`` (MONAI's post
    transforms see cases after ``decollate_batch``): a ``torch.Tensor`` (CPU,
    or CUDA with clskern's GPU kernels), a MONAI ``MetaTensor`` (metadata
    kept) or a NumPy array; you get the same kind back. The threshold is compared in float64, exactly as
    ``clskern.apply_threshold`` does, so the mask is the one the calibration's
    guarantee speaks about. NaN scores raise ``NaNScoresError``.
    """

    def __init__(self, calibration, *, channel=None, dtype=None):
        self.threshold = load_threshold(calibration)
        if channel is not None and (isinstance(channel, bool) or not isinstance(channel, (int, np.integer))):
            raise TypeError(f"channel must be an int or None, got {channel!r}")
        self.channel = None if channel is None else int(channel)
        self.dtype = dtype

    def __repr__(self):
        return f"CalibratedThreshold(threshold={self.threshold!r}, channel={self.channel!r})"

    def __call__(self, img, *, name=None):
        source = img
        if self.channel is not None:
            n = img.shape[0]
            if not -n <= self.channel < n:
                raise InputError(f"channel {self.channel} does not exist (the first axis has {n} channels)")
            c = self.channel % n
            img = img[c:c + 1]
        array, device = read_in_place(img, name=name)
        if device == "cuda":
            mask = apply_threshold(array, self.threshold, name=name, backend="cuda")
        else:
            mask = apply_threshold(array, self.threshold, name=name)
        tensor_type = _torch_tensor_type()
        if tensor_type is None or not isinstance(source, tensor_type):
            return mask if self.dtype is None else mask.astype(self.dtype)
        import torch

        out = mask if isinstance(mask, torch.Tensor) else torch.from_numpy(mask)
        if self.dtype is not None:
            out = out.to(self.dtype)
        if _is_meta_tensor(source):
            out = type(source)(out, meta=dict(source.meta), applied_operations=list(source.applied_operations))
        return out


class CalibratedThresholdd:
    """Dictionary form of ``CalibratedThreshold`` (MONAI's ``...d`` convention).

    Parameters
    ----------
    keys : str or sequence of str
        Entries to binarise; the others are passed through unchanged.
    calibration, channel, dtype
        As in ``CalibratedThreshold``.
    allow_missing_keys : bool
        Skip keys the dictionary lacks instead of raising ``KeyError``.
    """

    def __init__(self, keys, calibration, *, channel=None, dtype=None, allow_missing_keys=False):
        self.keys = (keys,) if isinstance(keys, str) else tuple(keys)
        self.transform = CalibratedThreshold(calibration, channel=channel, dtype=dtype)
        self.allow_missing_keys = allow_missing_keys

    def __call__(self, data):
        out = dict(data)
        for key in self.keys:
            if key not in out:
                if self.allow_missing_keys:
                    continue
                raise KeyError(f"key {key!r} not in the data ({', '.join(map(repr, out))})")
            out[key] = self.transform(out[key], name=str(key))
        return out


class ValidationStats:
    """Per-case statistics gathered in a validation loop, then a calibration.

    Parameters
    ----------
    channel : int, optional
        The lesion channel of the scores ``(B, C, ...)``. Default: 1 when
        ``C > 1`` (channel 0 is background), else 0.
    label : number, optional
        Lesion label value in multi-label masks (default: every label > 0).

    Call ``update(scores, labels)`` once per batch; each case is read once
    (``volume_stats``), in place, and only its statistics are kept (sorted
    lesion scores and a background histogram: kilobytes, not the volume).
    Then ``calibrate(epsilon=..., alpha=...)``, any number of times, for any
    method or tolerance, with no further pass over the data.

    The calibration cases must be held out from training, and the scores
    must be the ones the transform will see at test time (same softmax or
    sigmoid, same post-processing).
    """

    def __init__(self, *, channel=None, label=None):
        self.channel = channel
        self.label = label
        self._stats = {}

    def __len__(self):
        return len(self._stats)

    @property
    def stats(self):
        """``{case_id: VolumeStats}`` gathered so far (a copy of the mapping)."""
        return dict(self._stats)

    def update(self, scores, labels, case_ids=None):
        """Add one batch.

        Parameters
        ----------
        scores : tensor or array, shape (B, C, ...)
            Channel-first scores of ``B`` cases (probabilities or logits).
        labels : tensor or array, shape (B, 1, ...) or (B, ...)
            Ground-truth masks with the scores' spatial shape.
        case_ids : sequence of str, optional
            One id per case (say, ``batch["image"].meta["filename_or_obj"]``).
            Default: ``case_000000``, ``case_000001``, ... in arrival order.

        Returns
        -------
        list of VolumeStats
            This batch's statistics.
        """
        b = scores.shape[0]
        if labels.shape[0] != b:
            raise InputError(f"scores hold {b} cases but labels hold {labels.shape[0]}")
        spatial = tuple(scores.shape[2:])
        labels_have_channel = tuple(labels.shape[1:]) == (1, *spatial)
        if not labels_have_channel and tuple(labels.shape[1:]) != spatial:
            raise InputError(
                f"labels of shape {tuple(labels.shape)} do not match scores of shape {tuple(scores.shape)}: "
                f"expected ({b}, 1, *spatial) or ({b}, *spatial)"
            )
        ids = self._ids(b, case_ids)
        n_channels = scores.shape[1]
        channel = (1 if n_channels > 1 else 0) if self.channel is None else self.channel
        if not -n_channels <= channel < n_channels:
            raise InputError(f"channel {channel} does not exist (scores have {n_channels} channels)")
        done = []
        for i, case_id in enumerate(ids):
            s, s_device = read_in_place(scores[i, channel], name=case_id)
            y, y_device = read_in_place(labels[i, 0] if labels_have_channel else labels[i], name=case_id,
                                        what="labels")
            if "cuda" in (s_device, y_device):
                stats = volume_stats(s, y, label=self.label, name=case_id, backend="cuda")
            else:
                stats = volume_stats(s, y, label=self.label, name=case_id)
            done.append(stats)
        for case_id, stats in zip(ids, done):  # a failing batch adds nothing
            self._stats[case_id] = stats
        return done

    def _ids(self, b, case_ids):
        if case_ids is None:
            start = len(self._stats)
            ids = [f"case_{start + i:06d}" for i in range(b)]
        else:
            ids = [os.fspath(c) if isinstance(c, os.PathLike) else str(c) for c in case_ids]
            if len(ids) != b:
                raise InputError(f"{len(ids)} case ids for a batch of {b} cases")
        repeated = sorted({c for c in ids if c in self._stats or ids.count(c) > 1})
        if repeated:
            raise InputError(f"case ids seen before: {', '.join(repeated[:8])} (each case must be counted once)")
        return ids

    def calibrate(self, *, epsilon, alpha=None, method="cls", delta=None, empty="skip"):
        """``clskern.calibrate`` over the cases gathered so far (see it for the methods)."""
        if not self._stats:
            raise InputError("no cases gathered yet: call update() with validation batches first")
        return calibrate(self._stats, epsilon=epsilon, alpha=alpha, method=method, delta=delta, empty=empty)
