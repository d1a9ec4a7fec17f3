"""Every public function refuses a bad number alike: a clskern error naming the argument, never a Numba error."""

import math
from decimal import Decimal

import numpy as np
import pytest

import clskern
from clskern.errors import ArgumentError, ArgumentTypeError, ClsKernError

SCORES = np.linspace(0, 1, 24, dtype=np.float32).reshape(2, 3, 4)
LABELS = (np.arange(24).reshape(2, 3, 4) % 3 == 0).astype(np.uint8)
STATS = clskern.volume_stats(SCORES, LABELS, name="a")
MANY = {f"c{i}": clskern.volume_stats(np.roll(SCORES, i), LABELS, name=f"c{i}") for i in range(12)}

# Bad values shared by every numeric argument; None, +-inf are added where they are refused.
TYPE_BAD = {
    "str": "0.1",
    "bytes": b"0.1",
    "bool": True,
    "numpy bool": np.True_,
    "complex": 0.1 + 0j,
    "numpy complex": np.complex128(0.1),
    "list of str": ["0.1", "0.2"],
    "0-d object array": np.array(0.1, dtype=object),
    "Decimal": Decimal("0.1"),
    "dict": {"a": 0.1},
}
VALUE_BAD = {"nan": math.nan, "numpy nan": np.float32("nan"), "huge int": 10**400}
INF = {"inf": math.inf, "-inf": -math.inf}


def _calls():
    """(function description, argument name, call taking the value, bad values)."""
    yield "critical_threshold", "epsilon", lambda v: clskern.critical_threshold(SCORES, LABELS, v), True, True
    yield "critical_threshold", "label", lambda v: clskern.critical_threshold(SCORES, LABELS, 0.2, label=v), False, True
    yield "volume_stats", "label", lambda v: clskern.volume_stats(SCORES, LABELS, label=v), False, True
    yield "lesion_scores", "label", lambda v: clskern.lesion_scores(SCORES, LABELS, label=v), False, True
    yield "apply_threshold", "threshold", lambda v: clskern.apply_threshold(SCORES, v), True, False
    yield "calibrate", "epsilon", lambda v: clskern.calibrate(MANY, epsilon=v, alpha=0.2), True, True
    yield "calibrate", "alpha", lambda v: clskern.calibrate(MANY, epsilon=0.2, alpha=v), True, True
    yield "calibrate cls-pac", "delta", (
        lambda v: clskern.calibrate(MANY, epsilon=0.2, alpha=0.2, delta=v, method="cls-pac")), True, True
    yield "calibrate rcps", "delta", lambda v: clskern.calibrate(MANY, epsilon=0.2, delta=v, method="rcps"), True, True
    yield "evaluate", "epsilon", lambda v: clskern.evaluate(MANY, epsilon=v, alpha=0.2, sweeps=False), True, True
    yield "evaluate", "alpha", lambda v: clskern.evaluate(MANY, epsilon=0.2, alpha=v, sweeps=False), True, True
    yield "evaluate", "delta", lambda v: clskern.evaluate(MANY, epsilon=0.2, alpha=0.2, delta=v, sweeps=False), True, True
    yield "evaluate", "cal_fraction", (
        lambda v: clskern.evaluate(MANY, epsilon=0.2, alpha=0.2, cal_fraction=v, sweeps=False)), True, True
    yield "VolumeStats.critical_threshold", "epsilon", lambda v: STATS.critical_threshold(v), True, True
    for method in ("fn", "tp", "fnr", "fp", "fpr", "dice", "pc"):
        yield f"VolumeStats.{method}", "thresholds t", (lambda m: lambda v: getattr(STATS, m)(v))(method), True, False


CASES = []
for function, argument, call, none_bad, inf_bad in _calls():
    bad = {**TYPE_BAD, **VALUE_BAD, **({"None": None} if none_bad else {}), **(INF if inf_bad else {})}
    if argument == "label":
        bad.pop("list of str")  # a label is one value: a list is refused as a type anyway
        bad["list of str"] = ["1"]
    for what, value in bad.items():
        CASES.append(pytest.param(call, argument, value, id=f"{function}-{argument}-{what}"))


@pytest.mark.parametrize("call,argument,value", CASES)
def test_bad_numbers_are_refused_naming_the_argument(call, argument, value):
    with pytest.raises((ValueError, TypeError)) as info:
        call(value)
    error = info.value
    assert isinstance(error, ClsKernError), f"{type(error).__module__}.{type(error).__name__}: {error}"
    assert argument.split()[-1] in str(error), str(error)
    assert "numba" not in type(error).__module__ and "TypingError" not in str(error)
    assert "\n" not in str(error)


