"""NumPy score files: nnU-Net v2 ``CASE.npz`` and plain ``.npy``.

nnU-Net v2 (``--save_probabilities``) writes ``CASE.npz`` with key
``probabilities`` of shape ``(C, z, y, x)``: its axes are reversed against
nibabel's ``(x, y, z)``. ``read_npz`` picks one class and returns its
transpose, a view (Fortran order in ``(x, y, z)``), so it lines up with the
label NIfTI without a copy. ``.npy`` files are memory-mapped and used as they
are (same axes as the labels), or ``(C, ...)`` with a channel to pick.
"""

import os
import pickle
import zipfile

import numpy as np

from .errors import FileFormatError, MismatchError

NPZ_KEY = "probabilities"


def _channel(array, channel, path, axis_name):
    n = array.shape[0]
    if not -n <= channel < n:
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
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as z:
            if key not in z.files:
                raise FileFormatError(f"{path}: no array {key!r} (it holds {', '.join(z.files) or 'nothing'})")
            array = z[key]
    except FileFormatError:
        raise
    except FileNotFoundError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise FileFormatError(f"{path}: unreadable .npz file ({exc})") from None
    if array.ndim < 2:
        raise FileFormatError(f"{path}: {key!r} has shape {array.shape}, expected (C, z, y, x)")
    return _channel(array, channel, path, f"{key!r} of shape {array.shape}").T


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
    return array


def _lps_to_ras(direction, spacing, origin):
    affine = np.eye(4)
    affine[:3, :3] = np.asarray(direction, dtype=np.float64).reshape(3, 3) * np.asarray(spacing, dtype=np.float64)
    affine[:3, 3] = origin
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine


def read_pkl_affine(path):
    """The voxel-to-world affine in an nnU-Net ``CASE.pkl`` (nibabel convention).

    nnU-Net keeps either ``nibabel_stuff['original_affine']`` (NibabelIO) or
    ``sitk_stuff`` spacing, origin and direction (SimpleITK, LPS), which is
    turned into nibabel's RAS affine. The file is a pickle: read only files
    your own nnU-Net run wrote.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            props = pickle.load(f)
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise FileFormatError(f"{path}: unreadable nnU-Net .pkl ({exc})") from None
    if not isinstance(props, dict):
        raise FileFormatError(f"{path}: not an nnU-Net properties file")
    nib_stuff = props.get("nibabel_stuff")
    if isinstance(nib_stuff, dict) and "original_affine" in nib_stuff:
        return np.asarray(nib_stuff["original_affine"], dtype=np.float64)
    sitk = props.get("sitk_stuff")
    if isinstance(sitk, dict) and {"spacing", "origin", "direction"} <= set(sitk):
        return _lps_to_ras(sitk["direction"], sitk["spacing"], sitk["origin"])
    raise FileFormatError(f"{path}: no geometry (neither nibabel_stuff nor sitk_stuff)")
