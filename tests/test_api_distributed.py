"""clskern.distributed on a real LocalCluster (2 worker processes on loopback).

The store and the calibrated threshold must equal the in-process ones bit for
bit, and killing a worker (or the calling process) mid-run must lose nothing.
"""

import os
import time
import signal

import nibabel as nib
import numpy as np
import pytest

import clskern
from clskern.io import pair_cases
from clskern.store import StatsStore
from clskern.synthetic import synthetic_case

distributed = pytest.importorskip("distributed")
from clskern.distributed import case_stats, numba_thread_plan, stats_to_store

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N_CASES = 24
SHAPE = (48, 48, 40)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("dask_cases")
    (root / "scores").mkdir()
    (root / "labels").mkdir()
    rng = np.random.default_rng(11)
    for i in range(N_CASES):
        scores, labels = synthetic_case(rng, SHAPE, lesion_free=i % 9 == 8)
        np.save(root / "scores" / f"case_{i:03d}.npy", scores)
        nib.save(nib.Nifti1Image(labels, np.eye(4)), root / "labels" / f"case_{i:03d}.nii")
    pairs, _ = pair_cases(root / "scores", root / "labels")
    return pairs


@pytest.fixture(scope="module")
def reference(dataset, tmp_path_factory):
    """The in-process store (scheduler=None) and its calibration."""
    path = tmp_path_factory.mktemp("ref") / "ref.sqlite"
    with StatsStore(path) as store:
        stats_to_store(dataset, store)
        return store.load(), store.fingerprints()


@pytest.fixture(scope="module")
def client():
    before = dict(os.environ)  # the nannies also leave OMP_NUM_THREADS=1 behind in this process
    env = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = REPO + (os.pathsep + env if env else "")  # spawned workers import this clskern
    try:
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           host="127.0.0.1", dashboard_address=None)
        with distributed.Client(cluster) as c:
            yield c
        cluster.close()
    finally:
        os.environ.clear()
        os.environ.update(before)


def test_a_local_cluster_leaves_this_process_environment_as_it_was():
    """Dask's nannies write OMP_NUM_THREADS=1 into the parent's environment, which would cap this process's own
    clskern calls at one thread; clskern's local cluster puts it back."""
    from clskern.distributed import _connect

    before = dict(os.environ)
    client, owned = _connect("local")
    try:
        assert dict(os.environ) == before
    finally:
        for resource in owned:
            resource.close()


def _calibrations(stats):
    return [clskern.calibrate(stats, epsilon=0.1, alpha=0.2), clskern.calibrate(stats, epsilon=0.3, alpha=0.2),
            clskern.calibrate(stats, epsilon=0.2, alpha=0.2, method="cls-pac", delta=0.2),
            clskern.calibrate(stats, epsilon=0.2, method="crc")]


def _assert_same_as_reference(path, reference):
    ref_stats, ref_fingerprints = reference
    with StatsStore(path, create=False) as store:
        stats, fingerprints = store.load(), store.fingerprints()
    assert fingerprints == ref_fingerprints
    assert list(stats) == list(ref_stats)
    for case_id in stats:  # VolumeStats == compares dtypes and every array bit for bit
        assert stats[case_id] == ref_stats[case_id], case_id
    for ours, theirs in zip(_calibrations(stats), _calibrations(ref_stats)):
        assert ours.threshold == theirs.threshold and ours.critical_thresholds == theirs.critical_thresholds


def test_cluster_store_equals_in_process(dataset, reference, client, tmp_path):
    path = tmp_path / "dask.sqlite"
    with StatsStore(path) as store:
        result = stats_to_store(dataset, store, client)
    assert result.read == N_CASES and result.reused == 0 and not result.failed
    assert result.empty == sorted(r for r in reference[0] if reference[0][r].n_fg == 0)
    _assert_same_as_reference(path, reference)
    with StatsStore(path) as store:  # a second run reads nothing
        again = stats_to_store(dataset, store, client)
    assert again.read == 0 and again.reused == N_CASES
    assert again.stats == result.stats


