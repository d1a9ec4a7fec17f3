"""NIfTI volumes in (``.nii``, ``.nii.gz``) and masks out, through nibabel.

Arrays come back as nibabel lays them out, ``(x, y, z, ...)`` in Fortran
order, and unscaled volumes are never copied: a ``.nii`` is memory-mapped,
a ``.nii.gz`` is decompressed once from a memory map of the file
(``clskern.io._gzip``) and the array is a view of the decompressed bytes; only
the header bytes go through nibabel's parser. Volumes with a scale factor go through
``np.asanyarray(img.dataobj)``, which applies it as nibabel does.

Before any voxel is inflated, mapped or allocated, the header's declared sizes
are checked (``_declared``): dimensions negative, all zero or overflowing
int64, a ``vox_offset`` inside the header, a finite scale factor with a
non-finite intercept, a declared size beyond the memory available, and (with
``spatial_shape``) a shape other than the labels' are refused with one line
naming the file. For a ``.nii.gz`` only the first bytes of the stream are
inflated for that check.

nibabel's header checks report through the ``logging`` module (its logger
``nibabel.global``, e.g. "pixdim[0] (qfac) should be 1 (default) or -1") and
sometimes ``warnings``. While clskern parses a header (``_quiet_nibabel``),
records of that logger from the parsing thread are dropped by a filter
(thread-local: other threads' and the user's own nibabel calls keep their
records, and the logger's level and handlers are never touched), and warnings
are ignored under ``warnings.catch_warnings``; that context changes the
process-wide filter list, so clskern's reader threads enter it one at a time
(a lock held for the header parse only, never during inflation).
"""

from __future__ import annotations

import contextlib
import io
import logging
import mmap
import os
import threading
import warnings
from dataclasses import dataclass
from typing import Any

import nibabel as nib
import numpy as np

from ._atomic import atomic_path
from ._declared import INT64_MAX, declared_bytes
from ._gzip import check_memory, gunzip, inflate_head
from ._warnings import WARNINGS_LOCK
from .errors import FileFormatError, MismatchError

NIFTI_SUFFIXES = (".nii.gz", ".nii")
_HEADER_SIZES = {348: nib.Nifti1Image, 540: nib.Nifti2Image}
_HEAD_BYTES = 544  # the fixed part of a NIfTI-2 header and its 4 extension bytes (NIfTI-1: 352)
# Byte offsets and types of the raw header fields checked before nibabel parses it.
_FIELDS = {
    nib.Nifti1Image: {"dim": (40, "i2"), "datatype": (70, "i2"), "vox_offset": (108, "f4"), "scl": (112, "f4")},
    nib.Nifti2Image: {"dim": (16, "i8"), "datatype": (12, "i2"), "vox_offset": (168, "i8"), "scl": (176, "f8")},
}


def _reason(exc):
    """An exception's message, or its type's name when the message is empty."""
    return str(exc) or type(exc).__name__


class _DropWhileParsing(logging.Filter):
    """Drops nibabel's records emitted by a thread inside ``_quiet_nibabel``."""

    def filter(self, record):
        return not getattr(_QUIET, "depth", 0)


_QUIET = threading.local()
_WARNINGS_LOCK = WARNINGS_LOCK  # shared with the other readers (clskern.io._warnings)
_FILTER = _DropWhileParsing()


@contextlib.contextmanager
def _quiet_nibabel():
    """No log record or warning from nibabel while clskern parses a header (module docstring)."""
    logger = nib.imageglobals.logger  # looked up each time: nibabel lets users replace it
    logger.addFilter(_FILTER)  # a no-op once added
    _QUIET.depth = getattr(_QUIET, "depth", 0) + 1
    try:
        with _WARNINGS_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        _QUIET.depth -= 1


@dataclass(frozen=True)
class _Declared:
    """What a NIfTI header declares, checked: shape, dtype, where the voxels start, their size."""

    klass: type
    shape: tuple
    dtype: np.dtype
    offset: int
    nbytes: int
    voxels: int
    scaled: bool

    @property
    def scaled_bytes(self):
        """Bytes nibabel allocates to scale the voxels (float64 at most), 0 if unscaled."""
        return 8 * self.voxels if self.scaled else 0

    @property
    def needs(self):
        """Bytes reading a ``.nii.gz`` allocates: the decompressed file, and for a
        scaled volume a copy of it (nibabel's parser) and the scaled result."""
        raw = self.offset + self.nbytes
        return raw + (raw + self.scaled_bytes if self.scaled else 0)


