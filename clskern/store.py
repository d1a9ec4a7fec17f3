"""A statistics store: each case's ``VolumeStats``, kept on disk between runs.

One SQLite file, one row per case, keyed by the case id and a fingerprint of
both input files' bytes (an xxh3-128 hash of each file's content, not its
name, size or modification time) and of the reading options that change the
statistics (label value, channel, lesion connectivity). ``clskern stats`` skips cases whose
fingerprint is stored, so an interrupted run resumes where it stopped, and a
file replaced by other bytes is read again even when its size and
modification time were kept (``cp -p``, ``rsync -a``); every case is written in its own transaction, so a crash loses at
most the case in flight and never leaves a half-written row. Calibrating
from a store needs no pass over the volumes, and (``lesion_stats``) reads only
the sorted lesion scores (and each lesion's, for lesion level) out of each
stored record, not the background histogram that makes up most of its bytes.

One store holds cases read one way (``reading``): one label value, one
channel, one connectivity (the lesions' definition, or None for voxel
statistics only). A store written before lesion level recorded no
connectivity and holds statistics without lesions: it reads as connectivity
None, so ``clskern stats --connectivity none`` resumes it and any other
connectivity is refused (start a new store, or ``--overwrite``).
"""

from __future__ import annotations

import io
import json
import os
import pathlib
import sqlite3
import time
import zipfile
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
import xxhash

from ._version import __version__
from .errors import InputError

if TYPE_CHECKING:  # annotations only: clskern.volume is imported where a case is decoded
    from .volume import VolumeStats

# VolumeStats (clskern.volume, which imports Numba) is imported where a case is
# stored or decoded: a re-run over a complete store only compares fingerprints.

STORE_FORMAT = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cases (
    case_id TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    n_voxels INTEGER NOT NULL,
    n_fg INTEGER NOT NULL,
    stats BLOB NOT NULL,
    scores_path TEXT,
    labels_path TEXT,
    stored_at REAL NOT NULL
);
"""


class StoreError(InputError):
    """A statistics store that cannot be opened or read."""


READING_KEYS = ("label", "channel", "connectivity")


def _is_connectivity(value):
    return value is None or (type(value) is int and value in (6, 18, 26))


FINGERPRINT_KIND = "xxh3-128"
"""What a fingerprint is; the prefix of every fingerprint, so that the older
size-and-mtime ones (32 bare hex digits) never match and those cases are
read again."""
_CHUNK = 1 << 22  # 4 MiB reads: hashing runs at page-cache speed (xxh3: ~30 GB/s on one core)


def file_digest(path: str | os.PathLike[str]) -> str:
    """The xxh3-128 hash (32 hex digits) of a file's bytes, read in large chunks."""
    h = xxhash.xxh3_128()
    with open(path, "rb", buffering=0) as f:
        if os.fstat(f.fileno()).st_size <= _CHUNK:
            h.update(f.readall())
        else:
            buf = bytearray(_CHUNK)
            view = memoryview(buf)
            while n := f.readinto(buf):
                h.update(view[:n])
    return h.hexdigest()


def fingerprint_of(scores_digest: str, labels_digest: str, **options: object) -> str:
    """The fingerprint of two files' ``file_digest`` and the reading options."""
    record = {
        "scores": scores_digest,
        "labels": labels_digest,
        "options": {k: options[k] for k in sorted(options)},
    }
    return f"{FINGERPRINT_KIND}:" + xxhash.xxh3_128_hexdigest(json.dumps(record, sort_keys=True).encode())


def fingerprint(scores_path: str | os.PathLike[str], labels_path: str | os.PathLike[str],
                **options: object) -> str:
    """A fingerprint naming both input files' content and the reading options.

    ``"xxh3-128:"`` and 32 hex digits. Only the bytes count: a file replaced
    by other bytes gets a new fingerprint even with the same size and
    modification time, while touching, renaming or moving a file (or its
    folder) keeps it.
    """
    return fingerprint_of(file_digest(scores_path), file_digest(labels_path), **options)


def _reading_option(key: str, value: Any) -> str:
    """A reading option as the command line says it (``--label 2``, ``every label > 0``)."""
    if value is None:
        return {"label": "every label > 0", "channel": "the default channel",
                "connectivity": "no lesions (stored before lesion level)"}.get(key, f"no {key}")
    return f"--{key} {value:g}" if isinstance(value, float) else f"--{key} {value}"