def test_numba_threads_share_the_cores(client, dataset):
    plan = numba_thread_plan(client)
    cores = min(client.run(lambda: len(os.sched_getaffinity(0))).values())
    assert plan == {"127.0.0.1": max(1, cores // 2)}  # two worker processes on one machine
    _, _, _, used = client.submit(case_stats, dataset[0], None, None, 1e-3, plan, pure=False).result()
    assert used == max(1, cores // 2)


def test_killed_worker_loses_nothing(dataset, reference, client, tmp_path):
    pids = client.run(os.getpid)
    killed = []

    def kill_one(event):
        if not killed and event.status == "stored":
            victim = max(pids, key=pids.get)
            held = len(client.processing().get(victim, ())) + len(client.has_what().get(victim, ()))
            os.kill(pids[victim], signal.SIGKILL)  # the nanny restarts it; its tasks run again elsewhere
            killed.append(held)

    path = tmp_path / "killed.sqlite"
    with StatsStore(path) as store:
        result = stats_to_store(dataset, store, client, on_case=kill_one)
    assert killed[0] > 0  # it died holding queued, running or finished cases
    assert result.read == N_CASES and not result.failed
    _assert_same_as_reference(path, reference)


def test_interrupted_run_resumes(dataset, reference, client, tmp_path):
    class Stop(Exception):
        pass

    seen = []

    def stop_after_five(event):
        seen.append(event.case_id)
        if len(seen) == 5:
            raise Stop

    path = tmp_path / "resumed.sqlite"
    with StatsStore(path) as store, pytest.raises(Stop):
        stats_to_store(dataset, store, client, on_case=stop_after_five)
    with StatsStore(path) as store:
        assert 5 <= len(store) < N_CASES
        result = stats_to_store(dataset, store, client, keep_stats=False)  # memory flat in the cases
    assert result.reused >= 5 and result.read + result.reused == N_CASES and result.stats == {}
    assert result.empty == sorted(r for r in reference[0] if reference[0][r].n_fg == 0)
    _assert_same_as_reference(path, reference)


def test_failing_case_is_reported_or_raised(dataset, client, tmp_path, capfd):
    bad = tmp_path / "bad"
    (bad / "s").mkdir(parents=True)
    (bad / "l").mkdir()
    np.save(bad / "s" / "x.npy", np.full((4, 4, 4), np.nan, np.float32))
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.uint8), np.eye(4)), bad / "l" / "x.nii")
    pairs = list(dataset[:2]) + pair_cases(bad / "s", bad / "l")[0]
    with StatsStore(tmp_path / "k.sqlite") as store:
        result = stats_to_store(pairs, store, client, keep_going=True)
        assert [c for c, _ in result.failed] == ["x"] and isinstance(result.failed[0][1], clskern.NaNScoresError)
        assert len(store) == 2
    with StatsStore(tmp_path / "r.sqlite") as store, pytest.raises(clskern.NaNScoresError, match="'x'"):
        stats_to_store(pairs, store, client)
    time.sleep(0.5)  # let the workers' stderr arrive
    assert "Compute Failed" not in capfd.readouterr().err  # an input error is a value, not a worker traceback


def test_bad_scheduler_argument(dataset, tmp_path):
    with StatsStore(tmp_path / "s.sqlite") as store, pytest.raises(TypeError, match="scheduler"):
        stats_to_store(dataset[:1], store, 42)


def test_scheduler_address_and_no_default_client(dataset, reference, client, tmp_path):
    path = tmp_path / "by_address.sqlite"
    with StatsStore(path) as store:
        result = stats_to_store(dataset, store, client.scheduler.address, numba_threads=1)
    assert result.read == N_CASES
    _assert_same_as_reference(path, reference)


def test_cli_stats_on_the_cluster(dataset, reference, client, tmp_path, capsys):
    from clskern.cli.main import build_parser, main

    stats_parser = build_parser()._subparsers._group_actions[0].choices["stats"]
    if "--scheduler" not in stats_parser.format_help():
        pytest.skip("this clskern's CLI has no `clskern stats --scheduler` yet")
    scores, labels = os.path.dirname(dataset[0].scores), os.path.dirname(dataset[0].labels)
    path = tmp_path / "cli.sqlite"
    assert main(["stats", "--scores", scores, "--labels", labels, "-o", str(path), "-q",
                 "--scheduler", client.scheduler.address]) == 0
    _assert_same_as_reference(path, reference)


def test_replaced_file_is_read_again_on_the_cluster(dataset, client, tmp_path):
    """The workers hash what they read: a score file swapped for other bytes of the same size and
    modification time (``cp -p``) is read again, an identical one touched is not."""
    import shutil

    (tmp_path / "s").mkdir()
    (tmp_path / "l").mkdir()
    for pair in dataset[:3]:
        shutil.copy2(pair.scores, tmp_path / "s")
        shutil.copy2(pair.labels, tmp_path / "l")
    pairs, _ = pair_cases(tmp_path / "s", tmp_path / "l")
    with StatsStore(tmp_path / "c.sqlite") as store:
        assert stats_to_store(pairs, store, client).read == 3
        fingerprints = store.fingerprints()
        os.utime(pairs[0].scores)  # touched only
        victim = pairs[1].scores
        st = os.stat(victim)
        shutil.copyfile(dataset[5].scores, victim)  # same shape and dtype: same size
        os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert os.stat(victim).st_size == st.st_size
        again = stats_to_store(pairs, store, client)
        assert (again.read, again.reused) == (1, 2)
        assert store.fingerprints()[pairs[1].case_id] != fingerprints[pairs[1].case_id]
        in_process = clskern.io.collect_stats(pairs[1:2]).stats[pairs[1].case_id]
        assert store.get(pairs[1].case_id) == in_process
