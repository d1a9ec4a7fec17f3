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
- ``SimpleITKIOWithReorient``: ``sitk_stuff`` also holds
  ``original_orientation`` (SimpleITK's three letters, ``"PRI"``): spacing,
  origin and direction are those of the image reoriented to RAS
  (``sitk.DICOMOrient(image, "RAS")``), the axes the probabilities are in;
  its ``write_seg`` turns the segmentation back with
  ``DICOMOrient(seg, original_orientation)``. The letters name where each
  axis points, as nibabel's axis codes do.

When the plans transpose (``transpose_forward`` in ``plans.json``, not the
identity: nnU-Net's planner puts the lowest-resolution axis first), the
``.npz`` is still in the reader's axes but the ``.pkl``'s
``shape_before_cropping`` (and its cropping box) are in the transposed
axes: ``check_recorded_shape`` compares the two as nnU-Net relates them.

``read_pkl_geometry`` returns a ``PklGeometry`` that brings such an array
back to the file's (the labels') axes, as nnU-Net does for its segmentation,
with flips and transposes (views, no copy). Pickles can run code when loaded:
``load_properties`` admits only the containers, numbers and NumPy arrays that
nnU-Net writes, refuses any other global before it is looked up, and calls
the admitted ones only with the arguments nnU-Net's pickles give them, so a
few bytes of file cannot allocate gigabytes.
"""

from __future__ import annotations

import codecs
import functools
import importlib
import io
import os
import pickle
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import FileFormatError, MismatchError

AFFINE_ATOL = 1e-3  # world units (mm); clskern.io.cases uses the same
MAX_PKL_BYTES = 64 << 20  # nnU-Net's properties files are a few kB
ALLOWED = "dicts, lists, tuples, sets, strings, numbers and NumPy arrays"

# --- the allow-list -------------------------------------------------------------------------
#
# Containers, strings and numbers are built by pickle's opcodes, which run no code
# and allocate no more than the file holds. What pickles of nnU-Net properties
# *call* (protocols 0-5, numpy 1.x and 2.x) is only: set/frozenset of a list,
# bytes() and bytearray(bytes) (protocols 0-3), _codecs.encode(str, "latin1")
# (bytes, protocols 0-2), complex(real, imag), OrderedDict(), numpy.dtype(code,
# align, copy), numpy's _reconstruct(ndarray, (0,), b"b") followed by the array's
# state (ndarray.__reduce__), scalar(dtype, bytes) and _frombuffer(buffer, dtype,
# shape, order) (protocol 5). Each is admitted through a checked stand-in that
# refuses any other argument: bytearray(2_000_000_000) or _reconstruct with a
# large shape would allocate without bound from a few bytes of file. A state
# (pickle's BUILD) is applied only to an array or dtype built so, and only when
# its sizes match the bytes it carries. Object dtypes are refused (numpy would
# read raw bytes as pointers from a forged one).


class _Forbidden(pickle.UnpicklingError):
    """A call (or state) outside the allow-list; ``detail`` says which, on one line."""

    def __init__(self, detail):
        super().__init__(detail)
        self.detail = detail


def _describe(args):
    """A short, one-line account of a call's arguments."""
    parts = []
    for a in args:
        if isinstance(a, (bool, int, float, complex)) or a is None:
            text = repr(a)
            parts.append(text if len(text) <= 24 else f"int of {len(text)} digits")
        elif isinstance(a, (str, bytes, bytearray)):
            parts.append(f"{type(a).__name__} of length {len(a)}")
        elif isinstance(a, tuple) and len(a) <= 8 and all(isinstance(x, int) for x in a):
            parts.append(repr(a))
        elif isinstance(a, np.dtype):
            parts.append(f"dtype {a.str}")
        elif a is _NDARRAY:
            parts.append("ndarray")
        else:
            parts.append(type(a).__name__)
    return "(" + ", ".join(parts) + ")"


def _refuse(name, args):
    raise _Forbidden(f"a call of {name}{_describe(args)}")


def _is_count(n):
    return type(n) is int and n >= 0


def _is_shape(shape):
    return isinstance(shape, tuple) and all(_is_count(n) for n in shape)


def _count(shape):
    total = 1
    for n in shape:
        total *= n
    return total


def _plain_dtype(dtype, name, args):
    if not isinstance(dtype, np.dtype) or dtype.hasobject or dtype.itemsize == 0:
        _refuse(name, args)


def _set(*args):
    if not args:
        return set()
    if len(args) == 1 and type(args[0]) in (list, tuple):
        return set(args[0])
    _refuse("builtins.set", args)


def _frozenset(*args):
    if not args:
        return frozenset()
    if len(args) == 1 and type(args[0]) in (list, tuple):
        return frozenset(args[0])
    _refuse("builtins.frozenset", args)


def _bytes(*args):
    if not args:  # protocols 0-2 pickle b"" as bytes()
        return b""
    if len(args) == 1 and type(args[0]) in (bytes, bytearray):
        return bytes(args[0])
    _refuse("builtins.bytes", args)


def _bytearray(*args):
    if not args:
        return bytearray()
    if len(args) == 1 and type(args[0]) in (bytes, bytearray):
        return bytearray(args[0])
    if len(args) == 2 and type(args[0]) is str and args[1] in ("latin-1", "latin1"):  # older protocols 0-2
        return bytearray(args[0], "latin-1")
    _refuse("builtins.bytearray", args)


def _complex(*args):
    if 1 <= len(args) <= 2 and all(type(a) in (int, float) for a in args):
        return complex(*args)
    _refuse("builtins.complex", args)


def _ordered_dict(*args):
    if not args:
        from collections import OrderedDict

        return OrderedDict()
    _refuse("collections.OrderedDict", args)


def _latin1(*args):
    """``_codecs.encode`` as pickle protocols 0-2 use it for ``bytes``: a str and the latin-1 codec only."""
    if len(args) == 2 and type(args[0]) is str and args[1] in ("latin1", "latin-1"):
        return codecs.encode(args[0], "latin1")
    _refuse("_codecs.encode", args)


def _flag(x):
    return type(x) is bool or (type(x) is int and x in (0, 1))


def _dtype(*args):
    # numpy's dtype.__reduce__: (dtype, (type code such as "f8", "<U2" or "V6", align, copy), state)
    if (1 <= len(args) <= 3 and type(args[0]) is str and len(args[0]) <= 16 and args[0][:1] != "O"
            and all(_flag(a) for a in args[1:])):
        dtype = np.dtype(*args)
        if not dtype.hasobject:
            return dtype
    _refuse("numpy.dtype", args)


class _NdarrayType:
    """``numpy.ndarray`` as a pickle names it: an argument of ``_reconstruct`` only, never called."""

    def __repr__(self):
        return "numpy.ndarray"


_NDARRAY = _NdarrayType()


def _reconstruct(*args):
    # ndarray.__reduce__: _reconstruct(ndarray, (0,), b"b"), then the state sets shape, dtype and data
    if len(args) == 3 and args[0] is _NDARRAY and args[1] == (0,) and type(args[1]) is tuple and args[2] in (b"b", "b"):
        return _numpy_core("multiarray", "_reconstruct")(np.ndarray, (0,), b"b")
    _refuse("numpy._core.multiarray._reconstruct", args)


def _scalar(*args):
    if len(args) == 2 and type(args[1]) is bytes:
        _plain_dtype(args[0], "numpy._core.multiarray.scalar", args)
        if len(args[1]) == args[0].itemsize:
            return _numpy_core("multiarray", "scalar")(*args)
    _refuse("numpy._core.multiarray.scalar", args)


def _frombuffer(*args):
    name = "numpy._core.numeric._frombuffer"
    if len(args) == 4 and type(args[0]) in (bytes, bytearray) and _is_shape(args[2]) and args[3] in ("C", "F"):
        _plain_dtype(args[1], name, args)
        if len(args[0]) == _count(args[2]) * args[1].itemsize:
            return _numpy_core("numeric", "_frombuffer")(*args)
    _refuse(name, args)


_CALLABLES = {_set, _frozenset, _bytes, _bytearray, _complex, _ordered_dict, _latin1, _dtype, _reconstruct, _scalar,
              _frombuffer}
_GLOBALS = {
    ("builtins", "set"): _set,
    ("builtins", "frozenset"): _frozenset,
    ("builtins", "bytes"): _bytes,
    ("builtins", "bytearray"): _bytearray,
    ("builtins", "complex"): _complex,
    ("collections", "OrderedDict"): _ordered_dict,
    ("_codecs", "encode"): _latin1,
    ("numpy", "dtype"): _dtype,
    ("numpy", "ndarray"): _NDARRAY,
}
_NUMPY_CORE = {  # the same functions under numpy 1.x's and 2.x's module names
    ("multiarray", "_reconstruct"): _reconstruct,  # ndarray.__reduce__
    ("multiarray", "scalar"): _scalar,  # numpy scalars (np.float64(...))
    ("numeric", "_frombuffer"): _frombuffer,  # ndarray.__reduce_ex__ for pickle protocol 5
}


def _numpy_core(submodule, name):
    for package in ("numpy._core", "numpy.core"):
        try:
            return getattr(importlib.import_module(f"{package}.{submodule}"), name)
        except (ImportError, AttributeError):
            continue
    raise pickle.UnpicklingError(f"numpy has no {submodule}.{name}")


def _array_state(inst, state):
    """Refuse an ndarray state whose shape does not match the bytes it carries (or holds objects)."""
    given = state
    if isinstance(state, tuple) and len(state) == 5 and type(state[0]) is int:
        state = state[1:]
    if inst.size == 0 and isinstance(state, tuple) and len(state) == 4:
        shape, dtype, fortran, raw = state
        if _is_shape(shape) and _flag(fortran) and type(raw) in (bytes, bytearray):
            if isinstance(dtype, np.dtype) and not dtype.hasobject and len(raw) == _count(shape) * dtype.itemsize:
                return
    raise _Forbidden(f"an ndarray state {_describe(given if isinstance(given, tuple) else (given,))}")


def _dtype_state(inst, state):
    """Check a dtype state against the dtype it is applied to (numpy's dtype.__reduce__ form)."""
    ok = isinstance(state, tuple) and len(state) in (8, 9) and state[0] in (3, 4) and state[1] in ("<", ">", "|", "=")
    if ok:
        sub, names, fields, elsize, alignment, flags = state[2:8]
        ok = elsize in (-1, inst.itemsize) and type(alignment) is int and type(flags) is int and 0 <= flags < 256
        if sub is not None:
            ok = ok and isinstance(sub, tuple) and len(sub) == 2 and isinstance(sub[0], np.dtype) and _is_shape(sub[1])
        if names is not None or fields is not None:
            ok = ok and isinstance(names, tuple) and isinstance(fields, dict) and set(names) == set(fields)
            for value in (fields.values() if ok else ()):
                ok = ok and isinstance(value, tuple) and len(value) in (2, 3) and isinstance(value[0], np.dtype)
                ok = ok and _is_count(value[1]) and value[1] + value[0].itemsize <= inst.itemsize
    if not ok:
        raise _Forbidden(f"a dtype state {_describe(state if isinstance(state, tuple) else (state,))}")


def _dtype_as_numpy_builds_it(dtype):
    """True when ``dtype`` (after a state was applied) is what numpy's public constructors build."""
    try:
        if dtype.names is not None:
            ref = np.dtype({"names": list(dtype.names), "formats": [dtype.fields[n][0] for n in dtype.names],
                            "offsets": [dtype.fields[n][1] for n in dtype.names], "itemsize": dtype.itemsize},
                           align=dtype.isalignedstruct)
        elif dtype.subdtype is not None:
            ref = np.dtype(dtype.subdtype)
        else:
            ref = np.dtype(dtype.str)
    except (TypeError, ValueError):
        return False
    return ref == dtype and ref.flags == dtype.flags and ref.itemsize == dtype.itemsize and not dtype.hasobject


class _PropertiesUnpickler(pickle._Unpickler):
    """An unpickler that resolves only an allow-list of globals (never imports anything else)
    and calls them only through checked stand-ins (see the allow-list above).

    The pure-Python unpickler, for its opcode table: every opcode that calls or
    sets state (REDUCE, BUILD, INST, OBJ, NEWOBJ, NEWOBJ_EX) is replaced.
    nnU-Net's properties files are a few kB, so its speed does not matter.
    """

    def find_class(self, module, name):
        if module == "__builtin__":  # protocols 0-2 from Python 2 naming
            module = "builtins"
        if (module, name) in _GLOBALS:
            return _GLOBALS[module, name]
        for package in ("numpy.core.", "numpy._core."):
            if module.startswith(package) and (module[len(package):], name) in _NUMPY_CORE:
                return _NUMPY_CORE[module[len(package):], name]
        raise _Refused(module, name)

    def _call(self, func, args):
        if not any(func is f for f in _CALLABLES) or not isinstance(args, (tuple, list)):
            raise _Forbidden(f"a call of {func!r}")
        return func(*args)

    def _load_reduce(self):
        args = self.stack.pop()
        self.stack[-1] = self._call(self.stack[-1], args)

    def _load_build(self):
        state = self.stack.pop()
        inst = self.stack[-1]
        if type(inst) is np.ndarray:
            _array_state(inst, state)
            inst.__setstate__(state)
        elif isinstance(inst, np.dtype):
            _dtype_state(inst, state)
            inst.__setstate__(state)
            if not _dtype_as_numpy_builds_it(inst):
                raise _Forbidden(f"a dtype state {_describe(state)}")
        else:
            raise _Forbidden(f"setting the state of a {type(inst).__name__}")

    def _instantiate(self, klass, args):  # INST and OBJ (protocols 0-1): a call like REDUCE's
        self.append(self._call(klass, tuple(args)))

    def _load_newobj(self):
        raise _Forbidden("creating an object by NEWOBJ")

    dispatch = dict(pickle._Unpickler.dispatch)
    dispatch[pickle.REDUCE[0]] = _load_reduce
    dispatch[pickle.BUILD[0]] = _load_build
    dispatch[pickle.NEWOBJ[0]] = _load_newobj
    dispatch[pickle.NEWOBJ_EX[0]] = _load_newobj


class _Refused(pickle.UnpicklingError):
    def __init__(self, module, name):
        super().__init__(f"{module}.{name}")
        self.module, self.name = module, name


def load_properties(path):
    """The dict in an nnU-Net ``CASE.pkl``, unpickled with an allow-list.

    Only builtin containers and scalars, ``collections.OrderedDict`` and NumPy
    arrays, scalars and dtypes are admitted; anything else (a global that
    could run code) is refused before it is imported, and the admitted
    callables only with the arguments nnU-Net's pickles give them (a call
    that would allocate more than the file holds, such as
    ``bytearray(2_000_000_000)``, is refused before it runs).

    Raises
    ------
    FileFormatError
        A refused global or call, a truncated or corrupt file, or not a
        dict; one line naming the file.
    FileNotFoundError
        No such file.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            # read what the file holds, not MAX_PKL_BYTES (read(n) allocates n bytes at once)
            data = f.read(min(os.fstat(f.fileno()).st_size, MAX_PKL_BYTES) + 1)
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
    except _Forbidden as exc:
        raise FileFormatError(
            f"{path}: refused {exc.detail} in a .pkl (clskern reads only {ALLOWED}, built as nnU-Net's pickles "
            "build them; is this nnU-Net's properties file?)"
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
        ``"sitk"`` (SimpleITKIO), ``"nibabel"`` (NibabelIO),
        ``"nibabel_reorient"`` (NibabelIOWithReorient) or ``"sitk_reorient"``
        (SimpleITKIOWithReorient).
    affine : ndarray
        The source image's voxel-to-world affine (nibabel's RAS convention):
        the affine the labels, and nnU-Net's segmentation, have.
    reoriented_affine : ndarray or None
        For the reorienting readers: the affine of the axes the probabilities
        are in.
    original_orientation : str or None
        For ``"sitk_reorient"``: the source image's axis codes, as nnU-Net
        recorded them (``sitk_stuff['original_orientation']``).
    """

    path: str
    reader: str
    affine: np.ndarray
    reoriented_affine: np.ndarray | None = None
    original_orientation: str | None = None

    @property
    def reoriented(self):
        """True when the ``.npz`` axes differ from the source file's."""
        return self.reoriented_affine is not None and not np.array_equal(self._back(), _IDENTITY)

    def _back(self):
        """nibabel's orientation transform from the ``.npz`` axes to the source file's."""
        from nibabel.orientations import axcodes2ornt, io_orientation, ornt_transform

        if self.original_orientation is not None:  # SimpleITKIOWithReorient: DICOMOrient(seg, original_orientation)
            return ornt_transform(io_orientation(self.reoriented_affine), axcodes2ornt(tuple(self.original_orientation)))
        return ornt_transform(axcodes2ornt("RAS"), io_orientation(self.affine))

    def original_shape(self, shape):
        """The shape an array of ``shape`` (``read_npz``'s axes) has in the source file's axes."""
        if self.reoriented_affine is None or len(shape) != 3:
            return tuple(shape)
        from nibabel.orientations import apply_orientation

        return apply_orientation(np.broadcast_to(np.zeros((), np.uint8), tuple(shape)), self._back()).shape

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


def _sitk_reoriented(path, reoriented, codes, shape):
    """SimpleITKIOWithReorient's geometry: the source affine is the reoriented one with
    ``DICOMOrient(.., codes)``'s permutation and flips undone for an array of ``shape``."""
    from nibabel.orientations import OrientationError, inv_ornt_aff

    shape = tuple(int(n) for n in shape)
    if len(shape) != 3:
        raise MismatchError(f"{path}: describes a 3-D image; its .npz holds a {len(shape)}-D one")
    geometry = PklGeometry(path, "sitk_reorient", reoriented, reoriented, codes)
    try:
        original = reoriented @ inv_ornt_aff(geometry._back(), shape)
    except OrientationError as exc:
        raise FileFormatError(f"{path}: cannot undo nnU-Net's reorientation ({exc})") from None
    return PklGeometry(path, "sitk_reorient", original, reoriented, codes)


_SITK_KEYS = {"spacing", "origin", "direction"}
_SITK_REORIENT_KEYS = _SITK_KEYS | {"original_orientation"}


def _axis_codes(value, path):
    """SimpleITK's orientation letters (``"PRI"``) checked: one of L/R, one of P/A, one of I/S."""
    if not isinstance(value, str) or len(value) != 3 or value.upper() != value or \
            sorted({"L": 0, "R": 0, "P": 1, "A": 1, "I": 2, "S": 2}.get(c, 9) for c in value) != [0, 1, 2]:
        raise FileFormatError(f"{path}: sitk_stuff['original_orientation'] is {value!r}, not three axis letters "
                              "(one of L/R, one of A/P, one of S/I, as SimpleITK's DICOMOrient names them)")
    return value


def _npz_spatial_beside(path):
    """The spatial shape, ``read_npz``'s axes ``(x, y, z)``, that the ``CASE.npz`` beside ``CASE.pkl`` declares."""
    from .arrays import npz_header

    npz = path[: -len(".pkl")] + ".npz" if path.endswith(".pkl") else path + ".npz"
    if not os.path.isfile(npz):
        raise FileFormatError(f"{path}: SimpleITKIOWithReorient's geometry needs the shape of {npz} (the .pkl "
                              "records the reoriented image's origin), and it is not there")
    shape, _ = npz_header(npz)
    return tuple(int(n) for n in shape[1:][::-1])


def read_pkl_geometry(path, shape=None):
    """The geometry an nnU-Net ``CASE.pkl`` records (see ``PklGeometry``).

    ``shape`` is the ``.npz``'s spatial shape in ``read_npz``'s axes: needed
    for ``SimpleITKIOWithReorient``, whose ``.pkl`` keeps the reoriented
    image's origin (the source's follows from it, the shape and
    ``original_orientation``); without it the ``CASE.npz`` beside the ``.pkl``
    is asked (its header only).

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
    nib_stuff, sitk = props.get("nibabel_stuff"), props.get("sitk_stuff")
    # nnU-Net's readers write exactly these keys; another key (a damaged or hand-edited file, say a
    # renamed 'reoriented_affine') would change which axes the probabilities are taken in, silently.
    if isinstance(nib_stuff, dict):
        unexpected = sorted(map(str, set(nib_stuff) - {"original_affine", "reoriented_affine"}))
        if unexpected or "original_affine" not in nib_stuff:
            raise FileFormatError(f"{path}: nibabel_stuff must hold original_affine (and reoriented_affine), "
                                  f"found {', '.join(map(repr, sorted(map(str, nib_stuff)))) or 'nothing'}")
    if isinstance(sitk, dict) and set(map(str, sitk)) not in (_SITK_KEYS, _SITK_REORIENT_KEYS):
        raise FileFormatError(f"{path}: sitk_stuff must hold exactly spacing, origin and direction (and "
                              f"original_orientation: SimpleITKIOWithReorient), found "
                              f"{', '.join(map(repr, sorted(map(str, sitk))))}")
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
        if "original_orientation" not in sitk:
            return PklGeometry(path, "sitk", affine)
        codes = _axis_codes(sitk["original_orientation"], path)
        return _sitk_reoriented(path, affine, codes, _npz_spatial_beside(path) if shape is None else shape)
    raise FileFormatError(f"{path}: no geometry (neither nibabel_stuff nor sitk_stuff)")


def read_pkl_affine(path: str | os.PathLike[str]) -> np.ndarray[Any, Any]:
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


# --- the plans' transpose: shape_before_cropping against the .npz ---------------------------------

# nnU-Net's planner (ExperimentPlanner.determine_transpose): the axis of the largest target spacing
# first, the other two in their order. A plans file may say otherwise; without one, only these.
PLANNER_TRANSPOSES = ((0, 1, 2), (1, 0, 2), (2, 0, 1))


def find_plans(npz_path):
    """nnU-Net's ``plans.json`` for a ``CASE.npz``, or None: beside it (``nnUNetv2_predict`` copies it
    there), else, for a fold's ``MODEL/fold_N/validation/CASE.npz``, the model folder's."""
    folder = os.path.dirname(os.path.abspath(os.fspath(npz_path)))
    beside = os.path.join(folder, "plans.json")
    if os.path.isfile(beside):
        return beside
    fold, name = os.path.split(folder)
    model, fold_name = os.path.split(fold)
    if name == "validation" and fold_name.startswith("fold_"):
        in_model = os.path.join(model, "plans.json")
        if os.path.isfile(in_model):
            return in_model
    return None


def _permutation(value, n=3):
    try:
        axes = tuple(int(a) for a in value)
    except (TypeError, ValueError):
        return None
    if any(isinstance(a, bool) or not isinstance(a, (int, np.integer)) for a in value):
        return None
    return axes if sorted(axes) == list(range(n)) else None


def _stat_key(path):
    st = os.stat(path)
    return path, st.st_mtime_ns, st.st_size, st.st_ino


def read_transpose_forward(plans_path):
    """``transpose_forward`` of an nnU-Net ``plans.json`` (a permutation of 0, 1, 2), checked against
    its ``transpose_backward``; ``FileFormatError`` naming the file otherwise."""
    return _transpose_forward(*_stat_key(os.fspath(plans_path)))


@functools.lru_cache(maxsize=64)
def _transpose_forward(path, *_):  # keyed on the file's identity and time: every case of a folder reads it once
    import json

    try:
        with open(path, "rb") as f:
            data = f.read(MAX_PKL_BYTES + 1)
        if len(data) > MAX_PKL_BYTES:
            raise FileFormatError(f"{path}: over {MAX_PKL_BYTES >> 20} MiB; not nnU-Net's plans.json")
        plans = json.loads(data)
    except (OSError, ValueError, RecursionError) as exc:
        raise FileFormatError(f"{path}: unreadable nnU-Net plans.json ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    if not isinstance(plans, dict) or "transpose_forward" not in plans:
        raise FileFormatError(f"{path}: no transpose_forward; not nnU-Net's plans.json")
    forward = _permutation(plans["transpose_forward"])
    if forward is None:
        raise FileFormatError(f"{path}: transpose_forward is {plans['transpose_forward']!r}, not a permutation "
                              "of the axes 0, 1, 2")
    backward = plans.get("transpose_backward")
    if backward is not None and _permutation(backward) != tuple(int(np.argsort(forward)[i]) for i in range(3)):
        raise FileFormatError(f"{path}: transpose_backward {backward!r} does not undo transpose_forward "
                              f"{list(forward)!r}")
    return forward


def _ints(value):
    try:
        out = tuple(int(n) for n in value)
    except (TypeError, ValueError):
        return None
    return out if all(n >= 0 for n in out) else None


def _spacing_first(spacing, forward):
    """Whether ``forward`` puts an axis of the largest spacing first, as nnU-Net's planner does."""
    try:
        spacing = [float(s) for s in spacing]
    except (TypeError, ValueError):
        return False
    return len(spacing) == 3 and spacing[forward[0]] == max(spacing)


