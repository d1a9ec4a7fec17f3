"""``CalibrationSet``: several named calibrations (per class or per group) in one checked JSON file.

The file is one JSON object::

    {
      "kind": "clskern-calibration-set",
      "format_version": 1,
      "by": "class" | "group",
      "names": [...],                       # classes in their order, groups sorted
      "family": "none" | "bonferroni",      # always "none" for groups
      "alpha": number or null,              # the level asked of the family (before sharing out)
      "delta": number or null,
      "family_guarantee": "...",            # the promise the members make together
      "classes": {name: {"channel": int, "values": [number, ...]}} or null,
      "regions_class_order": [number, ...] or null,   # label value written per class (nnU-Net regions)
      "calibrations": {name: <a Calibration record, with its own sha256>},
      "clskern_version": "...",
      "sha256": "<digest of every other field>"
    }

Reading one (``CalibrationSet.read``) checks, besides the strict JSON of
``record.parse_json``: the fields and their types; each member with
``Calibration.from_dict`` (its own digest and consistency); the names equal
the members' keys (and the classes' keys); every member uses one method;
under ``family="bonferroni"`` every member's ``alpha``/``delta`` is the
family's divided by the number of classes (as ``families.family_levels``
computes it), under ``"none"`` equal to it; the family sentence regenerated;
and finally the set's own digest, so that removing or swapping a member is
refused too.
"""

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Union

from .._version import __version__
from ..errors import CalibrationFileError
from .families import FAMILIES, family_guarantee, family_levels
from .record import DIGEST, SET_KIND, Calibration, _canonical, parse_json, read_checked, utf8_text

SET_FORMAT_VERSION = 1
BY = ("class", "group")
_SET_FIELDS = ("kind", "format_version", "by", "names", "family", "alpha", "delta", "family_guarantee", "classes",
               "regions_class_order", "calibrations", "clskern_version")


def is_set(d):
    """Whether a parsed JSON object claims to be a calibration set."""
    return isinstance(d, dict) and d.get("kind") == SET_KIND


def _digest(d):
    body = {key: value for key, value in d.items() if key != DIGEST}
    return hashlib.sha256(_canonical(body).encode("utf-8")).hexdigest()


def _label_number(value, what):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CalibrationFileError(f"{what} must be a number, got {value!r}")
    return int(value) if float(value).is_integer() else float(value)


def _classes_field(value, names):
    if value is None:
        return None
    if not isinstance(value, dict) or list(value) != list(names):
        raise CalibrationFileError("classes must name the set's classes, in order")
    out = {}
    for name, spec in value.items():
        if not isinstance(spec, dict) or set(spec) != {"channel", "values"}:
            raise CalibrationFileError(f"class {name!r}: expected an object with channel and values")
        channel = spec["channel"]
        if isinstance(channel, bool) or not isinstance(channel, int) or channel < 0:
            raise CalibrationFileError(f"class {name!r}: channel must be an integer >= 0, got {channel!r}")
        values = spec["values"]
        if not isinstance(values, list) or not values:
            raise CalibrationFileError(f"class {name!r}: values must be a non-empty list")
        out[name] = (channel, tuple(_label_number(v, f"class {name!r} value") for v in values))
    return out


