"""Calibration files check themselves: digest, consistency with calibrate's rules, strict bounded JSON."""

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import clskern
from clskern.calibration.record import FORMAT_VERSION, _guarantee, digest_of
from clskern.errors import CalibrationFileError, ClsKernError

METHODS = [
    ("cls", dict(alpha=0.1)),
    ("cls-pac", dict(alpha=0.2, delta=0.1)),
    ("crc", {}),
    ("rcps", dict(delta=0.1)),
]


def _cases(seed=3, n=40, empty=0):
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(n):
        scores = rng.random(120).astype(np.float32)
        labels = np.zeros(120, np.uint8)
        labels[: rng.integers(1, 30)] = 1
        cases.append(clskern.volume_stats(scores, labels, name=f"case_{i:02d}"))
    for i in range(empty):
        cases.append(clskern.volume_stats(np.zeros(5, np.float32), np.zeros(5, np.uint8), name=f"empty_{i}"))
    return cases


@pytest.fixture(scope="module")
def cases():
    return _cases(empty=2)


def _calibration(cases, method="cls", **kwargs):
    kwargs = kwargs or dict(METHODS)[method]
    return clskern.calibrate(cases, epsilon=0.2, method=method, empty="pass", **kwargs)


def _write(tmp_path, d, name="cal.json"):
    path = tmp_path / name
    path.write_text(json.dumps(d, indent=2) if not isinstance(d, str) else d)
    return path


