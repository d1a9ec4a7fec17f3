"""Whole-file gzip decompression, as fast as the installed libraries allow.

``.nii.gz`` decompression is the floor of a run over files, so the backend
matters (measured on a 33 MB float32 score volume, 2-core machine: stdlib
zlib 196 MB/s, python-isal 320 MB/s, libdeflate via ``deflate`` 386 MB/s;
both of the latter release the GIL, so reader threads overlap).
``BACKENDS`` lists them fastest first; ``gunzip`` uses the first installed.

Every backend checks each member's CRC-32 and ISIZE against its trailer
(libdeflate and zlib inside the library, see ``_deflate``), and a file must
end where its last member ends: a second member is legal (multi-member
files), any other bytes after the gzip stream are refused, as nibabel does.

libdeflate reads the first member only, so its result is accepted only when
that member provably spans the whole file; otherwise (several members, or
broken) the file is read again by zlib, which handles multi-member files and
tells truncation, corruption and trailing data apart for the error message.

Inflation is bounded (a gzip bomb inflates no further than its bound plus one
byte): ``gunzip(..., max_size=N)`` hands a file to libdeflate (which
allocates ISIZE and fails beyond it) only when its last member's ISIZE is
within ``N``, and inflates with zlib or isal in ``max_length``-bounded calls,
refusing as soon as more than ``N`` bytes come out. An ISIZE above ``N`` is
not refused unread: the last 4 bytes of a truncated file, or of one with
bytes after its stream, are no ISIZE, and the bounded inflation names what
is wrong (truncation, trailing data, or more data than declared). Without ``max_size`` the bound is the
memory available. ``inflate_raw`` is bounded the same way by the member's
declared size.

The readers' other shared integrity checks live here too: ``crc32`` (the one
CRC-32 routine, libdeflate's where installed: ~20 GB/s against stdlib zlib's
~4.5 GB/s) and ``check_memory`` (a declared size against the memory
available, before anything is allocated).
"""

from __future__ import annotations

import zlib
from typing import Any

from ._memory import available_memory
from .errors import FileFormatError

BACKENDS = ("deflate", "isal", "zlib")

try:
    from deflate import crc32 as _crc32
except ImportError:  # pragma: no cover - deflate is a dependency
    _crc32 = zlib.crc32


def crc32(data):
    """CRC-32 (zip's and gzip's) of a bytes-like object, by the fastest installed routine."""
    return _crc32(data)


def check_crc32(data, expected, path, what):
    """Raise ``FileFormatError`` unless ``crc32(data) == expected``.

    The readers' only CRC-32 comparison of a zip member (``benchmarks/bench_integrity.py``
    replaces it to measure what the check costs).
    """
    if crc32(data) != expected:
        raise FileFormatError(f"{path}: corrupt .npz ({what} fails its CRC-32 check)")


def _size(n):
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n} bytes" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"  # pragma: no cover


def check_memory(nbytes, path, what="data"):
    """Refuse a declared allocation of ``nbytes`` larger than the memory available.

    Called before anything of that size is inflated or allocated; skipped
    where the available memory is unknown (no ``/proc/meminfo``).
    """
    available = available_memory()
    if available is not None and nbytes > available:
        raise FileFormatError(
            f"{path}: declares {nbytes} bytes of {what} ({_size(nbytes)}), more than the "
            f"{available} bytes of memory available ({_size(available)})"
        )


class _TooLarge(Exception):
    """Raised by a backend when the data decompresses to more than its bound."""


def _bounded(d, data, limit):
    """``d.decompress(data)`` (a zlib or isal decompressor) producing at most ``limit`` bytes.

    ``None`` for no bound. Raises ``_TooLarge`` as soon as a byte more comes out.
    """
    if limit is None:
        return d.decompress(data)
    out = d.decompress(data, limit + 1)  # max_length: never more than limit + 1 bytes (0 would mean no limit)
    if len(out) > limit:
        raise _TooLarge
    return out


