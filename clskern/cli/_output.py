"""Outputs that never exist half-written, never replace work unasked, never touch an input."""

import os

from ..errors import ClsKernError
from ..io._atomic import atomic_path


class OutputExistsError(ClsKernError):
    """An output file is already there and ``--overwrite`` was not given."""


class OutputIsInputError(ClsKernError):
    """An output that is, or lies inside, one of the command's inputs (refused even with ``--overwrite``)."""


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


def write_text_atomic(path, text):
    """Write ``text`` to ``path`` through a temporary file and ``os.replace``."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:  # a full disk is reported naming `path`
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
