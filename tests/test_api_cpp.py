"""The C++17 host program (python_api/cpp) built, run, and compared with Python."""

import os
import shutil
import subprocess
import sys
import sysconfig

import numpy as np
import pytest

import clskern
from clskern.synthetic import synthetic_case

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE = os.path.join(REPO, "python_api", "cpp", "clskern_host.cpp")


def _embed_flags():
    """``python3-config --includes`` and ``--embed --ldflags`` of this interpreter, from sysconfig."""
    var = sysconfig.get_config_var
    libdir, version = var("LIBDIR"), var("LDVERSION")
    if not var("Py_ENABLE_SHARED") or not os.path.exists(os.path.join(libdir, f"libpython{version}.so")):
        pytest.skip("this Python has no shared libpython to embed")
    return [f"-I{var('INCLUDEPY')}"], [f"-L{libdir}", f"-lpython{version}", f"-Wl,-rpath,{libdir}", "-ldl", "-lm"]


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        pytest.skip("no C++ compiler")
    includes, libs = _embed_flags()
    exe = str(tmp_path_factory.mktemp("cpp") / "clskern_host")
    subprocess.run([compiler, "-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror", *includes, SOURCE, "-o", exe, *libs],
                   check=True, capture_output=True, text=True)
    return exe


def _run(host, tmp_path, scores, labels, epsilon):
    scores = np.ascontiguousarray(scores, dtype=np.float32)
    labels = np.ascontiguousarray(labels, dtype=np.uint8)
    scores.tofile(tmp_path / "s.f32")
    labels.tofile(tmp_path / "y.u8")
    env = dict(os.environ, CLSKERN_PYTHON=sys.executable,
               PYTHONPATH=os.pathsep.join(p for p in (REPO, os.environ.get("PYTHONPATH")) if p))
    proc = subprocess.run(
        [host, str(tmp_path / "s.f32"), str(tmp_path / "y.u8"), *map(str, scores.shape), repr(epsilon),
         str(tmp_path / "m.u8")], capture_output=True, text=True, env=env, timeout=120, check=False,
    )
    return proc


@pytest.mark.parametrize("epsilon", [0.0, 0.29])
def test_host_program_matches_python(host, tmp_path, epsilon):
    scores, labels = synthetic_case(np.random.default_rng(5), (40, 36, 24))
    scores = np.round(scores, 3)  # ties among lesion scores, which the threshold must get exactly
    proc = _run(host, tmp_path, scores, labels, epsilon)
    assert proc.returncode == 0, proc.stderr
    out = dict(line.split(" ", 1) for line in proc.stdout.splitlines())
    expected = clskern.critical_threshold(scores, labels, epsilon)
    assert float(out["threshold"]) == expected
    mask = np.fromfile(tmp_path / "m.u8", np.uint8).reshape(scores.shape)
    assert np.array_equal(mask, clskern.apply_threshold(np.ascontiguousarray(scores), expected))
    assert int(out["mask_voxels"]) == int(mask.sum())


def test_host_program_reports_python_errors(host, tmp_path):
    scores = np.full((3, 4, 5), 0.5, np.float32)
    proc = _run(host, tmp_path, scores, np.zeros(scores.shape, np.uint8), 0.1)
    assert proc.returncode == 1
    assert "clskern_host: error:" in proc.stderr and "no lesion voxels" in proc.stderr
    scores[1, 2, 3] = np.nan
    proc = _run(host, tmp_path, scores, np.ones(scores.shape, np.uint8), 0.1)
    assert proc.returncode == 1 and "1 NaN scores" in proc.stderr
