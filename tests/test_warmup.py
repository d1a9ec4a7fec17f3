"""clskern warmup: every kernel a call needs is in the cache afterwards, so a fresh process compiles nothing."""

import os
import subprocess
import sys

import pytest

import clskern
from clskern import _warmup
from clskern.errors import ArgumentError


def _clskern(*args, env):
    run = subprocess.run([sys.executable, "-m", "clskern", *args], capture_output=True, text=True, timeout=600,
                         env={**os.environ, **env})
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout


def test_warmup_fills_the_cache_a_fresh_process_then_loads(tmp_path):
    cache = tmp_path / "numba-cache"
    first = _clskern("warmup", "--cache-dir", str(cache), "--score-dtypes", "float32", "--label-dtypes", "uint8",
                     env={"NUMBA_CACHE_DIR": ""})
    assert "float32 scores, uint8 labels:" in first and "calibration and evaluation searches:" in first
    assert f"processes that should use it need NUMBA_CACHE_DIR={cache}" in first
    compiled = int(first.split("clskern warmup: ")[1].split(" kernel signatures compiled")[0])
    assert compiled > 10 and any(cache.rglob("*.nbi"))
    # a fresh process doing a user's work on such volumes (another shape, labels 0/1/3) compiles nothing
    workload = """
import numpy as np, clskern
from clskern import _warmup
rng = np.random.default_rng(5)
cases = {}
for i in range(30):
    p = np.asfortranarray(rng.random((9, 8, 7), dtype=np.float32))
    y = np.asfortranarray((rng.random((9, 8, 7)) < 0.2).astype(np.uint8) * 3)
    cases[f"c{i}"] = clskern.volume_stats(p, y)
    clskern.critical_threshold(p, y, 0.1, level="lesion", overlap=0.3)
    clskern.critical_threshold(p, y, [0.1, 0.2], label=3)
    clskern.apply_threshold(p, 0.4)
clskern.calibrate(cases, epsilon=0.3, method="crc", level="lesion")
clskern.calibrate(cases, epsilon=0.3, method="rcps", delta=0.2)
clskern.evaluate(cases, epsilon=0.3, alpha=0.3, splits=3, methods=("cls", "crc", "rcps"), sweeps=False)
print("compiled", _warmup._counts(_warmup._dispatchers())[0])
"""
    run = subprocess.run([sys.executable, "-c", workload], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "NUMBA_CACHE_DIR": str(cache)})
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.split() == ["compiled", "0"]
    again = _clskern("warmup", "--score-dtypes", "float32", "--label-dtypes", "uint8",
                     env={"NUMBA_CACHE_DIR": str(cache)})
    assert "clskern warmup: 0 kernel signatures compiled" in again


def test_dtypes_outside_the_readers_are_refused():
    with pytest.raises(ArgumentError, match="score dtypes must be among float16, float32, float64; got 'int8'"):
        clskern.warmup(["int8"])
    with pytest.raises(ArgumentError, match="label dtypes: name at least one"):
        clskern.warmup(["float32"], [])


def test_cache_dir_refused_once_kernels_are_loaded(tmp_path):
    import clskern.cpu  # noqa: F401  (the kernels are loaded in this test process)

    with pytest.raises(ArgumentError, match="already loaded in this process.*set NUMBA_CACHE_DIR"):
        _warmup.set_cache_dir(tmp_path)


def test_cache_dir_that_is_a_file_is_refused(tmp_path):
    code = ("import sys\nfrom clskern.cli.main import main\n"
            f"sys.exit(main(['warmup', '--cache-dir', {str(tmp_path / 'f')!r}]))")
    (tmp_path / "f").write_text("")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert run.stderr.strip() == f"clskern warmup: error: cache_dir {tmp_path / 'f'}: exists and is not a folder"
