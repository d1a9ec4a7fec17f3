"""The public API's type hints (``py.typed``): mypy passes on the annotated modules and on typed user code."""

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="mypy is not installed")

# Calling the public API as a user would, every result annotated: mypy must accept it as it stands.
USAGE = '''
import numpy as np
import clskern
from clskern.adapters.torch import CalibratedThreshold, ValidationStats
from clskern.classes import apply_classes, class_stats, parse_classes
from clskern.store import StatsStore

rng = np.random.default_rng(0)
stats: list[clskern.VolumeStats] = []
for i in range(40):
    scores = rng.random((8, 8, 8), dtype=np.float32)
    stats.append(clskern.volume_stats(scores, scores > 0.7, name=f"case{i}"))
cal: clskern.Calibration = clskern.calibrate(stats, epsilon=0.2, alpha=0.1)
by_id: clskern.Calibration = clskern.calibrate({s.name or "": s for s in stats}, epsilon=0.2, method="crc")
threshold: float = cal.threshold
held = clskern.read_calibration("calibration.json")
if isinstance(held, clskern.Calibration):
    threshold = held.threshold
mask = clskern.apply_threshold(scores, cal.threshold, normalize=cal.normalize)
assert mask.dtype == np.uint8
t = clskern.critical_threshold(scores, scores > 0.7, 0.1)
if t is not None:
    shifted: float = t + 1.0
fnr = stats[0].fnr(0.5)
lo, hi = clskern.score_range(scores)
offsets, grouped = clskern.lesions(scores, scores > 0.7, connectivity=26)
n_lesions: int | None = stats[0].n_lesions
blob: bytes = stats[0].to_bytes()
again: clskern.VolumeStats = clskern.VolumeStats.from_bytes(blob)
report = clskern.evaluate(stats, epsilon=0.2, alpha=0.1, splits=2, sweeps=False)
classes = parse_classes("WT=1:1,2,3;TC=2:1,3")
per_class = class_stats(np.stack([scores, scores, scores]), (scores > 0.5).astype(np.uint8), classes)
calibrations: dict[str, clskern.Calibration] = clskern.calibrate([per_class] * 3, epsilon=0.2, alpha=0.5)
label_map = apply_classes(np.stack([scores, scores, scores]), calibrations, classes)
with StatsStore("stats.sqlite") as store:
    loaded: dict[str, clskern.VolumeStats] = store.load()
transform = CalibratedThreshold(cal, channel=1)
gathered = ValidationStats(epsilon=0.2, alpha=0.1)
result: clskern.Calibration = gathered.aggregate()
volume: clskern.io.NiftiVolume = clskern.io.read_nifti("case.nii.gz")
probabilities: np.ndarray = clskern.io.read_npz("case.npz", channel=1)
affine = clskern.io.read_pkl_affine("case.pkl") @ np.eye(4)
try:
    clskern.calibrate(stats[:2], epsilon=0.2, alpha=0.01)
except clskern.CalibrationError as exc:
    message: str = str(exc)
'''

