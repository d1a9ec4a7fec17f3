"""``Calibration``: the result of ``calibrate``, its JSON form, and the checks that make a file trustworthy.

A calibration file decides every mask cut with it, so reading one checks it
(``Calibration.read``, ``from_json``, ``from_dict``), in this order:

1. The text: UTF-8, strict JSON (no NaN/Infinity literals, no duplicate keys,
   no number that overflows float64, no integer of more than 40 digits,
   nesting at most ``MAX_DEPTH`` deep, checked before parsing).
2. The format version (``FORMAT_VERSION``; format 1 had no digest: calibrate
   again, from the statistics store it takes seconds).
3. Each field: present, no unknown one, of its type; every number a real JSON
   number (+-inf travel as the strings ``"inf"``/``"-inf"``), never NaN.
4. Consistency, with the very functions ``calibrate`` uses: ``method`` known;
   ``epsilon`` in [0, 1), ``alpha``/``delta`` in (0, 1) and present exactly
   where the method needs them; ``level`` voxel with ``overlap`` 0, or
   lesion with a ``connectivity`` (6, 18, 26) and ``overlap`` in [0, 1] (a
   record without these fields, written before lesion level, is voxel
   level); ``normalize`` none or minmax (absent: none; with minmax the
   threshold and critical thresholds lie in [0, 1] or are +inf); ``warnings`` a list of strings
   (absent: none); ``n`` equal to the number of critical thresholds and of case ids;
   case ids distinct; the guarantee sentence equal to the one regenerated. ``cls`` and ``cls-pac``: ``k`` recomputed
   from ``n``, ``alpha`` (and ``delta``), and the threshold equal, bit for
   bit, to the k-th smallest critical threshold. ``crc`` and ``rcps``: the
   threshold cannot be recomputed without the cases' FNR curves (the store
   has them, the file does not); what holds by definition is checked: ``k``
   is absent, ``epsilon > 0``, ``n >= 1`` and large enough to certify
   anything (the method's predicate holds at FNR 0), and the threshold is at
   most the largest critical threshold (a certified mean FNR is below
   ``epsilon``, so some case has FNR <= epsilon there). Beyond that, the
   digest protects their threshold.
5. The digest: ``sha256`` of the canonical serialisation of every other field
   (``json.dumps(fields, sort_keys=True, separators=(",", ":"),
   allow_nan=False)``), so an edit that keeps the rest consistent (a case id,
   a critical threshold above the k-th, a crc threshold) is refused too.

The digest guards against accidents and hand edits, not against an attacker
who recomputes it; an attacker who does must still keep every check of 4.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from .._ranks import largest_rank
from .._version import __version__
from ..errors import CalibrationFileError, InputError
from ._binomial import cdf_at_most, hoeffding_bentkus_pvalue

FORMAT_VERSION = 2
Method = Literal["cls", "cls-pac", "crc", "rcps"]  # what ``calibrate(method=...)`` accepts (METHODS)
EmptyPolicy = Literal["skip", "pass", "error"]  # cases without lesion voxels: ``empty=``
Level = Literal["voxel", "lesion"]  # what FNR a promise is about: ``level=`` (LEVELS)
Normalize = Literal["none", "minmax"]  # the score scale: ``normalize=`` (NORMALIZATIONS)
METHODS: tuple[Method, ...] = ("cls", "cls-pac", "crc", "rcps")
NEEDS = {"cls": ("alpha",), "cls-pac": ("alpha", "delta"), "crc": (), "rcps": ("delta",)}
MAX_DEPTH = 16  # a calibration is an object of lists (depth 2)
MAX_INT_DIGITS = 40
DIGEST = "sha256"
SET_KIND = "clskern-calibration-set"  # the ``kind`` of a per-class or per-group file (``sets.CalibrationSet``)
_FIELDS = (
    "threshold", "method", "epsilon", "alpha", "delta", "n", "n_skipped", "k", "guarantee",
    "critical_thresholds", "case_ids", "reading", "clskern_version", "format_version",
    "level", "overlap", "connectivity", "normalize", "warnings",
)
# Fields added within format 2, with the value a record written before them means (voxel level).
_LATER_FIELDS = {"level": "voxel", "overlap": 0.0, "connectivity": None}
LEVELS: tuple[Level, ...] = ("voxel", "lesion")
CONNECTIVITIES = (6, 18, 26)
# docs: min-max normalisation; a record without the field (written before it) is "none"
NORMALIZATIONS: tuple[Normalize, ...] = ("none", "minmax")
READING_KEYS = ("label", "channel")  # how the calibration cases were read (None: not recorded)


# -- the rules calibrate follows (methods.py uses these very functions) -----------------


def cls_rank(n: int, alpha: float) -> int:
    """``k = floor(alpha (n + 1))``, exactly (at most n)."""
    return int(largest_rank(alpha, n + 1, n))


def cls_pac_rank(n: int, alpha: float, delta: float) -> int:
    """Largest ``j >= 1`` with ``BinomCDF(j - 1; n, alpha) <= delta`` (0 if none)."""
    if n == 0:
        return 0
    return int(np.count_nonzero(cdf_at_most(n, alpha, delta)[:n]))  # cdf[j - 1], j = 1..n; non-decreasing


def _ordinal(k: int) -> str:
    """1st, 2nd, 3rd, 4th, ..., 11th, 12th, 13th, 21st."""
    suffix = "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{k}{suffix}"


def kth_smallest(thresholds: Iterable[float] | np.ndarray, k: int) -> float:
    """The k-th smallest (1-based) of the critical thresholds, as a float."""
    return float(np.partition(np.asarray(thresholds, dtype=np.float64), k - 1)[k - 1])


def risk_predicate(method: str, n: int, epsilon: float, delta: float | None) -> Callable[[float], bool]:
    """Whether ``crc`` or ``rcps`` certifies a threshold, from the fsum of its n FNR terms."""
    if method == "crc":
        return lambda fnr_sum: bool((n / (n + 1)) * (fnr_sum / n) + 1 / (n + 1) <= epsilon)
    return lambda fnr_sum: bool(hoeffding_bentkus_pvalue(fnr_sum, n, epsilon) <= delta)


def _guarantee(method, epsilon, alpha, delta, n, level="voxel", overlap=0.0, connectivity=None):
    fnr = "FNR" if level == "voxel" else "L-FNR"
    if method == "cls":
        sentence = (
            f"For a new case exchangeable with the {n} calibration cases, "
            f"P({fnr} <= {epsilon:g}) >= {1 - alpha:g}, marginally over the calibration and test draw."
        )
    elif method == "cls-pac":
        sentence = (
            f"With probability >= {1 - delta:g} over the draw of the {n} calibration cases, "
            f"a new exchangeable case has P({fnr} > {epsilon:g}) <= {alpha:g}."
        )
    elif method == "crc":
        sentence = f"For a new case exchangeable with the {n} calibration cases, E[{fnr}] <= {epsilon:g}."
    else:
        sentence = (
            f"With probability >= {1 - delta:g} over the draw of the {n} calibration cases, "
            f"E[{fnr}] <= {epsilon:g} for a new exchangeable case (Hoeffding-Bentkus bound)."
        )
    if level == "voxel":
        return sentence
    detected = ("any of its voxels scores" if overlap == 0 else
                f"at least max(1, ceil({overlap:g} x its size)) of its voxels score")
    return (f"{sentence} L-FNR is the share of a case's lesions ({connectivity}-connected components of its "
            f"lesion mask) missed; a lesion is detected when {detected} >= the threshold.")


# -- JSON encoding ------------------------------------------------------------------------


def _encode(x):
    """JSON has no infinity: +-inf travel as strings; finite floats round-trip exactly."""
    return x if x is None or math.isfinite(x) else ("inf" if x > 0 else "-inf")


def _canonical(fields):
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), allow_nan=False)


def digest_of(fields: Mapping[str, Any]) -> str:
    """The digest of a record's fields (every field but the digest itself)."""
    body = {key: value for key, value in fields.items() if key != DIGEST}
    return hashlib.sha256(_canonical(body).encode("utf-8")).hexdigest()


