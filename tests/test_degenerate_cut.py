"""A certified but useless cut is flagged: ``degenerate_cut``, ``clskern calibrate``'s warning, the record's field."""

import dataclasses
import json
import re

import nibabel as nib
import numpy as np
import pytest

import clskern
from clskern.calibration import Calibration
from clskern.calibration.degenerate import MAX_PC, degenerate_cut
from clskern.calibration.sets import read_calibration
from clskern.cli.main import main
from clskern.errors import CalibrationFileError

SHAPE = (16, 16, 12)
N = 20


def _cases(underconfident, seed=0):
    """Lesion: a 4x4x4 cube (about 2 % of the volume). Healthy: lesion scores in [0.6, 1), background in
    [0, 0.4). Underconfident: lesion scores spread over [0, 1), background in [0, 0.5)."""
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(N):
        y = np.zeros(SHAPE, np.uint8)
        y[4:8, 5:9, 3:7] = 1
        lesion = y.astype(bool)
        p = np.empty(SHAPE, np.float32)
        if underconfident:
            p[lesion] = rng.random(lesion.sum())
            p[~lesion] = 0.5 * rng.random((~lesion).sum())
        else:
            p[lesion] = 0.6 + 0.4 * rng.random(lesion.sum())
            p[~lesion] = 0.4 * rng.random((~lesion).sum())
        out[f"case_{i:02d}"] = (p, y)
    return out


def _reference(cases, t):
    """Plain NumPy: median PC over every case, median Dice at t and at 0.5 over the cases with lesions."""
    def dice(p, y, cut):
        m, g = p >= cut, y.astype(bool)
        return 2 * np.sum(m & g) / (m.sum() + g.sum())
    pcs = [np.mean(p >= t) for p, _ in cases.values()]
    return (np.median(pcs), np.median([dice(p, y, t) for p, y in cases.values()]),
            np.median([dice(p, y, 0.5) for p, y in cases.values()]))


def _write(tmp_path, cases):
    s, l = tmp_path / "scores", tmp_path / "labels"
    s.mkdir()
    l.mkdir()
    for name, (p, y) in cases.items():
        nib.save(nib.Nifti1Image(p, np.eye(4)), s / f"{name}.nii.gz")
        nib.save(nib.Nifti1Image(y, np.eye(4)), l / f"{name}.nii.gz")
    return s, l


def _inputs(capsys, tmp_path, source, scores, labels):
    """calibrate's input options: the folders, or a store ``clskern stats`` made of them."""
    if source == "folders":
        return ("--scores", scores, "--labels", labels)
    assert _cli(capsys, "stats", "--scores", scores, "--labels", labels, "-o", tmp_path / "st.sqlite", "-q")[0] == 0
    return ("--store", tmp_path / "st.sqlite")


def _cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_underconfident_model_tiny_epsilon_is_flagged_with_the_numbers():
    cases = _cases(underconfident=True)
    stats = {k: clskern.volume_stats(p, y, name=k) for k, (p, y) in cases.items()}
    cal = clskern.calibrate(stats, epsilon=0.01, alpha=0.1)
    pc, dice, dice_half = _reference(cases, cal.threshold)
    assert pc > MAX_PC and dice < dice_half / 2  # the scenario: most of the volume predicted, Dice collapsed
    warnings = degenerate_cut(stats, cal.threshold)
    assert len(warnings) == 2
    assert f"{pc:.2%} of its voxels predicted lesion" in warnings[0] and f"{cal.threshold:.4g}" in warnings[0]
    assert f"median Dice {dice:.3f}" in warnings[1] and f"{dice_half:.3f} at the 0.5 cut" in warnings[1]


def test_healthy_model_gives_no_warning_and_lesion_only_statistics_no_verdict(tmp_path):
    cases = _cases(underconfident=False)
    stats = {k: clskern.volume_stats(p, y, name=k) for k, (p, y) in cases.items()}
    cal = clskern.calibrate(stats, epsilon=0.1, alpha=0.1)
    assert degenerate_cut(stats, cal.threshold) == []
    assert degenerate_cut(stats, cal.threshold, normalize="minmax") == []
    lesion_only = {k: clskern.VolumeStats(v.n_fg, v.n_fg, v.lesion_scores, [], [], k) for k, v in stats.items()}
    assert degenerate_cut(lesion_only, cal.threshold) is None
    assert "warnings" not in cal.to_dict()  # a healthy record's file is unchanged by the field