def _check_format(db, path):
    """Raise ``StoreError`` unless ``db`` is a clskern statistics store of this format."""
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if not {"meta", "cases"} <= tables:
        raise StoreError(f"{path}: not a clskern statistics store (no tables 'meta' and 'cases')")
    row = db.execute("SELECT value FROM meta WHERE key='store_format'").fetchone()
    if row is None or row[0] != str(STORE_FORMAT):
        found = "no format" if row is None else f"format {row[0]}"
        raise StoreError(f"{path}: statistics store of {found}; this clskern reads format {STORE_FORMAT}")
    cols = {r[1] for r in db.execute("PRAGMA table_info(cases)")}
    if not {"case_id", "fingerprint", "n_fg", "stats"} <= cols:
        raise StoreError(f"{path}: not a clskern statistics store (table 'cases' differs)")


SQLITE_MAGIC = b"SQLite format 3\x00"


def _inspect(path, query):
    """``query(db)`` on the store at ``path`` once its format is checked, opened so that nothing is written:
    read-only and immutable (no lock, no ``-wal``/``-shm`` made beside someone's file). Raises ``StoreError``."""
    try:
        with open(path, "rb") as f:
            if f.read(len(SQLITE_MAGIC)) != SQLITE_MAGIC:
                raise StoreError(f"{path}: not a SQLite file")
        uri = f"{pathlib.Path(os.path.abspath(path)).as_uri()}?mode=ro&immutable=1"
        db = sqlite3.connect(uri, uri=True)
    except (OSError, sqlite3.Error) as exc:
        raise StoreError(f"{path}: cannot be read ({exc})") from None
    try:
        _check_format(db, path)
        return query(db)
    except (sqlite3.Error, UnicodeDecodeError) as exc:
        raise StoreError(f"{path}: not a clskern statistics store ({exc})") from None
    finally:
        db.close()


