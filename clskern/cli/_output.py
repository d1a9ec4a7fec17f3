"""Outputs that never exist half-written, and never replace work unasked."""

import os

from ..errors import ClsKernError
from ..io._atomic import atomic_path


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
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