def test_minmax_reference_is_half_of_q():
    cases = _cases(underconfident=True)
    stats = {k: clskern.volume_stats(p, y, name=k) for k, (p, y) in cases.items()}
    cal = clskern.calibrate(stats, epsilon=0.01, alpha=0.1, normalize="minmax")
    warnings = degenerate_cut(stats, cal.threshold, normalize="minmax")
    assert len(warnings) == 2 and "(min-max normalised scores)" in warnings[0]
    q = {k: ((p - p.min()) / (p.max() - p.min()), y) for k, (p, y) in cases.items()}
    pc, dice, dice_half = _reference(q, cal.threshold)
    assert f"{pc:.2%} of its voxels" in warnings[0]
    # q = 0.5 is no bin edge in p: the background count there is interpolated within its bin
    assert float(re.search(r"against ([0-9.]+) at the 0.5 cut", warnings[1]).group(1)) == pytest.approx(dice_half, abs=0.01)


@pytest.mark.parametrize("source", ["folders", "store"])
def test_cli_warns_on_stderr_even_quiet_and_records_it(tmp_path, capsys, source):
    cases = _cases(underconfident=True)
    s, l = _write(tmp_path, cases)
    inputs = _inputs(capsys, tmp_path, source, s, l)
    cal_path = tmp_path / "cal.json"
    code, out, err = _cli(capsys, "calibrate", *inputs, "--epsilon", 0.01, "--alpha", 0.1, "-q", "-o", cal_path)
    assert code == 0 and out == ""
    cal = Calibration.read(cal_path)
    stats = {k: clskern.volume_stats(p, y, name=k) for k, (p, y) in cases.items()}
    assert cal.warnings == degenerate_cut(stats, cal.threshold) and len(cal.warnings) == 2
    assert err.splitlines() == [f"clskern calibrate: warning: {w}" for w in cal.warnings]
    pc = _reference(cases, cal.threshold)[0]
    assert f"{pc:.2%}" in err

    healthy = _cases(underconfident=False, seed=1)
    (tmp_path / "healthy").mkdir()
    s2, l2 = _write(tmp_path / "healthy", healthy)
    code, out, err = _cli(capsys, "calibrate", "--scores", s2, "--labels", l2, "--epsilon", 0.1, "--alpha", 0.1,
                          "-o", tmp_path / "ok.json")
    assert code == 0 and "warning" not in err and "warnings" not in json.loads((tmp_path / "ok.json").read_text())


def test_record_round_trip_digest_and_checks():
    cal = Calibration.build("cls", 0.25, 0.1, 0.5, None, 3, 0, 2, critical_thresholds=[0.1, 0.25, 0.3],
                            case_ids=["a", "b", "c"], warnings=["degenerate cut: 38.0% of its voxels"])
    d = json.loads(cal.to_json())
    assert d["warnings"] == ["degenerate cut: 38.0% of its voxels"]
    assert Calibration.from_json(cal.to_json()) == cal
    plain = dataclasses.replace(cal, warnings=[])
    assert "warnings" not in plain.to_dict() and Calibration.from_dict(plain.to_dict()).warnings == []
    assert plain.to_dict()["sha256"] != d["sha256"]  # the digest covers the warnings
    for edit in ([], ["all good"], ["degenerate cut: 38.0% of its voxels", "x"]):
        with pytest.raises(CalibrationFileError, match="digest mismatch"):
            Calibration.from_dict({**d, "warnings": edit})
    with pytest.raises(CalibrationFileError, match="digest mismatch"):  # dropped from the file
        Calibration.from_dict({k: v for k, v in d.items() if k != "warnings"})
    for bad, match in (("oops", "warnings must be a list"), ([1], r"warnings\[0\] must be a string"),
                       (None, "warnings must be a list")):
        with pytest.raises(CalibrationFileError, match=match):
            Calibration.from_dict({**d, "warnings": bad})


