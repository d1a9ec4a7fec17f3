"""Outputs that never exist half-written, never replace work unasked, never touch an input.

The one rule every command follows (``guard_outputs``), checked before its
first write or removal:

1. **Inputs are never outputs.** An output that is, or lies inside, anything
   the command reads is refused, with or without ``--overwrite``: the scores
   and labels (folders and files), ``--store`` and every file that store
   records its cases were read from (and an ``.npz``'s ``.pkl``), the SQLite
   files beside an input store (``-wal``, ``-shm``, ``-journal``),
   ``--dataset-json`` (and the ``dataset.json`` beside ``--labels``),
   ``--reference``, ``--calibration``, ``--groups``, statistics files, the
   nnU-Net model folder read. Compared by real path and by device and inode.
2. **Only clskern's own files are replaced.** Whatever stands where an output
   goes must be a file clskern wrote of that kind (``KINDS``): a statistics
   store it recognises (its tables and ``meta`` format), a calibration file
   whose format and sha256 digest check, a report file (``summary.json``
   with clskern's fields, ``report.md`` with its title, plots beside them), a
   mask whose NIfTI ``descrip`` is ``clskern mask``. Anything else is refused
   by name, with or without ``--overwrite``; clskern's own file is replaced
   only with ``--overwrite`` (a store without it is resumed).
"""

import os
from dataclasses import dataclass
from typing import Callable

from ..errors import ClsKernError
from ..io._atomic import atomic_path


class OutputExistsError(ClsKernError):
    """An output file is already there and ``--overwrite`` was not given."""


class OutputIsInputError(ClsKernError):
    """An output that is, or lies inside, one of the command's inputs (refused even with ``--overwrite``)."""


class NotOursError(ClsKernError):
    """Something in the way of an output that clskern did not write (refused even with ``--overwrite``)."""


SQLITE_SIDECARS = ("-wal", "-shm", "-journal")  # SQLite's files beside a store


def _store_problem(path):
    from ..store import store_problem

    return store_problem(path)


def _calibration_problem(path):
    from ..calibration.sets import calibration_file_problem

    return calibration_file_problem(path)


def _report_problem(path):
    from ..evaluation.report import report_file_problem

    return report_file_problem(path)


def _mask_problem(path):
    from ..io.nifti import mask_problem

    return mask_problem(path)


@dataclass(frozen=True)
class Kind:
    """A kind of output: its name in messages, how clskern knows one it wrote (``problem(path)`` is None),
    and the suffixes of files that belong to it (SQLite's beside a store)."""

    name: str
    problem: Callable[[str], "str | None"]
    companions: tuple = ()


STORE = Kind("statistics store", _store_problem, SQLITE_SIDECARS)
CALIBRATION = Kind("calibration file", _calibration_problem)
REPORT = Kind("report file", _report_problem)
MASK = Kind("mask", _mask_problem)
KINDS = (STORE, CALIBRATION, REPORT, MASK)


def refuse_existing(paths, overwrite):
    """Raise ``OutputExistsError`` naming the first existing path, unless ``overwrite``."""
    if overwrite:
        return
    existing = [p for p in paths if os.path.lexists(p)]
    if existing:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise OutputExistsError(f"{existing[0]}: output exists{more}; pass --overwrite to replace it")