@pytest.mark.parametrize("value", [["0.1"], "0.1", np.array(["0.1"]), np.array([0.1, np.nan]), [0.1, 1.0], [[0.1], [0.2, 0.3]]])
def test_epsilon_arrays_are_real_numbers(value):
    for call in (lambda: clskern.critical_threshold(SCORES, LABELS, value), lambda: STATS.critical_threshold(value)):
        with pytest.raises(ArgumentError, match="epsilon"):
            call()


def test_good_values_still_work():
    assert clskern.critical_threshold(SCORES, LABELS, np.float32(0.2)) == STATS.critical_threshold(0.2)
    assert clskern.critical_threshold(SCORES, LABELS, 0) == STATS.critical_threshold(0)
    np.testing.assert_array_equal(clskern.critical_threshold(SCORES, LABELS, [0.1, 0.2]), STATS.critical_threshold((0.1, 0.2)))
    assert STATS.fn(math.inf) == STATS.n_fg and STATS.fn(-math.inf) == 0 and STATS.fn(np.int64(1)) == STATS.fn(1.0)
    np.testing.assert_array_equal(STATS.fnr([0.0, 0.5, math.inf]), [0.0, STATS.fnr(0.5), 1.0])
    assert clskern.apply_threshold(SCORES, np.float64(math.inf)).sum() == 0
    assert clskern.apply_threshold(SCORES, -math.inf).all()
    assert clskern.volume_stats(SCORES, LABELS * 2, label=np.int16(2)) == clskern.volume_stats(SCORES, LABELS, label=1.0)
    assert clskern.calibrate(MANY, epsilon=np.float32(0.25), alpha=np.float64(0.2)).n == 12


def test_type_errors_are_also_type_errors():
    with pytest.raises(TypeError):
        clskern.critical_threshold(SCORES, LABELS, "0.1")
    with pytest.raises(ArgumentTypeError):
        STATS.fp("0.5")
    with pytest.raises(ArgumentError, match="NaN"):
        STATS.fp([0.5, math.nan])


@pytest.mark.parametrize("policy", ["never", None, 1, ["skip"]])
def test_empty_policy_is_checked(policy):
    with pytest.raises(ArgumentError, match="empty"):
        clskern.critical_threshold(SCORES, LABELS, 0.2, empty=policy)
    with pytest.raises(ArgumentError, match="empty"):
        clskern.calibrate(MANY, epsilon=0.2, alpha=0.2, empty=policy)


@pytest.mark.parametrize("method", ["CLS", None, 3])
def test_method_is_checked(method):
    with pytest.raises(ArgumentError, match="method"):
        clskern.calibrate(MANY, epsilon=0.2, alpha=0.2, method=method)


@pytest.mark.parametrize("value", ["0.5", b"x", True, np.nan, 10**400, complex(1, 0)])
def test_critical_thresholds_given_to_calibrate(value):
    with pytest.raises((ArgumentError, ArgumentTypeError), match="case #1"):
        clskern.calibrate([0.5, value] + [0.5] * 20, epsilon=0.2, alpha=0.2)


@pytest.mark.parametrize("backend", ["cuda", "auto"])
def test_arguments_are_checked_before_the_backend_is_chosen(backend):
    # Without a GPU, backend="cuda" would raise CudaUnavailableError: the bad argument must win.
    with pytest.raises(ArgumentTypeError, match="epsilon"):
        clskern.critical_threshold(SCORES, LABELS, "0.2", backend=backend)
    with pytest.raises(ArgumentTypeError, match="label"):
        clskern.volume_stats(SCORES, LABELS, label="1", backend=backend)
    with pytest.raises(ArgumentTypeError, match="threshold"):
        clskern.apply_threshold(SCORES, "0.5", backend=backend)


@pytest.mark.parametrize("value", ["24", 24.0, True, None, np.float64(24)])
def test_volume_stats_counts_are_integers(value):
    args = dict(n_voxels=STATS.n_voxels, n_fg=STATS.n_fg)
    for what in args:
        with pytest.raises(ArgumentTypeError, match=what):
            clskern.VolumeStats(**{**args, what: value}, lesion_scores=STATS.lesion_scores,
                                bg_bins=STATS.bg_bins, bg_counts=STATS.bg_counts, name="a")
    assert clskern.VolumeStats(np.int64(STATS.n_voxels), STATS.n_fg, STATS.lesion_scores, STATS.bg_bins,
                               STATS.bg_counts, "a", connectivity=STATS.connectivity,
                               lesion_offsets=STATS.lesion_offsets, lesion_groups=STATS.lesion_groups,
                               score_min=STATS.score_min, score_max=STATS.score_max) == STATS
