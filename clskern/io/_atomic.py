"""Atomic file output: write a temporary file beside the target, then ``os.replace``."""

import contextlib
import errno
import os
import tempfile

def _process_umask():
    """The process umask, read without changing it where Linux says it (``/proc/self/status``);
    elsewhere set and restored once, at import (before any reader thread exists)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


_MODE = 0o666 & ~_process_umask()  # a new file's permissions (mkstemp alone would give 0600)


def _default_mode():
    return _MODE


@contextlib.contextmanager
def atomic_path(path, suffix=".tmp"):
    """Yield a temporary path; on success it replaces ``path`` in one step.

    On any error (or Ctrl-C) the temporary file is removed and ``path`` is
    left as it was; an ``OSError`` about the temporary file (a full disk, say)
    is raised naming ``path``. ``suffix`` keeps the file type visible to
    writers that choose a format from the name (``.nii.gz``).
    """
    path = os.fspath(path)
    directory, name = os.path.split(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=suffix, dir=directory)
    except OSError as exc:  # no folder, no permission, full disk: name the output
        raise OSError(exc.errno or errno.EIO, exc.strerror or "cannot create a file", path) from None
    os.close(fd)
    try:
        os.chmod(tmp, _default_mode())
        yield tmp
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename in (None, tmp):
            code = exc.errno if exc.errno is not None else errno.EIO
            raise OSError(code, exc.strerror or str(exc) or os.strerror(code), path) from None
        raise


class StagedFolder:
    """Files for one folder, all or none: written into a hidden folder inside it, moved into
    place only when the whole block succeeds.

    ``apply`` writes one mask per case; a case that fails late (a CRC error,
    NaN scores found while cutting) must not leave the masks of the cases
    before it, nor replace older ones under ``--overwrite``. On any error (or
    Ctrl-C) the hidden folder is removed, and ``folder`` too when this created
    it and it is empty::

        with StagedFolder(output) as staged:
            for case_id, mask in ...:
                save_mask(mask, staged.path(case_id + ".nii.gz"), ...)
    """

    def __init__(self, folder):
        self.folder = os.fspath(folder)
        self._stage = None
        self._names = []
        self._created = False

    def __enter__(self):
        self._created = not os.path.isdir(self.folder)
        os.makedirs(self.folder, exist_ok=True)
        try:
            self._stage = tempfile.mkdtemp(prefix=".clskern-staged-", dir=self.folder)
        except OSError as exc:
            if self._created:
                with contextlib.suppress(OSError):
                    os.rmdir(self.folder)
            raise OSError(exc.errno or errno.EIO, exc.strerror or "cannot create a folder", self.folder) from None
        return self

    def _move_all(self):
        """Move every staged file into place, or none: a file it replaces is set aside first and put
        back if a later move fails (a folder in the way, a full disk for the rename's directory entry)."""
        for name in self._names:
            final = os.path.join(self.folder, name)
            if os.path.isdir(final) and not os.path.islink(final):
                raise IsADirectoryError(errno.EISDIR, "a folder is in the way of an output", final)
        moved, set_aside = [], []
        try:
            for i, name in enumerate(self._names):
                final = os.path.join(self.folder, name)
                if os.path.lexists(final):
                    aside = os.path.join(self._stage, f".replaced-{i}")
                    os.replace(final, aside)
                    set_aside.append((aside, final))
                os.replace(os.path.join(self._stage, name), final)
                moved.append(final)
        except BaseException as exc:
            for final in moved:
                with contextlib.suppress(OSError):
                    os.unlink(final)
            for aside, final in reversed(set_aside):  # undo in the reverse order
                with contextlib.suppress(OSError):
                    os.replace(aside, final)
            if isinstance(exc, OSError) and exc.filename is not None and exc.filename.startswith(self._stage):
                raise OSError(exc.errno or errno.EIO, exc.strerror or "cannot move an output into place",
                              os.path.join(self.folder, os.path.basename(exc.filename))) from None
            raise

    def path(self, name):
        """Where to write the file that ends as ``folder/name``."""
        if os.path.basename(name) != name or name in (".", ".."):
            raise ValueError(f"{name!r}: a file name inside {self.folder}, not a path")
        if os.path.normcase(name) in {os.path.normcase(n) for n in self._names}:  # one file, two writers
            raise ValueError(f"{os.path.join(self.folder, name)}: written twice in one run (two cases of one name?)")
        self._names.append(name)
        return os.path.join(self._stage, name)

    def __exit__(self, kind, exc, tb):
        try:
            if kind is None:
                self._move_all()
        finally:
            import shutil

            shutil.rmtree(self._stage, ignore_errors=True)
            if kind is not None and self._created:
                with contextlib.suppress(OSError):
                    os.rmdir(self.folder)
        return False