def _identity(path):
    """``(st_dev, st_ino)`` of an existing path (following links), else None."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def _chain(path):
    """The real path of ``path`` and of each folder above it, innermost first.

    A path that does not exist yet is resolved through its nearest existing
    folder, so ``-o new/sub/out.json`` is compared where it would be written.
    """
    real = os.path.realpath(os.path.abspath(os.fspath(path)))
    chain = [real]
    while True:
        parent = os.path.dirname(chain[-1])
        if parent == chain[-1]:
            return chain
        chain.append(parent)


def refuse_inputs_as_outputs(outputs, inputs):
    """Raise ``OutputIsInputError`` when an output is, or lies inside, an input.

    ``outputs`` and ``inputs`` are paths of files or folders. Paths are
    compared by their real path (links resolved) and by device and inode (of
    the inputs and of the files directly in input folders), so a symbolic or
    hard link, a bind mount or ``..`` in a name does not hide an input.
    Meant to run before anything is written or removed: ``--overwrite``
    replaces earlier outputs, never inputs.
    """
    by_path, by_inode = {}, {}
    for given in inputs:
        if given is None:
            continue
        by_path.setdefault(os.path.realpath(os.path.abspath(os.fspath(given))), given)
        ident = _identity(given)
        if ident is not None:
            by_inode.setdefault(ident, given)
        if os.path.isdir(given):  # a hard link elsewhere to a file of an input folder
            with os.scandir(given) as entries:
                for entry in entries:
                    ident = _identity(entry.path)
                    if ident is not None and entry.is_file():
                        by_inode.setdefault(ident, entry.path)
    for out in outputs:
        for i, place in enumerate(_chain(out)):
            given = by_path.get(place) or by_inode.get(_identity(place))
            if given is None:
                continue
            if i == 0:
                raise OutputIsInputError(f"{out}: output is an input of this command ({given}); choose another output")
            raise OutputIsInputError(f"{out}: output lies inside input {given}; choose an output outside the inputs")


def refuse_foreign(outputs, kind):
    """Raise ``NotOursError`` for the first output in the way that is not ``kind`` written by clskern
    (or a companion file without its owner beside it); returns the outputs that exist (clskern's own)."""
    existing = []
    for out in outputs:
        if os.path.lexists(out):
            why = kind.problem(out)
            if why is not None:
                raise NotOursError(f"{out}: exists and is not a {kind.name} clskern wrote ({why}); "
                                   "remove it yourself or choose another -o")
            existing.append(out)
            continue
        for suffix in kind.companions:
            if os.path.lexists(out + suffix):
                raise NotOursError(f"{out + suffix}: exists and is not a {kind.name} clskern wrote (no {kind.name} "
                                   f"{out} beside it); remove it yourself or choose another -o")
    return existing


INPUT_OPTIONS = ("scores", "labels", "store", "dataset_json", "reference", "calibration", "groups", "stats")


def store_inputs(store):
    """What an input store brings: SQLite's files beside it and the files its cases were read from
    (a relative record taken from here and from the store's folder; an ``.npz``'s ``.pkl`` too)."""
    from ..io.nnunet_pkl import pkl_beside
    from ..store import recorded_files

    store = os.fspath(store)
    found = [base + suffix for base in {store, os.path.realpath(store)} for suffix in SQLITE_SIDECARS]
    for path in recorded_files(store):
        places = [path] if os.path.isabs(path) else [path, os.path.join(os.path.dirname(os.path.abspath(store)), path)]
        found += places + [pkl_beside(p) for p in places if p.endswith(".npz")]
    return found


def inputs_of(args, dest, extra=()):
    """Every path a command reads, from its options (all of ``INPUT_OPTIONS`` but ``dest``, its output),
    the files they bring (``store_inputs``, the ``dataset.json`` beside labels, the nnU-Net model) and ``extra``."""
    from ..io.cases import dataset_json_beside

    found = list(extra)
    for name in INPUT_OPTIONS:
        value = None if name == dest else getattr(args, name, None)
        for path in value if isinstance(value, (list, tuple)) else [value]:
            if path is None:
                continue
            found.append(path)
            if name == "store":
                found += store_inputs(path)
            if name == "labels" and os.path.isdir(path):
                found.append(dataset_json_beside(path))
    results = getattr(args, "nnunet", None)
    if results is not None:
        found += [results.model, results.dataset_json]
    return [p for p in found if p is not None]


def guard_outputs(args, dest, kind, *, names=None, extra_inputs=(), resume=False):
    """The one rule for a command's outputs (module docstring), checked before anything is written or removed.

    ``args.<dest>`` is the output: a file of ``kind``, or with ``names`` a
    folder whose files ``names`` are. Refuses an output that is an input
    (``OutputIsInputError``), anything in the way that clskern did not write
    (``NotOursError``), and clskern's own file unless ``args.overwrite``
    (``OutputExistsError``), or ``resume`` (a store is resumed). Returns the
    outputs that exist: the files ``--overwrite`` will replace.
    """
    target = getattr(args, dest)
    outputs = [target] if names is None else [os.path.join(target, name) for name in names]
    every = [*([] if names is None else [target]), *outputs, *(o + s for o in outputs for s in kind.companions)]
    refuse_inputs_as_outputs(every, inputs_of(args, dest, extra_inputs))
    existing = refuse_foreign(outputs, kind)
    if not resume:
        refuse_existing(existing, args.overwrite)
    return existing


def write_text_atomic(path, text):
    """Write ``text`` to ``path`` through a temporary file and ``os.replace``."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:  # a full disk is reported naming `path`
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
