"""NumPy score files: nnU-Net v2 ``CASE.npz`` and plain ``.npy``.

nnU-Net v2 (``--save_probabilities``) writes ``CASE.npz`` with key
``probabilities`` of shape ``(C, z, y, x)``: its axes are reversed against
nibabel's ``(x, y, z)``. ``read_npz`` picks one class and returns its
transpose, a view (Fortran order in ``(x, y, z)``), so it lines up with the
label NIfTI without a copy. The member is decompressed in one call by the
fastest installed inflater (``np.load`` goes through ``zipfile`` at stdlib
zlib speed, about half as fast). Since the member is read by hand, so are
``np.load``'s checks: the local header must agree with the zip directory, the
``.npy`` header's declared shape is checked before anything is inflated or
allocated (``read_npz``'s Notes), and the member's CRC-32 after.
``.npy`` files are memory-mapped and used as they are (same axes as the
labels), or ``(C, ...)`` with a channel to pick.
"""

from __future__ import annotations

import io
import mmap
import os
import struct
import tokenize
import zipfile
from collections.abc import Iterable
from typing import Any

import numpy as np

from . import _gzip
from ._declared import declared_bytes
from ._gzip import check_memory, inflate_head, inflate_raw
from ._warnings import warnings_as_errors
from .errors import FileFormatError, MismatchError

NPZ_KEY = "probabilities"


def _channel(array, channel, path, axis_name):
    n = array.shape[0]
    if not 0 <= channel < n:
        raise MismatchError(f"{path}: channel {channel} does not exist ({axis_name} has {n} channels)")
    return array[channel]


def _reason(exc):
    """An exception's message, or its type's name when the message is empty."""
    return str(exc) or type(exc).__name__


def read_npz(path: str | os.PathLike[str], channel: int = 1, key: str = NPZ_KEY, *,
             spatial_shape: tuple[int, ...] | None = None, any_axis_order: bool = False) -> np.ndarray[Any, Any]:
    """One class of an nnU-Net probability file, aligned to nibabel's axes.

    Parameters
    ----------
    path : str or os.PathLike
        ``CASE.npz`` holding ``key`` of shape ``(C, z, y, x)``.
    channel : int
        The class (0 is nnU-Net's background).
    key : str
        The array's name in the archive.
    spatial_shape : tuple of int, optional
        The labels' shape, nibabel axes ``(x, y, z)``. The member's declared
        shape reversed without its channel axis (``shape[1:][::-1]``) must
        equal it; otherwise ``MismatchError`` names the file and both shapes,
        raised after reading the ``.npy`` header only: no voxel is inflated
        or mapped.
    any_axis_order : bool
        Compare ``spatial_shape`` up to the order of the axes: nnU-Net's
        reorienting reader saves them permuted, and its ``.pkl`` (read
        later) says how.

    Returns
    -------
    ndarray
        ``probabilities[channel].T``: shape ``(x, y, z)``, a view.

    Raises
    ------
    FileFormatError
        For a file that is not a readable ``.npz``, a member failing its
        CRC-32 check or whose local header disagrees with the zip directory,
        or a declared size that is invalid or larger than the memory available.
    MismatchError
        For a channel the file lacks, or a shape other than ``spatial_shape``.

    Notes
    -----
    Before anything is inflated or allocated, the member's ``.npy`` header is
    read (for a deflated member, only its first bytes are inflated) and its
    declared shape checked: at least 2 axes, none negative, at least one
    voxel, a byte size within int64 and within the member, ``channel`` in
    range, ``spatial_shape``, and the member's size against the memory
    available. After inflation the member's CRC-32 is checked against the
    zip directory's.
    """
    return read_npz_channels(path, [channel], key, spatial_shape=spatial_shape, any_axis_order=any_axis_order)[0]


