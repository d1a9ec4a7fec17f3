"""Per-group (Mondrian) calibration: each group calibrated on its own cases (SPEC 2, Groups)."""

import json

import nibabel as nib
import numpy as np
import pytest

import clskern
from clskern.calibration.sets import CalibrationSet, read_calibration
from clskern.cli.main import main
from clskern.errors import ArgumentError, CalibrationError, CalibrationFileError
from clskern.io.errors import FileFormatError
from clskern.io.groups import parse_groups, read_groups


def _stats(rng, n):
    out = {}
    for i in range(n):
        n_fg = int(rng.integers(5, 40))
        scores = np.r_[rng.beta(rng.uniform(0.5, 3), 1, n_fg), rng.beta(1, 3, 50)].astype(np.float32)
        labels = np.r_[np.ones(n_fg, np.uint8), np.zeros(50, np.uint8)]
        out[f"case{i:02d}"] = clskern.volume_stats(scores, labels, name=f"case{i:02d}")
    return out


@pytest.mark.parametrize("method,alpha,delta", [("cls", 0.2, None), ("cls-pac", 0.3, 0.3), ("crc", None, None),
                                                ("rcps", None, 0.2)])
def test_each_group_equals_calibrating_its_cases_by_hand(method, alpha, delta):
    stats = _stats(np.random.default_rng(1), 60)
    groups = {case: ("siteB" if i % 3 == 0 else "siteA") for i, case in enumerate(stats)}
    eps = 0.3
    result = clskern.calibrate(stats, epsilon=eps, alpha=alpha, method=method, delta=delta, groups=groups)
    assert list(result) == ["siteA", "siteB"]
    for group, cal in result.items():
        own = {c: s for c, s in stats.items() if groups[c] == group}
        assert cal == clskern.calibrate(own, epsilon=eps, alpha=alpha, method=method, delta=delta)
        assert sorted(cal.case_ids) == sorted(own)


def test_groups_from_critical_thresholds_and_empty_cases():
    rng = np.random.default_rng(2)
    crit = {f"c{i}": (None if i % 7 == 0 else float(rng.random())) for i in range(50)}
    groups = {c: str(i % 2) for i, c in enumerate(crit)}
    out = clskern.calibrate(crit, epsilon=0.1, alpha=0.2, groups=groups, empty="skip")
    for g, cal in out.items():
        kept = [v for c, v in crit.items() if groups[c] == g and v is not None]
        k = int(np.floor(0.2 * (len(kept) + 1)))
        assert cal.threshold == sorted(kept)[k - 1]
        assert cal.n_skipped == sum(1 for c, v in crit.items() if groups[c] == g and v is None)


def test_a_group_too_small_is_refused_by_name():
    stats = _stats(np.random.default_rng(3), 30)
    groups = {case: ("small" if i < 5 else "big") for i, case in enumerate(stats)}
    with pytest.raises(CalibrationError, match=r"group 'small' \(5 case\(s\)\): cls cannot certify alpha=0.1 "
                                               r"with n=5 .* n >= 9"):
        clskern.calibrate(stats, epsilon=0.2, alpha=0.1, groups=groups)


def test_every_case_needs_a_group_and_groups_are_checked():
    stats = _stats(np.random.default_rng(4), 10)
    groups = {case: "a" for case in list(stats)[1:]}
    with pytest.raises(ArgumentError, match="case 'case00' has no group"):
        clskern.calibrate(stats, epsilon=0.2, alpha=0.2, groups=groups)
    with pytest.raises(TypeError, match="mapping case id"):
        clskern.calibrate(list(stats.values()), epsilon=0.2, alpha=0.2, groups={c: "a" for c in stats})
    with pytest.raises(ArgumentError, match="family='bonferroni' applies to several classes"):
        clskern.calibrate(stats, epsilon=0.2, alpha=0.2, groups={c: "a" for c in stats}, family="bonferroni")
    extra = {**{c: "a" for c in stats}, "test_case": "b"}  # a listed case never used is fine
    assert list(clskern.calibrate(stats, epsilon=0.2, alpha=0.2, groups=extra)) == ["a"]


def test_set_file_round_trip_and_refusals():
    stats = _stats(np.random.default_rng(5), 40)
    groups = {case: f"g{i % 2}" for i, case in enumerate(stats)}
    cals = clskern.calibrate(stats, epsilon=0.2, alpha=0.2, groups=groups)
    s = CalibrationSet(by="group", calibrations=cals, alpha=0.2)
    text = s.to_json()
    back = CalibrationSet.from_json(text)
    assert back.calibrations == cals and back.by == "group" and back.names == ["g0", "g1"]
    d = json.loads(text)
    d["calibrations"]["g1"]["threshold"] = 0.0  # a member edited: its own digest refuses it
    with pytest.raises(CalibrationFileError, match="group 'g1': .*"):
        CalibrationSet.from_dict(d)
    d = json.loads(text)
    d["names"] = ["g0"]
    del d["calibrations"]["g1"]  # a member removed: the set's checks refuse it
    with pytest.raises(CalibrationFileError):
        CalibrationSet.from_dict(d)
    d = json.loads(text)
    d["calibrations"] = {"g0": d["calibrations"]["g1"], "g1": d["calibrations"]["g0"]}  # members swapped
    with pytest.raises(CalibrationFileError, match="digest"):
        CalibrationSet.from_dict(d)
    d = json.loads(text)
    d["alpha"] = 0.1  # the family's level no longer that of its members
    with pytest.raises(CalibrationFileError, match="alpha"):
        CalibrationSet.from_dict(d)


