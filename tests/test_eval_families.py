"""The protocol per group (Mondrian) and per class (with family-wise coverage), reports and the CLI."""

import json

import numpy as np
import pytest

import clskern
from clskern.classes import class_stats
from clskern.cli.main import main
from clskern.errors import ArgumentError, InputError
from clskern.evaluation import evaluate, evaluate_classes, evaluate_groups, write_report
from clskern.evaluation.splits import random_splits

SHAPE = (8, 9, 7)
CLASSES = {"A": (0, (1, 2)), "B": (1, (2,))}  # B is a region inside A; some cases lack it


def _case(rng, i):
    labels = np.zeros(SHAPE, np.uint8)
    for _ in range(int(rng.integers(1, 4))):
        lo = [int(rng.integers(0, s - 2)) for s in SHAPE]
        labels[tuple(slice(a, a + int(rng.integers(1, 3))) for a in lo)] = 1
    if i % 4:
        lo = [int(rng.integers(0, s - 2)) for s in SHAPE]
        labels[tuple(slice(a, a + 2) for a in lo)] = 2
    q = rng.uniform(0.1, 0.8, 2)
    probs = np.stack([np.clip(rng.normal(0.3 + q[0] * (labels > 0), 0.25), 0, 1),
                      np.clip(rng.normal(0.3 + q[1] * (labels == 2), 0.25), 0, 1)])
    return f"c{i:02d}", (np.round(probs * 64) / 64).astype(np.float32), labels


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(9)
    volumes = [_case(rng, i) for i in range(30)]
    by_class = {n: class_stats(p, y, CLASSES, name=n) for n, p, y in volumes}
    return volumes, by_class


def _fnr(scores, truth, t):
    return np.sum(truth & (scores < t)) / truth.sum()


# -- groups ------------------------------------------------------------------------------------


def test_each_group_equals_its_cases_alone_and_the_pool_weights_them(data):
    _, by_class = data
    stats = {c: s["A"] for c, s in by_class.items()}
    groups = {c: ("north" if i % 3 else "south") for i, c in enumerate(stats)}
    request = dict(epsilon=0.25, alpha=0.25, splits=6, seed=4, methods=("cls", "crc", "fixed-0.5"))
    result = evaluate_groups(stats, groups, level="lesion", overlap=0.3, **request)
    assert list(result.members) == ["north", "south"]
    n_test = {}
    for group, member in result.members.items():
        alone = evaluate({c: s for c, s in stats.items() if groups[c] == group}, sweeps=False, level="lesion",
                         overlap=0.3, **request)
        assert member.to_dict()["methods"] == alone.to_dict()["methods"]
        n_test[group] = alone.n_cases - alone.n_calibration
    for method in request["methods"]:
        for name in ("ecr", "l_fnr", "v_fnr", "dice"):
            want = sum(n_test[g] * result[g][method].metrics[name] for g in n_test) / sum(n_test.values())
            np.testing.assert_allclose(result.combined[method][name], want, rtol=1e-12)
    # each group's threshold is calibrate(groups=...)'s on that split's calibration cases
    south = [c for c in stats if groups[c] == "south"]
    cal_idx, _ = random_splits(len(south), 6, 0.5, 4)
    for s in range(6):
        cal = {south[i]: stats[south[i]] for i in cal_idx[s]}
        want = clskern.calibrate(cal, epsilon=0.25, alpha=0.25, groups=groups, level="lesion", overlap=0.3)
        assert result["south"]["cls"].cut[s] == want["south"].threshold


def test_groups_are_refused_by_name(data):
    _, by_class = data
    stats = {c: s["A"] for c, s in by_class.items()}
    with pytest.raises(ArgumentError, match="has no group"):
        evaluate_groups(stats, {}, epsilon=0.2, alpha=0.2, splits=2)
    tiny = {c: ("big" if i else "tiny") for i, c in enumerate(stats)}
    with pytest.raises(InputError, match="group 'tiny'"):
        evaluate_groups(stats, tiny, epsilon=0.2, alpha=0.2, splits=2)


