"""The statistics store: round trips, resume by fingerprint, refusal of foreign files."""

import os
import sqlite3
import time

import nibabel as nib
import numpy as np
import pytest

import clskern
from clskern.io import collect_stats, pair_cases
from clskern.store import StatsStore, StoreError, fingerprint


def _stats(seed, name):
    rng = np.random.default_rng(seed)
    p = rng.random((9, 8, 7), dtype=np.float32)
    y = rng.random((9, 8, 7)) > 0.8
    return clskern.volume_stats(p, y, name=name)


def test_put_get_load_roundtrip_bit_for_bit(tmp_path):
    path = tmp_path / "s.sqlite"
    with StatsStore(path) as store:
        for i in range(3):
            store.put(f"c{i}", f"fp{i}", _stats(i, f"c{i}"))
        store.put("c1", "fp1b", _stats(7, "c1"))  # replaced, not duplicated
    with StatsStore(path, create=False) as store:
        assert len(store) == 3 and "c1" in store and "zz" not in store
        assert store.case_ids() == ["c0", "c1", "c2"]
        assert store.fingerprints() == {"c0": "fp0", "c1": "fp1b", "c2": "fp2"}
        assert store.get("c1") == _stats(7, "c1")
        assert store.load() == {f"c{i}": _stats(7 if i == 1 else i, f"c{i}") for i in range(3)}
        assert list(store.load(["c2"])) == ["c2"]
        with pytest.raises(StoreError, match="not stored: nope"):
            store.load(["nope"])
        with pytest.raises(KeyError):
            store.get("nope")
        with pytest.raises(TypeError):
            store.put("x", "f", b"bytes")


def test_reading_a_closed_store_leaves_no_sqlite_side_files(tmp_path):
    """A store is written in WAL mode; once its writer closes it is a plain file again, so reading it
    (calibrate, evaluate: read-only) leaves no -wal/-shm files beside it."""
    path = tmp_path / "s.sqlite"
    with StatsStore(path) as store:
        store.put("c0", "fp0", _stats(0, "c0"))
        assert store._query("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert sorted(os.listdir(tmp_path)) == ["s.sqlite"]
    with StatsStore(path, create=False) as store:
        assert store.get("c0") == _stats(0, "c0")
    assert sorted(os.listdir(tmp_path)) == ["s.sqlite"]
    with StatsStore(path) as store:  # resumed: WAL again while open
        store.put("c1", "fp1", _stats(1, "c1"))
        assert len(store) == 2
    assert sorted(os.listdir(tmp_path)) == ["s.sqlite"]


def test_foreign_and_missing_stores_are_refused(tmp_path):
    with pytest.raises(StoreError, match="no statistics store"):
        StatsStore(tmp_path / "none.sqlite", create=False)
    (tmp_path / "text.sqlite").write_text("just text, not a database " * 100)
    with pytest.raises(StoreError, match=r"text\.sqlite: not a clskern statistics store"):
        StatsStore(tmp_path / "text.sqlite")
    db = sqlite3.connect(tmp_path / "other.sqlite")
    db.execute("CREATE TABLE cases (id TEXT)")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="not a clskern statistics store"):
        StatsStore(tmp_path / "other.sqlite")
    with StatsStore(tmp_path / "v.sqlite"):
        pass
    db = sqlite3.connect(tmp_path / "v.sqlite")
    db.execute("UPDATE meta SET value='99' WHERE key='store_format'")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="format 99"):
        StatsStore(tmp_path / "v.sqlite")


