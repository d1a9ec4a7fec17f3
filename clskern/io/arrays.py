"""NumPy score files: nnU-Net v2 ``CASE.npz`` and plain ``.npy``.

nnU-Net v2 (``--save_probabilities``) writes ``CASE.npz`` with key
``probabilities`` of shape ``(C, z, y, x)``: its axes are reversed against
nibabel's ``(x, y, z)``. ``read_npz`` picks one class and returns its
transpose, a view (Fortran order in ``(x, y, z)``), so it lines up with the
label NIfTI without a copy. The member is decompressed in one call by the
fastest installed inflater (``np.load`` goes through ``zipfile`` at stdlib
zlib speed, about half as fast). ``.npy`` files are memory-mapped and used as they
are (same axes as the labels), or ``(C, ...)`` with a channel to pick.
"""

import io
import mmap
import os
import zipfile

import numpy as np

from ._gzip import inflate_raw
from .errors import FileFormatError, MismatchError

NPZ_KEY = "probabilities"


def _channel(array, channel, path, axis_name):
    n = array.shape[0]
    if not 0 <= channel < n:
        raise MismatchError(f"{path}: channel {channel} does not exist ({axis_name} has {n} channels)")
    return array[channel]


def read_npz(path, channel=1, key=NPZ_KEY):
    """One class of an nnU-Net probability file, aligned to nibabel's axes.

    Parameters
    ----------
    path : str or os.PathLike
        ``CASE.npz`` holding ``key`` of shape ``(C, z, y, x)``.
    channel : int
        The class (0 is nnU-Net's background).
    key : str
        The array's name in the archive.

    Returns
    -------
    ndarray
        ``probabilities[channel].T``: shape ``(x, y, z)``, a view.
    """
    path = os.fspath(path)
    try:
        array = _npz_member(path, key)
    except (FileFormatError, FileNotFoundError):
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise FileFormatError(f"{path}: unreadable .npz file ({exc})") from None
    if array.ndim < 2:
        raise FileFormatError(f"{path}: {key!r} has shape {array.shape}, expected (C, z, y, x)")
    return _channel(array, channel, path, f"{key!r} of shape {array.shape}").T


def _npz_member(path, key):
    """The array ``key`` of an ``.npz``: stored members are mapped, deflated ones inflated at once."""
    with open(path, "rb") as f:
        with zipfile.ZipFile(f) as z:
            names = z.namelist()
            if key + ".npy" not in names:
                held = ", ".join(n[:-4] if n.endswith(".npy") else n for n in names) or "nothing"
                raise FileFormatError(f"{path}: no array {key!r} (it holds {held})")
            info = z.getinfo(key + ".npy")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED) or info.flag_bits & 0x1:
            f.seek(0)
            with np.load(f, allow_pickle=False) as z:
                return z[key]
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            h = info.header_offset
            if m[h : h + 4] != b"PK\x03\x04":
                raise FileFormatError(f"{path}: corrupt .npz (bad local header of {key!r})")
            start = h + 30 + int.from_bytes(m[h + 26 : h + 28], "little") + int.from_bytes(m[h + 28 : h + 30], "little")
            if start + info.compress_size > len(m):
                raise FileFormatError(f"{path}: truncated .npz ({key!r} runs past the end of the file)")
            if info.compress_type == zipfile.ZIP_STORED:
                data = bytearray(m[start : start + info.file_size])
            else:
                view = memoryview(m)
                chunk = view[start : start + info.compress_size]
                try:
                    data = inflate_raw(chunk, info.file_size, path)
                finally:  # a traceback holding `chunk` must not keep the map open
                    chunk.release()
                    view.release()
    return _npy_from_bytes(data, path, key)


def _npy_from_bytes(data, path, key):
    """An ndarray viewing ``.npy`` bytes held in memory."""
    head = io.BytesIO(bytes(data[: 1 << 16]))
    try:
        version = np.lib.format.read_magic(head)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(head)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(head)
    except ValueError as exc:
        raise FileFormatError(f"{path}: {key!r} is not a .npy array ({exc})") from None
    if dtype.hasobject:
        raise FileFormatError(f"{path}: {key!r} holds Python objects; clskern reads numeric arrays only")
    offset = head.tell()
    needed = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) < needed:
        raise FileFormatError(f"{path}: truncated {key!r} ({len(data)} bytes, needs {needed})")
    return np.ndarray(shape, dtype=dtype, buffer=data, offset=offset, order="F" if fortran else "C")


def read_npy(path, channel=None, ndim=None):
    """A ``.npy`` score volume, memory-mapped.

    With ``ndim`` (the labels' number of axes) and an array of one more
    axis, the first axis is taken as channels and ``channel`` picks one.
    """
    path = os.fspath(path)
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise
    except (OSError, ValueError, EOFError) as exc:
        raise FileFormatError(f"{path}: unreadable .npy file ({exc})") from None
    if ndim is not None and array.ndim == ndim + 1:
        array = _channel(array, 1 if channel is None else channel, path, f"array of shape {array.shape}")
    elif channel not in (None, 0):
        raise MismatchError(f"{path}: channel {channel} does not exist (the file has 1 channel)")
    return array