def read_npz_channels(path: str | os.PathLike[str], channels: Iterable[int], key: str = NPZ_KEY, *,
                      spatial_shape: tuple[int, ...] | None = None,
                      any_axis_order: bool = False) -> list[np.ndarray[Any, Any]]:
    """Several classes of an nnU-Net probability file from one read (one inflation, one CRC check):
    ``[probabilities[c].T for c in channels]``, views, with ``read_npz``'s checks."""
    path = os.fspath(path)
    channels = list(channels)
    try:
        array = _npz_member(path, key, max(channels), spatial_shape, any_axis_order)
    except (FileFormatError, MismatchError, FileNotFoundError):
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError, MemoryError, RuntimeError,
            NotImplementedError) as exc:
        raise FileFormatError(f"{path}: unreadable .npz file ({_reason(exc)})") from None
    return [_channel(array, c, path, f"{key!r} of shape {array.shape}").T for c in channels]


_LOCAL = struct.Struct("<4s5H3L2H")  # a zip local file header's fixed 30 bytes
_ZIP64_EXTRA = 0x0001


def _local_header(f, info, path, key):
    """Where ``info``'s data starts, after checking its local header against the zip directory.

    The signature, compression method and name must agree; so must the CRC-32
    and sizes where the local header holds them (zip64 sizes read from its
    extra field; a member written with a data descriptor holds zeros there).
    """
    f.seek(info.header_offset)
    fixed = f.read(_LOCAL.size)
    if len(fixed) < _LOCAL.size or fixed[:4] != b"PK\x03\x04":
        raise FileFormatError(f"{path}: corrupt .npz (bad local header of {key!r})")
    _, _, flags, method, _, _, crc, csize, usize, name_len, extra_len = _LOCAL.unpack(fixed)
    name = f.read(name_len)
    extra = f.read(extra_len)

    def disagree(what):
        return FileFormatError(f"{path}: corrupt .npz (the local header of {key!r} disagrees with the zip directory: {what})")

    if method != info.compress_type:
        raise disagree("compression method")
    try:
        name = name.decode("utf-8" if flags & 0x800 else "cp437")
    except UnicodeDecodeError:
        raise disagree("name") from None
    if name != info.orig_filename:
        raise disagree("name")
    if not flags & 0x08:  # no data descriptor: the local header holds the CRC and sizes
        if 0xFFFFFFFF in (csize, usize):
            csize, usize = _zip64_sizes(extra, csize, usize)
        if crc != info.CRC:
            raise disagree("CRC-32")
        if (csize, usize) != (info.compress_size, info.file_size):
            raise disagree("sizes")
    return info.header_offset + _LOCAL.size + name_len + extra_len