def _deflate():
    import deflate

    def run(data, limit=None):
        if len(data) < 18:
            return None
        if limit is not None and int.from_bytes(bytes(data[-4:]), "little") > limit:
            return None  # libdeflate allocates ISIZE: only within the bound (zlib decides, bounded)
        try:
            # libdeflate checks the first member's CRC-32 and ISIZE against its trailer.
            out = deflate.gzip_decompress(data)
        except (deflate.DeflateError, ValueError, MemoryError):
            return None  # MemoryError: an ISIZE edited to 4 GiB; zlib grows as it goes
        if not out:
            return None
        # The first member's trailer equals `mine` (libdeflate checked it). If the
        # first place `mine` occurs is the file's last 8 bytes, that trailer is
        # there, so the member spans the file: nothing (no second member, no
        # trailing bytes) follows. Otherwise zlib reads it all and decides.
        mine = crc32(out).to_bytes(4, "little") + (len(out) & 0xFFFFFFFF).to_bytes(4, "little")
        find = data.find if hasattr(data, "find") else bytes(data).find
        return out if find(mine, 10) == len(data) - 8 else None

    return run


def _isal():
    from isal import isal_zlib

    def run(data, limit=None):
        try:
            d = isal_zlib.decompressobj(31)  # checks CRC-32 and ISIZE, like zlib's
            out = _bounded(d, data, limit)
        except isal_zlib.error:
            return None
        return out if d.eof and not d.unused_data else None

    return run


def _zlib():
    def run(data, limit=None):
        try:
            d = zlib.decompressobj(31)  # zlib checks each member's CRC-32 and ISIZE
            out = _bounded(d, data, limit)
        except zlib.error:
            return None
        return out if d.eof and not d.unused_data else None

    return run


_FACTORIES = {"deflate": _deflate, "isal": _isal, "zlib": _zlib}
_LOADED: dict[str, Any] = {}


def available_backends() -> list[str]:
    """The installed backends, fastest first."""
    names = []
    for name in BACKENDS:
        try:
            _backend(name)
        except ImportError:
            continue
        names.append(name)
    return names


def _backend(name):
    if name not in _LOADED:
        if name not in _FACTORIES:
            raise ValueError(f"gzip backend must be one of {', '.join(BACKENDS)}, got {name!r}")
        _LOADED[name] = _FACTORIES[name]()
    return _LOADED[name]


def default_backend() -> str:
    """The fastest installed backend's name."""
    return available_backends()[0]


def _diagnose(data, path, limit=None):
    """Decompress with zlib member by member, at most ``limit`` bytes in all; raise a readable error if it fails."""
    parts = []
    total = 0
    rest = data
    while rest:
        d = zlib.decompressobj(31)
        try:
            parts.append(_bounded(d, rest, None if limit is None else limit - total))
        except zlib.error as exc:
            raise FileFormatError(f"{path}: corrupt gzip data ({exc})") from None
        total += len(parts[-1])
        if not d.eof:  # below the bound (_bounded raised otherwise): the input ran out
            raise FileFormatError(f"{path}: truncated gzip file (the compressed stream ends early)")
        rest = d.unused_data
        if rest and bytes(rest[:2]) != b"\x1f\x8b":
            raise FileFormatError(
                f"{path}: corrupt gzip file ({len(rest)} bytes of trailing data after the gzip stream)"
            )
    return b"".join(parts)


