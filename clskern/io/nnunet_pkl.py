"""nnU-Net v2's ``CASE.pkl``: read it without running code, and what it says about the ``.npz`` axes.

nnU-Net v2 (``--save_probabilities``) writes ``CASE.pkl``, the properties its
image reader returned, beside ``CASE.npz``. The probabilities are in the
reader's axes, reversed (``(C, z, y, x)``; ``read_npz`` reverses them back):

- ``SimpleITKIO``: ``sitk_stuff`` holds spacing, origin and direction (LPS);
  the array axes are the file's voxel axes.
- ``NibabelIO``: ``nibabel_stuff['original_affine']``; the file's voxel axes.
- ``NibabelIOWithReorient``: ``nibabel_stuff`` also holds
  ``reoriented_affine``: the probabilities are in the axes of the image
  reoriented to RAS (``as_reoriented(io_orientation(original_affine))``);
  nnU-Net undoes that only when it writes its segmentation.

``read_pkl_geometry`` returns a ``PklGeometry`` that brings such an array
back to the file's (the labels') axes, as nnU-Net does for its segmentation,
with flips and transposes (views, no copy). Pickles can run code when loaded:
``load_properties`` admits only the containers, numbers and NumPy arrays that
nnU-Net writes, and refuses any other global before it is looked up.
"""

import codecs
import importlib
import io
import os
import pickle
from dataclasses import dataclass

import numpy as np

from .errors import FileFormatError, MismatchError

AFFINE_ATOL = 1e-3  # world units (mm); clskern.io.cases uses the same
MAX_PKL_BYTES = 64 << 20  # nnU-Net's properties files are a few kB
ALLOWED = "dicts, lists, tuples, sets, strings, numbers and NumPy arrays"

_BUILTINS = ("dict", "list", "tuple", "set", "frozenset", "str", "bytes", "bytearray", "int", "float", "bool",
             "complex")
_NUMPY_CORE = {  # the same functions under numpy 1.x's and 2.x's module names
    ("multiarray", "_reconstruct"),  # ndarray.__reduce__
    ("multiarray", "scalar"),  # numpy scalars (np.float64(...))
    ("numeric", "_frombuffer"),  # ndarray.__reduce_ex__ for pickle protocol 5
}


def _latin1(text, encoding="latin1"):
    """``_codecs.encode`` as pickle protocols 0-2 use it for ``bytes``; no other codec."""
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"codec {encoding!r}")
    return codecs.encode(text, "latin1")


def _numpy_core(submodule, name):
    for package in ("numpy._core", "numpy.core"):
        try:
            return getattr(importlib.import_module(f"{package}.{submodule}"), name)
        except (ImportError, AttributeError):
            continue
    raise pickle.UnpicklingError(f"numpy has no {submodule}.{name}")


class _Refused(pickle.UnpicklingError):
    def __init__(self, module, name):
        super().__init__(f"{module}.{name}")
        self.module, self.name = module, name


class _PropertiesUnpickler(pickle.Unpickler):
    """An unpickler that resolves only an allow-list of globals (never imports anything else)."""

    def find_class(self, module, name):
        if module == "__builtin__":  # protocols 0-2 from Python 2 naming
            module = "builtins"
        if module == "builtins" and name in _BUILTINS:
            return getattr(__import__("builtins"), name)
        if module == "collections" and name == "OrderedDict":
            from collections import OrderedDict

            return OrderedDict
        if module == "_codecs" and name == "encode":
            return _latin1
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        for package in ("numpy.core.", "numpy._core."):
            if module.startswith(package) and (module[len(package):], name) in _NUMPY_CORE:
                return _numpy_core(module[len(package):], name)
        raise _Refused(module, name)


