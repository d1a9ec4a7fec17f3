"""The package's surface: every public name and submodule is reachable from a plain ``import clskern``,
which itself stays light (no Numba) so commands that only read a store start fast."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import clskern

ROOT = Path(__file__).resolve().parents[1]


def test_every_public_name_resolves():
    for name in clskern.__all__:
        assert getattr(clskern, name) is not None, name
    namespace = {}
    exec("from clskern import *", namespace)
    assert set(clskern.__all__) <= set(namespace)


def test_submodules_are_attributes():
    assert clskern.io.load_case and clskern.store.StatsStore and clskern.volume.volume_stats
    assert clskern.calibration.calibrate is clskern.calibrate
    assert {"io", "store", "volume", "calibration"} <= set(dir(clskern))


def test_import_needs_no_numba():
    code = "import sys, clskern; import clskern.cli.main; print('numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_reading_dataset_json_needs_no_numba():
    """stats and calibrate read nnU-Net's dataset.json beside labelsTr on every run, resumed ones too."""
    code = ("import sys; from clskern.classes import dataset_reading; "
            "dataset_reading({'labels': {'background': 0, 'a': 1, 'b': 2}}, channel=2); print('numba' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# -- the distribution's metadata and contents ----------------------------------------------------

def _pyproject():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]


def test_license_is_an_spdx_expression_with_its_file():
    project = _pyproject()
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text(encoding="utf-8").startswith("MIT License")
    assert not [c for c in project["classifiers"] if c.startswith("License ::")]  # PEP 639: the expression only


def test_project_urls_are_https_addresses():
    urls = _pyproject()["urls"]
    assert urls and all(value.startswith("https://") and " " not in value for value in urls.values())


def test_every_runtime_dependency_installs_from_wheels_on_intel_macs():
    """numba 0.63+ has no macOS x86_64 wheels: the requirement there must stop below it."""
    deps = _pyproject()["dependencies"]
    numba = [d for d in deps if d.startswith("numba")]
    assert any("<0.63" in d and "x86_64" in d and "darwin" in d for d in numba)
    assert all("darwin" in d for d in numba)  # no unconditional numba requirement left


def test_the_sdist_carries_what_its_tests_and_docs_need(tmp_path):
    setuptools = pytest.importorskip("setuptools")
    if int(setuptools.__version__.split(".")[0]) < 77:
        pytest.skip("setuptools < 77 cannot read an SPDX license expression; pip builds with a newer one")
    import tarfile

    from setuptools import build_meta

    old = os.getcwd()
    os.chdir(ROOT)
    try:
        name = build_meta.build_sdist(str(tmp_path))
    finally:
        os.chdir(old)
    with tarfile.open(tmp_path / name) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    for path in ("LICENSE", "README.md", "mkdocs.yml", "docs/definitions.md", "tests/conftest.py",
                 "tests/naive.py", "tests/strategies.py", "tests/nnunet_files.py",
                 "tests/nnunet_golden.py", "tests/data/nnunet/VERSIONS.json",
                 "tests/data/nnunet/transposed/pred/transposed_000.npz",
                 "tests/data/nnunet/transposed/pred/transposed_000.pkl", "benchmarks/conftest.py",
                 "python_api/README.md", "clskern/py.typed"):
        assert path in names, path
    assert not [n for n in names if "__pycache__" in n or n.endswith((".pyc", ".nbi", ".nbc"))]
