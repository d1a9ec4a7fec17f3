"""Readers: NIfTI (gz, plain, big-endian, NIfTI-2, scaled), gzip backends, npz, npy, pkl."""

import gzip
import pickle

import nibabel as nib
import numpy as np
import pytest

from clskern.io import (
    FileFormatError,
    gunzip,
    gzip_backends,
    read_nifti,
    read_npy,
    read_npz,
    read_pkl_affine,
    read_scores,
)

SHAPE = (7, 6, 5)


def _scores(seed=0):
    return np.random.default_rng(seed).random(SHAPE, dtype=np.float32)


def _affine():
    a = np.diag([0.8, 0.9, 2.5, 1.0])
    a[:3, 3] = [-10.0, 4.0, 7.5]
    return a


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
@pytest.mark.parametrize("endian", ["<", ">"])
@pytest.mark.parametrize("klass", [nib.Nifti1Image, nib.Nifti2Image])
def test_nifti_roundtrip_fortran_in_file_dtype(tmp_path, suffix, endian, klass):
    p = _scores()
    header = (nib.Nifti1Header if klass is nib.Nifti1Image else nib.Nifti2Header)(endianness=endian)
    path = tmp_path / f"case{suffix}"
    nib.save(klass(p, _affine(), header), path)
    vol = read_nifti(path)
    assert vol.array.dtype == np.dtype(f"{endian}f4")
    assert vol.array.flags.f_contiguous
    np.testing.assert_array_equal(vol.array, p)
    np.testing.assert_allclose(vol.affine, _affine())
    assert vol.path == str(path)


def test_gz_array_is_a_view_of_the_decompressed_bytes(tmp_path):
    nib.save(nib.Nifti1Image(_scores(), _affine()), tmp_path / "a.nii.gz")
    array = read_nifti(tmp_path / "a.nii.gz").array
    assert array.base is not None and not array.flags.owndata


def test_scaled_nifti_is_scaled_like_nibabel(tmp_path):
    q = np.arange(np.prod(SHAPE), dtype=np.int16).reshape(SHAPE)
    img = nib.Nifti1Image(q, _affine())
    img.header.set_slope_inter(0.5, -1.0)
    nib.save(img, tmp_path / "s.nii.gz")
    expected = np.asanyarray(nib.load(tmp_path / "s.nii.gz").dataobj)
    got = read_nifti(tmp_path / "s.nii.gz").array
    np.testing.assert_array_equal(got, expected)
    assert got.dtype == expected.dtype


@pytest.mark.parametrize("backend", gzip_backends())
def test_gzip_backends_agree(backend):
    data = np.random.default_rng(1).integers(0, 7, 200_000, dtype=np.uint8).tobytes()
    assert gunzip(gzip.compress(data), backend=backend) == data
    two = gzip.compress(data[:1000]) + gzip.compress(data[1000:])  # multi-member file
    assert gunzip(two, backend=backend) == data


@pytest.mark.parametrize("backend", gzip_backends())
@pytest.mark.parametrize("members", [2, 4])
def test_nifti_of_equal_sized_gzip_members(tmp_path, backend, members):
    # libdeflate reads the first member only; its size equals the last one's ISIZE here
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), np.float32) + _scores()[:1, :1, :1], _affine()), tmp_path / "a.nii")
    raw = (tmp_path / "a.nii").read_bytes()
    raw += bytes(-len(raw) % members)  # trailing padding after the data: harmless
    n = len(raw) // members
    path = tmp_path / "multi.nii.gz"
    path.write_bytes(b"".join(gzip.compress(raw[i * n : (i + 1) * n]) for i in range(members)))
    assert gunzip(path.read_bytes(), backend=backend) == raw
    np.testing.assert_array_equal(read_nifti(path, backend=backend).array, nib.load(tmp_path / "a.nii").get_fdata())


@pytest.mark.parametrize("backend", gzip_backends())
@pytest.mark.parametrize("members", [2, 4])
def test_gzip_members_with_identical_bytes(backend, members):
    # same size *and* CRC as the last member: only the member boundary tells them apart
    part = np.random.default_rng(3).bytes(5000)
    assert gunzip(gzip.compress(part) * members, backend=backend) == part * members
    assert gunzip(memoryview(gzip.compress(part) * members), backend=backend) == part * members