# The rest of the public API, under ``mypy --strict``: no untyped call (``no-untyped-call``), no call
# that mypy cannot check.
STRICT_USAGE = '''
from typing import Any

import numpy as np

import clskern
from clskern.calibration import Calibration, calibrate, risk_predicate
from clskern.class_store import ClassStatsStore
from clskern.classes import check_classes, class_bits, class_stats_from_channels, region_mode
from clskern.distributed import case_stats, numba_thread_plan, stats_to_store, usable_cores
from clskern.evaluation import (Evaluation, EvaluationSet, MethodResult, binomial_se, evaluate_classes,
                                evaluate_groups, write_report)
from clskern.io import (BatchResult, CaseEvent, CasePair, LoadedCase, collect_stats, gunzip, gzip_backends,
                        load_case, mask_image, pair_cases, prefetch, write_atomic)
from clskern.store import StatsStore, file_digest, fingerprint, fingerprint_of
from clskern.synthetic import affine, synthetic_case, write_dataset

rng = np.random.default_rng(0)
case_scores, case_labels = synthetic_case(rng, (16, 16, 8), lesion_free=False)
grid: np.ndarray = affine((16, 16, 8))
ids: list[str] = write_dataset("data", 4, shape=(16, 16, 8), seed=1)
stats = {f"case{i}": clskern.volume_stats(case_scores, case_labels, name=f"case{i}") for i in range(20)}
cal: Calibration = calibrate(stats, epsilon=0.2, alpha=0.1, method="cls-pac", delta=0.1, empty="pass",
                             level="voxel", normalize="minmax")
text: str = cal.to_json(indent=None)
fields: dict[str, Any] = cal.to_dict()
same: Calibration = Calibration.from_json(text.encode())
same = Calibration.from_dict(fields)
same = Calibration.read("calibration.json")
built: Calibration = Calibration.build("cls", 0.5, 0.2, 0.1, None, 20, 0, 2, critical_thresholds=[0.5] * 20,
                                       case_ids=list(stats))
certified: bool = risk_predicate("crc", 20, 0.2, None)(0.5)
evaluation: Evaluation = clskern.evaluate(stats, epsilon=0.2, alpha=0.1, sweeps=False, level="voxel")
result: MethodResult = evaluation["cls"]
uncertified: int = result.n_uncertified + evaluation.results["cls"].n_uncertified
summary: dict[str, Any] = result.summary()
se: float = binomial_se(0.1, 10)
groups: EvaluationSet = evaluate_groups(stats, {c: c[-1] for c in stats}, epsilon=0.2, alpha=0.1, splits=5)
classes = check_classes({"WT": (1, (1, 2)), "TC": (2, 1)})
bits: np.ndarray = class_bits(case_labels, classes, name="case0")
per_class = class_stats_from_channels({1: case_scores, 2: case_scores}, case_labels, classes, connectivity=None)
regions: bool = region_mode(classes)
by_class: EvaluationSet = evaluate_classes({c: per_class for c in stats}, epsilon={"WT": 0.2, "TC": 0.3},
                                           alpha=0.1, family="bonferroni", splits=5)
written: list[str] = write_report(evaluation, "report", overwrite=True) + write_report(by_class, "classes")
pairs, unpaired = pair_cases("data/scores", "data/labels")
first: CasePair = pairs[0]
events: list[CaseEvent] = []
with StatsStore("stats.sqlite") as store:
    batch: BatchResult = collect_stats(pairs, store=store, empty="error", jobs=2, on_case=events.append)
    remote: BatchResult = stats_to_store(pairs, store, None, empty="skip", keep_going=True)
failed: bool = batch.record_failure("case0", ValueError("bad"), keep_going=True, on_case=events.append)
loaded: LoadedCase = load_case(pairs[0])
nbytes: int = loaded.nbytes
checked: bool = loaded.geometry_checked
raw: bytes = gunzip(b"", "x.gz", max_size=1 << 20)
backends: list[str] = gzip_backends()
for pair, found, error in prefetch(pairs, load_case, jobs=2, nbytes=lambda c: c.nbytes):
    if found is not None:
        voxels: int = found.scores.size
image = mask_image(bits, grid)
write_atomic(image, "mask.nii.gz")
key: str = fingerprint("a.nii.gz", "b.nii.gz", label=1) + fingerprint_of(file_digest("a.nii.gz"), "0" * 32)
cores: int = usable_cores()
passed: tuple[bytes, int, float, int] = case_stats(pairs[0], None, None, 1e-4, 1)
with ClassStatsStore("classes.sqlite", create=True) as class_store:
    class_store.check_classes(classes)
    class_store.put("case0", key, per_class)
    by_case: dict[str, dict[str, clskern.VolumeStats]] = class_store.load()
    stored: dict[str, str] = class_store.fingerprints()
'''

# What mypy infers for some results: the type itself, not Any (mypy < 2 prefixes "builtins.", dropped here).
REVEALED = {
    "Calibration.read('c.json')": "clskern.calibration.record.Calibration",
    "Calibration.from_dict({}).to_json()": "str",
    "calibrate(stats, epsilon=0.2, alpha=0.1)": "clskern.calibration.record.Calibration",
    "risk_predicate('crc', 20, 0.2, None)": "def (float) -> bool",
    "evaluation.results": "dict[str, clskern.evaluation.protocol.MethodResult]",
    "evaluation['cls'].n_uncertified": "int",
    "write_report(evaluation, 'out')": "list[str]",
    "evaluate_groups(by_id, {}, epsilon=0.2, alpha=0.1)": "clskern.evaluation.sets.EvaluationSet",
    "evaluate_classes({}, epsilon=0.2, alpha=0.1)": "clskern.evaluation.sets.EvaluationSet",
    "binomial_se(0.1, 10)": "float",
    "collect_stats([])": "clskern.io.batch.BatchResult",
    "collect_stats([]).stats": "dict[str, clskern.volume.VolumeStats]",
    "gunzip(b'')": "bytes",
    "gzip_backends()": "list[str]",
    "check_classes({})": "dict[str, tuple[int, tuple[float, ...]]]",
    "class_stats_from_channels({}, [], {})": "dict[str, clskern.volume.VolumeStats]",
    "file_digest('a')": "str",
    "usable_cores()": "int",
    "ClassStatsStore('s').load()": "dict[str, dict[str, clskern.volume.VolumeStats]]",
}
REVEAL_PRELUDE = '''
import clskern
from clskern.calibration import Calibration, calibrate, risk_predicate
from clskern.class_store import ClassStatsStore
from clskern.classes import check_classes, class_stats_from_channels
from clskern.distributed import usable_cores
from clskern.evaluation import binomial_se, evaluate_classes, evaluate_groups, write_report
from clskern.io import collect_stats, gunzip, gzip_backends
from clskern.store import file_digest

stats: list[clskern.VolumeStats] = []
by_id: dict[str, clskern.VolumeStats] = {}
evaluation = clskern.evaluate(stats, epsilon=0.2, alpha=0.1)
'''