def _short(value, limit=60):
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# A string, or an unterminated one up to the end: the match never fails once a quote starts, so
# stripping is linear whatever the text (a pattern that must find the closing quote backtracks
# quadratically on '"\\"\\...').
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)


def _depth(text):
    """How deeply brackets nest outside JSON strings (cheap, before parsing)."""
    data = np.frombuffer(_STRING.sub("", text).encode("utf-8", "replace"), dtype=np.uint8)
    step = np.isin(data, (ord("["), ord("{"))).astype(np.int64) - np.isin(data, (ord("]"), ord("}")))
    return int(np.cumsum(step).max(initial=0))


def _parse_int(text):
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise CalibrationFileError(f"integer too large: {digits} digits (a calibration's have at most {MAX_INT_DIGITS})")
    return int(text)


def _parse_float(text):
    value = float(text)
    if not math.isfinite(value):
        raise CalibrationFileError(f"number {_short(text, 30)} overflows float64 (infinity is written \"inf\")")
    return value


def _parse_constant(text):
    raise CalibrationFileError(f"{text} is not a number in a calibration (infinity is written \"inf\"; NaN never)")


def _no_duplicates(pairs):
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise CalibrationFileError(f"field {key!r} appears twice")
        seen[key] = value
    return seen


def utf8_text(text: str | bytes | bytearray) -> str:
    """A calibration's text: ``str`` as it is, ``bytes`` decoded as UTF-8 (else a one-line refusal)."""
    if isinstance(text, (bytes, bytearray)):
        try:
            return bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CalibrationFileError(f"not a calibration: not UTF-8 text (byte {exc.start})") from None
    return text