@pytest.mark.parametrize("backend", gzip_backends())
def test_gzip_errors_name_file_and_problem(backend):
    blob = gzip.compress(np.random.default_rng(2).bytes(100_000))
    with pytest.raises(FileFormatError, match=r"f\.gz: truncated"):
        gunzip(blob[: len(blob) // 2], "f.gz", backend)
    broken = bytearray(blob)
    broken[len(blob) // 2] ^= 0xFF
    broken[len(blob) // 2 + 1] ^= 0x55
    with pytest.raises(FileFormatError, match=r"f\.gz: (corrupt|truncated)"):
        gunzip(bytes(broken), "f.gz", backend)
    with pytest.raises(FileFormatError, match="not a gzip file"):
        gunzip(b"plain text", "f.gz", backend)


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="gzip backend"):
        gunzip(gzip.compress(b"x"), backend="lzma")


def test_truncated_and_non_nifti_files(tmp_path):
    nib.save(nib.Nifti1Image(_scores(), _affine()), tmp_path / "ok.nii")
    raw = (tmp_path / "ok.nii").read_bytes()
    (tmp_path / "short.nii.gz").write_bytes(gzip.compress(raw[: len(raw) - 40]))
    with pytest.raises(FileFormatError, match=r"short\.nii\.gz: truncated NIfTI"):
        read_nifti(tmp_path / "short.nii.gz")
    (tmp_path / "short.nii").write_bytes(raw[: len(raw) - 40])
    with pytest.raises(FileFormatError, match=r"short\.nii"):
        read_nifti(tmp_path / "short.nii")
    (tmp_path / "text.nii.gz").write_bytes(gzip.compress(b"hello, this is not a NIfTI header" * 20))
    with pytest.raises(FileFormatError, match=r"text\.nii\.gz: not a NIfTI file"):
        read_nifti(tmp_path / "text.nii.gz")
    bad = bytearray(raw)
    bad[40:56] = np.array([9, -3, 5, 5, 1, 1, 1, 1], np.int16).tobytes()  # dim[0] = 9: invalid
    (tmp_path / "hdr.nii").write_bytes(bytes(bad))
    with pytest.raises(FileFormatError, match=r"hdr\.nii: unreadable NIfTI"):
        read_nifti(tmp_path / "hdr.nii")
    with pytest.raises(FileNotFoundError):
        read_nifti(tmp_path / "missing.nii.gz")


def test_npz_is_aligned_to_nibabel_axes_without_copy(tmp_path):
    xyz = _scores()
    probs = np.stack([1 - xyz.T, xyz.T]).astype(np.float32)  # nnU-Net: (C, z, y, x)
    np.savez_compressed(tmp_path / "c.npz", probabilities=probs)
    got = read_npz(tmp_path / "c.npz", channel=1)
    assert got.shape == SHAPE and got.flags.f_contiguous and not got.flags.owndata
    np.testing.assert_array_equal(got, xyz)
    np.testing.assert_array_equal(read_npz(tmp_path / "c.npz", channel=0), 1 - xyz)
    with pytest.raises(ValueError, match="channel 2 does not exist"):
        read_npz(tmp_path / "c.npz", channel=2)
    np.savez(tmp_path / "other.npz", logits=probs)
    with pytest.raises(FileFormatError, match="no array 'probabilities'"):
        read_npz(tmp_path / "other.npz")
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(FileFormatError, match=r"junk\.npz: unreadable"):
        read_npz(tmp_path / "junk.npz")


def test_npy_plain_and_channel_first(tmp_path):
    xyz = _scores()
    np.save(tmp_path / "a.npy", xyz)
    np.testing.assert_array_equal(read_npy(tmp_path / "a.npy", ndim=3), xyz)
    np.save(tmp_path / "b.npy", np.stack([1 - xyz, xyz]))
    np.testing.assert_array_equal(read_scores(tmp_path / "b.npy").array, xyz)
    np.testing.assert_array_equal(read_scores(tmp_path / "b.npy", channel=0).array, 1 - xyz)


def test_nifti_channel_last_scores(tmp_path):
    xyz = _scores()
    nib.save(nib.Nifti1Image(np.stack([1 - xyz, xyz], axis=-1), _affine()), tmp_path / "m.nii.gz")
    np.testing.assert_array_equal(read_scores(tmp_path / "m.nii.gz").array, xyz)
    nib.save(nib.Nifti1Image(xyz[..., None], _affine()), tmp_path / "one.nii.gz")
    np.testing.assert_array_equal(read_scores(tmp_path / "one.nii.gz").array, xyz)


def test_pkl_affines(tmp_path):
    with open(tmp_path / "n.pkl", "wb") as f:
        pickle.dump({"nibabel_stuff": {"original_affine": _affine()}}, f)
    np.testing.assert_array_equal(read_pkl_affine(tmp_path / "n.pkl"), _affine())
    sitk = {"spacing": (0.8, 0.9, 2.5), "origin": (10.0, -4.0, 7.5), "direction": (1, 0, 0, 0, 1, 0, 0, 0, 1)}
    with open(tmp_path / "s.pkl", "wb") as f:
        pickle.dump({"sitk_stuff": sitk}, f)
    # SimpleITK's world is LPS: x and y flip against nibabel's RAS
    expected = np.diag([-0.8, -0.9, 2.5, 1.0])
    expected[:3, 3] = [-10.0, 4.0, 7.5]
    np.testing.assert_allclose(read_pkl_affine(tmp_path / "s.pkl"), expected)
    with open(tmp_path / "e.pkl", "wb") as f:
        pickle.dump({"spacing": (1, 1, 1)}, f)
    with pytest.raises(FileFormatError, match="no geometry"):
        read_pkl_affine(tmp_path / "e.pkl")
    with open(tmp_path / "2d.pkl", "wb") as f:  # SimpleITKIO on a 2-D image
        pickle.dump({"sitk_stuff": {"spacing": (0.8, 0.9), "origin": (0.0, 0.0), "direction": (1, 0, 0, 1)}}, f)
    with pytest.raises(FileFormatError, match=r"2d\.pkl: sitk_stuff describes a 2-D image"):
        read_pkl_affine(tmp_path / "2d.pkl")


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_npz_fast_path_matches_np_load(tmp_path, save, dtype):
    xyz = _scores(5)
    probs = np.stack([1 - xyz.T, xyz.T]).astype(dtype)
    save(tmp_path / "c.npz", probabilities=probs, other=np.arange(3))
    np.testing.assert_array_equal(read_npz(tmp_path / "c.npz"), np.load(tmp_path / "c.npz")["probabilities"][1].T)
    save(tmp_path / "f.npz", probabilities=np.asfortranarray(probs))  # a Fortran-ordered member
    np.testing.assert_array_equal(read_npz(tmp_path / "f.npz"), probs[1].T)


@pytest.mark.parametrize("backend", gzip_backends())
def test_inflate_raw_backends(backend):
    import zlib

    from clskern.io._gzip import inflate_raw

    data = np.random.default_rng(6).integers(0, 5, 100_000, dtype=np.uint8).tobytes()
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    raw = c.compress(data) + c.flush()
    assert bytes(inflate_raw(raw, len(data), backend=backend)) == data
    with pytest.raises(FileFormatError, match="x.npz: (truncated|corrupt)"):
        inflate_raw(raw[: len(raw) // 2], len(data), "x.npz", backend)


def test_truncated_and_corrupt_npz(tmp_path):
    probs = np.stack([1 - _scores().T, _scores().T])
    np.savez_compressed(tmp_path / "c.npz", probabilities=probs)
    blob = (tmp_path / "c.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(FileFormatError, match=r"cut\.npz"):
        read_npz(tmp_path / "cut.npz")
    broken = bytearray(blob)
    for i in range(100, 140):
        broken[i] ^= 0x5A
    (tmp_path / "bad.npz").write_bytes(bytes(broken))
    with pytest.raises(FileFormatError, match=r"bad\.npz"):
        read_npz(tmp_path / "bad.npz")


@pytest.mark.parametrize("size", [100, 100_000])  # the second runs past the first 64 KiB read
def test_header_extensions_of_any_size(tmp_path, size):
    img = nib.Nifti1Image(_scores(), _affine())
    img.header.extensions.append(nib.nifti1.Nifti1Extension("comment", b"x" * size))
    nib.save(img, tmp_path / "e.nii.gz")
    vol = read_nifti(tmp_path / "e.nii.gz")
    np.testing.assert_array_equal(vol.array, _scores())
    assert vol.header.get_data_offset() > size


def test_an_explicit_channel_must_exist(tmp_path):
    from clskern.io.errors import MismatchError

    probs = np.random.default_rng(4).random((2, 5, 6, 7), dtype=np.float32)
    np.savez_compressed(tmp_path / "c.npz", probabilities=probs)
    np.save(tmp_path / "c.npy", probs)
    np.save(tmp_path / "one.npy", probs[1].T)
    nib.save(nib.Nifti1Image(_scores(), _affine()), tmp_path / "one.nii.gz")
    for name in ("c.npz", "c.npy"):
        with pytest.raises(MismatchError, match=rf"{name}: channel -2 does not exist .*2 channels"):
            read_scores(tmp_path / name, channel=-2)
        np.testing.assert_array_equal(read_scores(tmp_path / name).array, probs[1].T if name == "c.npz" else probs[1])
    for name in ("one.npy", "one.nii.gz"):
        with pytest.raises(MismatchError, match=rf"{name}: channel 5 does not exist \(the file has 1 channel\)"):
            read_scores(tmp_path / name, channel=5)
        assert read_scores(tmp_path / name).array.shape == read_scores(tmp_path / name, channel=0).array.shape