@dataclass(frozen=True)
class CalibrationSet:
    """Named calibrations that travel together: one per class, or one per group.

    Attributes
    ----------
    by : {"class", "group"}
    calibrations : dict
        ``{name: Calibration}`` (classes in their order, groups sorted).
    family, alpha, delta
        The family rule and the levels asked of it (classes); groups: "none".
    classes : dict or None
        ``{name: (channel, values)}``: what each class reads (for ``apply``).
    regions_class_order : list or None
        The label value each class writes, in class order (nnU-Net regions).
    """

    by: str
    calibrations: dict
    family: str = "none"
    alpha: float | None = None
    delta: float | None = None
    classes: dict | None = None
    regions_class_order: list | None = None
    clskern_version: str = field(default=__version__)

    @property
    def names(self):
        return list(self.calibrations)

    @property
    def method(self):
        return next(iter(self.calibrations.values())).method

    @property
    def guarantee(self):
        """The promise the members make together (groups: each its own, for its own cases)."""
        if self.by == "group":
            return f"Each group ({', '.join(self.names)}) keeps its own promise for a new case of that group."
        return family_guarantee(self.family, self.method, self.alpha, self.delta, self.names)

    def __getitem__(self, name):
        return self.calibrations[name]

    def to_dict(self):
        d = {
            "kind": SET_KIND,
            "format_version": SET_FORMAT_VERSION,
            "by": self.by,
            "names": self.names,
            "family": self.family,
            "alpha": self.alpha,
            "delta": self.delta,
            "family_guarantee": self.guarantee,
            "classes": None if self.classes is None else {
                name: {"channel": int(channel), "values": [_label_number(v, "value") for v in values]}
                for name, (channel, values) in self.classes.items()},
            "regions_class_order": None if self.regions_class_order is None else [
                _label_number(v, "regions_class_order") for v in self.regions_class_order],
            "calibrations": {name: cal.to_dict() for name, cal in self.calibrations.items()},
            "clskern_version": self.clskern_version,
        }
        d[DIGEST] = _digest(d)
        return d

    def to_json(self, indent=2):
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    @classmethod
    def from_dict(cls, d):
        """A checked set (module docstring); ``CalibrationFileError`` in one line otherwise."""
        if not is_set(d):
            raise CalibrationFileError(f"not a clskern calibration set (kind is not {SET_KIND!r})")
        if d.get("format_version") != SET_FORMAT_VERSION or isinstance(d.get("format_version"), bool):
            raise CalibrationFileError(f"calibration set of format version {d.get('format_version')!r}; this clskern "
                                       f"({__version__}) reads version {SET_FORMAT_VERSION}")
        missing = [k for k in (*_SET_FIELDS, DIGEST) if k not in d]
        unknown = sorted(str(k) for k in d if k not in _SET_FIELDS and k != DIGEST)
        if missing or unknown:
            raise CalibrationFileError(f"not a clskern calibration set: missing {missing or 'nothing'}, "
                                       f"unexpected {unknown or 'nothing'}")
        by, family, names, members = d["by"], d["family"], d["names"], d["calibrations"]
        if by not in BY:
            raise CalibrationFileError(f"by must be one of {', '.join(BY)}, got {by!r}")
        if family not in FAMILIES or (by == "group" and family != "none"):
            raise CalibrationFileError(f"family {family!r} is not allowed for a set by {by}")
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise CalibrationFileError("names must be a non-empty list of strings")
        if len(set(names)) != len(names):
            raise CalibrationFileError("a name appears twice in names")
        if by == "group" and names != sorted(names):
            raise CalibrationFileError("the groups must be listed in sorted order")
        if not isinstance(members, dict) or list(members) != names:
            raise CalibrationFileError("calibrations must hold one record per name, in the order of names")
        calibrations = {}
        for name, record in members.items():
            try:
                calibrations[name] = Calibration.from_dict(record)
            except CalibrationFileError as exc:
                raise CalibrationFileError(f"{by} {name!r}: {exc}") from None
        methods = {c.method for c in calibrations.values()}
        if len(methods) != 1:
            raise CalibrationFileError(f"the members use several methods ({', '.join(sorted(methods))})")
        alpha, delta = d["alpha"], d["delta"]
        for what, value in (("alpha", alpha), ("delta", delta)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not 0 < value < 1):
                raise CalibrationFileError(f"{what} must be null or a number in (0, 1), got {value!r}")
        method = methods.pop()
        try:
            alpha_c, delta_c = family_levels(family, method, alpha, delta, len(names))
        except ValueError as exc:
            raise CalibrationFileError(str(exc)) from None
        for name, cal in calibrations.items():
            if cal.alpha != alpha_c or cal.delta != delta_c:
                raise CalibrationFileError(
                    f"{by} {name!r} is calibrated at alpha={cal.alpha!r}, delta={cal.delta!r}, but family "
                    f"{family!r} over {len(names)} {by}(s) at alpha={alpha!r}, delta={delta!r} gives "
                    f"alpha={alpha_c!r}, delta={delta_c!r}")
        classes = _classes_field(d["classes"], names)
        order = d["regions_class_order"]
        if order is not None:
            if by != "class" or not isinstance(order, list) or len(order) != len(names):
                raise CalibrationFileError("regions_class_order must list one label value per class")
            order = [_label_number(v, "regions_class_order") for v in order]
        result = cls(by=by, calibrations=calibrations, family=family, alpha=alpha, delta=delta, classes=classes,
                     regions_class_order=order, clskern_version=str(d["clskern_version"]))
        if d["family_guarantee"] != result.guarantee:
            raise CalibrationFileError("the family_guarantee sentence is not the one of this set")
        if d[DIGEST] != _digest(d):
            raise CalibrationFileError(f"{DIGEST} digest mismatch: the calibration set was edited after clskern "
                                       "wrote it (run clskern calibrate again rather than editing it)")
        return result

    @classmethod
    def from_json(cls, text):
        return cls.from_dict(parse_json(utf8_text(text)))

    @classmethod
    def read(cls, path):
        return read_checked(path, cls.from_json)


def read_calibration(path: Union[str, "os.PathLike[str]"]) -> Union[Calibration, "CalibrationSet"]:
    """What a calibration file that clskern wrote holds, checked.

    Parameters
    ----------
    path : str or path-like
        A file written by ``clskern calibrate``, ``Calibration.to_json`` or
        ``CalibrationSet.to_json``.

    Returns
    -------
    Calibration or CalibrationSet
        One ``Calibration``, or the ``CalibrationSet`` of a per-class or
        per-group file (``cal["tumor"]`` is one member's ``Calibration``).

    Raises
    ------
    OSError
        The file cannot be read (the message names it).
    CalibrationFileError
        ``"{path}: {reason}"`` in one line: the checks of ``Calibration.read``
        (module ``record``), or of ``CalibrationSet.read`` for a set.
    """
    return read_checked(path, calibration_from_bytes)


def calibration_from_bytes(data: bytes) -> Union[Calibration, "CalibrationSet"]:
    """A ``Calibration`` or ``CalibrationSet``, whichever the checked bytes of a calibration file hold."""
    parsed = parse_json(utf8_text(data))
    return CalibrationSet.from_dict(parsed) if is_set(parsed) else Calibration.from_dict(parsed)


MAX_CALIBRATION_BYTES = 1 << 26  # 64 MiB: a calibration of a million cases is far smaller


def calibration_file_problem(path):
    """None when ``path`` is a calibration file clskern wrote (a ``Calibration`` or ``CalibrationSet`` whose
    format, fields and sha256 digest check), else why not; used before ``--overwrite`` replaces a file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        return "not a file"
    if os.path.getsize(path) > MAX_CALIBRATION_BYTES:
        return f"larger than any calibration ({os.path.getsize(path)} bytes)"
    try:
        with open(path, "rb") as f:
            calibration_from_bytes(f.read())
    except (OSError, ValueError, RecursionError) as exc:  # CalibrationFileError is a ValueError
        return " ".join(str(exc).split())[:160] or type(exc).__name__
    return None
