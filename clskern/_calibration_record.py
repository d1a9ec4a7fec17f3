"""``Calibration``: the result of ``calibrate`` and its JSON form."""

import json
import math
from dataclasses import asdict, dataclass

from ._version import __version__
from .errors import InputError

FORMAT_VERSION = 1


def _guarantee(method, epsilon, alpha, delta, n):
    if method == "cls":
        return (
            f"For a new case exchangeable with the {n} calibration cases, "
            f"P(FNR <= {epsilon:g}) >= {1 - alpha:g}, marginally over the calibration and test draw."
        )
    if method == "cls-pac":
        return (
            f"With probability >= {1 - delta:g} over the draw of the {n} calibration cases, "
            f"a new exchangeable case has P(FNR > {epsilon:g}) <= {alpha:g}."
        )
    if method == "crc":
        return f"For a new case exchangeable with the {n} calibration cases, E[FNR] <= {epsilon:g}."
    return (
        f"With probability >= {1 - delta:g} over the draw of the {n} calibration cases, "
        f"E[FNR] <= {epsilon:g} for a new exchangeable case (Hoeffding-Bentkus bound)."
    )


def _encode(x):
    """JSON has no infinity: +-inf travel as strings; finite floats round-trip exactly."""
    return x if x is None or math.isfinite(x) else ("inf" if x > 0 else "-inf")


def _decode(x):
    return float(x) if isinstance(x, str) else x


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
        Per kept case, at ``epsilon``.
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
    critical_thresholds: list
    case_ids: list
    clskern_version: str = __version__
    format_version: int = FORMAT_VERSION

    @classmethod
    def build(cls, method, threshold, epsilon, alpha, delta, n, n_skipped, k, *, critical_thresholds, case_ids):
        return cls(
            threshold=float(threshold), method=method, epsilon=epsilon, alpha=alpha, delta=delta,
            n=int(n), n_skipped=int(n_skipped), k=None if k is None else int(k),
            guarantee=_guarantee(method, epsilon, alpha, delta, n),
            critical_thresholds=[float(x) for x in critical_thresholds], case_ids=list(case_ids),
        )

    def to_dict(self):
        d = asdict(self)
        d["threshold"] = _encode(d["threshold"])
        d["critical_thresholds"] = [_encode(x) for x in d["critical_thresholds"]]
        return d

    def to_json(self, indent=2):
        """Strict JSON (no NaN/Infinity literals); floats round-trip bit for bit."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    @classmethod
    def from_dict(cls, d):
        version = d.get("format_version")
        if version != FORMAT_VERSION:
            raise InputError(
                f"calibration of format version {version!r}; this clskern ({__version__}) reads version {FORMAT_VERSION}"
            )
        fields = dict(d)
        try:
            fields["threshold"] = _decode(fields["threshold"])
            fields["critical_thresholds"] = [_decode(x) for x in fields["critical_thresholds"]]
            return cls(**fields)
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"not a clskern calibration: missing or unexpected fields ({exc!r})") from None

    @classmethod
    def from_json(cls, text):
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"calibration is not valid JSON ({exc})") from None
        if not isinstance(d, dict):
            raise InputError("calibration JSON must be an object")
        return cls.from_dict(d)
