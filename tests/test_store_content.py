"""The store keys on content: a case is "already stored" when both files hold the same bytes
and the reading options (label, channel) are the same, whatever the files' names, sizes,
modification times or folders. Driven through ``clskern stats`` and ``collect_stats``."""

import gzip
import hashlib
import json
import os
import shutil
import sqlite3

import nibabel as nib
import numpy as np
import pytest

import clskern
import clskern.io.batch as batch
from clskern.cli.main import main
from clskern.io import collect_stats, pair_cases
from clskern.store import StatsStore, fingerprint

SHAPE = (8, 7, 6)
N = 4


def _write_nii_gz(path, array):
    """A .nii.gz of fixed size for a fixed shape and dtype (stored deflate blocks), so that
    a file can be replaced by other bytes of exactly the same size."""
    data = nib.Nifti1Image(array, np.eye(4)).to_bytes()
    with open(path, "wb") as f:
        f.write(gzip.compress(data, compresslevel=0, mtime=0))


def _scores(seed):
    return np.random.default_rng(seed).random(SHAPE, dtype=np.float32)


@pytest.fixture
def cases(tmp_path):
    s, l = tmp_path / "data" / "scores", tmp_path / "data" / "labels"
    s.mkdir(parents=True)
    l.mkdir()
    for i in range(N):
        p = _scores(i)
        _write_nii_gz(s / f"k{i}.nii.gz", p)
        _write_nii_gz(l / f"k{i}.nii.gz", (p > 0.7).astype(np.uint8))
    return s, l


@pytest.fixture
def reads(monkeypatch):
    """The case ids read from disk (the stored ones are not)."""
    seen = []
    real = batch.load_case

    def counting(pair, **kw):
        seen.append(pair.case_id)
        return real(pair, **kw)

    monkeypatch.setattr(batch, "load_case", counting)
    return seen


def _cli(s, l, store, *extra):
    assert main(["stats", "--scores", str(s), "--labels", str(l), "-o", str(store), "-q", *extra]) == 0


def _cli_reads(reads, *args):
    del reads[:]
    _cli(*args)
    return sorted(reads)


def _replace_keeping_size_and_mtime(path, array):
    """``cp -p`` of another file of the same size: other bytes, same size, same mtime."""
    st = os.stat(path)
    with open(path, "rb") as f:
        old = f.read()
    _write_nii_gz(path, array)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    new_st = os.stat(path)
    assert (new_st.st_size, new_st.st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    with open(path, "rb") as f:
        assert f.read() != old


def _expected(s, l, case_id):
    p = np.asanyarray(nib.load(s / f"{case_id}.nii.gz").dataobj)
    y = np.asanyarray(nib.load(l / f"{case_id}.nii.gz").dataobj)
    return clskern.volume_stats(p, y, name=case_id)


def test_same_size_same_mtime_replacement_is_read_again(cases, reads, tmp_path):
    s, l = cases
    store = tmp_path / "st.sqlite"
    assert _cli_reads(reads, s, l, store) == [f"k{i}" for i in range(N)]
    assert _cli_reads(reads, s, l, store) == []
    _replace_keeping_size_and_mtime(s / "k1.nii.gz", _scores(99))
    _replace_keeping_size_and_mtime(l / "k2.nii.gz", (_scores(2) > 0.3).astype(np.uint8))  # labels count too
    assert _cli_reads(reads, s, l, store) == ["k1", "k2"]
    with StatsStore(store, create=False) as st:
        for case_id in ("k1", "k2"):
            assert st.get(case_id) == _expected(s, l, case_id)
        assert st.load() == collect_stats(pair_cases(s, l)[0]).stats  # the whole store: fresh statistics
    assert _cli_reads(reads, s, l, store) == []


def test_touched_identical_file_is_reused(cases, reads, tmp_path):
    s, l = cases
    store = tmp_path / "st.sqlite"
    _cli(s, l, store)
    for path in (s / "k0.nii.gz", l / "k3.nii.gz"):
        st = os.stat(path)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 3 * 10**9))
    shutil.copyfile(s / "k2.nii.gz", tmp_path / "copy")  # rewritten with the same bytes: a new inode and mtime
    os.replace(tmp_path / "copy", s / "k2.nii.gz")
    assert _cli_reads(reads, s, l, store) == []


def test_moved_folder_keeps_reuse(cases, reads, tmp_path):
    s, l = cases
    store = tmp_path / "st.sqlite"
    _cli(s, l, store)
    moved = tmp_path / "elsewhere"
    os.rename(tmp_path / "data", moved)
    assert _cli_reads(reads, moved / "scores", moved / "labels", store) == []
    pairs, _ = pair_cases(moved / "scores", moved / "labels")
    with StatsStore(store) as st:
        result = collect_stats(pairs, store=st)
    assert (result.read, result.reused) == (0, N) and reads == []