def load_properties(path):
    """The dict in an nnU-Net ``CASE.pkl``, unpickled with an allow-list.

    Only builtin containers and scalars, ``collections.OrderedDict`` and NumPy
    arrays, scalars and dtypes are admitted; anything else (a global that
    could run code) is refused before it is imported.

    Raises
    ------
    FileFormatError
        A refused global, a truncated or corrupt file, or not a dict; one
        line naming the file.
    FileNotFoundError
        No such file.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_PKL_BYTES + 1)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise FileFormatError(f"{path}: unreadable nnU-Net .pkl ({exc.strerror or exc})") from None
    if len(data) > MAX_PKL_BYTES:
        raise FileFormatError(f"{path}: over {MAX_PKL_BYTES >> 20} MiB; not an nnU-Net properties file")
    try:
        props = _PropertiesUnpickler(io.BytesIO(data)).load()
    except _Refused as exc:
        raise FileFormatError(
            f"{path}: refused to load {exc.module}.{exc.name} from a .pkl (clskern reads only {ALLOWED}; "
            "is this nnU-Net's properties file?)"
        ) from None
    except MemoryError:
        raise FileFormatError(f"{path}: unreadable nnU-Net .pkl (out of memory while unpickling)") from None
    except RecursionError:
        raise FileFormatError(f"{path}: unreadable nnU-Net .pkl (nested too deeply)") from None
    except Exception as exc:  # UnpicklingError, EOFError, ValueError, TypeError from a corrupt stream ...
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise FileFormatError(f"{path}: unreadable nnU-Net .pkl ({detail})") from None
    if not isinstance(props, dict):
        raise FileFormatError(f"{path}: not an nnU-Net properties file (holds {type(props).__name__}, not a dict)")
    return props


def _lps_to_ras(direction, spacing, origin):
    """nibabel's (RAS) affine of a SimpleITK geometry (LPS world)."""
    affine = np.eye(4)
    affine[:3, :3] = np.asarray(direction, dtype=np.float64).reshape(3, 3) * np.asarray(spacing, dtype=np.float64)
    affine[:3, 3] = np.asarray(origin, dtype=np.float64)
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine


def _affine(value, path, what):
    try:
        affine = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise FileFormatError(f"{path}: {what} is not a 4 x 4 affine") from None
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise FileFormatError(f"{path}: {what} is not a finite 4 x 4 affine (shape {affine.shape})")
    return affine


@dataclass(frozen=True)
class PklGeometry:
    """What an nnU-Net ``CASE.pkl`` says about its ``CASE.npz``.

    Attributes
    ----------
    path : str
        The ``.pkl``.
    reader : str
        ``"sitk"`` (SimpleITKIO), ``"nibabel"`` (NibabelIO) or
        ``"nibabel_reorient"`` (NibabelIOWithReorient).
    affine : ndarray
        The source image's voxel-to-world affine (nibabel's RAS convention):
        the affine the labels, and nnU-Net's segmentation, have.
    reoriented_affine : ndarray or None
        For ``"nibabel_reorient"``: the affine of the axes the probabilities
        are in.
    """

    path: str
    reader: str
    affine: np.ndarray
    reoriented_affine: np.ndarray | None = None

    @property
    def reoriented(self):
        """True when the ``.npz`` axes differ from the source file's."""
        return self.reoriented_affine is not None and not np.array_equal(self._back(), _IDENTITY)

    def _back(self):
        from nibabel.orientations import axcodes2ornt, io_orientation, ornt_transform

        return ornt_transform(axcodes2ornt("RAS"), io_orientation(self.affine))

    def to_original(self, array, what=None, atol=AFFINE_ATOL):
        """``array`` (3-D, ``read_npz``'s axes) in the source file's axes: a view.

        For ``"nibabel_reorient"`` this undoes the reorientation exactly as
        nnU-Net does when writing its segmentation, and checks that doing so
        maps ``reoriented_affine`` onto the original affine; otherwise the
        array is returned as it is.

        Raises
        ------
        FileFormatError
            When the restored affine disagrees with the original one (the
            ``.pkl`` does not describe this array); ``what`` names the array.
        """
        if self.reoriented_affine is None:
            return array
        from nibabel.orientations import OrientationError, apply_orientation, inv_ornt_aff

        what = what or "the probabilities"
        if array.ndim != 3:
            raise MismatchError(f"{what}: {array.ndim}-D array; {self.path} describes a 3-D image")
        try:
            back = self._back()
            restored = self.reoriented_affine @ inv_ornt_aff(back, array.shape)
            out = apply_orientation(array, back)
        except OrientationError as exc:
            raise FileFormatError(f"{self.path}: cannot undo nnU-Net's reorientation ({exc})") from None
        if not np.allclose(restored, self.affine, rtol=0, atol=atol):
            worst = float(np.max(np.abs(restored - self.affine)))
            raise MismatchError(
                f"{what} of shape {array.shape} do not fit {self.path}: undoing the reorientation gives an "
                f"affine off the original by {worst:.3g} > {atol:g}"
            )
        return out