def channel_to_cut(recorded: int | None, asked: int | None, *, where: str = "", spell: str = "channel=") -> int | None:
    """The score channel to cut with a calibration: the one its cases were read from where it says
    (``Calibration.reading["channel"]``, ``recorded``), else ``asked``.

    A threshold calibrated on one class says nothing about another, so an
    ``asked`` channel that differs is refused; ``where`` prefixes the message,
    ``spell`` is how the caller writes the option (``--channel `` on the
    command line).
    """
    if recorded is None:
        return asked
    if asked is not None and asked != recorded:
        raise InputError(f"{where}calibrated on channel {recorded}, but {spell}{asked} was asked; a threshold holds "
                         "only for the class it was calibrated on")
    return recorded


def read_checked(path: str | os.PathLike[str], from_bytes: Callable[[bytes], Any]) -> Any:
    """``from_bytes`` of a calibration file's bytes, its refusals prefixed with the file's name."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        return from_bytes(data)
    except CalibrationFileError as exc:
        raise CalibrationFileError(f"{path}: {exc}") from None


def parse_json(text: str) -> Any:
    """Strict, bounded JSON: the checks of step 1 (module docstring)."""
    if _depth(text) > MAX_DEPTH:
        raise CalibrationFileError(f"not a calibration: JSON nested deeper than {MAX_DEPTH} levels")
    try:
        return json.loads(
            text, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant,
            object_pairs_hook=_no_duplicates,
        )
    except json.JSONDecodeError as exc:
        raise CalibrationFileError(f"calibration is not valid JSON ({exc})") from None
    except RecursionError:  # the depth check should have caught it
        raise CalibrationFileError(f"not a calibration: JSON nested deeper than {MAX_DEPTH} levels") from None


# -- field checks -------------------------------------------------------------------------


def _number(value, what, *, infinite=False):
    """A real JSON number as float (``"inf"``/``"-inf"`` when ``infinite``); never NaN."""
    if infinite and value in ("inf", "-inf"):
        return float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        extra = ' or "inf"/"-inf"' if infinite else ""
        raise CalibrationFileError(f"{what} must be a number{extra}, got {_short(value)}")
    try:
        number = float(value)
    except OverflowError:
        raise CalibrationFileError(f"{what} is too large for float64") from None
    if math.isnan(number):
        raise CalibrationFileError(f"{what} must be a number, not NaN")
    if math.isinf(number) and not infinite:
        raise CalibrationFileError(f"{what} must be finite, got {number!r}")
    return number


def _integer(value, what, *, optional=False):
    if optional and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise CalibrationFileError(f"{what} must be an integer, got {_short(value)}")
    if value < 0:
        raise CalibrationFileError(f"{what} must be >= 0, got {value}")
    return value


def _fraction(value, what, *, open_low):
    if value is None:
        return None
    number = _number(value, what)
    if not ((number > 0 if open_low else number >= 0) and number < 1):
        raise CalibrationFileError(f"{what} must lie in {'(0, 1)' if open_low else '[0, 1)'}, got {number!r}")
    return number


def _string(value, what):
    if not isinstance(value, str):
        raise CalibrationFileError(f"{what} must be a string, got {_short(value)}")
    return value


def _fields(d):
    """Typed fields of a record dict (steps 2 and 3), digest not yet checked."""
    if not isinstance(d, dict):
        raise CalibrationFileError(f"not a calibration: expected a JSON object, got {type(d).__name__}")
    if d.get("kind") == SET_KIND:  # a per-class or per-group file: not one record, whatever its version says
        raise CalibrationFileError(
            f"a calibration set by {_short(d.get('by'), 20)} ({_short(d.get('names'))}), not one Calibration: "
            "read it with clskern.read_calibration(path), which returns what a calibration file holds")
    version = d.get("format_version")
    if version != FORMAT_VERSION or isinstance(version, bool):
        if version == 1 and not isinstance(version, bool):
            raise CalibrationFileError(
                f"calibration of format version 1; this clskern ({__version__}) reads version {FORMAT_VERSION}, "
                "which carries a digest: run clskern calibrate again (from the statistics store it takes seconds)"
            )
        raise CalibrationFileError(
            f"calibration of format version {_short(version)}; this clskern ({__version__}) reads version {FORMAT_VERSION}"
        )
    missing = [key for key in (*_FIELDS, DIGEST) if key not in d and key not in _LATER_FIELDS and key not in ("normalize", "warnings")]
    unknown = sorted(str(key) for key in d if key not in _FIELDS and key != DIGEST)
    if missing or unknown:
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"unexpected {', '.join(map(repr, unknown))}"] if unknown else [])
        raise CalibrationFileError(f"not a clskern calibration: missing or unexpected fields ({'; '.join(parts)})")
    method = _string(d["method"], "method")
    if method not in METHODS:
        raise CalibrationFileError(f"unknown method {_short(method)} (one of {', '.join(METHODS)})")
    critical, case_ids = d["critical_thresholds"], d["case_ids"]
    if not isinstance(critical, list):
        raise CalibrationFileError(f"critical_thresholds must be a list, got {_short(critical)}")
    if not isinstance(case_ids, list):
        raise CalibrationFileError(f"case_ids must be a list, got {_short(case_ids)}")
    digest = _string(d[DIGEST], DIGEST)
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise CalibrationFileError(f"{DIGEST} must be 64 lowercase hex digits, got {_short(digest)}")
    return dict(
        threshold=_number(d["threshold"], "threshold", infinite=True),
        method=method,
        epsilon=_fraction(_number(d["epsilon"], "epsilon"), "epsilon", open_low=False),
        alpha=_fraction(d["alpha"], "alpha", open_low=True),
        delta=_fraction(d["delta"], "delta", open_low=True),
        n=_integer(d["n"], "n"),
        n_skipped=_integer(d["n_skipped"], "n_skipped"),
        k=_integer(d["k"], "k", optional=True),
        guarantee=_string(d["guarantee"], "guarantee"),
        critical_thresholds=[
            _number(x, f"critical_thresholds[{i}]", infinite=True) for i, x in enumerate(critical)
        ],
        case_ids=[_string(x, f"case_ids[{i}]") for i, x in enumerate(case_ids)],
        reading=_reading(d["reading"]),
        clskern_version=_string(d["clskern_version"], "clskern_version"),
        format_version=FORMAT_VERSION,
        normalize=_normalize_field(d.get("normalize", "none")),
        warnings=_warnings_field(d.get("warnings", [])),
        **_level_fields(*(d.get(key, default) for key, default in _LATER_FIELDS.items())),
    )


def _level_fields(level, overlap, connectivity):
    """``level``, ``overlap``, ``connectivity`` typed (step 3); how they fit together is ``inconsistency``'s."""
    level = _string(level, "level")
    if level not in LEVELS:
        raise CalibrationFileError(f"level must be one of {', '.join(LEVELS)}, got {_short(level)}")
    overlap = _number(overlap, "overlap")
    if not 0 <= overlap <= 1:
        raise CalibrationFileError(f"overlap must lie in [0, 1], got {overlap!r}")
    connectivity = _integer(connectivity, "connectivity", optional=True)
    if connectivity is not None and connectivity not in CONNECTIVITIES:
        raise CalibrationFileError(f"connectivity must be null or one of 6, 18, 26, got {connectivity!r}")
    return {"level": level, "overlap": float(overlap), "connectivity": connectivity}