def gunzip(data: bytes | bytearray | memoryview, path: str = "<bytes>", backend: str | None = None,
           max_size: int | None = None, *, declared_by: str = "its header declares") -> bytes:
    """Decompress a whole gzip file held in memory, inflating no more than a bound.

    Parameters
    ----------
    data : bytes-like
        The file's bytes (``bytes``, ``mmap``, ``memoryview``).
    path : str
        Named in error messages.
    backend : {"deflate", "isal", "zlib"}, optional
        Default: the fastest installed.
    max_size : int, optional
        The size the file's header declares the decompressed data to have
        (a ``.nii.gz``: the voxels' offset plus their bytes). More is refused
        as soon as a byte more comes out (libdeflate, which allocates ISIZE,
        is used only when ISIZE is within it). Default: the memory available
        (no bound where that is unknown).
    declared_by : str
        Who declares ``max_size``, for the error message.

    Returns
    -------
    bytes

    Raises
    ------
    FileFormatError
        For data that is not gzip, is corrupt (a member failing its CRC-32 or
        size check included) or truncated, that has bytes after the gzip
        stream other than further gzip members, or that decompresses to more
        than ``max_size`` bytes (or than the memory available).
    """
    if bytes(data[:2]) != b"\x1f\x8b":
        raise FileFormatError(f"{path}: not a gzip file (the name ends in .gz)")
    if max_size is not None:
        limit, bound = int(max_size), declared_by
    else:
        limit, bound = available_memory(), "of memory available"
    too_large = f"{path}: gzip data decompresses to more than the {limit} bytes {bound}"
    isize = int.from_bytes(bytes(data[-4:]), "little") if len(data) >= 18 else 0
    try:
        if max_size is not None and isize > limit:
            # The last member alone would be larger: a gzip bomb, or the last 4 bytes are no
            # ISIZE (a truncated file, bytes after the stream). zlib, bounded, tells which;
            # libdeflate would allocate ISIZE. Never more than limit + 1 bytes are inflated.
            out = _diagnose(data, path, limit)
        else:
            if isize:  # libdeflate allocates the last member's declared size (ISIZE) at once
                check_memory(isize, path, "gzip data (ISIZE)")
            out = _backend(backend or default_backend())(data, limit)
            if out is None:  # multi-member, or broken: zlib decides which and says so
                out = _diagnose(data, path, limit)
    except _TooLarge:
        note = f" (the last member's ISIZE says {isize})" if max_size is not None and isize > limit else ""
        raise FileFormatError(too_large + note) from None
    return out


def inflate_head(read, size, path="<bytes>", *, gzip=False):
    """The first ``size`` decompressed bytes of a stream (fewer if it is shorter).

    ``read(n)`` returns the next ``n`` compressed bytes (a file's ``read``).
    The stream is raw deflate (a zip member), or gzip with ``gzip=True``.
    Compressed input is fed in 64 KiB pieces and inflation stops at ``size``
    bytes, so only the beginning of the file is read and inflated: enough to
    check a header before the whole is inflated. Raises ``FileFormatError``
    for corrupt data, and for a stream cut off before ``size`` bytes.
    """
    d = zlib.decompressobj(31 if gzip else -15)
    out = b""
    while len(out) < size and not d.eof:
        chunk = d.unconsumed_tail or read(1 << 16)
        if not chunk:  # the file ends inside the stream, before `size` bytes came out
            what = "gzip file" if gzip else "compressed data"
            raise FileFormatError(f"{path}: truncated {what} (the compressed stream ends early)")
        try:
            out += d.decompress(chunk, size - len(out))
        except zlib.error as exc:
            what = "gzip data" if gzip else "compressed data"
            raise FileFormatError(f"{path}: corrupt {what} ({exc})") from None
    return out


def inflate_raw(data, size, path="<bytes>", backend=None):
    """Decompress a raw deflate stream (a zip member) of known decompressed ``size``.

    Never inflates more than ``size`` bytes plus one: libdeflate is given a
    buffer of ``size`` bytes (and fails beyond it), zlib and isal a
    ``max_length``; a stream holding more is refused. The caller checks the
    result's CRC-32 (``check_crc32``): a raw stream has none.
    """
    backend = backend or default_backend()
    try:
        if backend == "deflate":
            import deflate

            out = deflate.deflate_decompress(data, size)
        elif backend == "isal":
            from isal import isal_zlib

            out = _bounded(isal_zlib.decompressobj(-15), data, size)
        else:
            out = _bounded(zlib.decompressobj(-15), data, size)
    except _TooLarge:
        raise FileFormatError(f"{path}: corrupt compressed data (it holds more than the {size} bytes declared)") from None
    except Exception as exc:  # each library has its own error type
        raise FileFormatError(f"{path}: corrupt compressed data ({exc})") from None
    if len(out) != size:
        raise FileFormatError(f"{path}: truncated compressed data ({len(out)} of {size} bytes)")
    return out