@pytest.mark.parametrize("source", ["folders", "store"])
def test_each_group_is_checked_on_its_own_cases(tmp_path, capsys, source):
    """A calibration per group: the degenerate group is warned about by name, on stderr with -q, and in
    its member record; the healthy group is not."""
    poor = _cases(underconfident=True)
    healthy = {k.replace("case", "good"): v for k, v in _cases(underconfident=False, seed=1).items()}
    s, l = _write(tmp_path, {**poor, **healthy})
    groups = tmp_path / "groups.csv"
    groups.write_text("case,group\n" + "".join(f"{k},{'poor' if k in poor else 'good'}\n"
                                                for k in sorted({**poor, **healthy})))
    inputs = _inputs(capsys, tmp_path, source, s, l)
    out_path = tmp_path / "set.json"
    code, out, err = _cli(capsys, "calibrate", *inputs, "--groups", groups, "--epsilon", 0.01, "--alpha", 0.1,
                          "-q", "-o", out_path)
    assert code == 0 and out == ""
    written = read_calibration(out_path)
    bad, good = written.calibrations["poor"], written.calibrations["good"]
    stats = {k: clskern.volume_stats(p, y, name=k) for k, (p, y) in poor.items()}
    assert bad.warnings == degenerate_cut(stats, bad.threshold) and len(bad.warnings) == 2
    assert good.warnings == []
    assert err.splitlines() == [f"clskern calibrate: warning: group 'poor': {w}" for w in bad.warnings]


def test_each_class_is_checked_on_its_own_statistics(tmp_path, capsys):
    poor, healthy = _cases(underconfident=True), _cases(underconfident=False, seed=1)
    s, l = tmp_path / "scores", tmp_path / "labels"
    s.mkdir()
    l.mkdir()
    for name in poor:  # channel 0: a sound model, channel 1: an underconfident one, same lesions
        (p0, _), (p1, y) = healthy[name], poor[name]
        nib.save(nib.Nifti1Image(np.stack([p0, p1], axis=-1), np.eye(4)), s / f"{name}.nii.gz")
        nib.save(nib.Nifti1Image(y, np.eye(4)), l / f"{name}.nii.gz")
    out_path = tmp_path / "set.json"
    code, out, err = _cli(capsys, "calibrate", "--scores", s, "--labels", l, "--classes", "sound=0:1;poor=1:1",
                          "--epsilon", 0.01, "--alpha", 0.1, "-q", "-o", out_path)
    assert code == 0 and out == ""
    written = read_calibration(out_path)
    bad = written.calibrations["poor"]
    stats = {k: clskern.volume_stats(p, y, name=k) for k, (p, y) in poor.items()}
    assert bad.warnings == degenerate_cut(stats, bad.threshold) and len(bad.warnings) == 2
    assert written.calibrations["sound"].warnings == []
    assert err.splitlines() == [f"clskern calibrate: warning: class 'poor': {w}" for w in bad.warnings]


def test_the_warning_names_the_cases_it_speaks_of(tmp_path, capsys):
    """The median PC counts every case; calibration (empty="skip") leaves the lesion-free ones out: say both."""
    cases = _cases(underconfident=True)
    rng = np.random.default_rng(5)
    cases["free"] = (0.5 * rng.random(SHAPE).astype(np.float32), np.zeros(SHAPE, np.uint8))
    s, l = _write(tmp_path, cases)
    cal_path = tmp_path / "cal.json"
    code, _, err = _cli(capsys, "calibrate", "--scores", s, "--labels", l, "--epsilon", 0.01, "--alpha", 0.1,
                        "-q", "-o", cal_path)
    assert code == 0
    cal = Calibration.read(cal_path)
    assert (cal.n, cal.n_skipped) == (N, 1)
    assert f"medians over {N + 1} cases, {N} with lesions and 1 lesion-free" in cal.warnings[0], cal.warnings[0]
    assert f"{N} cases with lesions" in cal.warnings[1]
    stats = {k: clskern.volume_stats(p, y, name=k) for k, (p, y) in _cases(underconfident=True).items()}
    warning = degenerate_cut(stats, cal.threshold)[0]
    assert f"medians over {N} cases)" in warning and "lesion-free" not in warning