def test_label_or_channel_change_invalidates(cases, reads, tmp_path):
    """One store holds cases read one way: another --label or --channel is refused, and the fingerprint
    (which names the options too) would not match a case read otherwise."""
    s, l = cases
    store = tmp_path / "st.sqlite"
    everything = [f"k{i}" for i in range(N)]
    assert _cli_reads(reads, s, l, store, "--label", "1") == everything
    assert _cli_reads(reads, s, l, store, "--label", "1") == []
    for extra in ([], ["--label", "1", "--channel", "0"]):
        assert main(["stats", "--scores", str(s), "--labels", str(l), "-o", str(store), "-q", *extra]) == 1
    with StatsStore(store) as st:
        assert st.reading() == {"label": 1, "channel": None} and len(st) == N
        assert st.connectivity() == 26  # the default: lesions kept for lesion level
        key = st.fingerprints()["k0"]
    assert key != fingerprint(s / "k0.nii.gz", l / "k0.nii.gz", label=None, channel=None, connectivity=26)
    assert key != fingerprint(s / "k0.nii.gz", l / "k0.nii.gz", label=1, channel=None)
    assert key == fingerprint(s / "k0.nii.gz", l / "k0.nii.gz", label=1, channel=None, connectivity=26)
    assert _cli_reads(reads, s, l, tmp_path / "other.sqlite", "--label", "1", "--channel", "0") == everything


def _old_fingerprint(scores_path, labels_path, **options):
    """clskern <= 0.x: names, sizes and modification times."""
    def identity(path):
        st = os.stat(path)
        return [os.path.basename(os.fspath(path)), st.st_size, st.st_mtime_ns]

    record = {"scores": identity(scores_path), "labels": identity(labels_path),
              "options": {k: options[k] for k in sorted(options)}}
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:32]


def test_store_with_old_style_fingerprints_reads_its_cases_again(cases, reads, tmp_path):
    s, l = cases
    pairs, _ = pair_cases(s, l)
    path = tmp_path / "old.sqlite"
    stale = clskern.volume_stats(_scores(42), _scores(43) > 0.5, name="k0")
    with StatsStore(path) as st:  # as an older clskern left it, k0 holding statistics of other bytes
        for pair in pairs:
            stats = stale if pair.case_id == "k0" else _expected(s, l, pair.case_id)
            st.put(pair.case_id, _old_fingerprint(pair.scores, pair.labels, label=None, channel=None), stats)
    assert _cli_reads(reads, s, l, path) == [p.case_id for p in pairs]
    with StatsStore(path, create=False) as st:
        assert all(f.startswith("xxh3-128:") for f in st.fingerprints().values())
        assert st.get("k0") == _expected(s, l, "k0")
    db = sqlite3.connect(path)
    assert db.execute("SELECT value FROM meta WHERE key='store_format'").fetchone() == ("1",)
    db.close()
    assert _cli_reads(reads, s, l, path) == []


def test_collect_stats_hashes_each_file_once(cases, reads, tmp_path, monkeypatch):
    s, l = cases
    pairs, _ = pair_cases(s, l)
    hashed = []
    real = batch.file_digest

    def counting(path):
        hashed.append(os.path.basename(os.path.dirname(path)) + "/" + os.path.basename(path))
        return real(path)

    monkeypatch.setattr(batch, "file_digest", counting)
    assert collect_stats(pairs).read == N and hashed == []  # no store: nothing to key, nothing hashed
    with StatsStore(tmp_path / "st.sqlite") as st:
        first = collect_stats(pairs, store=st, jobs=2)
        assert (first.read, first.reused) == (N, 0)
        assert sorted(hashed) == sorted([f"scores/k{i}.nii.gz" for i in range(N)]
                                        + [f"labels/k{i}.nii.gz" for i in range(N)])
        _replace_keeping_size_and_mtime(s / "k3.nii.gz", _scores(7))
        del hashed[:], reads[:]
        again = collect_stats(pairs, store=st, keep_stats=False)
        assert (again.read, again.reused) == (1, N - 1) and reads == ["k3"]
        assert len(hashed) == 2 * N and len(set(hashed)) == 2 * N  # k3 hashed once though needed twice
        assert st.get("k3") == _expected(s, l, "k3")
        assert st.fingerprints()["k3"] == fingerprint(s / "k3.nii.gz", l / "k3.nii.gz", label=None, channel=None,
                                                                connectivity=26)


def test_unreadable_stored_case_is_reported_per_case(cases, tmp_path):
    s, l = cases
    pairs, _ = pair_cases(s, l)
    with StatsStore(tmp_path / "st.sqlite") as st:
        collect_stats(pairs, store=st)
        os.unlink(s / "k1.nii.gz")  # gone after pairing: reported like any unreadable case
        result = collect_stats(pairs, store=st, keep_going=True)
    assert (result.read, result.reused) == (0, N - 1)
    assert [c for c, _ in result.failed] == ["k1"] and isinstance(result.failed[0][1], OSError)


def test_an_nnunet_pkl_is_part_of_the_fingerprint(tmp_path, reads):
    """The .pkl decides which axes an .npz is in: another .pkl means another case."""
    from nnunet_files import LPS_AFFINE, write_nnunet_case

    s, l = tmp_path / "pred", tmp_path / "labels"
    s.mkdir()
    l.mkdir()
    p = _scores(9)
    nib.save(nib.Nifti1Image((p > 0.6).astype(np.uint8), LPS_AFFINE), l / "n0.nii.gz")
    write_nnunet_case(s, "n0", p, LPS_AFFINE, reader="reorient")
    store = tmp_path / "st.sqlite"
    argv = ["stats", "--scores", str(s), "--labels", str(l), "-o", str(store), "-q"]
    assert main(argv) == 0 and reads == ["n0"]
    assert main(argv) == 0 and reads == ["n0"]  # unchanged: reused
    npz = (s / "n0.npz").read_bytes()
    write_nnunet_case(s, "n0", p, LPS_AFFINE, reader="reorient", protocol=2)  # the same geometry, other bytes
    assert (s / "n0.npz").read_bytes() == npz  # only the .pkl changed
    assert main(argv) == 0 and reads == ["n0", "n0"]
