"""The readers trust nothing: CRC-32 of npz members, gzip trailers and trailing bytes,
declared sizes and shapes checked before anything is inflated, no third-party log lines."""

import gzip
import logging
import mmap
import re
import struct
import threading
import tracemalloc
import warnings
import zipfile
import zlib

import nibabel as nib
import numpy as np
import pytest

from clskern.io import (
    FileFormatError,
    MismatchError,
    _gzip,
    arrays,
    gunzip,
    gzip_backends,
    nifti,
    read_header,
    read_nifti,
    read_npz,
)

XYZ = (9, 8, 7)


def _probs(seed=0, shape=XYZ):
    xyz = np.random.default_rng(seed).random(shape, dtype=np.float32)
    return np.stack([1 - xyz.T, xyz.T])  # nnU-Net: (C, z, y, x)


def _member_span(path, key="probabilities"):
    """(first byte of the member's data in the file, its compressed size)."""
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(key + ".npy")
    blob = path.read_bytes()
    h = info.header_offset
    name_len, extra_len = struct.unpack_from("<2H", blob, h + 26)
    return h + 30 + name_len + extra_len, info.compress_size


def _write_npz(path, probs, how):
    if how == "stored":
        np.savez(path, probabilities=probs)
    elif how == "deflated":
        np.savez_compressed(path, probabilities=probs)
    else:  # deflate level 0: stored deflate blocks, so a flipped data bit still inflates
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=0) as z:
            with z.open("probabilities.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, probs)


# --- 1. CRC-32 of npz members -------------------------------------------------------------


@pytest.mark.parametrize("how", ["stored", "deflated-level0"])
@pytest.mark.parametrize("where", [0.0, 0.3, 0.77, 1.0])
@pytest.mark.parametrize("bit", [0, 7])
def test_a_flipped_bit_in_an_npz_member_is_refused(tmp_path, how, where, bit):
    path = tmp_path / "c.npz"
    _write_npz(path, _probs(), how)
    np.testing.assert_array_equal(read_npz(path), _probs()[1].T)
    start, size = _member_span(path)
    blob = bytearray(path.read_bytes())
    first = start + 200  # past the .npy header (128 bytes) and level-0 block headers
    at = first + int(where * (start + size - 1 - first))
    blob[at] ^= 1 << bit
    path.write_bytes(bytes(blob))
    with pytest.raises(FileFormatError, match=r"c\.npz: corrupt \.npz \('probabilities' fails its CRC-32 check\)"):
        read_npz(path)


@pytest.mark.parametrize("where", [0.1, 0.5, 0.9])
def test_a_flipped_bit_in_a_compressed_npz_member_is_refused(tmp_path, where):
    path = tmp_path / "c.npz"
    _write_npz(path, _probs(), "deflated")
    start, size = _member_span(path)
    blob = bytearray(path.read_bytes())
    blob[start + int(where * size)] ^= 0x10
    path.write_bytes(bytes(blob))
    with pytest.raises(FileFormatError, match=r"c\.npz: (corrupt|truncated|unreadable)") as err:
        read_npz(path)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("how", ["stored", "deflated"])
@pytest.mark.parametrize(
    "field, at",
    [("name", 30), ("method", 8), ("crc", 14), ("size", 22)],
)
def test_a_local_header_disagreeing_with_the_directory_is_refused(tmp_path, how, field, at):
    path = tmp_path / "c.npz"
    _write_npz(path, _probs(), how)
    blob = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        h = z.getinfo("probabilities.npy").header_offset
    if field == "size":  # numpy writes zip64 sizes: the real ones sit in the extra field
        name_len = struct.unpack_from("<H", blob, h + 26)[0]
        at = 30 + name_len + 4  # the zip64 extra's first size
    blob[h + at] ^= 0x01
    path.write_bytes(bytes(blob))
    with pytest.raises(FileFormatError, match=r"c\.npz: corrupt \.npz"):
        read_npz(path)


def test_npz_members_of_other_methods_still_checked(tmp_path):
    path = tmp_path / "b.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_BZIP2) as z:
        with z.open("probabilities.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array(f, _probs())
    np.testing.assert_array_equal(read_npz(path), _probs()[1].T)
    with pytest.raises(MismatchError, match=r"b\.npz: .*labels' shape is \(1, 2, 3\)"):
        read_npz(path, spatial_shape=(1, 2, 3))


# --- 2. gzip: trailing data and trailers, every backend ------------------------------------


def _nifti_gz(tmp_path, name="a.nii.gz"):
    path = tmp_path / name
    nib.save(nib.Nifti1Image(_probs()[1].T.copy(), np.eye(4)), path)
    return path


@pytest.mark.parametrize("backend", gzip_backends())
@pytest.mark.parametrize("tail", [b"\0", b"\0" * 8, b"garbage!", b"\x1f", "trailer"])
def test_bytes_after_the_gzip_stream_are_refused(tmp_path, backend, tail):
    path = _nifti_gz(tmp_path)
    blob = path.read_bytes()
    tail = blob[-8:] if tail == "trailer" else tail  # the last member's trailer, repeated
    path.write_bytes(blob + tail)
    with pytest.raises(FileFormatError, match=r"a\.nii\.gz: (corrupt|truncated) gzip"):
        read_nifti(path, backend=backend)
    with pytest.raises(FileFormatError, match=r"f\.gz: (corrupt|truncated) gzip"):
        gunzip(blob + tail, "f.gz", backend)


@pytest.mark.parametrize("backend", gzip_backends())
def test_a_second_member_is_still_fine(tmp_path, backend):
    data = np.random.default_rng(3).bytes(10_000)
    assert gunzip(gzip.compress(data) + gzip.compress(b""), backend=backend) == data
    assert gunzip(gzip.compress(data[:10]) + gzip.compress(data[10:]), backend=backend) == data


@pytest.mark.parametrize("backend", gzip_backends())
@pytest.mark.parametrize("byte", range(-8, 0))
@pytest.mark.parametrize("xor", [0x01, 0x80])
def test_an_edited_gzip_trailer_is_refused(tmp_path, backend, byte, xor):
    path = _nifti_gz(tmp_path)
    blob = bytearray(path.read_bytes())
    blob[byte] ^= xor
    path.write_bytes(bytes(blob))
    with pytest.raises(FileFormatError, match=r"a\.nii\.gz: (corrupt|truncated) gzip"):
        read_nifti(path, backend=backend)


@pytest.mark.parametrize("backend", gzip_backends())
@pytest.mark.parametrize("isize", [0, 1, 0xFFFFFFFF])
def test_a_rewritten_isize_is_refused(backend, isize):
    blob = gzip.compress(np.random.default_rng(4).bytes(5000))
    with pytest.raises(FileFormatError, match=r"f\.gz: corrupt gzip"):
        gunzip(blob[:-4] + isize.to_bytes(4, "little"), "f.gz", backend)


_BOMB_TAIL = 64 << 20  # zeros after a valid NIfTI: a gzip bomb small enough for CI


def _bomb(how):
    """A .nii.gz: a valid small NIfTI followed by 64 MiB of zeros (one member unless ``how`` is "member")."""
    raw = nib.Nifti1Image(np.zeros((6, 5, 4), np.float32), np.eye(4)).to_bytes()
    zeros = bytes(1 << 20)

    def deflated(chunks):
        co = zlib.compressobj(9, zlib.DEFLATED, 31)
        return b"".join(co.compress(c) for c in chunks) + co.flush()

    if how == "member":  # the NIfTI in one member, the zeros in a second whose ISIZE lies
        tail = deflated([zeros] * (_BOMB_TAIL >> 20))
        return raw, deflated([raw]) + tail[:-4] + (0).to_bytes(4, "little")
    data = deflated([raw] + [zeros] * (_BOMB_TAIL >> 20))
    if how == "lying":  # ISIZE edited to the NIfTI's own size
        data = data[:-4] + len(raw).to_bytes(4, "little")
    return raw, data


def _peak(fn):
    """``(exception raised by fn, peak bytes allocated while it ran)``."""
    tracemalloc.start()
    try:
        fn()
    except Exception as exc:
        error = exc
    else:
        error = None
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return error, peak


@pytest.mark.parametrize("backend", gzip_backends())
@pytest.mark.parametrize("how", ["true", "lying", "member"])
def test_a_gzip_bomb_is_refused_without_inflating_it(tmp_path, backend, how):
    raw, data = _bomb(how)
    path = tmp_path / "bomb.nii.gz"
    path.write_bytes(data)
    error, peak = _peak(lambda: read_nifti(path, backend=backend, spatial_shape=(6, 5, 4)))
    assert isinstance(error, FileFormatError), error
    message = f"{path}: gzip data decompresses to more than the {len(raw)} bytes the NIfTI header declares"
    if how == "true":
        message += f" (the last member's ISIZE says {len(raw) + _BOMB_TAIL})"
    assert str(error) == message
    assert peak < 4 << 20, f"{peak} bytes allocated for a {_BOMB_TAIL}-byte bomb"


@pytest.mark.parametrize("backend", gzip_backends())
def test_gunzip_is_bounded_by_max_size_or_the_memory_available(backend, monkeypatch):
    _, data = _bomb("lying")
    error, peak = _peak(lambda: gunzip(data, "f.gz", backend, max_size=1 << 20))
    assert str(error) == f"f.gz: gzip data decompresses to more than the {1 << 20} bytes its header declares"
    assert peak < 4 << 20
    monkeypatch.setattr(_gzip, "available_memory", lambda: 2 << 20)
    error, peak = _peak(lambda: gunzip(data, "f.gz", backend))
    assert str(error) == f"f.gz: gzip data decompresses to more than the {2 << 20} bytes of memory available"
    assert peak < 6 << 20
    small = gzip.compress(b"abc" * 1000)
    assert gunzip(small, "f.gz", backend, max_size=3000) == b"abc" * 1000  # exactly the bound is fine
    assert gunzip(gzip.compress(b"abc" * 999) + gzip.compress(b"abc"), "f.gz", backend, max_size=3000) == b"abc" * 1000
    for blob in (small, gzip.compress(b"abc" * 999) + gzip.compress(b"abc")):
        with pytest.raises(FileFormatError, match="more than the 2999 bytes its header declares"):
            gunzip(blob, "f.gz", backend, max_size=2999)


@pytest.mark.parametrize("backend", gzip_backends())
@pytest.mark.parametrize("extra", [1, 16, 4096])
def test_bytes_after_the_voxels_of_a_nii_gz_are_refused(tmp_path, backend, extra):
    raw = bytes(_raw_nifti())
    assert len(raw) == 352 + 24 * 4  # nibabel writes exactly offset + voxel bytes
    path = _write(tmp_path, raw + bytes(extra), ".nii.gz")
    with pytest.raises(FileFormatError) as e:
        read_nifti(path, backend=backend)
    assert str(e.value) == (
        f"{path}: gzip data decompresses to more than the {len(raw)} bytes the NIfTI header declares "
        f"(the last member's ISIZE says {len(raw) + extra})"
    )
    blob = path.read_bytes()  # the same with ISIZE edited to the declared size: refused as it inflates
    path.write_bytes(blob[:-4] + len(raw).to_bytes(4, "little"))
    # (zlib may reach the edited trailer within the bound's one extra byte and refuse its length first)
    bound = re.escape(f"gzip data decompresses to more than the {len(raw)} bytes the NIfTI header declares")
    with pytest.raises(FileFormatError, match=rf"h\.nii\.gz: ({bound}|corrupt gzip data \(.*incorrect length check\))$"):
        read_nifti(path, backend=backend)
    assert read_nifti(_write(tmp_path, raw, ".nii.gz"), backend=backend).array.shape == (4, 3, 2)


@pytest.mark.parametrize("backend", gzip_backends())
def test_inflate_raw_is_bounded_by_the_declared_size(backend):
    co = zlib.compressobj(9, zlib.DEFLATED, -15)
    raw = co.compress(bytes(_BOMB_TAIL)) + co.flush()
    error, peak = _peak(lambda: _gzip.inflate_raw(raw, 1000, "x.npz", backend))
    assert isinstance(error, FileFormatError) and str(error).startswith("x.npz: corrupt compressed data (")
    assert peak < 4 << 20


# --- 3. declared sizes, before anything is inflated ----------------------------------------


def _raw_nifti(klass=nib.Nifti1Image, shape=(4, 3, 2)):
    img = klass(np.arange(np.prod(shape), dtype=np.float32).reshape(shape), np.eye(4))
    return bytearray(img.to_bytes())


def _patch(raw, klass=nib.Nifti1Image, dim=None, slope=None, inter=None, datatype=None):
    if klass is nib.Nifti1Image:
        dim_at, dim_fmt, scl_at, scl_fmt, dt_at = 40, "<8h", 112, "<f", 70
    else:
        dim_at, dim_fmt, scl_at, scl_fmt, dt_at = 16, "<8q", 176, "<d", 12
    if dim is not None:
        struct.pack_into(dim_fmt, raw, dim_at, len(dim), *dim, *[1] * (7 - len(dim)))
    if slope is not None:
        struct.pack_into(scl_fmt, raw, scl_at, slope)
    if inter is not None:
        struct.pack_into(scl_fmt, raw, scl_at + struct.calcsize(scl_fmt), inter)
    if datatype is not None:
        struct.pack_into("<h", raw, dt_at, datatype)
    return bytes(raw)


def _write(tmp_path, raw, suffix):
    path = tmp_path / f"h{suffix}"
    path.write_bytes(gzip.compress(raw) if suffix == ".nii.gz" else raw)
    return path


SUFFIXES = [".nii.gz", ".nii"]


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize(
    "klass, dim, message",
    [
        (nib.Nifti1Image, (32767,) * 7, "more than int64 can count"),
        (nib.Nifti2Image, (2**40, 2**40, 2**40), "more than int64 can count"),
        (nib.Nifti1Image, (4, -3, 2), "negative dimension"),
        (nib.Nifti2Image, (4, 3, -2), "negative dimension"),
        (nib.Nifti1Image, (4, 0, 2), "holds no voxels"),
        (nib.Nifti2Image, (0, 3, 2), "holds no voxels"),
    ],
)
def test_declared_dimensions_are_checked(tmp_path, suffix, klass, dim, message):
    path = _write(tmp_path, _patch(_raw_nifti(klass), klass, dim=dim), suffix)
    with pytest.raises(FileFormatError, match=re.escape(f"h{suffix}: ") + f".*{message}") as err:
        read_nifti(path)
    assert "\n" not in str(err.value) and str(err.value).count(str(path)) == 1


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_unknown_datatype_is_refused(tmp_path, suffix):
    with pytest.raises(FileFormatError, match="unsupported datatype code 2048"):
        read_nifti(_write(tmp_path, _patch(_raw_nifti(), datatype=2048), suffix))


def _nibabel_reads(path):
    """nibabel's own array for ``path``, or None where nibabel refuses the file."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.asanyarray(nib.load(path).dataobj)
    except Exception:
        return None


_NON_FINITE = [np.nan, np.inf, -np.inf]


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("klass", [nib.Nifti1Image, nib.Nifti2Image])
@pytest.mark.parametrize(
    "slope, inter",
    [(s, i) for s in [*_NON_FINITE, 0.0] for i in [*_NON_FINITE, 0.0, 5.0]]  # nibabel: unscaled
    + [(s, i) for s in (1.0, 2.0) for i in _NON_FINITE]  # nibabel: HeaderDataError
    + [(1.0, 0.0), (2.0, 0.0), (2.0, -1.5), (1.0, 3.0)],  # scaled (or the identity)
)
def test_scale_factors_are_read_as_nibabel_reads_them(tmp_path, suffix, klass, slope, inter):
    path = _write(tmp_path, _patch(_raw_nifti(klass), klass, slope=slope, inter=inter), suffix)
    expected = _nibabel_reads(path)
    if expected is None:
        assert np.isfinite(slope) and slope != 0 and not np.isfinite(inter)
        with pytest.raises(FileFormatError, match=r"h\.nii(\.gz)?: .*scale factor .*the intercept is not finite") as e:
            read_nifti(path)
        assert "\n" not in str(e.value)
        return
    got = read_nifti(path).array
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)
    if slope == 0 or not np.isfinite(slope):  # unscaled, whatever the intercept
        np.testing.assert_array_equal(got, np.arange(24, dtype=np.float32).reshape(4, 3, 2))


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_nan_slope_and_intercept_mean_unscaled(tmp_path, suffix):
    # both NaN is nibabel's "not set": the voxels are as stored
    path = _write(tmp_path, _patch(_raw_nifti(), slope=np.nan, inter=np.nan), suffix)
    np.testing.assert_array_equal(read_nifti(path).array, np.arange(24, dtype=np.float32).reshape(4, 3, 2))


def _with_vox_offset(raw, klass, value):
    struct.pack_into("<f" if klass is nib.Nifti1Image else "<q", raw, 108 if klass is nib.Nifti1Image else 168, value)
    return bytes(raw)


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("klass, offset", [(nib.Nifti1Image, 0), (nib.Nifti1Image, 348), (nib.Nifti1Image, 351.5),
                                           (nib.Nifti2Image, 0), (nib.Nifti2Image, 352), (nib.Nifti2Image, 543)])
def test_a_vox_offset_inside_the_header_is_refused(tmp_path, suffix, klass, offset):
    # nibabel reads the voxels at vox_offset even inside the header: it returns the header's bytes as voxels
    path = _write(tmp_path, _with_vox_offset(_raw_nifti(klass), klass, offset), suffix)
    start = 352 if klass is nib.Nifti1Image else 544
    with pytest.raises(FileFormatError) as e:
        read_nifti(path)
    assert str(e.value) == (
        f"{path}: vox_offset {offset:g} lies inside the header (a single-file NIfTI's voxels start at {start} or later)"
    )


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("klass", [nib.Nifti1Image, nib.Nifti2Image])
def test_the_voxels_are_read_at_the_offset_that_was_checked(tmp_path, suffix, klass, monkeypatch):
    start = 352 if klass is nib.Nifti1Image else 544
    raw = _raw_nifti(klass)
    moved = _with_vox_offset(raw[:start] + b"\xff" * 16 + raw[start:], klass, start + 16)
    path = _write(tmp_path, moved, suffix)
    np.testing.assert_array_equal(read_nifti(path).array, np.arange(24, dtype=np.float32).reshape(4, 3, 2))
    if suffix == ".nii.gz":  # nibabel's parser disagreeing with the checked offset is refused, not followed
        monkeypatch.setattr(klass.header_class, "get_data_offset", lambda self: start)
        with pytest.raises(FileFormatError, match=rf"h\.nii\.gz: unreadable NIfTI header \(voxels at byte {start}"):
            read_nifti(path)


def test_an_empty_exception_message_still_gives_a_reason(tmp_path, monkeypatch):
    path = _write(tmp_path, bytes(_raw_nifti()), ".nii")

    def fail(*args, **kwargs):
        raise ValueError()

    monkeypatch.setattr(nifti.nib, "load", fail)
    with pytest.raises(FileFormatError, match=r"h\.nii: unreadable NIfTI file \(ValueError\)"):
        read_nifti(path)


def _forbid_inflating(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("inflated or mapped before the header was checked")

    monkeypatch.setattr(nifti, "gunzip", boom)
    monkeypatch.setattr(arrays, "inflate_raw", boom)
    monkeypatch.setattr(mmap, "mmap", boom)
    monkeypatch.setattr(nifti.nib, "load", boom)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_spatial_shape_mismatch_refused_before_inflating(tmp_path, suffix, monkeypatch):
    path = tmp_path / f"s{suffix}"
    nib.save(nib.Nifti1Image(_probs()[1].T.copy(), np.eye(4)), path)
    np.testing.assert_array_equal(read_nifti(path, spatial_shape=XYZ).array, _probs()[1].T)
    _forbid_inflating(monkeypatch)
    with pytest.raises(MismatchError, match=re.escape(f"s{suffix}: ") + r".*\(9, 8, 7\).*\(9, 8, 6\)"):
        read_nifti(path, spatial_shape=(9, 8, 6))
    with pytest.raises(MismatchError, match=r"\(9, 8, 7\).*\(9, 8, 7, 1\)"):
        read_nifti(path, spatial_shape=(9, 8, 7, 1))


def test_channel_last_nifti_scores_match_on_their_spatial_axes(tmp_path):
    nib.save(nib.Nifti1Image(np.zeros((*XYZ, 3), np.float32), np.eye(4)), tmp_path / "c.nii.gz")
    assert read_nifti(tmp_path / "c.nii.gz", spatial_shape=XYZ).array.shape == (*XYZ, 3)


@pytest.mark.parametrize("how", ["stored", "deflated"])
def test_npz_spatial_shape_and_channel_refused_before_inflating(tmp_path, how, monkeypatch):
    path = tmp_path / "p.npz"
    _write_npz(path, _probs(), how)
    np.testing.assert_array_equal(read_npz(path, spatial_shape=XYZ), _probs()[1].T)
    _forbid_inflating(monkeypatch)
    with pytest.raises(MismatchError, match=r"p\.npz: 'probabilities' of shape \(2, 7, 8, 9\).*\(9, 8, 7\).*\(7, 8, 9\)"):
        read_npz(path, spatial_shape=(7, 8, 9))
    with pytest.raises(MismatchError, match=r"p\.npz: channel 2 does not exist .*2 channels"):
        read_npz(path, channel=2, spatial_shape=XYZ)
    with pytest.raises(MismatchError, match=r"p\.npz: .*labels' shape is \(9, 8\)"):
        read_npz(path, spatial_shape=(9, 8))


def test_npz_declared_shapes_are_checked(tmp_path):
    for shape, message in [((5,), r"expected \(C, z, y, x\)"), ((0, 3, 4), "holds no voxels")]:
        np.savez(tmp_path / "d.npz", probabilities=np.zeros(shape, np.float32))
        with pytest.raises(FileFormatError, match=rf"d\.npz: 'probabilities' .*{message}"):
            read_npz(tmp_path / "d.npz")
    np.savez(tmp_path / "d.npz", probabilities=np.zeros((2, 3, 4), np.float32))
    blob = bytearray((tmp_path / "d.npz").read_bytes())
    at = blob.index(b"(2, 3, 4)")
    blob[at : at + 9] = b"(2,-3, 4)"  # a negative dimension, same length
    (tmp_path / "d.npz").write_bytes(bytes(blob))
    with pytest.raises(FileFormatError, match=r"d\.npz: .*(negative|not a \.npy)"):
        read_npz(tmp_path / "d.npz")
    blob[at : at + 9] = b"(2, 9, 4)"  # more than the member holds
    (tmp_path / "d.npz").write_bytes(bytes(blob))
    with pytest.raises(FileFormatError, match=r"d\.npz: truncated 'probabilities'"):
        read_npz(tmp_path / "d.npz")


@pytest.mark.parametrize("name", ["a.nii.gz", "a.nii", "a.npz", "z.npz"])
def test_declared_sizes_beyond_available_memory_are_refused(tmp_path, name, monkeypatch):
    probs = _probs()
    if name.endswith(".npz"):
        _write_npz(tmp_path / name, probs, "stored" if name == "a.npz" else "deflated")
        read = read_npz
    else:
        img = nib.Nifti1Image(probs[1].T.copy(), np.eye(4))
        img.header.set_slope_inter(2.0, 0.0)  # a scaled .nii allocates; an unscaled one is mapped
        nib.save(img, tmp_path / name)
        read = read_nifti
    monkeypatch.setattr(_gzip, "available_memory", lambda: 1000)
    with pytest.raises(FileFormatError, match=re.escape(name) + r": declares \d+ bytes .* more than the 1000 bytes of memory available"):
        read(tmp_path / name)
    monkeypatch.setattr(_gzip, "available_memory", lambda: None)  # unknown: not checked
    read(tmp_path / name)


@pytest.mark.skipif(_gzip.available_memory() is None, reason="no /proc/meminfo")
def test_a_huge_declared_size_is_refused_by_the_real_memory_check(tmp_path):
    raw = _patch(_raw_nifti(nib.Nifti2Image), nib.Nifti2Image, dim=(2**20, 2**20, 2**10), slope=2.0)
    with pytest.raises(FileFormatError, match=r"h\.nii\.gz: declares \d+ bytes .*\(.* PiB\), more than the \d+ bytes of memory available"):
        read_nifti(_write(tmp_path, raw, ".nii.gz"))
    with pytest.raises(FileFormatError, match=r"h\.nii: truncated NIfTI file \(\d+ bytes, the header needs \d+\)"):
        read_nifti(_write(tmp_path, raw, ".nii"))  # a .nii is mapped: its size on disk tells first


def test_available_memory_reads_meminfo():
    memory = _gzip.available_memory()
    assert memory is None or memory > 1 << 20


_MEMINFO = "MemTotal:       16000000 kB\nMemFree:         1000000 kB\nMemAvailable:    8000000 kB\n"
_GIB = 1 << 30


@pytest.mark.parametrize(
    "files, expected",
    [
        ({}, 8_000_000 * 1024),  # no cgroup files (a host): MemAvailable
        ({"v2_max": "max", "v2_current": str(5 * _GIB)}, 8_000_000 * 1024),  # v2 without a limit
        ({"v2_max": str(2 * _GIB), "v2_current": str(_GIB // 2)}, 2 * _GIB - _GIB // 2),  # v2 limit below MemAvailable
        ({"v2_max": str(2 * _GIB), "v2_current": str(_GIB), "v2_stat": "anon 100\ninactive_file 268435456\n"},
         _GIB + (1 << 28)),  # reclaimable page cache is not counted as used
        ({"v2_max": str(2 * _GIB), "v2_current": str(3 * _GIB)}, 0),  # over the limit: nothing left
        ({"v2_max": str(100 * _GIB), "v2_current": "0"}, 8_000_000 * 1024),  # a limit above MemAvailable
        ({"v1_limit": str(3 * _GIB), "v1_usage": str(_GIB)}, 2 * _GIB),  # cgroup v1
        ({"v1_limit": str(3 * _GIB), "v1_usage": str(2 * _GIB), "v1_stat": "total_inactive_file 1073741824\n"},
         2 * _GIB),
        ({"v1_limit": "9223372036854771712", "v1_usage": str(_GIB)}, 8_000_000 * 1024),  # v1's "no limit"
        ({"v2_max": str(_GIB), "v2_current": "0", "meminfo": ""}, _GIB),  # no MemAvailable: the cgroup alone
        ({"meminfo": ""}, None),  # nothing known
        ({"v2_max": "garbage", "v2_current": "0"}, 8_000_000 * 1024),  # unreadable cgroup files: MemAvailable
    ],
)
def test_available_memory_is_the_least_of_meminfo_and_the_cgroup_limit(tmp_path, monkeypatch, files, expected):
    from clskern.io import _memory

    names = {"meminfo": "MEMINFO", "v2_max": "CGROUP2_MAX", "v2_current": "CGROUP2_CURRENT", "v2_stat": "CGROUP2_STAT",
             "v1_limit": "CGROUP1_LIMIT", "v1_usage": "CGROUP1_USAGE", "v1_stat": "CGROUP1_STAT"}
    files = {"meminfo": _MEMINFO, **files}
    for key, constant in names.items():
        path = tmp_path / key
        if key in files and files[key] != "":
            path.write_text(files[key] + "\n")
        monkeypatch.setattr(_memory, constant, str(path))  # a missing file stands for a missing /sys path
    assert _memory.available_memory() == expected
    assert _gzip.available_memory() == expected  # what check_memory uses


def test_a_cgroup_limit_refuses_what_meminfo_would_allow(tmp_path, monkeypatch):
    from clskern.io import _memory

    (tmp_path / "max").write_text("1000\n")
    (tmp_path / "current").write_text("0\n")
    monkeypatch.setattr(_memory, "CGROUP2_MAX", str(tmp_path / "max"))
    monkeypatch.setattr(_memory, "CGROUP2_CURRENT", str(tmp_path / "current"))
    img = nib.Nifti1Image(_probs()[1].T.copy(), np.eye(4))
    nib.save(img, tmp_path / "a.nii.gz")
    with pytest.raises(FileFormatError, match=r"a\.nii\.gz: declares \d+ bytes .* more than the 1000 bytes of memory available"):
        read_nifti(tmp_path / "a.nii.gz")


# --- 4. no third-party log lines or warnings -------------------------------------------------


def _qfac_zero(tmp_path, suffix):
    raw = _raw_nifti()
    struct.pack_into("<f", raw, 76, 0.0)  # pixdim[0] (qfac) = 0: nibabel logs a warning on load
    return _write(tmp_path, bytes(raw), suffix)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_reading_emits_no_nibabel_log_records(tmp_path, suffix, caplog):
    path = _qfac_zero(tmp_path, suffix)
    caplog.set_level(logging.DEBUG)
    vol = read_nifti(path)
    read_header(path)
    assert vol.array.shape == (4, 3, 2)
    assert not [r for r in caplog.records if r.name.startswith("nibabel")], caplog.text
    nib.load(path)  # the user's own nibabel calls keep their records
    assert any("qfac" in r.getMessage() for r in caplog.records if r.name.startswith("nibabel"))


def test_nibabel_warnings_while_parsing_a_header_do_not_leak(tmp_path, monkeypatch):
    original = nib.Nifti1Header.from_fileobj.__func__

    def warning_from_fileobj(cls, *args, **kwargs):
        warnings.warn("a nibabel header warning", UserWarning, stacklevel=2)
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(nib.Nifti1Header, "from_fileobj", classmethod(warning_from_fileobj))
    path = _nifti_gz(tmp_path)
    before = list(warnings.filters)
    read_nifti(path)  # pytest turns warnings into errors: a leak would raise here
    assert warnings.filters == before
    with pytest.warns(UserWarning, match="a nibabel header warning"):
        with gzip.open(path) as f:
            nib.Nifti1Header.from_fileobj(f)


def test_reader_threads_leave_logging_and_warnings_as_they_were(tmp_path):
    paths = [_qfac_zero(tmp_path, ".nii.gz")] + [_nifti_gz(tmp_path, f"t{i}.nii.gz") for i in range(3)]
    before = list(warnings.filters)
    logger = nib.imageglobals.logger
    level = logger.level
    errors = []

    def work():
        try:
            for _ in range(20):
                for p in paths:
                    read_nifti(p)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert warnings.filters == before and logger.level == level
