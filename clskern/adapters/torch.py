"""PyTorch and MONAI: a calibrated-threshold transform and a validation-loop helper.

- ``CalibratedThreshold`` (and the dictionary form ``CalibratedThresholdd``)
  cuts channel-first scores at a calibration's threshold, like MONAI's
  ``AsDiscrete(threshold=t)`` (``score >= t``), and keeps a ``MetaTensor``'s
  metadata (affine, filename, applied operations).
- ``ValidationStats`` gathers one ``VolumeStats`` per case from a validation
  loop, in the manner of MONAI's cumulative metrics (``__call__``/``update``
  per batch, ``aggregate``, ``reset``, ``get_buffer``).

**MONAI classes without importing MONAI.** Importing this module imports
neither torch nor monai (MONAI's import takes seconds). The transforms are
created as real MONAI transforms whenever MONAI is already imported in the
process: ``CalibratedThreshold(...)`` then returns an instance of a subclass
of both ``CalibratedThreshold`` and ``monai.transforms.Transform``
(``CalibratedThresholdd``: ``monai.transforms.MapTransform``), built once on
first use, so ``isinstance(t, monai.transforms.Transform)`` holds, ``Compose``
and ``CacheDataset`` treat it as one of theirs, and it pickles to DataLoader
workers. A program that never imports MONAI gets the plain callables, with
the same behaviour. (A transform created *before* MONAI is imported stays
plain; it still works in ``Compose``, which takes any callable.)

**One case or a batch.** MONAI's array transforms see one channel-first case
``(C, *spatial)`` (after ``decollate_batch``); a model gives batches
``(B, C, *spatial)``. Both are accepted, each item cut on its own, but which
one an input is must be known whenever it changes the result (a ``channel``
is picked): say ``spatial_dims=3`` (or 2) once, or ``batched=True/False``.
A shape that could be either is refused with ``AmbiguousLayoutError``,
never guessed.

No copies on the host: a CPU tensor is read through ``Tensor.numpy()``, a
view of its memory, and the mask is written into a NumPy array that the
returned tensor wraps (``torch.from_numpy``). CUDA tensors go to clskern's
GPU kernels (``backend="cuda"``) when this clskern has them, and are refused
with a clear error otherwise: a silent device-to-host copy is the expensive
part.

**DataLoader workers and OpenMP.** clskern's CPU kernels are Numba parallel
functions on the threading layer clskern picks (TBB, else workqueue;
docs/threads.md), which survives a fork: ``DataLoader(..., num_workers>0)``
workers, forked on Linux, run the transforms and ``ValidationStats`` as the
main process does. Only under Numba's ``omp`` layer (GNU OpenMP), which you
would have named with ``NUMBA_THREADING_LAYER=omp``, is a process forked
*after* the parent ran a kernel killed when it runs OpenMP again ("fork()
called from a process already using GNU OpenMP"). This module notices such a
fork (``os.register_at_fork``) and the transforms and ``ValidationStats`` then
raise ``OpenMPForkError`` (a ``ValueError``) naming the fix
(``multiprocessing_context="spawn"``, or another layer), instead of the worker
being killed.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import os
import re
import sys
from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..apply import apply_threshold
from ..calibration import calibrate
from ..calibration.record import NEEDS as _METHOD_PARAMETERS
from ..calibration.record import channel_to_cut
from ..errors import ArgumentTypeError, ClsKernError, InputError, ScoreDtypeError
from ..volume import volume_stats
from ._threshold import load_calibration

if TYPE_CHECKING:  # annotations only: torch is never imported for them
    from ..calibration.record import Calibration
    from ..volume import VolumeStats

    CalibrationSource = Calibration | str | os.PathLike[str] | float


class DeviceError(ClsKernError):
    """A tensor on a device clskern cannot read in place (say, CUDA without clskern's GPU kernels)."""


class AmbiguousLayoutError(InputError):
    """Scores whose shape fits one channel-first case and a batch alike, with nothing saying which."""


class OpenMPForkError(ClsKernError):
    """This process was forked after its parent ran clskern's kernels under GNU OpenMP, which it cannot run again."""


# --- Fork after OpenMP -------------------------------------------------------------------------
# GNU OpenMP cannot be used in a process forked from one that already used it: it kills the child.
# The hook below runs in every forked child and notes whether the parent had run Numba's parallel
# kernels under the 'omp' layer (numba.threading_layer() raises ValueError until one has run).

_FORKED_AFTER_OPENMP = False


def _note_fork_in_child() -> None:
    global _FORKED_AFTER_OPENMP
    numba = sys.modules.get("numba")
    if numba is None:
        return
    try:
        layer = numba.threading_layer()
    except Exception:  # noqa: BLE001 - ValueError: no parallel function ran in the parent yet
        return
    if layer != "omp":
        return
    vendor = getattr(sys.modules.get("numba.np.ufunc.omppool"), "openmp_vendor", "GNU")
    if vendor != "Intel":  # Intel's OpenMP runtime survives a fork; GNU's does not
        _FORKED_AFTER_OPENMP = True


if hasattr(os, "register_at_fork"):  # once, at import (POSIX)
    os.register_at_fork(after_in_child=_note_fork_in_child)


def _refuse_after_openmp_fork(what: str) -> None:
    if _FORKED_AFTER_OPENMP:
        raise OpenMPForkError(
            f"{what} cannot run in this process: it was forked (a DataLoader worker, say) after its parent ran "
            "clskern's Numba kernels under GNU OpenMP (threading layer 'omp'), and GNU OpenMP kills a forked "
            "process that uses it again; create the DataLoader with multiprocessing_context=\"spawn\" (or "
            "\"forkserver\"), or set NUMBA_THREADING_LAYER=workqueue (or tbb) before clskern is imported")


_AMBIGUOUS_NAMES = {"float": "float64 to NumPy and float32 to torch", "int": "int64 to NumPy and int32 to torch",
                    "double": "float64 to both, but say float64", "long": "int64 to torch and nothing to NumPy"}


def _check_dtype(dtype):
    """``(dtype, numpy dtype or None)`` for a torch dtype, a NumPy dtype or a name; refused otherwise."""
    if dtype is None:
        return None, None
    torch = sys.modules.get("torch")
    if isinstance(dtype, str) and dtype in _AMBIGUOUS_NAMES:  # NumPy and torch read these names differently
        raise ArgumentTypeError(f"dtype {dtype!r} means {_AMBIGUOUS_NAMES[dtype]}: name the width")
    if isinstance(dtype, str) and dtype.startswith("torch."):
        dtype = dtype[len("torch."):]
    if torch is not None and isinstance(dtype, str) and not _numpy_dtype_name(dtype):
        named = getattr(torch, dtype, None)
        if isinstance(named, torch.dtype):
            dtype = named
    if torch is not None and isinstance(dtype, torch.dtype):
        try:
            as_numpy = torch.empty(0, dtype=dtype).numpy().dtype
        except TypeError:  # bfloat16: no NumPy twin, fine for tensors
            as_numpy = None
        if (as_numpy is None and not dtype.is_floating_point) or (as_numpy is not None and as_numpy.kind not in "biuf"):
            raise ArgumentTypeError(f"dtype {dtype} cannot hold a mask: give a bool, integer or float dtype")
        return dtype, as_numpy
    try:
        as_numpy = np.dtype(dtype)
    except TypeError:
        as_numpy = None
    if as_numpy is None or isinstance(dtype, bool) or as_numpy.kind not in "biuf":
        raise ArgumentTypeError(f"dtype must be a bool, integer or float dtype: a torch dtype (torch.float32), a NumPy "
                                f"dtype (np.float32) or its name ('float32'), got {dtype!r}")
    return dtype, as_numpy


def _numpy_dtype_name(name):
    try:
        np.dtype(name)
    except TypeError:
        return False
    return True


def _takes_backend(function):
    return "backend" in inspect.signature(function).parameters


def _torch_tensor_type():
    torch = sys.modules.get("torch")  # a tensor can exist only if torch is imported
    return None if torch is None else torch.Tensor


def _is_tensor(obj):
    tensor_type = _torch_tensor_type()
    return tensor_type is not None and isinstance(obj, tensor_type)


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
    if not _is_tensor(x):
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


# --- MONAI twins -------------------------------------------------------------------------------
# A class naming its MONAI base in ``_monai_base`` gets a twin (a subclass of both) built on first use
# once MONAI is imported, reachable as the module attribute "_monai_<name>" so that pickle finds it.

_TWINNED = ("CalibratedThreshold", "CalibratedThresholdd")
_TWINS: dict[str, Any] = {}


def _monai_twin(cls):
    """The subclass of ``cls`` and its MONAI base class, built once; None if MONAI cannot be imported."""
    twin = _TWINS.get(cls.__name__)
    if twin is None:
        try:
            import monai.transforms
            from monai.utils import TransformBackends
        except Exception:  # noqa: BLE001 - a broken MONAI install: the plain transform still works
            return None
        base = getattr(monai.transforms, cls._monai_base)
        namespace = {
            "__module__": __name__,
            "__qualname__": f"_monai_{cls.__name__}",
            "__doc__": cls.__doc__,
            "backend": [TransformBackends.TORCH, TransformBackends.NUMPY],
        }
        twin = _TWINS.setdefault(cls.__name__, type(base)(cls.__name__, (cls, base), namespace))  # one, if raced
    return twin


def __getattr__(name):
    if name.startswith("_monai_") and name[len("_monai_"):] in _TWINNED:
        twin = _monai_twin(globals()[name[len("_monai_"):]])
        if twin is not None:
            return twin
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _MonaiWhenImported:
    """Instances are of the MONAI twin class whenever ``monai`` is imported (see the module docstring)."""

    def __new__(cls, *args, **kwargs):
        if "_monai_base" in cls.__dict__ and "monai" in sys.modules:  # not the twin, nor a user's subclass
            twin = _monai_twin(cls)
            if twin is not None:
                return twin.__new__(twin, *args, **kwargs)
        following = super().__new__  # MapTransform.__new__ for the twin of CalibratedThresholdd
        return following(cls) if following is object.__new__ else following(cls, *args, **kwargs)


def _check_channel(channel):
    if channel is not None and (isinstance(channel, bool) or not isinstance(channel, (int, np.integer))):
        raise TypeError(f"channel must be an int or None, got {channel!r}")
    return None if channel is None else int(channel)


def _check_layout(batched, spatial_dims):
    if batched is not None and not isinstance(batched, (bool, np.bool_)):
        raise TypeError(f"batched must be True, False or None, got {batched!r}")
    if spatial_dims is not None and (isinstance(spatial_dims, bool) or not isinstance(spatial_dims, (int, np.integer))
                                     or spatial_dims < 1):
        raise TypeError(f"spatial_dims must be a positive int or None, got {spatial_dims!r}")
    return (None if batched is None else bool(batched)), (None if spatial_dims is None else int(spatial_dims))


class CalibratedThreshold(_MonaiWhenImported):
    """Binarise channel-first scores at a calibrated threshold: ``score >= threshold``.

    Parameters
    ----------
    calibration : Calibration, str, os.PathLike or float
        A ``Calibration``, a JSON file written by ``clskern calibrate`` (or
        ``Calibration.to_json``), or a threshold.
    channel : int, optional
        Keep only this channel (as a channel of size 1). Default: the channel
        the calibration cases were read from, where the calibration records
        it (``Calibration.reading``; another channel is refused: the threshold
        holds only for that class), else every channel, like ``AsDiscrete``.
    spatial_dims : int, optional
        The number of spatial axes (3 for volumes, 2 for slices): an input
        with ``spatial_dims + 1`` axes is one case ``(C, *spatial)``, one with
        ``spatial_dims + 2`` a batch ``(B, C, *spatial)``; others are refused.
    batched : bool, optional
        Say the layout directly instead: False for one case (MONAI's
        convention for array transforms), True for a batch.
    dtype : torch.dtype, numpy dtype or str, optional
        The mask's dtype, for tensors and arrays alike: ``torch.float32``,
        ``np.float32`` and ``"float32"`` are the same (a bool, integer or
        float dtype; anything else is refused here, with
        ``ArgumentTypeError``). Default uint8 (0/1), written in place with no
        extra pass; MONAI's ``AsDiscrete`` returns the score dtype, so pass
        ``torch.float32`` to match it (one more pass over the mask).

    Call it on one case ``(C, *spatial)`` or a batch ``(B, C, *spatial)``
    (each item cut on its own, the mask ``(B, 1, *spatial)`` with a channel):
    a ``torch.Tensor`` (CPU, or CUDA with clskern's GPU kernels), a MONAI
    ``MetaTensor`` (metadata kept) or a NumPy array; you get the same kind
    back. When a channel is picked and neither ``spatial_dims`` nor
    ``batched`` tells which layout an input has, it is refused with
    ``AmbiguousLayoutError``. The threshold is compared in float64, exactly
    as ``clskern.apply_threshold`` does, so the mask is the one the
    calibration's guarantee speaks about. NaN scores raise ``NaNScoresError``.
    A ``MetaTensor``'s metadata, applied and pending (lazy) operations are
    carried over to the mask, as ``AsDiscrete`` does.

    In ``DataLoader`` workers: only under a GNU OpenMP layer you chose
    (``NUMBA_THREADING_LAYER=omp``) does a worker *forked* after the main
    process ran clskern's kernels raise ``OpenMPForkError``; use
    ``multiprocessing_context="spawn"`` or the default layer (module docstring).

    A ``monai.transforms.Transform`` when MONAI is imported (module docstring).
    """

    _monai_base = "Transform"

    def __init__(self, calibration: CalibrationSource, *, channel: int | None = None, spatial_dims: int | None = None,
                 batched: bool | None = None, dtype: Any = None) -> None:
        self.threshold, recorded, self.normalize = load_calibration(calibration)
        channel = _check_channel(channel)
        self.channel = channel_to_cut(recorded, channel)
        if self.normalize != "none" and self.channel is None:
            raise InputError(f"a calibration with normalize={self.normalize!r} rescales one channel's scores per "
                             "case: pass channel=")
        self.batched, self.spatial_dims = _check_layout(batched, spatial_dims)
        self.dtype, self._numpy_dtype = _check_dtype(dtype)

    def __repr__(self) -> str:
        layout = "".join(f", {k}={getattr(self, k)!r}" for k in ("spatial_dims", "batched", "dtype")
                         if getattr(self, k) is not None)
        return f"CalibratedThreshold(threshold={self.threshold!r}, channel={self.channel!r}{layout})"

    def is_batch(self, img: Any) -> bool:
        """True if ``img`` is a batch ``(B, C, *spatial)``, False for one case ``(C, *spatial)``.

        Raises ``AmbiguousLayoutError`` when the shape does not say and
        neither ``spatial_dims`` nor ``batched`` was given, and ``InputError``
        when the shape contradicts them.
        """
        n = len(img.shape)
        if self.spatial_dims is not None:
            layouts = {self.spatial_dims + 1: False, self.spatial_dims + 2: True}
            if n not in layouts or (self.batched is not None and layouts[n] != self.batched):
                wanted = [f"({'B, ' if b else ''}C, {self.spatial_dims} spatial axes)"
                          for b in layouts.values() if self.batched in (None, b)]
                raise InputError(f"scores of shape {tuple(img.shape)} do not fit spatial_dims={self.spatial_dims}"
                                 f"{'' if self.batched is None else f', batched={self.batched}'}: "
                                 f"expected {' or '.join(wanted)}")
            return layouts[n]
        if self.batched is not None:
            if n < 2 + self.batched:
                raise InputError(f"scores of shape {tuple(img.shape)}: expected "
                                 f"{'(B, C, *spatial)' if self.batched else '(C, *spatial)'}")
            return self.batched
        if n <= 2:  # a batch needs at least one spatial axis
            return False
        raise AmbiguousLayoutError(
            f"scores of shape {tuple(img.shape)} could be one case (C, {n - 1} spatial axes) or a batch "
            f"(B, C, {n - 2} spatial axes), so channel {self.channel} cannot be picked; say which: "
            f"spatial_dims={n - 1} (or {n - 2}), or batched=False (one case, what MONAI's array transforms "
            "get after decollate_batch) or batched=True")

    def __call__(self, img: Any, *, name: str | None = None) -> Any:
        source = img
        if self.channel is None:
            # Every channel: one case and a batch give the same mask, so the layout need not be known.
            batched = self.is_batch(img) if (self.spatial_dims, self.batched) != (None, None) else False
            if batched and len(img.shape) < 2:
                raise InputError(f"scores of shape {tuple(img.shape)}: expected (B, C, *spatial)")
            mask = self._cut(img, name)
        else:
            batched = self.is_batch(img)
            axis = int(batched)
            n = img.shape[axis]
            if not -n <= self.channel < n:
                raise InputError(f"channel {self.channel} does not exist (the channel axis has {n} channels)")
            c = self.channel % n
            if batched:
                mask = self._cut_batch(img, c, name)
            else:
                mask = self._cut(img[c:c + 1], name)
        return self._wrap(mask, source)

    def _apply(self, scores, **kwargs):
        if self.normalize != "none":  # the cut of a calibration on rescaled scores (Calibration.normalize)
            kwargs["normalize"] = self.normalize
        return apply_threshold(scores, self.threshold, **kwargs)

    def _cut(self, img, name):
        array, device = read_in_place(img, name=name)
        if device == "cuda":
            return self._apply(array, name=name, backend="cuda")
        _refuse_after_openmp_fork("CalibratedThreshold")
        return self._apply(array, name=name)

    def _cut_batch(self, img, c, name):
        """Each item's channel ``c``, cut on its own (contiguous per item), into one ``(B, 1, ...)`` mask."""
        b = img.shape[0]
        names = [name if name is None else f"{name}[{i}]" for i in range(b)]
        if _is_tensor(img) and _plain(img).device.type == "cuda":
            import torch

            return torch.stack([self._cut(img[i, c:c + 1], names[i]) for i in range(b)])
        _refuse_after_openmp_fork("CalibratedThreshold")
        mask = np.empty((b, 1, *img.shape[2:]), dtype=np.uint8)
        for i in range(b):
            scores, _ = read_in_place(img[i, c:c + 1], name=names[i])
            if scores.flags.c_contiguous:
                self._apply(scores, out=mask[i], name=names[i])
            else:  # a strided view: the kernel orders the mask its own way
                mask[i] = self._apply(scores, name=names[i])
        return mask

    def _wrap(self, mask, source):
        if not _is_tensor(source):
            if self.dtype is None:
                return mask
            if self._numpy_dtype is None:
                raise ScoreDtypeError(f"dtype={self.dtype} has no NumPy equivalent, so NumPy scores cannot get such a "
                                      "mask; pass a tensor, or a dtype NumPy has (float32)")
            return mask.astype(self._numpy_dtype, copy=False)
        import torch

        out = mask if isinstance(mask, torch.Tensor) else torch.from_numpy(mask)
        if self.dtype is not None:
            wanted = self.dtype if isinstance(self.dtype, torch.dtype) else \
                torch.from_numpy(np.empty(0, dtype=self._numpy_dtype)).dtype
            out = out.to(wanted)
        if _is_meta_tensor(source):
            out = type(source)(out, meta=dict(source.meta), applied_operations=list(source.applied_operations))
            for operation in getattr(source, "pending_operations", None) or ():  # lazy resampling, as AsDiscrete keeps
                out.push_pending_operation(operation)
            out.is_batch = source.is_batch
        return out


class CalibratedThresholdd(_MonaiWhenImported):
    """Dictionary form of ``CalibratedThreshold`` (MONAI's ``...d`` convention).

    Parameters
    ----------
    keys : hashable or sequence of hashables
        Entries to binarise; the others are passed through unchanged.
    calibration, channel, spatial_dims, batched, dtype
        As in ``CalibratedThreshold``.
    allow_missing_keys : bool
        Skip keys the dictionary lacks instead of raising ``KeyError``.

    A ``monai.transforms.MapTransform`` when MONAI is imported (module
    docstring); keys are checked and iterated as ``MapTransform`` does.
    """

    _monai_base = "MapTransform"

    def __init__(self, keys: Hashable | Iterable[Hashable], calibration: CalibrationSource, *, channel: int | None = None,
                 spatial_dims: int | None = None, batched: bool | None = None, dtype: Any = None,
                 allow_missing_keys: bool = False) -> None:
        if isinstance(keys, (str, bytes)) or not hasattr(keys, "__iter__"):
            keys = (keys,)
        self.keys = tuple(keys)  # type: ignore[arg-type]  # one key was made a tuple above
        if not self.keys:
            raise ValueError("keys must be non empty")
        for key in self.keys:
            try:
                hash(key)
            except TypeError:
                raise TypeError(f"keys must be hashable, got {key!r}") from None
        self.allow_missing_keys = bool(allow_missing_keys)
        self.transform = CalibratedThreshold(calibration, channel=channel, spatial_dims=spatial_dims,
                                             batched=batched, dtype=dtype)

    def __repr__(self) -> str:
        inner = repr(self.transform)[len("CalibratedThreshold("):-1]
        missing = ", allow_missing_keys=True" if self.allow_missing_keys else ""
        return f"CalibratedThresholdd(keys={self.keys!r}, {inner}{missing})"

    def key_iterator(self, data: Mapping[Hashable, Any], *extra_iterables: Iterable[Any]) -> Iterator[Any]:
        """The keys of ``data`` to transform (with items of ``extra_iterables``), as ``MapTransform``'s."""
        extras = extra_iterables or [[None] * len(self.keys)]
        for key, *rest in zip(self.keys, *extras):
            if key in data:
                yield (key, *rest) if extra_iterables else key
            elif not self.allow_missing_keys:
                raise KeyError(f"key {key!r} of {type(self).__name__} is not in the data "
                               f"({', '.join(map(repr, data))}) and allow_missing_keys is False")

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        out = dict(data)
        for key in self.key_iterator(out):
            out[key] = self.transform(out[key], name=str(key))
        return out


def _calibration_options(options, where):
    """``options`` checked against ``clskern.calibrate``'s keywords."""
    known = [n for n, p in inspect.signature(calibrate).parameters.items() if p.kind is p.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise TypeError(f"{where} got options clskern.calibrate does not take: {', '.join(unknown)} "
                        f"(it takes {', '.join(known)})")
    return dict(options)


class ValidationStats:
    """Per-case statistics gathered in a validation loop, then a calibration: a MONAI-style cumulative metric.

    Parameters
    ----------
    channel : int, optional
        The lesion channel of the scores. Default: 1 when there are ``C > 1``
        channels (channel 0 is background), else 0.
    label : number, optional
        Lesion label value in multi-label masks (default: every label > 0).
    **calibrate_options
        The calibration ``aggregate()`` computes: ``clskern.calibrate``'s
        keywords (``epsilon``, ``alpha``, ``method``, ``delta``, ``empty``
        ...); each can also be given to ``aggregate`` itself.

    Use it like MONAI's ``DiceMetric``: ``stats(y_pred=scores, y=labels)``
    (or ``stats.update(...)``) once per batch, ``stats.aggregate()`` at the
    end of the round, ``stats.reset()`` before the next. ``y_pred`` are the
    *scores* (after softmax or sigmoid, before any threshold), either a
    batch-first tensor ``(B, C, *spatial)`` or a list of channel-first cases
    ``(C, *spatial)`` as ``decollate_batch`` gives them; ``y`` likewise,
    ``(B, 1, *spatial)``, ``(B, *spatial)`` or a list of ``(1, *spatial)``.

    Each case is read once, in place (``volume_stats``), and only its
    statistics are kept (sorted lesion scores and a background histogram:
    kilobytes, not the volume); ``get_buffer()`` returns them as
    ``{case_id: VolumeStats}``. ``aggregate()`` returns the ``Calibration``
    (with the channel and label it was read with, so ``CalibratedThreshold``
    cuts that channel), and can be called again for any epsilon, alpha or
    method with no further pass over the data.

    Under ``torch.distributed`` (initialised, several processes), each
    process gathers its own cases and ``get_buffer``/``aggregate``, called on
    every process like MONAI's, gather all of them (``all_gather_object``),
    together with the channel each process read, so each process calibrates
    on every case and records the same channel, even a process that got no
    case (processes that read different channels are refused). Default case
    ids are then ``rank{r}_case_000000``, ... (unique across processes); ids
    you give, or the file names of ``MetaTensor`` inputs, must be unique across
    processes, and a case counted on two processes is refused. A
    ``DistributedSampler`` that pads the dataset to a multiple of the number
    of processes (MONAI's ``even_divisible=True``, torch's default) repeats
    cases: refused by their ids, or, with default ids, by their identical
    statistics (cases with lesions; lesion-free repeats are not detected).
    Use ``monai.data.DistributedSampler(..., even_divisible=False)`` for
    validation.

    In a ``DataLoader`` worker forked after the main process ran clskern's
    kernels under GNU OpenMP, ``update`` raises ``OpenMPForkError`` (module
    docstring); gather statistics in the main process, or use
    ``multiprocessing_context="spawn"``.

    This is not a subclass of ``monai.metrics.Cumulative``: its buffers are
    tensors concatenated along a batch axis, while a case's statistics are
    variable-sized records; the method names are MONAI's.

    The calibration cases must be held out from training, and the scores
    must be the ones the transform will see at test time (same softmax or
    sigmoid, same post-processing).
    """

    def __init__(self, *, channel: int | None = None, label: float | None = None, **calibrate_options: Any) -> None:
        # calibrate_options are defaults: aggregate() drops the constructor's alpha or delta for a method that takes
        # none (crc), while one given to aggregate() itself is still refused by such a method.
        self.channel = _check_channel(channel)
        self.label = label
        self.options = _calibration_options(calibrate_options, "ValidationStats()")
        self._stats: dict[str, VolumeStats] = {}
        self._channel_read = None

    def __len__(self) -> int:
        return len(self._stats)

    @property
    def stats(self) -> dict[str, VolumeStats]:
        """``{case_id: VolumeStats}`` gathered so far by this process (a copy of the mapping)."""
        return dict(self._stats)

    def reset(self) -> None:
        """Forget every case (before the next validation round)."""
        self._stats = {}
        self._channel_read = None

    def get_buffer(self) -> dict[str, VolumeStats]:
        """``{case_id: VolumeStats}`` of every case so far, on every process under ``torch.distributed``."""
        return self._gather()[0]

    def _payload(self) -> dict[str, Any]:
        """What this process contributes to the gather: its cases' statistics and the channel it read."""
        return {"stats": {k: v.to_bytes() for k, v in self._stats.items()}, "channel": self._channel_read}

    def _gather(self) -> tuple[dict[str, VolumeStats], int | None]:
        """Every process's cases and the one channel they were read from (this process's alone if not distributed)."""
        dist = _distributed()
        if dist is None:
            return dict(self._stats), self._channel_read
        from ..volume import VolumeStats

        parts: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(parts, self._payload())
        merged: dict[str, VolumeStats] = {}
        owner: dict[str, int] = {}
        for rank, part in enumerate(parts):
            for case_id, data in part["stats"].items():
                if case_id in merged:
                    raise InputError(f"case {case_id!r} was counted on two processes (ranks {owner[case_id]} and "
                                     f"{rank}): give every case to one process only (a DistributedSampler that pads, "
                                     "even_divisible=True, repeats cases: use even_divisible=False), or distinct "
                                     "case_ids")
                merged[case_id], owner[case_id] = VolumeStats.from_bytes(data), rank
        _refuse_padded_repeats(merged)
        read = {rank: part["channel"] for rank, part in enumerate(parts) if part["channel"] is not None}
        if len(set(read.values())) > 1:
            raise InputError("processes read different channels (" + ", ".join(f"rank {r}: channel {c}" for r, c in
                             read.items()) + "): pass the same ValidationStats(channel=...) on every process")
        return merged, next(iter(read.values()), None)

    def __call__(self, y_pred: Any, y: Any = None, case_ids: Sequence[str] | None = None) -> list[VolumeStats]:
        """``update``, named as MONAI's metrics are called."""
        return self.update(y_pred, y, case_ids=case_ids)

    def update(self, y_pred: Any, y: Any = None, case_ids: Sequence[str] | None = None) -> list[VolumeStats]:
        """Add one batch.

        Parameters
        ----------
        y_pred : tensor or array ``(B, C, *spatial)``, or a sequence of ``(C, *spatial)``
            Scores (probabilities or logits) of ``B`` cases.
        y : tensor or array ``(B, 1, *spatial)`` or ``(B, *spatial)``, or a sequence of ``(1, *spatial)``
            Ground-truth masks with the scores' spatial shape.
        case_ids : sequence of str, optional
            One id per case. Default: the cases' ``filename_or_obj`` when
            ``y_pred`` are ``MetaTensor``\\ s that each name one, else
            ``case_000000``, ``case_000001``, ... in arrival order
            (``rank1_case_000000``, ... on rank 1 under ``torch.distributed``,
            so that ranks do not clash).

        Returns
        -------
        list of VolumeStats
            This batch's statistics (a batch that fails adds nothing).
        """
        if y is None:
            raise InputError("ValidationStats needs the ground truth: update(y_pred=scores, y=labels)")
        preds, labels = _cases(y_pred, "y_pred"), _cases(y, "y")
        if len(labels) != len(preds):
            raise InputError(f"y_pred holds {len(preds)} cases{_as_read(y_pred)} but y holds {len(labels)}"
                             f"{_as_read(y)}: {_LAYOUTS}")
        ids = self._ids(preds, case_ids)
        channel = self._channel_read
        done = []
        for scores, truth, case_id in zip(preds, labels, ids):
            spatial = tuple(scores.shape[1:])
            with_channel = tuple(truth.shape) == (1, *spatial)
            if len(scores.shape) < 2 or not with_channel and tuple(truth.shape) != spatial:
                raise InputError(_mismatch(scores, truth, case_id, y_pred))
            n = scores.shape[0]
            c = (1 if n > 1 else 0) if self.channel is None else self.channel
            if not -n <= c < n:
                raise InputError(f"channel {c} does not exist (scores of case {case_id!r} have {n} channels)")
            c %= n
            if channel is not None and c != channel:
                raise InputError(f"case {case_id!r} has {n} channels, so channel {c} would be read, but earlier "
                                 f"cases were read from channel {channel}; pass ValidationStats(channel=...)")
            channel = c
            s, s_device = read_in_place(scores[c], name=case_id)
            t, t_device = read_in_place(truth[0] if with_channel else truth, name=case_id, what="labels")
            if "cuda" in (s_device, t_device):
                done.append(volume_stats(s, t, label=self.label, name=case_id, backend="cuda"))
            else:
                _refuse_after_openmp_fork("ValidationStats")
                done.append(volume_stats(s, t, label=self.label, name=case_id))
        for case_id, stats in zip(ids, done):
            self._stats[case_id] = stats
        self._channel_read = channel
        return done

    def _ids(self, preds, case_ids):
        from_meta = False
        if case_ids is None:
            names = [getattr(p, "meta", {}).get("filename_or_obj") if _is_meta_tensor(p) else None for p in preds]
            if names and all(isinstance(x, str) and x for x in names):
                case_ids, from_meta = names, True
        if case_ids is None:
            start = len(self._stats)
            dist = _distributed()  # numbered per process: the rank makes them unique across processes
            prefix = "" if dist is None else f"rank{dist.get_rank()}_"
            ids = [f"{prefix}case_{start + i:06d}" for i in range(len(preds))]
        else:
            ids = [os.fspath(c) if isinstance(c, os.PathLike) else str(c) for c in case_ids]
            if len(ids) != len(preds):
                raise InputError(f"{len(ids)} case ids for a batch of {len(preds)} cases")
        repeated = sorted({c for c in ids if c in self._stats or ids.count(c) > 1})
        if repeated:
            raise InputError(f"case ids seen before: {', '.join(repeated[:8])} (each case must be counted once"
                             f"{'; these are the MetaTensors filename_or_obj, pass case_ids=' if from_meta else ''}"
                             f"{' to name them otherwise' if from_meta else ''}; reset() starts a new round)")
        return ids

    def aggregate(self, **options: Any) -> Calibration:
        """The ``Calibration`` of every case gathered so far (``get_buffer``).

        ``options`` (``clskern.calibrate``'s keywords: ``epsilon``, ``alpha``,
        ``method`` ...) override those given at construction; ``epsilon``
        must be given in one place or the other. The constructor's ``alpha``
        and ``delta`` are defaults for the methods that take them: with
        ``ValidationStats(alpha=0.1)``, ``aggregate(method="crc")`` is the
        crc calibration (no alpha), while ``aggregate(method="crc",
        alpha=0.1)`` is refused.
        """
        given = _calibration_options(options, "aggregate()")
        merged = {**self.options, **given}
        if merged.get("epsilon") is None:
            raise InputError("no epsilon: give ValidationStats(epsilon=...) or aggregate(epsilon=...)")
        takes = _METHOD_PARAMETERS.get(merged.get("method", "cls"))
        if takes is not None:
            for parameter in ("alpha", "delta"):
                if parameter not in given and parameter not in takes:
                    merged.pop(parameter, None)  # a constructor default the chosen method has no use for
        return self.calibrate(**merged)

    def calibrate(self, *, epsilon: float, **options: Any) -> Calibration:
        """``clskern.calibrate(self.get_buffer(), epsilon=..., **options)``: see it for the methods.

        The result records how the cases were read (``Calibration.reading``:
        this ``label`` and the channel read), so ``CalibratedThreshold`` cuts
        the same channel.
        """
        stats, channel = self._gather()  # the channel every process read: the same Calibration on each
        if not stats:
            raise InputError("no cases gathered yet: call update() with validation batches first")
        result = calibrate(stats, epsilon=epsilon, **_calibration_options(options, "calibrate()"))
        return dataclasses.replace(result, reading={"label": self.label, "channel": channel})


_DEFAULT_ID = re.compile(r"rank\d+_case_\d{6}")


def _refuse_padded_repeats(merged: dict[str, Any]) -> None:
    """Two cases of default ids (``rankR_case_NNNNNN``, on any processes) with the same statistics, lesions
    included: what a DistributedSampler that pads (``even_divisible=True``) gives, a case counted twice.

    Named cases are checked by name; unnamed ones can only be told apart by
    what they hold. Lesion-free cases are left alone (two blank volumes may
    well be alike, and calibration skips them by default).
    """
    seen: dict[bytes, str] = {}
    for case_id, stats in merged.items():
        if stats.n_fg == 0 or not _DEFAULT_ID.fullmatch(case_id):
            continue
        unnamed = copy.copy(stats)
        unnamed.name = None
        key = unnamed.to_bytes()
        other = seen.setdefault(key, case_id)
        if other != case_id:
            raise InputError(f"cases {other!r} and {case_id!r} (default ids) hold the same statistics, lesions "
                             "included: the same case counted on two processes, as a DistributedSampler that pads "
                             "(even_divisible=True) repeats cases; use even_divisible=False, or pass case_ids")


def _distributed():
    """``torch.distributed`` when initialised with several processes, else None (torch is never imported here)."""
    dist = getattr(sys.modules.get("torch"), "distributed", None)
    if dist is None or not dist.is_available() or not dist.is_initialized() or dist.get_world_size() < 2:
        return None
    return dist


_LAYOUTS = ("y_pred and y are batch-first tensors (B, C, *spatial) and (B, 1, *spatial), or lists of channel-first "
            "cases (C, *spatial) and (1, *spatial); one case given as a tensor needs its batch axis (x[None]) or a "
            "list ([x])")


def _as_read(x):
    shape = getattr(x, "shape", None)
    return "" if isinstance(x, (list, tuple)) or shape is None else f" (a tensor of shape {tuple(shape)})"


def _mismatch(scores, truth, case_id, y_pred):
    """The message for a case whose labels do not fit its scores, saying what was expected."""
    s, t = tuple(scores.shape), tuple(truth.shape)
    batch = None if isinstance(y_pred, (list, tuple)) else tuple(y_pred.shape)
    source = "" if batch is None else f" (y_pred of shape {batch} read as a batch (B, C, *spatial) of {batch[0]})"
    if len(s) < 2:
        return f"case {case_id!r}: scores of shape {s}{source} have no channel axis: expected (C, *spatial); {_LAYOUTS}"
    spatial = s[1:]
    expected = f"labels (1, {', '.join(map(str, spatial))}) or ({', '.join(map(str, spatial))})"
    read = f"case {case_id!r}: scores of shape {s}{source} are read as C={s[0]} channels of spatial shape {spatial}"
    one_hot = (f"one-hot labels are not supported: pass the lesion channel's labels, y[:, c:c + 1] (or a label map "
               f"with label=), {expected}")
    if t == s and s[0] > 1:
        if batch is None:
            return f"{read}, and the labels have that shape too: {one_hot}"
        return (f"{read}, and the labels have that shape too: if y_pred is one case without its batch axis, pass "
                f"y_pred=x[None] (or [x]) and y likewise; if the labels are one-hot (not supported), "
                f"{one_hot.split(': ', 1)[1]}")
    hint = "" if batch is None else f"; {_LAYOUTS}"
    return f"{read}, so labels of shape {t} do not match: expected {expected}{hint}"


def _cases(x, what):
    """One entry per case: the items of a sequence, or the first-axis slices of a batch-first tensor/array."""
    if isinstance(x, (list, tuple)):
        return list(x)
    shape = getattr(x, "shape", None)
    if shape is None:
        x = np.asarray(x)
        shape = x.shape
    if len(shape) < 2:
        raise InputError(f"{what} of shape {tuple(shape)}: expected a batch-first tensor or a list of cases")
    return [x[i] for i in range(shape[0])]