def test_groups_file_parsing(tmp_path):
    assert parse_groups("case,group\na,x\n\nb , y\n") == {"a": "x", "b": "y"}
    for text, match in [("a,x\n", "header"), ("case,group\na\n", "two fields"), ("case,group\na,x\na,y\n", "twice"),
                        ("case,group\n,x\n", "empty case id"), ("", "empty groups file"),
                        ("case,group\n", "no cases")]:
        with pytest.raises(FileFormatError, match=match):
            parse_groups(text, "g.csv")
    path = tmp_path / "g.csv"
    path.write_bytes(b"\xef\xbb\xbfcase,group\r\nc1,A\r\n")  # Excel's UTF-8 with BOM and CRLF
    assert read_groups(path) == {"c1": "A"}


# -- the command line -----------------------------------------------------------------------------------


SHAPE = (8, 7, 6)


def _write_cases(root, n, seed=0):
    rng = np.random.default_rng(seed)
    s, l = root / "scores", root / "labels"
    s.mkdir()
    l.mkdir()
    cases = {}
    for i in range(n):
        p = rng.random(SHAPE, dtype=np.float32)
        y = np.zeros(SHAPE, np.uint8)
        y[1:5, 2:6, 1:4] = 1
        p[y == 1] = np.clip(p[y == 1] + rng.uniform(-0.2, 0.5), 0, 1)
        nib.save(nib.Nifti1Image(p, np.eye(4)), s / f"c{i:02d}.nii.gz")
        nib.save(nib.Nifti1Image(y, np.eye(4)), l / f"c{i:02d}.nii.gz")
        cases[f"c{i:02d}"] = (p, y)
    return cases


def _cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_calibrate_and_apply_by_group(tmp_path, capsys):
    cases = _write_cases(tmp_path, 24)
    groups = {case: ("north" if i % 2 else "south") for i, case in enumerate(cases)}
    csv = tmp_path / "groups.csv"
    csv.write_text("case,group\n" + "".join(f"{c},{g}\n" for c, g in groups.items()))
    store, cal, masks = tmp_path / "st.sqlite", tmp_path / "cal.json", tmp_path / "masks"
    assert _cli(capsys, "stats", "--scores", tmp_path / "scores", "--labels", tmp_path / "labels", "-o", store)[0] == 0
    code, out, err = _cli(capsys, "calibrate", "--store", store, "--epsilon", 0.2, "--alpha", 0.2,
                          "--groups", csv, "-o", cal)
    assert code == 0, err
    assert "group north" in out and "group south" in out
    stats = {c: clskern.volume_stats(p, y, name=c) for c, (p, y) in cases.items()}
    expected = clskern.calibrate(stats, epsilon=0.2, alpha=0.2, groups=groups)
    written = read_calibration(cal)
    assert {g: c.threshold for g, c in written.calibrations.items()} == {g: c.threshold for g, c in expected.items()}

    # from folders: the same set
    cal2 = tmp_path / "cal2.json"
    code, _, err = _cli(capsys, "calibrate", "--scores", tmp_path / "scores", "--labels", tmp_path / "labels",
                        "--epsilon", 0.2, "--alpha", 0.2, "--groups", csv, "-o", cal2, "-q")
    assert code == 0, err
    assert read_calibration(cal2).calibrations == written.calibrations

    code, _, err = _cli(capsys, "apply", "--calibration", cal, "--scores", tmp_path / "scores", "-o", masks)
    assert code == 1 and "pass --groups" in err and len(err.splitlines()) == 1
    code, out, err = _cli(capsys, "apply", "--calibration", cal, "--scores", tmp_path / "scores", "-o", masks,
                          "--groups", csv)
    assert code == 0, err
    for c, (p, _) in cases.items():
        mask = np.asanyarray(nib.load(masks / f"{c}.nii.gz").dataobj)
        np.testing.assert_array_equal(mask, (p >= expected[groups[c]].threshold).astype(np.uint8))


def test_cli_group_refusals_are_one_line(tmp_path, capsys):
    cases = _write_cases(tmp_path, 12, seed=1)
    store = tmp_path / "st.sqlite"
    assert _cli(capsys, "stats", "--scores", tmp_path / "scores", "--labels", tmp_path / "labels", "-o", store)[0] == 0
    partial = tmp_path / "partial.csv"
    partial.write_text("case,group\n" + "".join(f"{c},a\n" for c in list(cases)[1:]))
    code, _, err = _cli(capsys, "calibrate", "--store", store, "--epsilon", 0.2, "--alpha", 0.2,
                        "--groups", partial, "-o", tmp_path / "x.json")
    assert code == 1 and "partial.csv: case 'c00'" in err and "has no group" in err and len(err.splitlines()) == 1
    small = tmp_path / "small.csv"
    small.write_text("case,group\n" + "".join(f"{c},{'tiny' if i < 3 else 'big'}\n" for i, c in enumerate(cases)))
    code, _, err = _cli(capsys, "calibrate", "--store", store, "--epsilon", 0.2, "--alpha", 0.2,
                        "--groups", small, "-o", tmp_path / "x.json")
    assert code == 1 and "group 'tiny' (3 case(s))" in err and len(err.splitlines()) == 1
    single = tmp_path / "single.json"
    assert _cli(capsys, "calibrate", "--store", store, "--epsilon", 0.2, "--alpha", 0.2, "-o", single)[0] == 0
    code, _, err = _cli(capsys, "apply", "--calibration", single, "--scores", tmp_path / "scores",
                        "-o", tmp_path / "m", "--groups", small)
    assert code == 1 and "--groups applies to a calibration per group" in err
