"""NIfTI volumes in (``.nii``, ``.nii.gz``) and masks out, through nibabel.

Arrays come back as nibabel lays them out, ``(x, y, z, ...)`` in Fortran
order, and unscaled volumes are never copied: a ``.nii`` is memory-mapped,
a ``.nii.gz`` is decompressed once from a memory map of the file
(``clskern.io._gzip``) and the array is a view of the decompressed bytes; only
the header bytes go through nibabel's parser. Volumes with a scale factor go through
``np.asanyarray(img.dataobj)``, which applies it as nibabel does.
"""

import io
import mmap
import os
import tempfile
from dataclasses import dataclass

import nibabel as nib
import numpy as np

from ._gzip import gunzip
from .errors import FileFormatError

NIFTI_SUFFIXES = (".nii.gz", ".nii")
_HEADER_SIZES = {348: nib.Nifti1Image, 540: nib.Nifti2Image}


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


_HEAD = 1 << 16  # header and the usual extensions; more is read when vox_offset says so


def _parse_header(klass, data, path):
    """The header from the first bytes only (no copy of the voxel data)."""
    try:
        header = klass.header_class.from_fileobj(io.BytesIO(bytes(data[:_HEAD])))
        offset = int(header.get_data_offset())
        if offset > _HEAD and len(data) >= offset:  # long extensions
            header = klass.header_class.from_fileobj(io.BytesIO(bytes(data[:offset])))
        shape = tuple(int(n) for n in header.get_data_shape())
        return header, shape, header.get_data_dtype(), offset
    except Exception as exc:  # nibabel raises many kinds on a broken header
        raise FileFormatError(f"{path}: unreadable NIfTI header ({exc})") from None


def _from_bytes(data, path):
    """``(header, affine, array)`` of a NIfTI image held in memory."""
    klass = _image_class(data, path)
    header, shape, dtype, offset = _parse_header(klass, data, path)
    needed = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) < needed:
        raise FileFormatError(
            f"{path}: truncated NIfTI file ({len(data)} bytes of data, the header needs {needed})"
        )
    slope, inter = header.get_slope_inter()
    if slope in (None, 1) and inter in (None, 0):
        array = np.ndarray(shape, dtype=dtype, buffer=data, offset=offset, order="F")
    else:  # scaled: let nibabel apply the scale factors exactly as it does
        array = np.asanyarray(klass.from_bytes(bytes(data)).dataobj)
    return header, np.asarray(header.get_best_affine(), dtype=np.float64), array


def _from_file(path):
    """An uncompressed ``.nii``: nibabel memory-maps unscaled data."""
    try:
        img = nib.load(path, mmap=True)
        array = np.asanyarray(img.dataobj)
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise FileFormatError(f"{path}: unreadable NIfTI file ({exc})") from None
    return img, array


def read_nifti(path, *, backend=None):
    """Read a NIfTI volume without copying its voxels where possible.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.nii`` or ``.nii.gz`` file (NIfTI-1 or -2, either byte order).
    backend : str, optional
        gzip backend for ``.nii.gz`` (see ``clskern.io.gzip_backends``).

    Returns
    -------
    NiftiVolume
        ``array`` in Fortran order, in the file's dtype and byte order
        (scaled volumes: nibabel's scaled array).

    Raises
    ------
    FileFormatError
        For a corrupt, truncated or non-NIfTI file (the path is named).
    FileNotFoundError
        When the file does not exist.
    """
    path = os.fspath(path)
    if path.endswith(".gz"):
        header, affine, array = _from_bytes(_gunzip_file(path, backend), path)
        return NiftiVolume(array, affine, header, path)
    with open(path, "rb") as f:
        _image_class(f.read(4), path)
    img, array = _from_file(path)
    return NiftiVolume(array, np.asarray(img.affine, dtype=np.float64), img.header, path)


def _gunzip_file(path, backend):
    """Decompress a file through a read-only memory map (no copy of the compressed bytes)."""
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            raise FileFormatError(f"{path}: empty file")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as compressed:
            return gunzip(compressed, path, backend)


def read_header(path):
    """Affine, header and shape of a NIfTI file, reading the header only."""
    path = os.fspath(path)
    try:
        img = nib.load(path)
        return np.asarray(img.affine, dtype=np.float64), img.header, tuple(img.shape)
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise FileFormatError(f"{path}: unreadable NIfTI header ({exc})") from None


def mask_image(mask, affine, header=None):
    """A uint8 NIfTI image of ``mask`` with the source affine and header."""
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
    return img


def write_atomic(img, path):
    """Save a nibabel image to ``path`` through a temporary file and ``os.replace``."""
    path = os.fspath(path)
    directory, name = os.path.split(os.path.abspath(path))
    suffix = ".nii.gz" if name.endswith(".gz") else ".nii"
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=suffix, dir=directory)
    os.close(fd)
    try:
        nib.save(img, tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