# -- classes -----------------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["none", "bonferroni"])
def test_classes_against_calibrate_and_the_voxels(data, family):
    volumes, by_class = data
    eps = {"A": 0.3, "B": 0.2}
    methods = ("cls", "cls-pac", "rcps", "fixed-0.5")
    params = {"cls": {"alpha": 0.3}, "cls-pac": {"alpha": 0.3, "delta": 0.2}, "rcps": {"delta": 0.2}}
    result = evaluate_classes(by_class, epsilon=eps, alpha=0.3, delta=0.2, family=family, splits=5, seed=1,
                              methods=methods)
    assert list(result.members) == ["A", "B"]
    cal_idx, test_mask = random_splits(len(volumes), 5, 0.5, 1)  # every case holds class A
    for method in methods:
        for s in range(5):
            cal = {volumes[i][0]: by_class[volumes[i][0]] for i in cal_idx[s]}
            if method in params:
                try:
                    cals = clskern.calibrate(cal, epsilon=eps, method=method, family=family, **params[method])
                except clskern.CalibrationError:  # some class cannot be certified on this split
                    assert np.isnan(result.combined[method]["family_ecr"][s])
                    assert any(np.isnan(result[n][method].cut[s]) for n in CLASSES)
                    continue
                cut = {n: c.threshold for n, c in cals.items()}
            else:
                cut = {"A": 0.5, "B": 0.5}
            test = [volumes[i] for i in np.flatnonzero(test_mask[s])]
            every, fnrs = [], {"A": [], "B": []}
            for _, p, y in test:
                ok = True
                for name, (channel, values) in CLASSES.items():
                    truth = np.isin(y, values)
                    if truth.any():
                        f = _fnr(p[channel], truth, cut[name])
                        fnrs[name].append(f)
                        ok &= f <= eps[name]
                every.append(ok)
            for name in CLASSES:
                metrics = result[name][method].metrics
                assert result[name][method].cut[s] == cut[name]
                assert metrics["v_fnr"][s] == pytest.approx(np.mean(fnrs[name]), rel=1e-12)
                assert metrics["ecr"][s] == pytest.approx(np.mean([f <= eps[name] for f in fnrs[name]]), rel=1e-12)
            assert result.combined[method]["family_ecr"][s] == pytest.approx(np.mean(every), rel=1e-12)
    summary = result.to_dict()
    assert summary["inputs"]["family"] == family and summary["members"]["B"]["n_skipped_empty"] == 8
    assert summary["family"]["cls"]["family_ecr"]["mean"] == pytest.approx(
        float(np.mean(result.combined["cls"]["family_ecr"])))


def test_classes_at_lesion_level(data):
    _, by_class = data
    result = evaluate_classes(by_class, epsilon=0.3, alpha=0.3, splits=3, methods=("cls",), level="lesion")
    for name in CLASSES:
        assert "l_fnr" in result[name]["cls"].metrics
        np.testing.assert_array_equal(result[name]["cls"].metrics["ecr"], result[name]["cls"].metrics["l_ecr"])


# -- reports and the command line -------------------------------------------------------------


