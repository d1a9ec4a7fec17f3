"""Outputs that never exist half-written, and never replace work unasked."""

import os
import tempfile

from ..errors import ClsKernError


class OutputExistsError(ClsKernError):
    """An output file is already there and ``--overwrite`` was not given."""


def refuse_existing(paths, overwrite):
    """Raise ``OutputExistsError`` naming the first existing path, unless ``overwrite``."""
    if overwrite:
        return
    existing = [p for p in paths if os.path.lexists(p)]
    if existing:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise OutputExistsError(f"{existing[0]}: output exists{more}; pass --overwrite to replace it")


def write_text_atomic(path, text):
    """Write ``text`` to ``path`` through a temporary file and ``os.replace``."""
    path = os.fspath(path)
    directory, name = os.path.split(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