def _refused(path, match):
    with pytest.raises(CalibrationFileError) as info:
        clskern.Calibration.read(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    assert match in message, message
    return message


@pytest.mark.parametrize("method,kwargs", METHODS)
def test_round_trip_through_a_file(tmp_path, cases, method, kwargs):
    cal = _calibration(cases, method, **kwargs)
    path = _write(tmp_path, cal.to_json())
    again = clskern.Calibration.read(path)
    assert again == cal and again.format_version == FORMAT_VERSION == 2
    assert json.loads(path.read_text())["sha256"] == digest_of(json.loads(path.read_text()))
    assert clskern.Calibration.from_json(path.read_bytes()) == cal


@pytest.mark.parametrize(
    "method,kwargs,sign", [(m, kw, 1) for m, kw in METHODS] + [(m, kw, -1) for m, kw in METHODS[:2]]
)
def test_round_trip_of_infinite_thresholds(tmp_path, method, kwargs, sign):
    # Every case empty (passed): critical thresholds +inf; critical thresholds of -inf make a -inf cls threshold.
    if sign > 0:
        cases = [clskern.volume_stats(np.zeros(4, np.float32), np.zeros(4, np.uint8), name=f"e{i}") for i in range(30)]
    else:
        cases = [-math.inf] * 30
    cal = clskern.calibrate(cases, epsilon=0.2, method=method, empty="pass", **kwargs)
    assert cal.threshold == sign * math.inf
    text = cal.to_json()
    assert "Infinity" not in text
    assert clskern.Calibration.read(_write(tmp_path, text)) == cal


def _edited(cal, **changes):
    d = json.loads(cal.to_json())
    d.update(changes)
    return d


@pytest.mark.parametrize(
    "field,value,match",
    [
        ("threshold", 0.123, "is not the 4th smallest critical threshold"),
        ("threshold", "nan", "threshold must be a number"),
        ("threshold", None, "threshold must be a number"),
        ("threshold", True, "threshold must be a number"),
        ("threshold", "Infinity", "threshold must be a number"),
        ("epsilon", 0.3, "guarantee sentence is not the one of method cls with epsilon=0.3"),
        ("epsilon", 1.5, "epsilon must lie in [0, 1)"),
        ("epsilon", "0.2", "epsilon must be a number"),
        ("alpha", 0.2, "guarantee sentence"),
        ("alpha", 0.0, "alpha must lie in (0, 1)"),
        ("alpha", None, "method cls needs alpha"),
        ("delta", 0.1, "method cls takes no delta"),
        ("k", 5, "k=5, but cls with n=42"),
        ("k", None, "k=None, but cls"),
        ("k", -1, "k must be >= 0"),
        ("k", 4.0, "k must be an integer"),
        ("n", 41, "n=41 but 42 critical thresholds"),
        ("n", False, "n must be an integer"),
        ("n_skipped", 3, "digest mismatch"),
        ("method", "cls-pac", "method cls-pac needs delta"),
        ("method", "clsx", "unknown method 'clsx'"),
        ("guarantee", "P(FNR <= 0.2) >= 0.99", "guarantee sentence"),
        ("clskern_version", "9.9.9", "digest mismatch"),
        ("format_version", 1, "run clskern calibrate again"),
        ("format_version", 99, "format version 99"),
        ("format_version", True, "format version True"),
        ("sha256", "0" * 64, "digest mismatch"),
        ("sha256", "XYZ", "sha256 must be 64 lowercase hex digits"),
        ("extra", 1, "unexpected 'extra'"),
    ],
)
def test_every_hand_edit_is_refused_naming_the_problem(tmp_path, cases, field, value, match):
    cal = _calibration(cases, "cls")
    assert cal.k == 4 and cal.n == 42
    _refused(_write(tmp_path, _edited(cal, **{field: value})), match)


@pytest.mark.parametrize("method,kwargs", METHODS)
def test_edited_lists_are_refused(tmp_path, cases, method, kwargs):
    cal = _calibration(cases, method, **kwargs)
    d = json.loads(cal.to_json())
    critical = list(d["critical_thresholds"])
    critical[-1] = 0.5 if critical[-1] != 0.5 else 0.25
    _refused(_write(tmp_path, {**d, "critical_thresholds": critical}), "")
    ids = list(d["case_ids"])
    _refused(_write(tmp_path, {**d, "case_ids": ids[:1] + ["renamed"] + ids[2:]}), "digest mismatch")
    _refused(_write(tmp_path, {**d, "case_ids": ids[:1] + ids[:1] + ids[2:]}), f"case id {ids[0]!r} appears twice")
    _refused(_write(tmp_path, {**d, "case_ids": ids[:-1]}), f"n={cal.n} but {cal.n - 1} case ids")
    _refused(_write(tmp_path, {**d, "case_ids": ids[:-1] + [7]}), f"case_ids[{cal.n - 1}] must be a string")
    _refused(_write(tmp_path, {**d, "critical_thresholds": critical[:-1] + ["nan"]}),
             f"critical_thresholds[{cal.n - 1}] must be a number")
    for missing in ("threshold", "critical_thresholds", "sha256"):
        e = dict(d)
        del e[missing]
        _refused(_write(tmp_path, e), f"missing {missing}")


def _with_digest(d):
    d = dict(d)
    d["sha256"] = digest_of(d)
    return d


@pytest.mark.parametrize("method,kwargs", METHODS[:2])
def test_a_recomputed_digest_does_not_make_an_inconsistent_threshold_pass(tmp_path, cases, method, kwargs):
    cal = _calibration(cases, method, **kwargs)
    d = json.loads(cal.to_json())
    lower = float(np.sort(d["critical_thresholds"][:-2])[0])  # below the k-th: a more generous cut
    _refused(_write(tmp_path, _with_digest({**d, "threshold": lower})), "is not the")
    # k and threshold moved together, consistently with each other but not with n and alpha.
    ordered = sorted(float(x) for x in d["critical_thresholds"])
    forged = {**d, "k": cal.k + 3, "threshold": ordered[cal.k + 2]}
    _refused(_write(tmp_path, _with_digest(forged)), f"but {method} with n={cal.n}")
    # -0.0 for 0.0 (or any other bit pattern) is not the k-th critical threshold.
    zero = clskern.calibrate([0.0] * 30, epsilon=0.2, alpha=0.1)
    assert math.copysign(1, zero.threshold) == 1
    z = json.loads(zero.to_json())
    _refused(_write(tmp_path, _with_digest({**z, "threshold": -0.0})), "is not the 3rd smallest")


@pytest.mark.parametrize("method,kwargs", METHODS[2:])
def test_what_can_be_checked_for_crc_and_rcps(tmp_path, cases, method, kwargs):
    cal = _calibration(cases, method, **kwargs)
    d = json.loads(cal.to_json())
    finite = [x for x in d["critical_thresholds"] if isinstance(x, float)]
    no_pass = {**d, "critical_thresholds": finite + [0.0] * (cal.n - len(finite))}
    _refused(_write(tmp_path, _with_digest({**no_pass, "threshold": max(finite) + 1})),
             "exceeds every critical threshold")
    _refused(_write(tmp_path, _with_digest({**d, "k": 3})), f"k must be null for {method}")
    small = {**d, "n": 2, "critical_thresholds": d["critical_thresholds"][:2], "case_ids": d["case_ids"][:2]}
    small["guarantee"] = _guarantee(method, 0.2, None, small["delta"], 2)
    _refused(_write(tmp_path, _with_digest(small)), f"{method} cannot certify epsilon=0.2 with n=2")
    # A different but consistent threshold: only the digest can tell.
    _refused(_write(tmp_path, {**d, "threshold": min(finite)}), "digest mismatch")


@pytest.mark.parametrize(
    "text,match",
    [
        ('{"threshold": ' + "9" * 401 + "}", "integer too large: 401 digits"),
        ('{"threshold": ' + "9" * 5000 + "}", "integer too large: 5000 digits"),
        ('{"threshold": -' + "9" * 5000 + "}", "integer too large: 5000 digits"),
        ("[" * 100_000 + "]" * 100_000, "nested deeper than 16 levels"),
        ('{"a": ' * 100_000, "nested deeper than 16 levels"),
        ('{"threshold": NaN}', "NaN is not a number"),
        ('{"threshold": -Infinity}', "-Infinity is not a number"),
        ('{"threshold": 1e400}', "overflows float64"),
        ('{"threshold": 0.5, "threshold": 0.5}', "field 'threshold' appears twice"),
        ("", "calibration is not valid JSON"),
        ("{", "calibration is not valid JSON"),
        ("[]", "expected a JSON object, got list"),
        ('"[[["', "expected a JSON object, got str"),
        ("{}", "format version None"),
    ],
)
def test_malformed_files_in_one_line(tmp_path, text, match):
    _refused(_write(tmp_path, text), match)


def test_depth_check_is_linear_on_hostile_strings(tmp_path):
    import time

    start = time.perf_counter()
    for text in ['"\\"' * 100_000, '"\\' * 100_000, '"' + "[" * 100_000]:
        with pytest.raises(CalibrationFileError):
            clskern.Calibration.from_json(text)
    assert time.perf_counter() - start < 5  # a backtracking pattern took minutes here


def test_format_1_is_refused_with_the_way_out(tmp_path, cases):
    d = json.loads(_calibration(cases).to_json())
    del d["sha256"]
    d["format_version"] = 1
    message = _refused(_write(tmp_path, d), "format version 1")
    assert "run clskern calibrate again" in message


def test_huge_integer_given_as_a_dict_is_refused(cases):
    d = json.loads(_calibration(cases).to_json())
    with pytest.raises(CalibrationFileError, match="threshold is too large for float64"):
        clskern.Calibration.from_dict({**d, "threshold": 10**400})


def test_not_utf8_and_unreadable(tmp_path, cases):
    path = tmp_path / "cal.json"
    path.write_bytes(_calibration(cases).to_json().encode()[:40] + b"\xff\xfe" + b"}")
    _refused(path, "not UTF-8 text")
    with pytest.raises(OSError) as info:
        clskern.Calibration.read(tmp_path / "missing.json")
    assert info.value.filename == str(tmp_path / "missing.json")


def test_calibrate_refuses_repeated_case_ids():
    stats = clskern.volume_stats(np.ones(4, np.float32), np.ones(4, np.uint8), name="a")
    with pytest.raises(clskern.InputError, match="case id 'a' appears twice"):
        clskern.calibrate([stats, stats], epsilon=0.2, method="crc")


_VALID = None


def _valid_bytes():
    global _VALID
    if _VALID is None:
        _VALID = _calibration(_cases(seed=5, n=12), "cls", alpha=0.2).to_json(indent=1).encode()
    return _VALID


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_byte_edits_are_refused_or_harmless(data):
    original_bytes = _valid_bytes()
    original = clskern.Calibration.from_json(original_bytes)
    edited = bytearray(original_bytes)
    for _ in range(data.draw(st.integers(1, 3))):
        kind = data.draw(st.sampled_from(["replace", "insert", "delete"]))
        where = data.draw(st.integers(0, len(edited) - 1))
        byte = data.draw(st.one_of(st.integers(0, 255), st.sampled_from(list(b' \n\t0123456789.-+eE"[]{},:\\nu'))))
        if kind == "replace":
            edited[where] = byte
        elif kind == "insert":
            edited.insert(where, byte)
        else:
            del edited[where]
    try:
        again = clskern.Calibration.from_json(bytes(edited))
    except ClsKernError as exc:
        assert isinstance(exc, ValueError) and "\n" not in str(exc)
        return
    # Accepted: the edit changed nothing that matters (whitespace, or a number written another way).
    assert again == original
    assert json.loads(again.to_json()) == json.loads(original_bytes)