def _normalize_field(value):
    """``normalize``: one of ``NORMALIZATIONS``."""
    value = _string(value, "normalize")
    if value not in NORMALIZATIONS:
        raise CalibrationFileError(f"normalize must be one of {', '.join(NORMALIZATIONS)}, got {_short(value)}")
    return value


def _warnings_field(value):
    """``warnings``: a list of strings (absent: none)."""
    if not isinstance(value, list):
        raise CalibrationFileError(f"warnings must be a list of strings, got {_short(value)}")
    return [_string(x, f"warnings[{i}]") for i, x in enumerate(value)]


def _normalized_sentence(normalize):
    """What the guarantee adds for min-max normalised scores (empty for ``"none"``)."""
    if normalize == "none":
        return ""
    return (" Scores are min-max normalised per case, q = (p - min p) / (max p - min p) over every voxel in "
            "float64, for calibration and test cases alike; the threshold and the mask q >= threshold are in q.")


def _reading(value):
    """The reading options of the calibration cases: ``{"label": number or None, "channel": int or None}``,
    or None where they were not recorded (statistics passed in from Python)."""
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != set(READING_KEYS):
        raise CalibrationFileError(f"reading must be null or an object with {', '.join(READING_KEYS)}, "
                                   f"got {_short(value)}")
    label = None if value["label"] is None else _number(value["label"], "reading.label")
    return {"label": label, "channel": _integer(value["channel"], "reading.channel", optional=True)}


