"""Atomic file output: write a temporary file beside the target, then ``os.replace``."""

import contextlib
import os
import tempfile

_MODE = None


def _default_mode():
    """Permissions of a new file under the process umask (mkstemp would give 0600)."""
    global _MODE
    if _MODE is None:
        umask = os.umask(0o022)
        os.umask(umask)
        _MODE = 0o666 & ~umask
    return _MODE


@contextlib.contextmanager
def atomic_path(path, suffix=".tmp"):
    """Yield a temporary path; on success it replaces ``path`` in one step.

    On any error (or Ctrl-C) the temporary file is removed and ``path`` is
    left as it was. ``suffix`` keeps the file type visible to writers that
    choose a format from the name (``.nii.gz``).
    """
    path = os.fspath(path)
    directory, name = os.path.split(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=suffix, dir=directory)
    os.close(fd)
    try:
        os.chmod(tmp, _default_mode())
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