def test_fingerprint_follows_bytes_and_options_not_names_or_times(tmp_path):
    a, b = tmp_path / "a.nii.gz", tmp_path / "b.nii.gz"
    a.write_bytes(b"1234")
    b.write_bytes(b"5678")
    f = fingerprint(a, b, label=None, channel=None)
    assert f.startswith("xxh3-128:") and len(f) == len("xxh3-128:") + 32
    assert f == fingerprint(a, b, channel=None, label=None)
    assert f != fingerprint(a, b, label=2, channel=None)
    assert f != fingerprint(a, b, label=None, channel=0)
    assert f != fingerprint(b, a, label=None, channel=None)  # which file is which counts
    os.utime(a, ns=(time.time_ns(), time.time_ns() + 10**9))  # touched: same bytes, same fingerprint
    assert f == fingerprint(a, b, label=None, channel=None)
    (tmp_path / "sub").mkdir()
    os.rename(a, tmp_path / "sub" / "renamed.nii.gz")
    assert f == fingerprint(tmp_path / "sub" / "renamed.nii.gz", b, label=None, channel=None)
    st = os.stat(b)
    b.write_bytes(b"5679")  # same size, mtime put back: other bytes, other fingerprint
    os.utime(b, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert f != fingerprint(tmp_path / "sub" / "renamed.nii.gz", b, label=None, channel=None)


def test_file_digest_reads_large_files_in_chunks(tmp_path):
    import xxhash

    from clskern.store import _CHUNK, file_digest

    for size in (0, 1, _CHUNK - 1, _CHUNK, _CHUNK + 1, 3 * _CHUNK + 17):
        data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
        (tmp_path / "f").write_bytes(data)
        assert file_digest(tmp_path / "f") == xxhash.xxh3_128_hexdigest(data), size


def _dataset(tmp_path, n=4):
    s, l = tmp_path / "scores", tmp_path / "labels"
    s.mkdir()
    l.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        p = rng.random((8, 7, 6), dtype=np.float32)
        nib.save(nib.Nifti1Image(p, np.eye(4)), s / f"k{i}.nii.gz")
        nib.save(nib.Nifti1Image((p > 0.75).astype(np.uint8), np.eye(4)), l / f"k{i}.nii.gz")
    return s, l


def test_collect_stats_resumes_and_rereads_changed_files(tmp_path):
    s, l = _dataset(tmp_path)
    pairs, _ = pair_cases(s, l)
    with StatsStore(tmp_path / "st.sqlite") as store:
        first = collect_stats(pairs[:2], store=store)
        assert (first.read, first.reused) == (2, 0)
        second = collect_stats(pairs, store=store, jobs=2)
        assert (second.read, second.reused) == (2, 2)
        assert second.stats == collect_stats(pairs).stats  # stored == freshly computed
        p = np.random.default_rng(9).random((8, 7, 6), dtype=np.float32)
        time.sleep(0.01)
        nib.save(nib.Nifti1Image(p, np.eye(4)), s / "k1.nii.gz")
        third = collect_stats(pairs, store=store)
        assert (third.read, third.reused) == (1, 3)
        labels = np.asanyarray(nib.load(l / "k1.nii.gz").dataobj)
        assert third.stats["k1"] == clskern.volume_stats(p, labels, name="k1")
        assert len(store) == 4


def test_a_failing_case_leaves_the_stored_ones(tmp_path):
    s, l = _dataset(tmp_path)
    (s / "k2.nii.gz").write_bytes((s / "k2.nii.gz").read_bytes()[:100])
    pairs, _ = pair_cases(s, l)
    with StatsStore(tmp_path / "st.sqlite") as store:
        with pytest.raises(ValueError, match=r"k2\.nii\.gz: truncated"):
            collect_stats(pairs, store=store)
        assert store.case_ids() == ["k0", "k1"]
        result = collect_stats(pairs, store=store, keep_going=True)
        assert [c for c, _ in result.failed] == ["k2"] and store.case_ids() == ["k0", "k1", "k3"]


def test_lesion_stats_calibrate_like_full_stats(tmp_path):
    full = {f"c{i}": _stats(i, f"c{i}") for i in range(12)}
    full["c_empty"] = clskern.volume_stats(np.ones((3, 3, 3), np.float32), np.zeros((3, 3, 3), bool), name="c_empty")
    with StatsStore(tmp_path / "s.sqlite") as store:
        for k, v in full.items():
            store.put(k, "f", v)
        lesion = store.lesion_stats()
        assert list(lesion) == sorted(full)
        full = dict(sorted(full.items()))  # case order is part of the calibration record
        for k, v in full.items():
            assert lesion[k].lesion_scores.dtype == v.lesion_scores.dtype
            np.testing.assert_array_equal(lesion[k].lesion_scores, v.lesion_scores)
            assert lesion[k].n_fg == v.n_fg
        for method, kw in [("cls", {"alpha": 0.2}), ("cls-pac", {"alpha": 0.3, "delta": 0.2}),
                           ("crc", {}), ("rcps", {"delta": 0.3})]:
            assert clskern.calibrate(lesion, epsilon=0.3, method=method, **kw) == clskern.calibrate(
                full, epsilon=0.3, method=method, **kw)
        assert list(store.lesion_stats(["c3"])) == ["c3"]


def test_collect_stats_can_store_without_keeping(tmp_path):
    s, l = _dataset(tmp_path)
    pairs, _ = pair_cases(s, l)
    with StatsStore(tmp_path / "st.sqlite") as store:
        result = collect_stats(pairs, store=store, keep_stats=False)
        assert result.stats == {} and result.read == 4 and len(store) == 4
        again = collect_stats(pairs, store=store, keep_stats=False)
        assert (again.read, again.reused, again.stats) == (0, 4, {})
    with pytest.raises(ValueError, match="needs a store"):
        collect_stats(pairs, keep_stats=False)