def inconsistency(f: Mapping[str, Any]) -> str | None:
    """What makes typed calibration fields inconsistent (step 4), or None."""
    method, n, k = f["method"], f["n"], f["k"]
    epsilon, alpha, delta = f["epsilon"], f["alpha"], f["delta"]
    for parameter in ("alpha", "delta"):
        needed, value = parameter in NEEDS[method], f[parameter]
        if needed and value is None:
            return f"method {method} needs {parameter}, which is null"
        if not needed and value is not None:
            return f"method {method} takes no {parameter}, got {value!r}"
    if len(f["critical_thresholds"]) != n:
        return f"n={n} but {len(f['critical_thresholds'])} critical thresholds"
    if len(f["case_ids"]) != n:
        return f"n={n} but {len(f['case_ids'])} case ids"
    if len(set(f["case_ids"])) != n:
        seen, twice = set(), None
        for case in f["case_ids"]:
            if case in seen:
                twice = case
                break
            seen.add(case)
        return f"case id {twice!r} appears twice"
    level, overlap, connectivity = f["level"], f["overlap"], f["connectivity"]
    if level == "voxel" and overlap != 0:
        return f"overlap={overlap!r} at level voxel (an overlap applies to lesions only)"
    if level == "lesion" and connectivity is None:
        return "level lesion without a connectivity (how were the lesions found?)"
    guarantee = _guarantee(method, epsilon, alpha, delta, n, level, overlap, connectivity) + _normalized_sentence(
        f["normalize"])
    if f["guarantee"] != guarantee:
        given = ", ".join(f"{p}={f[p]!r}" for p in ("epsilon", "alpha", "delta") if f[p] is not None)
        return f"the guarantee sentence is not the one of method {method} with {given}, n={n}"
    threshold = f["threshold"]
    if f["normalize"] == "minmax":  # q lies in [0, 1]; +inf marks a case (or a cut) that any threshold meets
        outside = [x for x in (threshold, *f["critical_thresholds"]) if not (0 <= x <= 1 or x == math.inf)]
        if outside:
            return f"normalize minmax, but {outside[0]!r} is not a min-max normalised score in [0, 1] (or inf)"
    if method in ("cls", "cls-pac"):
        expected_k = cls_rank(n, alpha) if method == "cls" else cls_pac_rank(n, alpha, delta)
        if k != expected_k:
            return f"k={k!r}, but {method} with n={n} and these parameters has k={expected_k}"
        if expected_k == 0:
            return f"{method} certifies nothing with n={n} and these parameters (k=0)"
        expected = kth_smallest(f["critical_thresholds"], k)
        if threshold.hex() != expected.hex():
            return f"threshold {threshold!r} is not the {_ordinal(k)} smallest critical threshold ({expected!r})"
        return None
    if k is not None:
        return f"k must be null for {method}, got {k!r}"
    if not epsilon > 0:
        return f"{method} cannot certify epsilon=0"
    if n == 0 or not risk_predicate(method, n, epsilon, delta)(0.0):
        return f"{method} cannot certify epsilon={epsilon:g} with n={n} calibration cases"
    if threshold > max(f["critical_thresholds"]):
        return f"threshold {threshold!r} exceeds every critical threshold: {method} cannot have certified it"
    return None