def check_recorded_shape(npz_path, npz_shape, pkl_path, props=None, plans_path=None):
    """Check a ``.npz``'s declared shape against the ``shape_before_cropping`` its ``.pkl`` records.

    nnU-Net writes the probabilities in its reader's axes (``npz_shape`` is
    ``(C, z, y, x)`` there) but records ``shape_before_cropping`` after the
    plans' ``transpose_forward``: ``recorded[i] == npz_shape[1:][forward[i]]``.
    With ``plans_path`` (``find_plans``) that ``forward`` is used. Without
    one the identity is accepted, and another of nnU-Net's planner's
    transposes (``PLANNER_TRANSPOSES``) only when the ``.pkl`` agrees with it
    on everything else it records: the planner's choice (the case's largest
    ``spacing``, which the ``.pkl`` keeps in the ``.npz``'s axes, moved
    first), and a cropping box (``bbox_used_for_cropping``,
    ``shape_after_cropping_and_before_resampling``) that lies in the
    recorded shape. A ``.pkl`` without ``shape_before_cropping`` is not
    checked (its geometry is, elsewhere).

    Raises
    ------
    MismatchError
        The shapes disagree; one line naming the ``.npz``, the ``.pkl`` and
        the plans (or their absence).
    FileFormatError
        An unreadable ``plans.json``.
    """
    npz_path, pkl_path = os.fspath(npz_path), os.fspath(pkl_path)
    props = load_properties(pkl_path) if props is None else props
    recorded = props.get("shape_before_cropping")
    recorded = None if recorded is None else _ints(recorded)
    if recorded is None:
        return
    spatial = tuple(int(n) for n in npz_shape[1:])
    shown = f"{npz_path}: declares spatial shape {spatial[::-1]} (x, y, z) but {pkl_path} records {recorded[::-1]}"
    if len(recorded) != len(spatial):
        raise MismatchError(f"{shown}: {len(recorded)} axes against {len(spatial)}")
    if plans_path is not None:
        forward = read_transpose_forward(plans_path)
        if len(spatial) != 3:
            forward = tuple(range(len(spatial)))
        if tuple(spatial[i] for i in forward) != recorded:
            raise MismatchError(f"{shown} (in the axes of transpose_forward {list(forward)} of {plans_path}, "
                                f"that is {tuple(spatial[i] for i in forward)[::-1]})")
        return
    if spatial == recorded:
        return
    transposes = PLANNER_TRANSPOSES if len(spatial) == 3 else ()
    fits = [t for t in transposes if tuple(spatial[i] for i in t) == recorded]
    if not fits:
        raise MismatchError(f"{shown} (no plans.json beside the .npz or in its model folder; in no axis order "
                            "nnU-Net's planner makes)")
    bbox = props.get("bbox_used_for_cropping")
    after = props.get("shape_after_cropping_and_before_resampling")
    box_ok = True
    if bbox is not None:
        try:
            pairs = [(int(lo), int(hi)) for lo, hi in bbox]
        except (TypeError, ValueError):
            pairs = None
        box_ok = pairs is not None and len(pairs) == len(recorded) and all(
            0 <= lo <= hi <= n for (lo, hi), n in zip(pairs, recorded))
        if box_ok and after is not None:
            box_ok = _ints(after) == tuple(hi - lo for lo, hi in pairs)
    if not box_ok or not any(_spacing_first(props.get("spacing"), t) for t in fits):
        raise MismatchError(f"{shown}: in nnU-Net's transposed axes {', '.join(str(list(t)) for t in fits)} "
                            "the shapes would agree, but the .pkl's spacing or cropping box does not fit that "
                            "transpose; put the model's plans.json beside the .npz to settle it")
