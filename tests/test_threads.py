"""clskern._threads: the caller's thread limit, threads chosen by the work, a layer safe to fork and share.

The speed these choices buy on a busy host is measured, not asserted, in
``benchmarks/bench_host_load.py`` (benchmarks/RESULTS.md).
"""

import os
import subprocess
import sys
import textwrap
import threading

import numba
import numpy as np
import pytest

import clskern
from clskern import _threads
from clskern.errors import ArgumentError, ArgumentTypeError

CORES = _threads.usable_cores()


def _volume(shape=(40, 30, 20), seed=0, order="F"):
    rng = np.random.default_rng(seed)
    scores = rng.random(shape).astype(np.float32)
    labels = (rng.random(shape) < 0.05).astype(np.uint8)
    return np.asarray(scores, order=order), np.asarray(labels, order=order)


def _python(*parts, env=None, timeout=240):
    """Run the code ``parts`` in a fresh interpreter (own threading layer, own fork state); returns stdout words."""
    code = "\n".join(textwrap.dedent(part) for part in parts)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=timeout, env={**os.environ, **(env or {})})
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout.split()


# -- the limit ----------------------------------------------------------------------------


@pytest.mark.parametrize("text, cores", [("max 100000", None), ("150000 100000", 2), ("50000 100000", 1),
                                         ("400000 100000", 4)])
def test_cgroup_v2_quota_in_whole_cores_rounded_up(tmp_path, text, cores):
    (tmp_path / "cpu.max").write_text(text + "\n")
    assert _threads.cgroup_quota(str(tmp_path)) == cores


@pytest.mark.parametrize("quota, cores", [("-1", None), ("250000", 3)])
def test_cgroup_v1_quota(tmp_path, quota, cores):
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text(quota + "\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert _threads.cgroup_quota(str(tmp_path)) == cores


def test_no_cgroup_files_means_no_quota(tmp_path):
    assert _threads.cgroup_quota(str(tmp_path)) is None


def test_usable_cores_follow_a_quota_below_the_affinity(monkeypatch):
    monkeypatch.setattr(_threads, "_process_quota", lambda: 1)
    assert _threads.usable_cores() == 1


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="CPU affinity: Linux")
def test_usable_cores_follow_the_affinity_mask():
    out = _python("""
        import os
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
        from clskern._threads import usable_cores, default_threads
        print(usable_cores(), default_threads())
    """)
    assert out == ["1", "1"]


def test_environment_variables_cap_the_default(monkeypatch):
    monkeypatch.delenv("NUMBA_NUM_THREADS", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert _threads.default_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "1,1")  # a list per nesting level: the first counts
    assert _threads.default_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "not a number")
    assert _threads.default_threads() == CORES
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setenv("NUMBA_NUM_THREADS", str(CORES + 50))  # never more than the cores
    assert _threads.default_threads() == CORES


def test_threads_context_sets_and_restores_the_limit():
    outside = _threads.thread_limit()
    with clskern.threads(1) as n:
        assert n == 1 and _threads.thread_limit() == 1
        with clskern.threads(CORES):
            assert _threads.thread_limit() == CORES
        assert _threads.thread_limit() == 1
    assert _threads.thread_limit() == outside


def test_threads_limit_is_per_python_thread():
    seen = []
    with clskern.threads(1):
        worker = threading.Thread(target=lambda: seen.append(_threads.thread_limit()))
        worker.start()
        worker.join()
    assert seen == [_threads.default_threads()]


@pytest.mark.parametrize("bad", [0, -1, CORES + 1])
def test_threads_outside_the_cores_refused_naming_the_limit(bad):
    with pytest.raises(ArgumentError, match=f"between 1 and {CORES} \\(the cores this process may use\\), got {bad}"):
        with clskern.threads(bad):
            pass


@pytest.mark.parametrize("bad", [1.0, True, "2", None])
def test_threads_must_be_a_whole_number(bad):
    with pytest.raises(ArgumentTypeError, match="threads must be a whole number"):
        with clskern.threads(bad):
            pass


# -- threads chosen by the work ------------------------------------------------------------


def test_small_work_runs_on_one_thread_large_on_the_limit():
    assert _threads.threads_for(0) == 1
    assert _threads.threads_for(_threads.BYTES_PER_THREAD - 1) == 1
    assert _threads.threads_for(1 << 40) == _threads.thread_limit()
    assert _threads.threads_for(2 * _threads.LIGHT_BYTES_PER_THREAD, _threads.LIGHT_BYTES_PER_THREAD) == min(2, CORES)
    with clskern.threads(1):
        assert _threads.threads_for(1 << 40) == 1


