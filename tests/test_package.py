"""The package's surface: every public name and submodule is reachable from a plain ``import clskern``,
which itself stays light (no Numba) so commands that only read a store start fast."""

import subprocess
import sys

import clskern


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