def _zip64_sizes(extra, csize, usize):
    """The sizes a local header keeps in its zip64 extra field (``None`` where missing)."""
    at = 0
    while at + 4 <= len(extra):
        tag, size = struct.unpack_from("<2H", extra, at)
        body = extra[at + 4 : at + 4 + size]
        if tag == _ZIP64_EXTRA:
            values = [v for (v,) in struct.iter_unpack("<Q", body[: len(body) // 8 * 8])]
            if usize == 0xFFFFFFFF:
                usize = values.pop(0) if values else None
            if csize == 0xFFFFFFFF:
                csize = values.pop(0) if values else None
            return csize, usize
        at += 4 + size
    return None, None


def _npy_header(read_head, path, key):
    """``(shape, fortran, dtype, offset)`` of a ``.npy`` whose first ``n`` bytes ``read_head(n)`` returns."""
    try:
        with warnings_as_errors():
            return _parse_npy_header(read_head, path, key)
    except Warning as exc:
        raise FileFormatError(f"{path}: {key!r} is not a .npy array NumPy writes ({_reason(exc)})") from None


def _parse_npy_header(read_head, path, key):
    try:
        start = read_head(12)
        version = np.lib.format.read_magic(io.BytesIO(start))
        length = 10 + int.from_bytes(start[8:10], "little") if version == (1, 0) else 12 + int.from_bytes(start[8:12], "little")
        head = io.BytesIO(read_head(length))
        np.lib.format.read_magic(head)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(head)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(head)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError, tokenize.TokenError) as exc:
        raise FileFormatError(f"{path}: {key!r} is not a .npy array ({_reason(exc)})") from None
    return tuple(shape), fortran, dtype, head.tell()


def _check_npy(header, size, path, key, channel, spatial_shape, any_axis_order=False):
    """Check a member's declared ``.npy`` header before its voxels are inflated or allocated."""
    shape, _, dtype, offset = header
    if dtype.hasobject:
        raise FileFormatError(f"{path}: {key!r} holds Python objects; clskern reads numeric arrays only")
    if len(shape) < 2:
        raise FileFormatError(f"{path}: {key!r} has shape {shape}, expected (C, z, y, x)")
    needed = declared_bytes(shape, dtype.itemsize, path, repr(key), offset)
    if size < needed:
        raise FileFormatError(f"{path}: truncated {key!r} ({size} bytes, needs {needed})")
    if spatial_shape is not None:
        spatial_shape = tuple(int(n) for n in spatial_shape)
        declared = shape[1:][::-1]
        if (sorted(declared) != sorted(spatial_shape)) if any_axis_order else (declared != spatial_shape):
            raise MismatchError(
                f"{path}: {key!r} of shape {shape} (C, z, y, x) declares spatial shape {shape[1:][::-1]} "
                f"(x, y, z), but the labels' shape is {spatial_shape}"
            )
    if channel is not None and not 0 <= channel < shape[0]:
        raise MismatchError(
            f"{path}: channel {channel} does not exist ({key!r} of shape {shape} has {shape[0]} channels)"
        )


def _npz_member(path, key, channel=None, spatial_shape=None, any_axis_order=False):
    """The array ``key`` of an ``.npz``: its header checked first, then stored members copied
    from a map and deflated ones inflated at once, and their CRC-32 checked."""
    with open(path, "rb") as f:
        with zipfile.ZipFile(f) as z:
            names = z.namelist()
            if key + ".npy" not in names:
                held = ", ".join(n[:-4] if n.endswith(".npy") else n for n in names) or "nothing"
                raise FileFormatError(f"{path}: no array {key!r} (it holds {held})")
            info = z.getinfo(key + ".npy")
            if info.flag_bits & 0x1:
                raise FileFormatError(f"{path}: {key!r} is encrypted (or its zip flags are corrupt); "
                                      "NumPy's savez writes plain members")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                # Other methods: zipfile reads the member (it checks the CRC-32 at its end).

                def read_head(n):  # the member's first n bytes
                    with z.open(info) as member:
                        return member.read(n)

                header = _npy_header(read_head, path, key)
                _check_npy(header, info.file_size, path, key, channel, spatial_shape, any_axis_order)
                check_memory(info.file_size, path, f"{key!r}")
                with z.open(info) as member:
                    return _npy_from_bytes(bytearray(member.read()), path, key, header)
        size = os.fstat(f.fileno()).st_size
        start = _local_header(f, info, path, key)
        if start + info.compress_size > size:
            raise FileFormatError(f"{path}: truncated .npz ({key!r} runs past the end of the file)")
        stored = info.compress_type == zipfile.ZIP_STORED
        if stored and info.compress_size != info.file_size:
            raise FileFormatError(f"{path}: corrupt .npz (stored {key!r} has two sizes in the zip directory)")

        def read_head(n):  # the member's first n bytes, decompressed
            f.seek(start)
            if stored:
                return f.read(min(n, info.file_size))
            left = [info.compress_size]

            def read(k):
                k = min(k, left[0])
                left[0] -= k
                return f.read(k)

            return inflate_head(read, n, path)

        header = _npy_header(read_head, path, key)
        _check_npy(header, info.file_size, path, key, channel, spatial_shape, any_axis_order)
        check_memory(info.file_size, path, f"{key!r}")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            view = memoryview(m)
            chunk = view[start : start + info.compress_size]
            try:
                data = bytearray(chunk) if stored else inflate_raw(chunk, info.file_size, path)
            finally:  # a traceback holding `chunk` must not keep the map open
                chunk.release()
                view.release()
    _gzip.check_crc32(data, info.CRC, path, repr(key))
    return _npy_from_bytes(data, path, key, header)


def _npy_from_bytes(data, path, key, header):
    """An ndarray viewing ``.npy`` bytes held in memory, of the already checked ``header``."""
    shape, fortran, dtype, offset = header
    needed = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) < needed:
        raise FileFormatError(f"{path}: truncated {key!r} ({len(data)} bytes, needs {needed})")
    return np.ndarray(shape, dtype=dtype, buffer=data, offset=offset, order="F" if fortran else "C")


def read_npy(path: str | os.PathLike[str], channel: int | None = None, ndim: int | None = None) -> np.ndarray[Any, Any]:
    """A ``.npy`` score volume, memory-mapped.

    With ``ndim`` (the labels' number of axes) and an array of one more
    axis, the first axis is taken as channels and ``channel`` picks one.
    A ``.npy`` has no checksum: its header is checked (numeric dtype, at least
    one voxel) and must account for the file's size exactly, so a damaged
    header is refused; damaged voxels cannot be told from data.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            shape, fortran, dtype, offset = _npy_header(lambda n: (f.seek(0), f.read(n))[1], path, "array")
    except OSError as exc:
        if isinstance(exc, FileNotFoundError) or exc.filename is not None:
            raise
        raise FileFormatError(f"{path}: unreadable .npy file ({_reason(exc)})") from None
    if dtype.hasobject:
        raise FileFormatError(f"{path}: the array holds Python objects; clskern reads numeric arrays only")
    needed = declared_bytes(shape, dtype.itemsize, path, "the array", offset)
    if needed != size:
        raise FileFormatError(f"{path}: corrupt .npy file ({size} bytes, but its header declares "
                              f"{needed}: shape {shape} of {dtype})")
    try:
        array = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C")
    except (OSError, ValueError, MemoryError) as exc:
        raise FileFormatError(f"{path}: unreadable .npy file ({_reason(exc)})") from None
    if ndim is not None and array.ndim == ndim + 1:
        array = _channel(array, 1 if channel is None else channel, path, f"array of shape {array.shape}")
    elif channel not in (None, 0):
        raise MismatchError(f"{path}: channel {channel} does not exist (the file has 1 channel)")
    return array


def npz_header(path, key=NPZ_KEY):
    """``(shape, dtype)`` an ``.npz`` member's ``.npy`` header declares, inflating only the header.

    The declared sizes are checked as ``read_npz`` checks them (``_check_npy``);
    the voxels are neither inflated nor allocated. For checking every input
    before the first output is written.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            with zipfile.ZipFile(f) as z:
                if key + ".npy" not in z.namelist():
                    held = ", ".join(n[:-4] if n.endswith(".npy") else n for n in z.namelist()) or "nothing"
                    raise FileFormatError(f"{path}: no array {key!r} (it holds {held})")
                info = z.getinfo(key + ".npy")

                def read_head(n):  # zipfile streams: only the first bytes are inflated
                    with z.open(info) as member:
                        return member.read(n)

                header = _npy_header(read_head, path, key)
    except (FileFormatError, FileNotFoundError):
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError, MemoryError, RuntimeError) as exc:
        raise FileFormatError(f"{path}: unreadable .npz file ({_reason(exc)})") from None
    _check_npy(header, info.file_size, path, key, None, None)
    return header[0], header[2]


def npy_header(path):
    """``(shape, dtype)`` a ``.npy`` file's header declares (the voxels are not read)."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            shape, _, dtype, _ = _npy_header(lambda n: (f.seek(0), f.read(n))[1], path, "array")
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise FileFormatError(f"{path}: unreadable .npy file ({_reason(exc)})") from None
    return tuple(shape), dtype