@dataclass(frozen=True)
class Calibration:
    """A calibrated threshold and what it certifies.

    Attributes
    ----------
    threshold : float
        Test-time cut: the mask is ``scores >= threshold``.
    method, epsilon, alpha, delta
        The request (``alpha``/``delta`` are None where the method has none).
    n, n_skipped : int
        Cases used, and cases left out for lacking lesion voxels.
    k : int or None
        1-based order statistic of the critical thresholds (``cls``, ``cls-pac``).
    guarantee : str
        The promise, in one sentence.
    critical_thresholds, case_ids : list
        Per kept case, at ``epsilon`` (case ids are strings, distinct).
    reading : dict or None
        How the calibration cases were read (``label``, ``channel``), where
        known: ``clskern apply`` cuts the same channel.
    level, overlap, connectivity
        What FNR the promise is about: ``"voxel"`` (overlap 0; connectivity
        that of the statistics, or None), or ``"lesion"`` (L-FNR, docs: lesions:
        lesions are the ``connectivity``-connected components, detected at
        ``overlap``). Records written before these fields read as voxel level.
    normalize : {"none", "minmax"}
        ``"minmax"``: thresholds are in per-case min-max normalised scores
        (docs: min-max normalisation); ``apply_threshold(..., normalize=...)`` and ``clskern
        apply`` normalise each new case the same way. Records written before
        the field read as ``"none"``; the digest covers it.
    warnings : list of str
        What ``clskern calibrate`` found wrong with the cut on the calibration
        data (``clskern.calibration.degenerate.degenerate_cut``: most of the
        volume predicted lesion, Dice collapsed against the 0.5 cut), with the
        numbers; the guarantee holds regardless. Written only when not empty
        (a record without the field has none); the digest covers it.

    ``to_json`` writes the record with a ``sha256`` digest of its other fields;
    ``read``, ``from_json`` and ``from_dict`` refuse a record that is edited,
    inconsistent or of another format (see the module docstring for what is
    checked, and what cannot be for ``crc``/``rcps``).
    """

    threshold: float
    method: str
    epsilon: float
    alpha: float | None
    delta: float | None
    n: int
    n_skipped: int
    k: int | None
    guarantee: str
    critical_thresholds: list[float]
    case_ids: list[str]
    reading: dict[str, Any] | None = None
    clskern_version: str = __version__
    format_version: int = FORMAT_VERSION
    level: str = "voxel"
    overlap: float = 0.0
    connectivity: int | None = None
    normalize: str = "none"
    warnings: list[str] = field(default_factory=list)

    @classmethod
    def build(cls, method: str, threshold: float, epsilon: float, alpha: float | None, delta: float | None, n: int,
              n_skipped: int, k: int | None, *, critical_thresholds: Iterable[float], case_ids: Iterable[object],
              reading: Mapping[str, Any] | None = None, level: str = "voxel", overlap: float = 0.0,
              connectivity: int | None = None, normalize: str = "none", warnings: Iterable[object] = ()) -> Calibration:
        return cls(
            threshold=float(threshold), method=method, epsilon=float(epsilon),
            alpha=None if alpha is None else float(alpha), delta=None if delta is None else float(delta),
            n=int(n), n_skipped=int(n_skipped), k=None if k is None else int(k),
            guarantee=_guarantee(method, epsilon, alpha, delta, n, level, overlap, connectivity)
            + _normalized_sentence(_normalize_field(normalize)),
            critical_thresholds=[float(x) for x in critical_thresholds], case_ids=[str(c) for c in case_ids],
            reading=None if reading is None else _reading(dict(reading)),
            **_level_fields(level, overlap, connectivity),
            normalize=normalize, warnings=[str(w) for w in warnings],
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready fields, with the ``sha256`` digest of the others."""
        d = asdict(self)
        d["threshold"] = _encode(d["threshold"])
        d["critical_thresholds"] = [_encode(x) for x in d["critical_thresholds"]]
        if not d["warnings"]:  # a healthy cut's file is the one clskern wrote before the field (same digest)
            del d["warnings"]
        d[DIGEST] = digest_of(d)
        return d

    def to_json(self, indent: int | str | None = 2) -> str:
        """Strict JSON (no NaN/Infinity literals) with the digest; floats round-trip bit for bit."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        """A checked record from the parsed JSON object; ``CalibrationFileError`` (one line) if not trustworthy."""
        fields = _fields(d)
        problem = inconsistency(fields)
        if problem:
            raise CalibrationFileError(f"inconsistent calibration: {problem}")
        try:
            expected = digest_of(d)
        except (TypeError, ValueError):  # a dict built by hand, with values JSON cannot carry
            expected = None
        if d[DIGEST] != expected:
            raise CalibrationFileError(
                f"{DIGEST} digest mismatch: the calibration was edited after clskern wrote it "
                "(run clskern calibrate again rather than editing it)"
            )
        return cls(**fields)

    @classmethod
    def from_json(cls, text: str | bytes | bytearray) -> Calibration:
        """A checked record from JSON text (``str``, or UTF-8 ``bytes``)."""
        return cls.from_dict(parse_json(utf8_text(text)))

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> Calibration:
        """A checked record from a calibration file.

        Raises ``OSError`` (with the file name) when the file cannot be read,
        and ``CalibrationFileError`` with the one line ``"{path}: {reason}"``
        when it is not UTF-8, not JSON, nested too deep, holds a number JSON
        or float64 cannot carry, is of another format version, was edited
        (digest) or is inconsistent, or holds a per-class or per-group set
        (``clskern.read_calibration`` reads any calibration file).
        """
        return read_checked(path, cls.from_json)