def store_problem(path: str | os.PathLike[str]) -> str | None:
    """None when ``path`` is a statistics store clskern wrote (its tables and ``meta`` format), else why not.

    Used before ``--overwrite`` removes a file: only a store clskern
    recognises is ever replaced. Writes nothing, even beside a stranger's file.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        return "a folder"
    try:
        _inspect(path, lambda db: None)
    except StoreError as exc:
        why = str(exc).removeprefix(f"{path}: ")
        inner = why.removeprefix("not a clskern statistics store (")  # the caller says what it is not
        return inner[:-1] if inner != why and inner.endswith(")") else why
    return None


def recorded_files(path: str | os.PathLike[str]) -> list[str]:
    """The score and label files the cases of a store were read from, as recorded (``[]`` when none are,
    or the file is not a readable store); these are inputs no output may replace."""
    query = "SELECT scores_path, labels_path FROM cases"
    try:
        rows = _inspect(os.fspath(path), lambda db: db.execute(query).fetchall())
    except StoreError:
        return []
    return sorted({p for row in rows for p in row if isinstance(p, str) and p})


class StatsStore:
    """Per-case ``VolumeStats`` in a SQLite file.

    Parameters
    ----------
    path : str or os.PathLike
        The store file.
    create : bool
        Create the file if missing (else a missing store is an error).

    Use as a context manager, or call ``close``.
    """

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True) -> None:
        self.path = os.fspath(path)
        self._db = None
        self._writable = False
        exists = os.path.isfile(self.path) and os.path.getsize(self.path) > 0
        if not create and not exists:
            raise StoreError(f"{self.path}: no statistics store there (run clskern stats first)")
        try:
            if exists:  # someone's file: read it without writing a byte until it proves to be a store
                self._db = sqlite3.connect(f"{pathlib.Path(os.path.abspath(self.path)).as_uri()}?mode=ro", uri=True,
                                           isolation_level=None, check_same_thread=False)
                self._check_format()
                if create:
                    self._db.close()
                    self._db = None
            if self._db is None:
                self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
                self._writable = True
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                if not exists:
                    self._db.executescript(_SCHEMA)
                    self._db.execute(
                        "INSERT INTO meta VALUES ('store_format', ?), ('created_by', ?)",
                        (str(STORE_FORMAT), f"clskern {__version__}"),
                    )
        except (sqlite3.Error, UnicodeDecodeError) as exc:
            self._close_quietly()
            raise StoreError(f"{self.path}: not a clskern statistics store ({exc})") from None
        except StoreError:
            self._close_quietly()
            raise

    def _check_format(self):
        """Raise ``StoreError`` unless the open database is a clskern store of this format."""
        _check_format(self._db, self.path)

    def _close_quietly(self):
        db = getattr(self, "_db", None)
        if db is not None:
            self._db = None
            if self._writable:  # back to a plain journal: readers (mode=ro) of a WAL file leave -wal/-shm files
                try:
                    db.execute("PRAGMA journal_mode=DELETE")
                except sqlite3.Error:  # another connection holds it: it stays WAL, still consistent
                    pass
            db.close()

    def close(self) -> None:
        """Close the file (committed cases are already on disk)."""
        self._close_quietly()

    def __enter__(self) -> StatsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return self._one("SELECT COUNT(*) FROM cases")[0]

    def __contains__(self, case_id: object) -> bool:
        return self._one("SELECT 1 FROM cases WHERE case_id=?", (case_id,)) is not None

    def _query(self, sql, args=()):
        try:
            return self._db.execute(sql, args)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {exc}") from None

    def _rows(self, sql, args=()):
        """Every row of a query, fetched inside the error handling: a damaged page fails while rows
        are read, and text that is not UTF-8 (a damaged case id) while it is decoded."""
        try:
            return self._db.execute(sql, args).fetchall()
        except (sqlite3.Error, UnicodeDecodeError) as exc:
            raise StoreError(f"{self.path}: damaged store ({exc})") from None

    def _one(self, sql, args=()):
        """The first row of a query, or None (see ``_rows``)."""
        try:
            return self._db.execute(sql, args).fetchone()
        except (sqlite3.Error, UnicodeDecodeError) as exc:
            raise StoreError(f"{self.path}: damaged store ({exc})") from None

    def reading(self) -> dict[str, Any] | None:
        """How the stored cases were read: ``{"label": ..., "channel": ...}`` (as a calibration records it),
        or None (not recorded); the connectivity of their lesions is ``connectivity()``."""
        stored = self._reading()
        return None if stored is None else {"label": stored["label"], "channel": stored["channel"]}

    def connectivity(self) -> int | None:
        """The connectivity of the stored lesions: 6, 18, 26, or None (voxel statistics only, or not recorded)."""
        stored = self._reading()
        return None if stored is None else stored["connectivity"]

    def _reading(self):
        """``{"label", "channel", "connectivity"}`` as recorded, or None. A reading recorded before lesion
        level has no connectivity: None (its statistics have no lesions)."""
        row = self._one("SELECT value FROM meta WHERE key='reading'")
        if row is None:
            return None
        try:
            value = json.loads(row[0])
        except (ValueError, RecursionError):
            value = None
        if isinstance(value, dict) and set(value) == {"label", "channel"}:
            value = {**value, "connectivity": None}  # recorded before lesion level: no lesions stored
        if not isinstance(value, dict) or set(value) != set(READING_KEYS) or not _is_connectivity(value["connectivity"]):
            raise StoreError(f"{self.path}: unreadable reading options in the store ({row[0][:60]!r})")
        return value

    def check_reading(self, *, label: float | None, channel: int | None, connectivity: int | None = None) -> None:
        """Record how cases are read into this store, or refuse a run that reads them otherwise.

        One store holds statistics read one way (one label value, one
        channel, one connectivity), so a calibration from it can say which,
        ``apply`` can cut the same channel, and lesion level has one
        definition of a lesion.
        """
        wanted = {"label": label, "channel": channel, "connectivity": connectivity}
        stored = self._reading()
        if stored is None:
            self._query("INSERT OR REPLACE INTO meta VALUES ('reading', ?)", (json.dumps(wanted),))
        elif stored != wanted:
            shown = ", ".join(_reading_option(k, stored[k]) for k in READING_KEYS if stored[k] != wanted[k])
            asked = ", ".join(_reading_option(k, wanted[k]) for k in READING_KEYS if stored[k] != wanted[k])
            raise StoreError(f"{self.path}: the store holds cases read with {shown}, this run asks {asked}; "
                             "use another store (or --overwrite to start this one afresh)")

    def fingerprints(self) -> dict[str, str]:
        """``{case_id: fingerprint}`` of the stored cases."""
        return dict(self._rows("SELECT case_id, fingerprint FROM cases"))

    def lesion_counts(self) -> dict[str, int]:
        """``{case_id: n_fg}`` of the stored cases (no statistics decoded)."""
        return dict(self._rows("SELECT case_id, n_fg FROM cases"))

    def case_ids(self) -> list[str]:
        """Stored case ids, sorted."""
        return [r[0] for r in self._rows("SELECT case_id FROM cases ORDER BY case_id")]

    def put(self, case_id: str, fingerprint: str, stats: VolumeStats, *, scores_path: str | os.PathLike[str] | None = None,
            labels_path: str | os.PathLike[str] | None = None) -> None:
        """Store (or replace) one case, atomically."""
        from .volume import VolumeStats

        if not isinstance(stats, VolumeStats):
            raise TypeError(f"stats must be VolumeStats, got {type(stats).__name__}")
        self._query(
            "INSERT OR REPLACE INTO cases VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                str(case_id), fingerprint, stats.n_voxels, stats.n_fg, stats.to_bytes(),
                None if scores_path is None else os.fspath(scores_path),
                None if labels_path is None else os.fspath(labels_path),
                time.time(),
            ),
        )

    def get(self, case_id: str) -> VolumeStats:
        """The stored ``VolumeStats`` of one case (KeyError if absent)."""
        row = self._one("SELECT stats FROM cases WHERE case_id=?", (case_id,))
        if row is None:
            raise KeyError(case_id)
        return self._decode(case_id, row[0])

    def _decode(self, case_id, blob):
        from .volume import VolumeStats

        try:
            return VolumeStats.from_bytes(blob)
        except InputError as exc:
            raise StoreError(f"{self.path}: case {case_id!r}: {exc}") from None

    def load(self, case_ids: Iterable[str] | None = None) -> dict[str, VolumeStats]:
        """``{case_id: VolumeStats}`` for all (or the given) cases, sorted by id."""
        wanted = None if case_ids is None else set(case_ids)
        out = {}
        for case_id, blob in self._rows("SELECT case_id, stats FROM cases ORDER BY case_id"):
            if wanted is None or case_id in wanted:
                out[case_id] = self._decode(case_id, blob)
        if wanted is not None and len(out) < len(wanted):
            missing = sorted(wanted - set(out))
            raise StoreError(f"{self.path}: {len(missing)} case(s) not stored: {', '.join(missing[:8])}")
        return out

    def lesion_stats(self, case_ids: Iterable[str] | None = None) -> dict[str, VolumeStats]:
        """``{case_id: VolumeStats}`` holding only the lesion side, read fast.

        Every calibration method needs only the sorted lesion scores
        (critical thresholds, FNR curves), and at lesion level each lesion's
        sorted scores, so this reads just those members of each stored
        record. The results have no background: ``n_voxels``
        equals ``n_fg`` and FP, FPR, Dice and PC are not meaningful; use
        ``load`` for those.
        """
        from .volume import VolumeStats, range_from_meta

        wanted = None if case_ids is None else set(case_ids)
        out = {}
        for case_id, rowid, n_fg in self._rows("SELECT case_id, rowid, n_fg FROM cases ORDER BY case_id"):
            if wanted is not None and case_id not in wanted:
                continue
            try:
                lesion, meta, lesions = self._read_lesion(rowid)
                if meta.get("name") != case_id or meta.get("n_fg") != n_fg or isinstance(n_fg, bool):
                    raise ValueError(f"the row (case id {case_id!r}, n_fg {n_fg!r}) disagrees with its statistics "
                                     f"(case id {meta.get('name')!r}, n_fg {meta.get('n_fg')!r})")
                out[case_id] = VolumeStats(n_fg, n_fg, lesion, [], [], case_id, **lesions,
                                           **range_from_meta(meta))  # score_min/max: normalize="minmax"
            except (OSError, KeyError, ValueError, TypeError, AttributeError, zipfile.BadZipFile, sqlite3.Error,
                    RecursionError, RuntimeError, NotImplementedError) as exc:
                reason = str(exc) or type(exc).__name__
                raise StoreError(f"{self.path}: case {case_id!r}: unreadable statistics ({reason})") from None
        if wanted is not None and len(out) < len(wanted):
            missing = sorted(wanted - set(out))
            raise StoreError(f"{self.path}: {len(missing)} case(s) not stored: {', '.join(missing[:8])}")
        return out

    def _read_lesion(self, rowid):
        """``(lesion scores, meta, lesions)`` of a stored record: only those members are read (zipfile checks
        their CRC-32); ``meta`` names the case and its ``n_fg``, which the row must repeat; ``lesions`` holds
        the connectivity and each lesion's scores (``VolumeStats`` keywords), empty for statistics without."""
        if hasattr(self._db, "blobopen"):  # Python 3.11+: read only those members' bytes
            with self._db.blobopen("cases", "stats", rowid, readonly=True) as blob:
                with zipfile.ZipFile(_BlobFile(blob)) as z:
                    return self._members(z)
        blob = self._one("SELECT stats FROM cases WHERE rowid=?", (rowid,))[0]
        with zipfile.ZipFile(io.BytesIO(blob)) as z:
            return self._members(z)

    @staticmethod
    def _members(z):
        from .volume import stats_lesion_meta

        def member(name):
            with z.open(f"{name}.npy") as f:
                return np.lib.format.read_array(f, allow_pickle=False)

        lesion = member("lesion_scores")
        meta = json.loads(member("meta").tobytes().decode())
        connectivity, lesions = stats_lesion_meta(meta)
        if connectivity is not None:
            lesions = {"connectivity": connectivity, "lesion_offsets": member("lesion_offsets"),
                       "lesion_groups": member("lesion_groups")}
        return lesion, meta, lesions


class _BlobFile(io.RawIOBase):
    """A seekable file over a SQLite blob, for ``zipfile``."""

    def __init__(self, blob):
        super().__init__()
        self._blob = blob

    def readable(self):
        return True

    def seekable(self):
        return True

    def seek(self, offset, whence=0):
        self._blob.seek(offset, whence)
        return self._blob.tell()

    def tell(self):
        return self._blob.tell()

    def readinto(self, buffer):
        data = self._blob.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)
