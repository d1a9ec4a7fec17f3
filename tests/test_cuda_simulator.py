"""Every GPU kernel, run by numba-cuda's simulator against the CPU path.

The simulator has to be chosen before ``numba.cuda`` is first imported, and
other tests of this run import it for real (the PTX checks), so the cases in
``cuda_sim_cases.py`` run in a child pytest with ``NUMBA_ENABLE_CUDASIM=1``.
Its report is shown when it fails.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


def test_gpu_kernels_equal_cpu_under_the_simulator():
    pytest.importorskip("numba.cuda")
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(TESTS / "cuda_sim_cases.py")]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    report = done.stdout[-8000:] + done.stderr[-4000:]
    assert done.returncode == 0, report
    summary = done.stdout.strip().splitlines()[-1]
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) >= 25, report  # the cases ran, not skipped as a module