def test_kernel_threads_sets_numba_threads_and_restores_them():
    before = numba.get_num_threads()
    with _threads.kernel_threads(1 << 40) as n:
        assert numba.get_num_threads() == n == min(_threads.thread_limit(), before)
    with clskern.threads(1), _threads.kernel_threads(1 << 40) as n:
        assert n == numba.get_num_threads() == 1
    with _threads.kernel_threads(10) as n:  # ten bytes: not worth a second thread
        assert n == numba.get_num_threads() == 1
    assert numba.get_num_threads() == before


def test_a_callers_numba_set_num_threads_is_a_limit_too():
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        with _threads.kernel_threads(1 << 40) as n:
            assert n == 1
    finally:
        numba.set_num_threads(before)


@pytest.mark.parametrize("order", ["C", "F"])
def test_results_do_not_depend_on_the_thread_count(order, monkeypatch):
    # a large volume's share of threads, forced on a small one: every chunking gives the same bits
    p, y = _volume(order=order)
    monkeypatch.setattr(_threads, "BYTES_PER_THREAD", 1)
    monkeypatch.setattr(_threads, "LIGHT_BYTES_PER_THREAD", 1)
    many = (clskern.volume_stats(p, y), clskern.critical_threshold(p, y, [0.0, 0.1, 0.5]),
            clskern.apply_threshold(p, 0.5), clskern.score_range(p))
    with clskern.threads(1):
        one = (clskern.volume_stats(p, y), clskern.critical_threshold(p, y, [0.0, 0.1, 0.5]),
               clskern.apply_threshold(p, 0.5), clskern.score_range(p))
    assert many[0] == one[0]
    np.testing.assert_array_equal(many[1], one[1])
    np.testing.assert_array_equal(many[2], one[2])
    assert many[3] == one[3]


# -- the layer: fork-safe, thread-safe, never chosen to spin ------------------------------------------------

_WORK = """
    import threading, multiprocessing as mp
    import numpy as np
    import clskern, numba
    from clskern._threads import threading_layer
    rng = np.random.default_rng(1)
    p = rng.random((40, 30, 20)).astype(np.float32); y = (rng.random(p.shape) < 0.05).astype(np.uint8)
    want = (clskern.critical_threshold(p, y, 0.2), clskern.volume_stats(p, y))

    def work(_=None):
        return (clskern.critical_threshold(p, y, 0.2), clskern.volume_stats(p, y)) == want
"""


def _has_tbb():
    from importlib import metadata

    try:
        metadata.distribution("tbb")
    except metadata.PackageNotFoundError:
        return False
    return True


def test_default_layer_is_tbb_where_installed_else_workqueue():
    env = {"NUMBA_THREADING_LAYER": ""}
    out = _python(_WORK, "print(threading_layer(), numba.threading_layer())", env=env)
    expected = "tbb" if _has_tbb() else "workqueue"
    assert out == [expected, expected]


def test_the_layer_is_clskerns_even_when_other_code_starts_numbas_pool_first():
    out = _python("""
        import numba, numpy as np
        import clskern.cpu  # importing the kernels chooses the layer; nothing is launched yet
        from numba.np.ufunc import parallel
        assert not parallel._is_initialized

        @numba.njit(parallel=True)
        def total(a):
            s = 0.0
            for i in numba.prange(a.size):
                s += a[i]
            return s

        total(np.ones(10))  # the user's own parallel function starts the pool
        print(numba.threading_layer())
    """, env={"NUMBA_THREADING_LAYER": ""})
    assert out == ["tbb" if _has_tbb() else "workqueue"]


def test_a_layer_the_user_names_is_kept():
    out = _python(_WORK, "print(threading_layer())", env={"NUMBA_THREADING_LAYER": "workqueue"})
    assert out == ["workqueue"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork is Linux's default start method")
@pytest.mark.parametrize("layer", ["", "workqueue"])
def test_workers_forked_after_a_call_get_the_same_answers(layer):
    out = _python(_WORK, """
        with mp.get_context("fork").Pool(2) as pool:
            print(all(pool.map(work, range(6), chunksize=1)))
    """, env={"NUMBA_THREADING_LAYER": layer})
    assert out == ["True"]


@pytest.mark.parametrize("layer", ["", "workqueue"])
def test_four_python_threads_at_once(layer):
    # Numba's workqueue aborts the process on concurrent entry: clskern serialises it
    out = _python(_WORK, """
        results = []
        def loop():
            results.append(all(work() for _ in range(10)))
        threads = [threading.Thread(target=loop) for _ in range(4)]
        [t.start() for t in threads]; [t.join() for t in threads]
        print(results.count(True))
    """, env={"NUMBA_THREADING_LAYER": layer})
    assert out == ["4"]