def _mypy(*args, cwd=ROOT):
    env = {**os.environ, "MYPY_FORCE_COLOR": "0"}
    return subprocess.run([sys.executable, "-m", "mypy", "--no-error-summary", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_package_ships_py_typed():
    assert (ROOT / "clskern" / "py.typed").is_file()
    assert 'clskern = ["py.typed"]' in (ROOT / "pyproject.toml").read_text()


def test_public_api_and_typed_usage_pass_mypy(tmp_path):
    snippet = tmp_path / "usage.py"
    snippet.write_text(textwrap.dedent(USAGE))
    # [tool.mypy] files: the public-API modules; then the snippet, against the same configuration.
    result = _mypy("--config-file", str(ROOT / "pyproject.toml"), "--cache-dir", str(tmp_path / "cache"))
    assert result.returncode == 0, result.stdout + result.stderr
    result = _mypy("--config-file", str(ROOT / "pyproject.toml"), "--cache-dir", str(tmp_path / "cache"), str(snippet))
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_rejects_misuse(tmp_path):
    """The hints say something: a wrong argument or result type is an error, not Any."""
    snippet = tmp_path / "misuse.py"
    snippet.write_text("import clskern\nx: int = clskern.calibrate([], epsilon=0.1)\n"
                       "clskern.apply_threshold([0.5], 'half')\n")
    result = _mypy("--config-file", str(ROOT / "pyproject.toml"), "--cache-dir", str(tmp_path / "cache"), str(snippet))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "misuse.py:2: error" in result.stdout and "misuse.py:3: error" in result.stdout


def test_public_api_is_typed_under_strict(tmp_path):
    """Typed user code calling the rest of the public API passes ``mypy --strict``: every call is to an
    annotated function (no ``no-untyped-call``), every argument checked."""
    snippet = tmp_path / "strict_usage.py"
    snippet.write_text(textwrap.dedent(STRICT_USAGE))
    result = _mypy("--config-file", str(ROOT / "pyproject.toml"), "--cache-dir", str(tmp_path / "cache"),
                   "--strict", str(snippet))
    assert result.returncode == 0, result.stdout + result.stderr


def test_public_results_are_not_any(tmp_path):
    """``reveal_type`` of key results names their type: neither Any nor a lazily imported name mypy cannot see."""
    snippet = tmp_path / "reveal.py"
    lines = [f"reveal_type({expression})" for expression in REVEALED]
    snippet.write_text(textwrap.dedent(REVEAL_PRELUDE) + "\n".join(lines) + "\n")
    result = _mypy("--config-file", str(ROOT / "pyproject.toml"), "--cache-dir", str(tmp_path / "cache"),
                   "--strict", str(snippet))
    first = len(textwrap.dedent(REVEAL_PRELUDE).splitlines()) + 1
    revealed = {}
    for line in result.stdout.splitlines():
        parts = line.split(":", 3)
        if len(parts) == 4 and 'Revealed type is "' in parts[3]:
            revealed[int(parts[1])] = parts[3].split('Revealed type is "', 1)[1].rstrip('"').replace("builtins.", "")
    assert result.returncode == 0 and len(revealed) == len(REVEALED), result.stdout + result.stderr
    for number, (expression, expected) in enumerate(REVEALED.items(), start=first):
        assert revealed[number] == expected, f"{expression}: {revealed[number]} (expected {expected})"


def test_mypy_rejects_unknown_option_values(tmp_path):
    """``method``, ``empty``, ``level`` and ``normalize`` take their documented values only (``Literal``)."""
    snippet = tmp_path / "options.py"
    snippet.write_text("import clskern\nfrom clskern.calibration import calibrate\n"
                       "stats: list[clskern.VolumeStats] = []\n"
                       "calibrate(stats, epsilon=0.1, alpha=0.1, method='cls_pac')\n"
                       "calibrate(stats, epsilon=0.1, alpha=0.1, empty='drop')\n"
                       "calibrate(stats, epsilon=0.1, alpha=0.1, level='voxels')\n"
                       "clskern.calibrate(stats, epsilon=0.1, alpha=0.1, normalize='zscore')\n")
    result = _mypy("--config-file", str(ROOT / "pyproject.toml"), "--cache-dir", str(tmp_path / "cache"), str(snippet))
    assert result.returncode == 1, result.stdout + result.stderr
    for line in (4, 5, 6, 7):
        assert f"options.py:{line}: error" in result.stdout, result.stdout
