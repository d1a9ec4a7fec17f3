"""Several classes from one score volume (docs: several classes): ``class_stats`` and ``apply_classes``.

A **class** is a name with a score channel and a set of label values: its
ground truth is ``labels in values``, its scores ``scores[channel]`` of
channel-first scores ``(C, *spatial)``. A class of several values is a
region of nnU-Net's region-based training (BraTS: WT = (1, 2, 3),
TC = (1, 3) or (2, 3) by the dataset's numbering, ET = (3,)).

- ``class_stats`` reads the labels once: a lookup table over the label
  values (every value of a uint8/int8/bool or 16-bit label map) gives each
  voxel a bit per class, in one pass; each class then reads its bit from
  that small array and its own channel (``volume_stats``).
- ``apply_classes`` writes the label map nnU-Net would: regions
  (``regions_class_order``) painted in order, later ones over earlier ones;
  plain classes: the highest-scoring class among those at or above their
  cut, background (0) where none is.
- ``parse_classes`` reads the command line's ``"WT=1:1,2,3;TC=2:1,3"``;
  ``classes_from_dataset_json`` reads nnU-Net's ``dataset.json`` ``labels``
  (and ``regions_class_order``), with the channels nnU-Net's outputs have.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ._lesions import DEFAULT_CONNECTIVITY
from ._validate import score_array
from .errors import ArgumentError, ArgumentTypeError, InputError, NaNScoresError, volume_name

if TYPE_CHECKING:  # annotations only
    from numpy.typing import ArrayLike, NDArray

    from .calibration.record import Calibration
    from .volume import VolumeStats

    # {name: (channel, label values)}, as ``check_classes`` returns it
    Classes = dict[str, tuple[int, tuple[float, ...]]]

MAX_CLASSES = 64  # one bit each in a uint64
_NAME = re.compile(r"[A-Za-z0-9_.+-]+")


# -- what a class is ------------------------------------------------------------------------------


def _label_value(value, what):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ArgumentTypeError(f"{what}: label values must be numbers, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ArgumentError(f"{what}: label values must be finite, got {value!r}")
    return int(value) if value.is_integer() else value


def check_classes(classes: Mapping[str, tuple[int, Any]]) -> Classes:
    """``{name: (channel, values)}`` checked: names distinct non-empty strings, channels
    integers >= 0, values a non-empty tuple of finite numbers (0, the background, refused)."""
    if not isinstance(classes, Mapping) or not classes:
        raise ArgumentTypeError("classes must be a non-empty mapping name -> (channel, label values)")
    if len(classes) > MAX_CLASSES:
        raise ArgumentError(f"{len(classes)} classes; clskern reads at most {MAX_CLASSES} in one pass")
    out: Classes = {}
    for name, spec in classes.items():
        if not isinstance(name, str) or not name:
            raise ArgumentTypeError(f"class names must be non-empty strings, got {name!r}")
        try:
            channel, values = spec
        except (TypeError, ValueError):
            raise ArgumentTypeError(f"class {name!r}: expected (channel, label values), got {spec!r}") from None
        if isinstance(channel, (bool, np.bool_)) or not isinstance(channel, numbers.Integral) or channel < 0:
            raise ArgumentError(f"class {name!r}: channel must be an integer >= 0, got {channel!r}")
        if isinstance(values, numbers.Real):
            values = (values,)
        try:
            values = tuple(_label_value(v, f"class {name!r}") for v in values)
        except TypeError:
            raise ArgumentTypeError(f"class {name!r}: label values must be a number or a sequence of them") from None
        if not values:
            raise ArgumentError(f"class {name!r}: no label values")
        if 0 in values:
            raise ArgumentError(f"class {name!r}: label value 0 is the background")
        out[name] = (int(channel), tuple(dict.fromkeys(values)))
    return out


# -- the labels, read once ----------------------------------------------------------------------


def _bit_dtype(n):
    return np.dtype(np.uint8 if n <= 8 else np.uint16 if n <= 16 else np.uint32 if n <= 32 else np.uint64)


def _order(array):
    return "F" if array.flags.f_contiguous and not array.flags.c_contiguous else "C"


def class_bits(labels: ArrayLike, classes: Mapping[str, tuple[int, Any]], name: str | None = None) -> np.ndarray:
    """Bit ``i`` set where the voxel's label is among class ``i``'s values, from one pass over ``labels``.

    uint8, int8, bool, uint16 and int16 labels go through a lookup table of
    every value the dtype holds (``np.take``, one read of the labels); wider
    integer and float labels are compared value by value (one pass per
    distinct class value). The result has the labels' shape and memory
    order. Values a dtype cannot hold match nothing (as in ``np.isin``).
    """
    classes = check_classes(classes)
    array = labels if isinstance(labels, np.ndarray) else np.asarray(labels)
    if array.dtype.kind not in "biuf":
        raise ArgumentTypeError(f"{volume_name(name)}: labels have dtype {array.dtype}; "
                                "clskern reads bool, integer or float labels")
    if array.dtype.kind == "f" and np.isnan(array).any():
        raise InputError(f"{volume_name(name)}: {int(np.isnan(array).sum())} NaN labels; a voxel is lesion or not")
    bits_dtype = _bit_dtype(len(classes))
    codes: dict[float, int] = {}
    for i, (_, values) in enumerate(classes.values()):
        for v in values:
            codes[v] = codes.get(v, 0) | (1 << i)
    order = _order(array)
    if array.dtype.kind in "biu" and array.dtype.itemsize <= 2:
        array = array.view(np.uint8) if array.dtype == np.bool_ else array
        unsigned = np.dtype(f"u{array.dtype.itemsize}")
        lut = np.zeros(1 << (8 * array.dtype.itemsize), bits_dtype)
        info = np.iinfo(array.dtype)
        for v, code in codes.items():
            if float(v).is_integer() and info.min <= v <= info.max:
                lut[int(v) & (lut.size - 1)] |= bits_dtype.type(code)
        if not array.flags.forc:  # a strided view: read once into a C-contiguous copy
            array, order = np.ascontiguousarray(array), "C"
        flat = array.ravel(order=order).view(unsigned)  # a view, in memory order
        return np.take(lut, flat).reshape(array.shape, order=order)
    bits = np.zeros(array.shape, bits_dtype, order=order)
    for v, code in codes.items():
        bits[array == v] |= bits_dtype.type(code)
    return bits


def _volume_kwargs(connectivity):
    """``connectivity`` for ``volume_stats`` where it takes one (lesion-level statistics)."""
    if connectivity not in (6, 18, 26):
        raise ArgumentError(f"connectivity must be 6, 18 or 26, got {connectivity!r}")
    return {"connectivity": connectivity}


def _channels(scores, labels_shape, classes, name):
    array = score_array(scores, name)
    if array.ndim != len(labels_shape) + 1 or array.shape[1:] != tuple(labels_shape):
        raise InputError(f"{volume_name(name)}: scores of shape {array.shape} are not channel-first (C, *spatial) "
                         f"for labels of shape {tuple(labels_shape)}")
    for cname, (channel, _) in classes.items():
        if channel >= array.shape[0]:
            raise InputError(f"{volume_name(name)}: class {cname!r} reads channel {channel}, but the scores have "
                             f"{array.shape[0]} channel(s)")
    return array


def class_stats(scores: ArrayLike, labels: ArrayLike, classes: Mapping[str, tuple[int, Any]], *,
                connectivity: int | None = DEFAULT_CONNECTIVITY, name: str | None = None,
                backend: str = "auto") -> dict[str, VolumeStats]:
    """Per-class ``VolumeStats`` of one case, reading the labels once.

    Parameters
    ----------
    scores : array_like, shape (C, *spatial)
        Channel-first scores (nnU-Net's probabilities, a network's outputs).
    labels : array_like, shape spatial
        The label map.
    classes : mapping
        ``{name: (channel, label values)}``: the class's ground truth is
        ``labels in values`` (a number or a sequence: a region), its scores
        ``scores[channel]``.
    connectivity : {6, 18, 26}
        For lesion-level statistics, where ``volume_stats`` keeps them.
    name, backend
        As in ``volume_stats``.

    Returns
    -------
    dict
        ``{name: VolumeStats}`` in the classes' order, each equal to
        ``volume_stats(scores[channel], np.isin(labels, values))``. A class
        absent from the ground truth has ``n_fg == 0`` (the empty policy of
        ``calibrate`` decides, for that class only).
    """
    classes = check_classes(classes)
    labels_array = labels if isinstance(labels, np.ndarray) else np.asarray(labels)
    array = _channels(scores, labels_array.shape, classes, name)
    channels = {channel: array[channel] for channel, _ in classes.values()}
    return class_stats_from_channels(channels, labels_array, classes, connectivity=connectivity, name=name,
                                     backend=backend)


def class_stats_from_channels(channels: Mapping[int, ArrayLike], labels: ArrayLike,
                              classes: Mapping[str, tuple[int, Any]], *,
                              connectivity: int | None = DEFAULT_CONNECTIVITY, name: str | None = None,
                              backend: str = "auto") -> dict[str, VolumeStats]:
    """``class_stats`` of score channels held apart: ``channels`` maps each class's channel to its
    ``spatial``-shaped scores (as a reader that returns one channel at a time gives them)."""
    from .volume import volume_stats  # Numba, loaded where statistics are gathered: reading dataset.json needs none

    classes = check_classes(classes)
    extra = _volume_kwargs(connectivity)
    for cname, (channel, _) in classes.items():
        if channel not in channels:
            raise InputError(f"{volume_name(name)}: class {cname!r} reads channel {channel}, which was not read")
    bits = class_bits(labels, classes, name)
    if len(classes) == 1:
        (cname, (channel, _)), = classes.items()
        return {cname: volume_stats(channels[channel], bits, name=name, backend=backend, **extra)}
    out = {}
    mask = np.empty_like(bits)
    for i, (cname, (channel, _)) in enumerate(classes.items()):
        np.bitwise_and(bits, bits.dtype.type(1 << i), out=mask)
        out[cname] = volume_stats(channels[channel], mask, name=name, backend=backend, **extra)
    return out


# -- the label map --------------------------------------------------------------------------------


def _thresholds(calibrations, names):
    out = {}
    for cname in names:
        if cname not in calibrations:
            raise ArgumentError(f"no calibration for class {cname!r} (calibrated: {', '.join(map(str, calibrations))})")
        cal = calibrations[cname]
        value = getattr(cal, "threshold", cal)
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or math.isnan(value):
            raise ArgumentTypeError(f"class {cname!r}: the threshold must be a number, got {value!r}")
        out[cname] = float(value)
    return out


def _map_dtype(values):
    for v in values:
        if not float(v).is_integer():
            raise ArgumentError(f"label value {v!r} is not an integer; a label map holds integers")
    low, high = min(values + [0]), max(values + [0])
    for dtype in (np.uint8, np.uint16, np.int32, np.int64):
        info = np.iinfo(dtype)
        if info.min <= low and high <= info.max:
            return np.dtype(dtype)
    raise ArgumentError(f"label values {low}..{high} do not fit a label map")


def stacked_layout(classes: Mapping[str, tuple[int, Any]], regions_class_order: Sequence[float] | None = None,
                   where: str = "") -> tuple[list[int], dict[str, tuple[int, Any]]]:
    """``(channels, stacked)`` for cutting a calibration per class from only the channels it reads.

    ``channels``: the score channels the classes read, ascending; ``stacked``:
    the classes re-indexed on ``np.stack([scores[c] for c in channels])``, for
    ``apply_classes``. The label values written (``regions_class_order`` for
    regions) must fit the uint8 label maps that ``clskern apply`` and
    ``apply_folder`` write; ``where`` prefixes the error.
    """
    channels = sorted({c for c, _ in classes.values()})
    stacked = {name: (channels.index(c), values) for name, (c, values) in classes.items()}
    written = (list(regions_class_order or []) if region_mode(classes, regions_class_order)
               else [values[0] for _, values in classes.values()])
    if any(not float(v).is_integer() or not 0 <= v <= 255 for v in written):
        raise InputError(f"{where}label values {written} do not fit the uint8 label maps written")
    return channels, stacked


def region_mode(classes: Mapping[str, tuple[int, Any]], regions_class_order: object = None) -> bool:
    """Whether classes are regions (nnU-Net: some class has several values, or an order is given)."""
    return regions_class_order is not None or any(len(values) > 1 for _, values in classes.values())


def apply_classes(scores: ArrayLike, calibrations: Mapping[str, Calibration | float] | Any,
                  classes: Mapping[str, tuple[int, Any]] | None = None, *,
                  regions_class_order: Sequence[float] | Mapping[str, float] | None = None,
                  name: str | None = None) -> NDArray[np.integer[Any]]:
    """The label map of several calibrated classes, as nnU-Net writes its segmentation.

    Parameters
    ----------
    scores : array_like, shape (C, *spatial)
        Channel-first scores.
    calibrations : mapping or CalibrationSet
        ``{class: Calibration}`` (or thresholds), e.g. what ``calibrate``
        returns for several classes; a ``CalibrationSet`` brings its
        ``classes`` and ``regions_class_order``. A calibration on min-max
        normalised scores (``normalize="minmax"``) is cut on its channel's
        own range, as ``apply_threshold`` cuts it.
    classes : mapping, optional
        ``{name: (channel, label values)}`` (default: the set's).
    regions_class_order : sequence or mapping, optional
        The label value each class writes (in the classes' order, or
        ``{class: value}``). Needed when a class has several values.

    Returns
    -------
    ndarray
        ``spatial``-shaped integer label map (uint8 when the values fit),
        in the memory order of the score channels. Regions: zeros, then for
        each class in order ``map[scores[channel] >= threshold] = value``
        (later classes over earlier ones). Plain classes (one value each): the
        class of highest score among those with ``score >= threshold`` (the
        first such class on ties), 0 where no class reaches its cut.
    """
    if classes is None:
        classes = getattr(calibrations, "classes", None)
        if classes is None:
            raise ArgumentError("classes are needed (name -> (channel, label values))")
        if regions_class_order is None:
            regions_class_order = getattr(calibrations, "regions_class_order", None)
    members = getattr(calibrations, "calibrations", calibrations)
    if not isinstance(members, Mapping):
        raise ArgumentTypeError("calibrations must be a mapping class -> Calibration (or a CalibrationSet)")
    classes = check_classes(classes)
    names = list(classes)
    thresholds = _thresholds(members, names)
    first_channel = classes[names[0]][0]
    array = score_array(scores, name)
    if array.ndim < 2:
        raise InputError(f"{volume_name(name)}: scores of shape {array.shape} are not channel-first (C, *spatial)")
    _channels(array, array.shape[1:], classes, name)
    for cname, (channel, _) in classes.items():
        n_nan = int(np.count_nonzero(np.isnan(array[channel])))
        if n_nan:
            raise NaNScoresError(f"{volume_name(name)}: {n_nan} NaN scores in the channel of class {cname!r}; "
                                 "a label map would call them background")
        normalize = getattr(members[cname], "normalize", "none")  # calibrated on rescaled scores: cut in kind
        if normalize != "none":
            from . import _backend
            from .apply import cut_in_scores

            kernels = _backend.kernels("cpu", array[channel], None, name=name)
            thresholds[cname] = cut_in_scores(kernels, array[channel], thresholds[cname], normalize, name)
    regions = region_mode(classes, regions_class_order)
    if regions:
        if regions_class_order is None:
            raise ArgumentError("classes with several label values are regions: give regions_class_order, "
                                "the label value each class writes (nnU-Net's dataset.json has it)")
        if isinstance(regions_class_order, Mapping):
            missing = [n for n in names if n not in regions_class_order]
            if missing:
                raise ArgumentError(f"regions_class_order gives no value for class {missing[0]!r}")
            written = [regions_class_order[n] for n in names]
        else:
            written = list(regions_class_order)
            if len(written) != len(names):
                raise ArgumentError(f"regions_class_order has {len(written)} values for {len(names)} classes")
        written = [_label_value(v, "regions_class_order") for v in written]
    else:
        written = [values[0] for _, values in classes.values()]
    dtype = _map_dtype(written)
    out = np.zeros_like(array[first_channel], dtype=dtype)
    if regions:
        for cname, value in zip(names, written):
            out[array[classes[cname][0]] >= thresholds[cname]] = value
        return out
    best = np.empty_like(array[first_channel])
    have = np.zeros(out.shape, bool)
    for cname, value in zip(names, written):
        s = array[classes[cname][0]]
        wins = s >= thresholds[cname]
        wins &= ~have | (s > best)
        out[wins] = value
        best[wins] = s[wins]
        have |= wins
    return out


# -- where classes come from ----------------------------------------------------------------------


def parse_classes(text: str) -> Classes:
    """``{name: (channel, values)}`` from ``"WT=1:1,2,3;TC=2:1,3;ET=3:3"`` (NAME=CHANNEL:VALUE,VALUE...)."""
    if not isinstance(text, str) or not text.strip():
        raise ArgumentError("--classes: empty; expected NAME=CHANNEL:VALUES;... (e.g. 'WT=1:1,2,3;TC=2:1,3')")
    classes = {}
    for entry in text.split(";"):
        entry = entry.strip()
        if not entry:
            continue
        m = re.fullmatch(r"([^=:;,\s]+)\s*=\s*(\d+)\s*:\s*([^;]+)", entry)
        if not m:
            raise ArgumentError(f"--classes: {entry!r} is not NAME=CHANNEL:VALUES (e.g. 'TC=2:1,3')")
        cname, channel, values = m.group(1), int(m.group(2)), m.group(3)
        if cname in classes:
            raise ArgumentError(f"--classes: class {cname!r} named twice")
        try:
            parsed = tuple(float(v) for v in values.split(","))
        except ValueError:
            raise ArgumentError(f"--classes: {entry!r}: label values must be numbers separated by commas") from None
        classes[cname] = (channel, parsed)
    if not classes:
        raise ArgumentError("--classes: no class given")
    try:
        return check_classes(classes)
    except ValueError as exc:
        raise ArgumentError(f"--classes: {exc}") from None


def classes_from_dataset_json(source: str | os.PathLike[str] | Mapping[str, Any]) -> tuple[Classes, list[float] | None]:
    """``(classes, regions_class_order)`` from an nnU-Net v2 ``dataset.json`` (a path or its parsed dict).

    nnU-Net v1's (the Medical Segmentation Decathlon's) ``labels``, value to
    name (``{"0": "background", "1": "edema"}``), are read too.

    As nnU-Net's ``LabelManager``: ``labels`` maps names to a value or a list
    of values; ``background`` (0) and ``ignore`` are not classes. With a list
    of several values anywhere the dataset is region-based: the outputs have
    one sigmoid channel per foreground region, in the order of ``labels``
    (channel 0 is the first region), and ``regions_class_order`` (required)
    gives the value each region writes. Otherwise the outputs are softmax
    over every label (channel = label value, background in channel 0) and
    ``regions_class_order`` is None.
    """
    return _classes_of(*_parse_dataset_json(source))


def _parse_dataset_json(source):
    """``(labels, parsed, where)``: ``labels`` as name -> value or values (nnU-Net v1's value -> name
    turned around), the parsed file, and its name for messages."""
    where = "dataset.json"
    if not isinstance(source, Mapping):
        where = os.fspath(source)
        with open(source, "rb") as f:
            data = f.read()
        try:
            source = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise InputError(f"{where}: not a JSON file ({exc})") from None
    labels = source.get("labels") if isinstance(source, Mapping) else None
    if not isinstance(labels, Mapping) or not labels:
        raise InputError(f"{where}: no 'labels' object (nnU-Net v2 dataset.json)")
    if all(isinstance(k, str) and re.fullmatch(r"\d+", k) and isinstance(v, str) for k, v in labels.items()):
        v1 = labels
        labels = {name: int(value) for value, name in v1.items()}  # nnU-Net v1 / Decathlon: value -> name
        if len(labels) != len(v1):
            raise InputError(f"{where}: two label values share a name")
    return labels, source, where


def _classes_of(labels, source, where):
    has_regions = any(isinstance(v, (list, tuple)) and len(v) > 1 for v in labels.values())
    classes: dict[str, Any] = {}
    for cname, value in labels.items():
        if cname == "ignore":
            continue
        values = tuple(value) if isinstance(value, (list, tuple)) else (value,)
        try:
            values = tuple(_label_value(v, f"{where}: label {cname!r}") for v in values)
        except ValueError as exc:
            raise InputError(str(exc)) from None
        if set(values) == {0}:
            continue  # the background
        if 0 in values:
            raise InputError(f"{where}: label {cname!r} includes the background (0)")
        if has_regions:
            classes[cname] = (len(classes), values)
        else:
            if len(values) != 1 or not float(values[0]).is_integer():
                raise InputError(f"{where}: label {cname!r}: expected one integer value")
            classes[cname] = (int(values[0]), values)
    if not classes:
        raise InputError(f"{where}: no foreground labels")
    order = None
    if has_regions:
        order = source.get("regions_class_order")  # the parsed JSON
        if not isinstance(order, list) or len(order) != len(classes):
            raise InputError(f"{where}: a region-based dataset needs regions_class_order with one value per "
                             f"region ({len(classes)})")
        try:
            order = [_label_value(v, f"{where}: regions_class_order") for v in order]
        except ValueError as exc:
            raise InputError(str(exc)) from None
    try:
        return check_classes(classes), order
    except ValueError as exc:
        raise InputError(f"{where}: {exc}") from None


@dataclass(frozen=True)
class DatasetReading:
    """What to read of each case, by nnU-Net's ``dataset.json`` and the channel/label asked.

    ``kind == "one"``: ``channel`` against ``label`` (both None: the plain
    binary dataset, label 1 in channel 1 and nothing else, read as the
    defaults: channel 1 against every label > 0); ``name`` the class.
    ``kind == "classes"``: every class of ``classes`` (several, or one region
    of several label values), ``regions_class_order`` their written values.
    """

    kind: str
    channel: int | None = None
    label: float | None = None
    name: str | None = None
    classes: Classes | None = None
    regions_class_order: list[float] | None = None


def dataset_reading(source: str | os.PathLike[str] | Mapping[str, Any], channel: int | None = None,
                    label: float | None = None, *,
                    spell: Callable[[str], str] = lambda option: f"{option}=") -> DatasetReading:
    """The one rule, for the command line and ``adapters.nnunet`` alike, of what a ``dataset.json`` reads.

    Both ``channel`` and ``label`` given: taken as given (the file is not
    read). Neither: every class when it names several; its one class
    otherwise, read as channel and label (an ``ignore`` label then is not
    lesion; a class of value 2 reads channel 2), or as the defaults for the
    plain binary dataset; one region (several values) as a class. One of
    them: the class it names, the other filled in; a region, as a class.
    ``spell(option)`` is how the caller writes an option in messages
    (``channel=`` in Python, ``--channel`` on the command line).
    """
    if channel is not None and label is not None:
        return DatasetReading("one", channel, label)
    labels, parsed, where = _parse_dataset_json(source)
    classes, order = _classes_of(labels, parsed, where)
    if channel is None and label is None:
        if len(classes) > 1:
            return DatasetReading("classes", classes=classes, regions_class_order=order)
        picked = list(classes)
    else:
        picked = [name for name, (c, values) in classes.items()
                  if (channel is None or c == channel) and (label is None or tuple(values) == (label,))]
        if not picked:
            asked = f"{spell('channel')}{channel}" if channel is not None else f"{spell('label')}{label:g}"
            described = ", ".join(f"{n} (channel {c}, label {'/'.join(f'{v:g}' for v in vs)})"
                                  for n, (c, vs) in classes.items())
            raise InputError(f"{where}: no class with {asked} ({described}); give {spell('channel')} and "
                             f"{spell('label')} of one class, or neither to read every class")
    name = picked[0]
    c, values = classes[name]
    if len(values) > 1:
        return DatasetReading("classes", name=name, classes={name: classes[name]},
                              regions_class_order=None if order is None else [order[list(classes).index(name)]])
    if channel is None and label is None and (c, values[0]) == (1, 1) and "ignore" not in labels:
        return DatasetReading("one", name=name)  # the binary dataset: the defaults read it already
    return DatasetReading("one", c, values[0], name)
