"""Per-class statistics in a statistics store: one row per (case, class).

``clskern stats --classes`` (or ``--dataset-json``) keeps each class's
``VolumeStats`` in the same SQLite file a ``StatsStore`` uses, in a table of
its own, so the store's format and its ``cases`` table are unchanged and an
older clskern reading a class store finds no plain cases (and says so)
rather than misreading them::

    CREATE TABLE class_cases (
        case_id TEXT NOT NULL, class TEXT NOT NULL, fingerprint TEXT NOT NULL,
        n_voxels INTEGER NOT NULL, n_fg INTEGER NOT NULL, stats BLOB NOT NULL,
        stored_at REAL NOT NULL, PRIMARY KEY (case_id, class));
    meta 'classes' = {"classes": {name: [channel, [values...]]}, "regions_class_order": [...] or null}

A case's classes are written in one transaction (all or none), under one
fingerprint: the case's files and reading options (as for plain cases) and
the class definitions. One store holds one set of class definitions: a run
asking others is refused, naming the store.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .store import StatsStore, StoreError

if TYPE_CHECKING:  # annotations only
    from .classes import Classes
    from .volume import VolumeStats

_SCHEMA = """
CREATE TABLE IF NOT EXISTS class_cases (
    case_id TEXT NOT NULL,
    class TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    n_voxels INTEGER NOT NULL,
    n_fg INTEGER NOT NULL,
    stats BLOB NOT NULL,
    stored_at REAL NOT NULL,
    PRIMARY KEY (case_id, class)
);
"""


def spec_json(classes: Mapping[str, tuple[int, Sequence[float]]], regions_class_order: object = None) -> str:
    """The canonical JSON of class definitions (what the store records and fingerprints include)."""
    return json.dumps({"classes": {name: [channel, list(values)] for name, (channel, values) in classes.items()},
                       "regions_class_order": regions_class_order}, sort_keys=False, separators=(",", ":"))


class ClassStatsStore:
    """``{case: {class: VolumeStats}}`` in a statistics store file (see the module docstring)."""

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True) -> None:
        self._store = StatsStore(path, create=create)
        self.path = self._store.path
        if create:
            try:
                self._store._db.executescript(_SCHEMA)  # type: ignore[union-attr]  # just opened: not None
            except sqlite3.Error as exc:
                self._store.close()
                raise StoreError(f"{self.path}: {exc}") from None
        elif not self._has_table():
            self._store.close()
            raise StoreError(f"{self.path}: the store holds no per-class statistics "
                             "(run clskern stats --classes or --dataset-json)")

    @staticmethod
    def recorded_classes(path):
        """``(classes, regions_class_order)`` a per-class store at ``path`` records, or None for a store
        of one class (``clskern calibrate --store`` then needs no --classes/--dataset-json)."""
        with StatsStore(path, create=False) as store:
            if store._query("SELECT 1 FROM sqlite_master WHERE type='table' AND name='class_cases'").fetchone() is None:
                return None
            one_class = len(store)
        with ClassStatsStore(path, create=False) as store:
            if store.spec() is None or not len(store):
                return None
            if one_class:  # calibrate_folder(store=) run with and without label=: which one is meant?
                raise StoreError(f"{path}: the store holds {one_class} case(s) of one class and {len(store)} case(s) "
                                 "per class; name the classes (--dataset-json or --classes) to calibrate those, or "
                                 "keep each kind in its own store")
            return store.classes()

    def _has_table(self) -> bool:
        row = self._store._query("SELECT 1 FROM sqlite_master WHERE type='table' AND name='class_cases'").fetchone()
        return row is not None

    def close(self) -> None:
        self._store.close()

    def __enter__(self) -> ClassStatsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def spec(self) -> Any:
        """The recorded class definitions (parsed JSON), or None."""
        row = self._store._query("SELECT value FROM meta WHERE key='classes'").fetchone()
        if row is None:
            return None
        try:
            return json.loads(row[0])
        except (ValueError, RecursionError):
            raise StoreError(f"{self.path}: unreadable class definitions in the store") from None

    def classes(self) -> tuple[Classes, Any]:
        """``({name: (channel, values)}, regions_class_order)`` recorded in the store."""
        spec = self.spec()
        if spec is None:
            raise StoreError(f"{self.path}: the store records no class definitions")
        try:
            classes = {name: (int(c), tuple(v)) for name, (c, v) in spec["classes"].items()}
            return classes, spec["regions_class_order"]
        except (KeyError, TypeError, ValueError):
            raise StoreError(f"{self.path}: unreadable class definitions in the store") from None

    def check_classes(self, classes: Mapping[str, tuple[int, Sequence[float]]],
                      regions_class_order: object = None) -> None:
        """Record the class definitions, or refuse a run that asks others."""
        wanted = spec_json(classes, regions_class_order)
        row = self._store._query("SELECT value FROM meta WHERE key='classes'").fetchone()
        if row is None:
            self._store._query("INSERT OR REPLACE INTO meta VALUES ('classes', ?)", (wanted,))
        elif row[0] != wanted:
            raise StoreError(f"{self.path}: the store holds classes {row[0][:120]}, this run asks {wanted[:120]}; "
                             "use another store (or --overwrite to start this one afresh)")

    def fingerprints(self) -> dict[str, str]:
        """``{case: fingerprint}`` of the cases stored with every class."""
        n_classes = len(self.spec()["classes"]) if self.spec() else 0
        rows = self._store._query(
            "SELECT case_id, MIN(fingerprint), MAX(fingerprint), COUNT(*) FROM class_cases GROUP BY case_id")
        return {case: low for case, low, high, count in rows if low == high and count == n_classes}

    def put(self, case_id: str, fingerprint: str, stats_by_class: Mapping[str, VolumeStats]) -> None:
        """Store one case's classes, all in one transaction."""
        db: Any = self._store._db  # None once closed: the AttributeError it always gave
        try:
            db.execute("BEGIN")
            db.execute("DELETE FROM class_cases WHERE case_id=?", (case_id,))
            for name, stats in stats_by_class.items():
                db.execute("INSERT INTO class_cases VALUES (?, ?, ?, ?, ?, ?, ?)",
                           (case_id, name, fingerprint, stats.n_voxels, stats.n_fg, stats.to_bytes(), time.time()))
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise StoreError(f"{self.path}: case {case_id!r}: {exc}") from None

    def load(self) -> dict[str, dict[str, VolumeStats]]:
        """``{case: {class: VolumeStats}}``, cases sorted, classes in the recorded order."""
        from .volume import VolumeStats

        classes, _ = self.classes()
        out: dict[str, dict[str, VolumeStats]] = {}
        for case_id, name, blob in self._store._query(
                "SELECT case_id, class, stats FROM class_cases ORDER BY case_id"):
            try:
                stats = VolumeStats.from_bytes(blob)
            except ValueError as exc:
                raise StoreError(f"{self.path}: case {case_id!r} class {name!r}: {exc}") from None
            out.setdefault(case_id, {})[name] = stats
        for case_id, by_class in out.items():
            missing = [n for n in classes if n not in by_class]
            if missing:
                raise StoreError(f"{self.path}: case {case_id!r} lacks class {missing[0]!r}")
            out[case_id] = {n: by_class[n] for n in classes}
        return out

    def __len__(self) -> int:
        return self._store._query("SELECT COUNT(DISTINCT case_id) FROM class_cases").fetchone()[0]