@dataclass
class NiftiVolume:
    """A NIfTI volume: its array (Fortran order), affine and header."""

    array: np.ndarray
    affine: np.ndarray
    header: object
    path: str


def _image_class(data, path):
    if len(data) < 4:
        raise FileFormatError(f"{path}: not a NIfTI file ({len(data)} bytes)")
    for order in ("little", "big"):
        size = int.from_bytes(data[:4], order)
        if size in _HEADER_SIZES:
            return _HEADER_SIZES[size]
    raise FileFormatError(f"{path}: not a NIfTI file (unreadable header)")


def _declared(head, path):
    """Check the raw header's declared sizes and scale factors before anything is allocated.

    ``head`` holds at least the header's first bytes (348 for NIfTI-1, 540 for
    NIfTI-2). Refused, with ``FileFormatError``: ``dim[0]`` outside 1..7, a
    negative dimension, no voxel, a size overflowing int64, an unknown
    datatype, a bad ``vox_offset`` (non-finite, or inside the header: below
    352, NIfTI-2 544), and a finite ``scl_slope`` with a non-finite
    ``scl_inter``. The scale factors are read as nibabel's ``get_slope_inter``
    reads them: a zero or non-finite slope means unscaled, whatever the
    intercept.
    """
    klass = _image_class(head, path)
    size = 348 if klass is nib.Nifti1Image else 540
    if len(head) < size:
        raise FileFormatError(f"{path}: truncated NIfTI file ({len(head)} bytes, the header needs {size})")
    order = "<" if int.from_bytes(head[:4], "little") in _HEADER_SIZES else ">"
    fields = _FIELDS[klass]

    def raw(name, count=1):
        at, code = fields[name]
        return np.frombuffer(bytes(head[at : at + count * int(code[1])]), order + code)

    dim = [int(n) for n in raw("dim", 8)]
    if not 1 <= dim[0] <= 7:
        raise FileFormatError(f"{path}: unreadable NIfTI header (dim[0] = {dim[0]}, not 1 to 7)")
    shape = tuple(dim[1 : dim[0] + 1])
    code = int(raw("datatype")[0])
    try:
        dtype = np.dtype(nib.nifti1.data_type_codes.dtype[code]).newbyteorder(order)
    except (KeyError, TypeError):
        dtype = np.dtype("V")
    if dtype.itemsize == 0:
        raise FileFormatError(f"{path}: unreadable NIfTI header (unsupported datatype code {code})")
    nbytes = declared_bytes(shape, dtype.itemsize, path, f"NIfTI image of {dtype.name}")
    vox_offset = float(raw("vox_offset")[0])
    if not (np.isfinite(vox_offset) and 0 <= vox_offset <= INT64_MAX - nbytes):
        raise FileFormatError(f"{path}: unreadable NIfTI header (vox_offset = {vox_offset})")
    if vox_offset < size + 4:  # nibabel would read the header itself as voxels
        raise FileFormatError(
            f"{path}: vox_offset {vox_offset:g} lies inside the header (a single-file NIfTI's voxels "
            f"start at {size + 4} or later)"
        )
    slope, inter = (float(x) for x in raw("scl", 2))
    # nibabel's Nifti1Header.get_slope_inter: a zero or non-finite slope means
    # "unscaled", whatever the intercept; a finite slope with a non-finite
    # intercept is an error there (HeaderDataError), refused here.
    if slope == 0 or not np.isfinite(slope):
        scaled = False
    elif not np.isfinite(inter):
        raise FileFormatError(
            f"{path}: unreadable NIfTI header (scale factor scl_slope = {slope}, scl_inter = {inter}: "
            "the intercept is not finite)"
        )
    else:
        scaled = (slope, inter) != (1, 0)
    offset = int(vox_offset)  # nibabel's get_data_offset, the offset every path reads the voxels at
    return _Declared(klass, shape, dtype, offset, nbytes, nbytes // dtype.itemsize, scaled)


def _check_spatial(shape, spatial_shape, path):
    """Refuse a declared ``shape`` whose first axes are not ``spatial_shape``."""
    if spatial_shape is None:
        return
    spatial_shape = tuple(int(n) for n in spatial_shape)
    if tuple(shape[: len(spatial_shape)]) != spatial_shape:
        raise MismatchError(
            f"{path}: declared shape {tuple(shape)} does not match the labels' shape {spatial_shape}"
        )


def _vox_offset(data, klass):
    """Where the voxels start, read from the raw header (NIfTI-1: float32 at 108, -2: int64 at 168)."""
    order = "<" if int.from_bytes(data[:4], "little") in _HEADER_SIZES else ">"
    if klass is nib.Nifti1Image:
        return int(np.frombuffer(bytes(data[108:112]), f"{order}f4")[0])
    return int(np.frombuffer(bytes(data[168:176]), f"{order}i8")[0])


def _parse_header(klass, data, path):
    """The header (and extensions) from the bytes before the voxels only: no copy of the voxels."""
    try:
        size = 352 if klass is nib.Nifti1Image else 544
        head = bytes(data[: max(size, min(_vox_offset(data, klass), len(data)))])
        with _quiet_nibabel():
            header = klass.header_class.from_fileobj(io.BytesIO(head))
            offset = int(header.get_data_offset())
            shape = tuple(int(n) for n in header.get_data_shape())
            return header, shape, header.get_data_dtype(), offset
    except Exception as exc:  # nibabel raises many kinds on a broken header
        raise FileFormatError(f"{path}: unreadable NIfTI header ({_reason(exc)})") from None


def _from_bytes(data, path):
    """``(header, affine, array)`` of a NIfTI image held in memory."""
    declared = _declared(data, path)
    klass = declared.klass
    header, shape, dtype, offset = _parse_header(klass, data, path)
    if offset != declared.offset:  # the array is built at the offset _declared checked
        raise FileFormatError(
            f"{path}: unreadable NIfTI header (voxels at byte {offset} for nibabel, {declared.offset} as checked)"
        )
    needed = offset + declared.nbytes
    if len(data) < needed:
        raise FileFormatError(
            f"{path}: truncated NIfTI file ({len(data)} bytes of data, the header needs {needed})"
        )
    try:
        with _quiet_nibabel():
            slope, inter = header.get_slope_inter()
            affine = np.asarray(header.get_best_affine(), dtype=np.float64)
        if slope in (None, 1) and inter in (None, 0):
            array = np.ndarray(shape, dtype=dtype, buffer=data, offset=offset, order="F")
        else:  # scaled: let nibabel apply the scale factors exactly as it does
            array = np.asanyarray(klass.from_bytes(bytes(data)).dataobj)
    except FileFormatError:
        raise
    except (ValueError, MemoryError) as exc:  # numpy's "array is too big", nibabel's header errors
        raise FileFormatError(f"{path}: unreadable NIfTI file ({_reason(exc)})") from None
    return header, affine, array


def _from_file(path):
    """An uncompressed ``.nii``: nibabel memory-maps unscaled data."""
    try:
        with _quiet_nibabel():
            img = nib.load(path, mmap=True)
        array = np.asanyarray(img.dataobj)
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise FileFormatError(f"{path}: unreadable NIfTI file ({_reason(exc)})") from None
    return img, array


def read_nifti(path: str | os.PathLike[str], *, backend: str | None = None,
               spatial_shape: tuple[int, ...] | None = None) -> NiftiVolume:
    """Read a NIfTI volume without copying its voxels where possible.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.nii`` or ``.nii.gz`` file (NIfTI-1 or -2, either byte order).
    backend : str, optional
        gzip backend for ``.nii.gz`` (see ``clskern.io.gzip_backends``).
    spatial_shape : tuple of int, optional
        The labels' shape, nibabel axes ``(x, y, z)``. The file's declared
        shape must begin with it (further axes, e.g. channels, are allowed);
        otherwise ``MismatchError`` names the file and both shapes, raised
        after reading the header only: no voxel is inflated or mapped.

    Returns
    -------
    NiftiVolume
        ``array`` in Fortran order, in the file's dtype and byte order
        (scaled volumes: nibabel's scaled array).

    Raises
    ------
    FileFormatError
        For a corrupt, truncated or non-NIfTI file, or one whose header
        declares sizes that are invalid or larger than the memory available
        (the path is named).
    MismatchError
        With ``spatial_shape``, for a file of another shape.
    FileNotFoundError
        When the file does not exist.
    """
    path = os.fspath(path)
    if path.endswith(".gz"):
        header, affine, array = _from_bytes(_gunzip_file(path, backend, spatial_shape), path)
        return NiftiVolume(array, affine, header, path)
    with open(path, "rb") as f:
        declared = _declared(f.read(_HEAD_BYTES), path)
        size = os.fstat(f.fileno()).st_size
    _check_spatial(declared.shape, spatial_shape, path)
    if size < declared.offset + declared.nbytes:
        raise FileFormatError(
            f"{path}: truncated NIfTI file ({size} bytes, the header needs {declared.offset + declared.nbytes})"
        )
    if declared.scaled:  # unscaled voxels are memory-mapped, not allocated
        check_memory(declared.scaled_bytes, path, "scaled voxels")
    img, array = _from_file(path)
    with _quiet_nibabel():
        affine = np.asarray(img.affine, dtype=np.float64)
    return NiftiVolume(array, affine, img.header, path)


def _gunzip_file(path, backend, spatial_shape=None):
    """Check the header, then decompress through a read-only memory map (no copy of the compressed bytes).

    Only the first bytes of the stream are inflated for the header's checks
    (declared sizes, ``spatial_shape``, memory); the whole is inflated after,
    bounded by the size the header declares (``offset + nbytes``): a stream
    that decompresses to more is refused as soon as the excess comes out (a
    gzip bomb is inflated no further than the declared size and one byte,
    which ``check_memory`` has allowed). nibabel writes exactly ``offset + nbytes`` bytes and
    ignores any after the voxels; clskern refuses them in a ``.nii.gz``
    (a ``.nii`` is memory-mapped, so bytes after its voxels cost nothing and
    are ignored, as nibabel does).
    """
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            raise FileFormatError(f"{path}: empty file")
        if f.read(2) != b"\x1f\x8b":
            raise FileFormatError(f"{path}: not a gzip file (the name ends in .gz)")
        f.seek(0)
        declared = _declared(inflate_head(f.read, _HEAD_BYTES, path, gzip=True), path)
        _check_spatial(declared.shape, spatial_shape, path)
        check_memory(declared.needs, path)
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as compressed:
            return gunzip(compressed, path, backend, max_size=declared.offset + declared.nbytes,
                          declared_by="the NIfTI header declares")


def read_header(path: str | os.PathLike[str]) -> tuple[np.ndarray[Any, Any], Any, tuple[int, ...]]:
    """Affine, header and shape of a NIfTI file, reading the header only."""
    path = os.fspath(path)
    try:
        with _quiet_nibabel():
            img = nib.load(path)
            return np.asarray(img.affine, dtype=np.float64), img.header, tuple(img.shape)
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise FileFormatError(f"{path}: unreadable NIfTI header ({_reason(exc)})") from None


MASK_MARK = b"clskern mask"
"""The header ``descrip`` of every mask clskern writes: how ``--overwrite`` knows a mask for its own."""


def mask_image(mask: np.ndarray, affine: np.ndarray, header: Any = None) -> Any:
    """A uint8 NIfTI image of ``mask`` with the source affine and header, marked ``MASK_MARK`` (``descrip``)."""
    if header is not None:
        header = header.copy()
        header.set_data_dtype(np.uint8)
        header.set_slope_inter(1, 0)
        header.set_data_shape(mask.shape)
        klass = nib.Nifti2Image if isinstance(header, nib.Nifti2Header) else nib.Nifti1Image
    else:
        klass = nib.Nifti1Image
    img = klass(mask, affine, header)
    img.header["cal_min"], img.header["cal_max"] = 0, 1
    img.header["descrip"] = MASK_MARK
    return img


def mask_problem(path: str | os.PathLike[str]) -> str | None:
    """None when ``path`` is a NIfTI mask clskern wrote (its header's ``descrip`` is ``MASK_MARK``), else
    why not. Reads the header only; used before ``--overwrite`` replaces a file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        return "not a file"
    try:
        descrip = bytes(np.asarray(nib.load(path).header["descrip"]).item())
    except Exception as exc:  # noqa: BLE001 - any file nibabel cannot read is not a mask clskern wrote
        return f"not a readable NIfTI file ({type(exc).__name__})"
    if descrip.rstrip(b"\x00") != MASK_MARK:
        return f"its header does not carry clskern's mark (descrip {descrip.rstrip(bytes(1))[:40]!r})"
    return None


def write_atomic(img: Any, path: str | os.PathLike[str]) -> None:
    """Save a nibabel image to ``path`` through a temporary file and ``os.replace``."""
    path = os.fspath(path)
    with atomic_path(path, suffix=".nii.gz" if path.endswith(".gz") else ".nii") as tmp:
        nib.save(img, tmp)
