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