def test_reports_hold_the_tables(data, tmp_path):
    _, by_class = data
    stats = {c: s["A"] for c, s in by_class.items()}
    groups = {c: ("north" if i % 3 else "south") for i, c in enumerate(stats)}
    result = evaluate_groups(stats, groups, epsilon=0.25, alpha=0.25, splits=4, methods=("cls", "fixed-0.5"))
    write_report(result, tmp_path / "g", plots=False)
    text = (tmp_path / "g" / "report.md").read_text()
    assert "## Per group" in text and "| north | cls |" in text and "| pooled | cls |" in text and "L-FNR" in text
    n_north = sum(g == "north" for g in groups.values())
    assert f"| north | cls | {n_north} | 0.25 | 0.25 |" in text
    assert f"| north | fixed-0.5 | {n_north} | 0.25 | – |" in text  # a fixed cut takes no alpha
    summary = json.loads((tmp_path / "g" / "summary.json").read_text())
    assert summary["by"] == "group" and set(summary["members"]) == {"north", "south"} and "pooled" in summary
    classes = evaluate_classes(by_class, epsilon=0.3, alpha=0.3, family="bonferroni", splits=4,
                               methods=("cls", "fixed-0.5"))
    write_report(classes, tmp_path / "c", plots=False)
    text = (tmp_path / "c" / "report.md").read_text()
    assert "## Per class" in text and "| B | cls |" in text and "every class" in text.lower()
    pytest.importorskip("matplotlib")
    paths = write_report(classes, tmp_path / "c", overwrite=True)
    assert any(p.endswith("ecr_by_class.png") for p in paths)
    assert (tmp_path / "c" / "ecr_by_class.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_groups_and_lesion_level(data, tmp_path):
    volumes, _ = data
    paths = []
    for name, p, y in volumes:
        stats = clskern.volume_stats(p[0], y, name=name)
        path = tmp_path / f"{name}.stats"
        path.write_bytes(stats.to_bytes())
        paths.append(str(path))
    groups = tmp_path / "sites.csv"
    groups.write_text("case,group\n" + "".join(f"{n},{'x' if i % 2 else 'y'}\n" for i, (n, _, _) in
                                               enumerate(volumes)))
    assert main(["evaluate", *paths, "--epsilon", "0.3", "--alpha", "0.3", "--splits", "4", "--no-plots",
                 "--level", "lesion", "--overlap", "0.5", "--no-sweeps", "-o", str(tmp_path / "r")]) == 0
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["inputs"]["level"] == "lesion" and "l_fnr" in summary["methods"]["cls"]
    assert "L-ECR" in (tmp_path / "r" / "report.md").read_text()
    assert main(["evaluate", *paths, "--epsilon", "0.3", "--alpha", "0.3", "--splits", "4", "--no-plots",
                 "--groups", str(groups), "-o", str(tmp_path / "g")]) == 0
    summary = json.loads((tmp_path / "g" / "summary.json").read_text())
    assert summary["by"] == "group" and set(summary["members"]) == {"x", "y"}


def _class_store(tmp_path, by_class):
    """A per-class statistics store of ``by_class`` (what ``clskern stats --dataset-json`` writes)."""
    from clskern.class_store import ClassStatsStore

    store = tmp_path / "classes.sqlite"
    with ClassStatsStore(str(store)) as s:
        s.check_classes(CLASSES)
        for case, stats in by_class.items():
            s.put(case, "fp", stats)
    return store


def test_cli_classes_from_a_class_store(data, tmp_path):
    _, by_class = data
    store = _class_store(tmp_path, by_class)
    assert main(["evaluate", "--store", str(store), "--epsilon", "0.3", "--alpha", "0.3", "--splits", "4",
                 "--methods", "cls,fixed-0.5", "--family", "bonferroni", "--class-epsilon", "B=0.2",
                 "--no-plots", "-o", str(tmp_path / "c")]) == 0
    summary = json.loads((tmp_path / "c" / "summary.json").read_text())
    want = evaluate_classes(by_class, epsilon={"A": 0.3, "B": 0.2}, alpha=0.3, family="bonferroni", splits=4,
                            methods=("cls", "fixed-0.5")).to_dict()
    assert summary["by"] == "class" and summary["family"] == want["family"]
    assert summary["members"]["B"]["methods"] == want["members"]["B"]["methods"]
    assert main(["evaluate", "--store", str(store), "--epsilon", "0.3", "--groups", str(tmp_path / "none.csv"),
                 "-o", str(tmp_path / "x")]) == 1


@pytest.mark.parametrize("spec", ["B=1.5", "B=-0.1", "B=1", "B", "C=0.2", "B=x"])
def test_cli_evaluate_refuses_the_class_epsilon_calibrate_refuses(data, tmp_path, capsys, spec):
    """One parser of --class-epsilon (``clskern.cli._sets``): evaluate took B=1.5 or B=-0.1 that calibrate refused."""
    _, by_class = data
    store = _class_store(tmp_path, by_class)
    common = ["--store", str(store), "--epsilon", "0.3", "--alpha", "0.3", "--class-epsilon", spec]
    capsys.readouterr()
    assert main(["calibrate", *common, "-o", str(tmp_path / "c.json")]) == 1
    refused = capsys.readouterr().err
    assert main(["evaluate", *common, "--splits", "2", "--no-sweeps", "--no-plots", "-o", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert "--class-epsilon" in refused and len(err.splitlines()) == 1, (refused, err)
    assert err.replace("clskern evaluate", "clskern calibrate") == refused
