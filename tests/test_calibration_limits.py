"""Requests no calibration set can certify are refused in one line, quickly, naming the n needed."""

import re

import numpy as np
import pytest

import clskern
from clskern.calibration._binomial import hoeffding_bentkus_pvalue
from clskern.calibration.methods import _cls_pac_rank, _smallest_n


@pytest.fixture(scope="module")
def stats():
    rng = np.random.default_rng(3)
    return [clskern.volume_stats(rng.random((5, 5, 5), dtype=np.float32), np.ones((5, 5, 5), np.uint8), name=str(i))
            for i in range(4)]


@pytest.mark.parametrize("method, kwargs, needs", [
    ("cls", {"alpha": 5e-324}, "more than 1e+12 cases"),
    ("cls", {"alpha": 1e-300}, "more than 1e+12 cases"),
    ("cls-pac", {"alpha": 1e-300, "delta": 0.1}, "more than 1e+12 cases"),
    ("cls-pac", {"alpha": 1e-5, "delta": 0.1}, "n >= 230258"),
    ("crc", {"epsilon": 1e-300}, "more than 1e+12 cases"),
    ("rcps", {"epsilon": 1e-300, "delta": 0.1}, "more than 1e+12 cases"),
    ("rcps", {"epsilon": 1e-7, "delta": 0.1}, "n >= about 2.303e+07"),
])
def test_impossible_requests_name_what_they_need(stats, method, kwargs, needs):
    kwargs = {"epsilon": 0.2, **kwargs}
    with pytest.raises(clskern.CalibrationError, match=re.escape(f"with n=4 calibration cases: it needs {needs}")):
        clskern.calibrate(stats, method=method, **kwargs)


@pytest.mark.parametrize("alpha, delta", [(0.1, 0.1), (0.2, 0.05), (0.05, 0.01), (0.3, 0.3), (0.5, 0.5)])
def test_the_n_named_for_cls_pac_is_exact(stats, alpha, delta):
    from clskern.calibration.methods import _cls_pac_need

    assert _cls_pac_need(alpha, delta) == _smallest_n(lambda m: _cls_pac_rank(m, alpha, delta) >= 1)


@pytest.mark.parametrize("epsilon, delta", [(0.3, 0.1), (0.1, 0.05), (0.05, 0.2)])
def test_the_n_named_for_rcps_is_exact(stats, epsilon, delta):
    need = _smallest_n(lambda m: hoeffding_bentkus_pvalue(0.0, m, epsilon) <= delta)
    with pytest.raises(clskern.CalibrationError, match=re.escape(f"it needs n >= {need} ")):
        clskern.calibrate(stats[:1], method="rcps", epsilon=epsilon, delta=delta)