_IDENTITY = np.array([[0.0, 1.0], [1.0, 1.0], [2.0, 1.0]])


def read_pkl_geometry(path):
    """The geometry an nnU-Net ``CASE.pkl`` records (see ``PklGeometry``).

    Raises
    ------
    FileFormatError
        The file cannot be read safely (see ``load_properties``), or holds no
        3-D geometry (neither ``nibabel_stuff`` nor ``sitk_stuff``).
    FileNotFoundError
        No such file.
    """
    path = os.fspath(path)
    props = load_properties(path)
    nib_stuff = props.get("nibabel_stuff")
    if isinstance(nib_stuff, dict) and "original_affine" in nib_stuff:
        original = _affine(nib_stuff["original_affine"], path, "nibabel_stuff['original_affine']")
        if nib_stuff.get("reoriented_affine") is None:
            return PklGeometry(path, "nibabel", original)
        reoriented = _affine(nib_stuff["reoriented_affine"], path, "nibabel_stuff['reoriented_affine']")
        return PklGeometry(path, "nibabel_reorient", original, reoriented)
    sitk = props.get("sitk_stuff")
    if isinstance(sitk, dict) and {"spacing", "origin", "direction"} <= set(sitk):
        try:
            spacing = np.asarray(sitk["spacing"], dtype=np.float64).ravel()
            origin = np.asarray(sitk["origin"], dtype=np.float64).ravel()
            direction = np.asarray(sitk["direction"], dtype=np.float64).ravel()
        except (TypeError, ValueError):
            raise FileFormatError(f"{path}: sitk_stuff spacing, origin or direction is not numeric") from None
        if spacing.size != 3 or origin.size != 3 or direction.size != 9:
            raise FileFormatError(
                f"{path}: sitk_stuff describes a {spacing.size}-D image; clskern pairs 3-D volumes only"
            )
        affine = _lps_to_ras(direction, spacing, origin)
        if not np.all(np.isfinite(affine)):
            raise FileFormatError(f"{path}: sitk_stuff geometry is not finite")
        return PklGeometry(path, "sitk", affine)
    raise FileFormatError(f"{path}: no geometry (neither nibabel_stuff nor sitk_stuff)")


def read_pkl_affine(path):
    """The voxel-to-world affine in an nnU-Net ``CASE.pkl`` (nibabel convention).

    ``nibabel_stuff['original_affine']`` (NibabelIO, NibabelIOWithReorient),
    or ``sitk_stuff`` spacing, origin and direction (SimpleITK, LPS) turned
    into nibabel's RAS affine: the affine of the source image, hence of
    nnU-Net's segmentation. Read with ``load_properties``' allow-list.
    """
    return read_pkl_geometry(path).affine


def pkl_beside(npz_path):
    """``CASE.pkl`` next to ``CASE.npz`` (whether or not it exists)."""
    npz_path = os.fspath(npz_path)
    return npz_path[: -len(".npz")] + ".pkl" if npz_path.endswith(".npz") else npz_path + ".pkl"
