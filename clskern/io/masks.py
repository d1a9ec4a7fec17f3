"""Where a mask's geometry comes from, and writing it.

A NIfTI score file lends its own affine and header. ``.npz`` and ``.npy``
scores carry none: a reference NIfTI of the same case id (``--reference``),
or nnU-Net's ``CASE.pkl`` beside the ``.npz``, supplies it.

An ``.npz`` written by nnU-Net's ``NibabelIOWithReorient`` or
``SimpleITKIOWithReorient`` holds its probabilities in reoriented (RAS) axes;
its ``.pkl`` says how to bring them back. When the plans transpose, the
``.pkl`` records the shape in the transposed axes: ``plans.json`` beside the
predictions (or in the model folder above a fold's ``validation/``) says how
(``clskern.io.nnunet_pkl.check_recorded_shape``). Masks are written in the source image's axes with its affine, as
nnU-Net writes its segmentation: read the scores with
``clskern.io.cases.read_case_scores(path, channel, geometry)``; ``save_mask``
also reorients a mask cut from scores read with plain ``read_scores``.
"""

import os
from dataclasses import dataclass, field

import numpy as np

from .cases import _CHANNEL_SUFFIX, LABEL_SUFFIXES, check_affines, find_files, split_suffix
from .errors import FileFormatError, MismatchError, PairingError
from .nifti import mask_image, read_header, write_atomic
from .nnunet_pkl import PklGeometry, check_recorded_shape, find_plans, pkl_beside, read_pkl_geometry


@dataclass(frozen=True)
class Geometry:
    """Where a case's mask geometry comes from: a NIfTI file, a ``.pkl``, or the scores.

    ``pkl`` is nnU-Net's ``CASE.pkl`` beside a ``CASE.npz`` when there is
    one (also with a reference): it says which axes the probabilities are in;
    ``pkl_geometry`` is what it holds, read (safely) by ``resolve_geometry``.
    ``plans`` is the model's ``plans.json`` when one is found
    (``clskern.io.nnunet_pkl.find_plans``): its ``transpose_forward`` relates
    the ``.pkl``'s recorded shape to the ``.npz``'s.
    """

    kind: str  # "scores", "reference", "pkl"
    path: str | None = None
    pkl: str | None = None
    pkl_geometry: PklGeometry | None = field(default=None, compare=False, repr=False)
    plans: str | None = None

    def read_pkl(self):
        """The ``PklGeometry`` of ``pkl`` (None without one), read once."""
        if self.pkl_geometry is None and self.pkl is not None:
            return read_pkl_geometry(self.pkl)
        return self.pkl_geometry


def reference_index(directory):
    """``{case_id: path}`` of the NIfTI files in a reference folder (``CASE_0000`` also as ``CASE``)."""
    files = find_files(directory, LABEL_SUFFIXES, "reference")
    index = dict(files)
    for stem, path in files.items():
        m = _CHANNEL_SUFFIX.match(stem)
        if m and m.group(1) not in files:
            index.setdefault(m.group(1), path)
    return index


def resolve_geometry(score_path, case_id, references=None):
    """Decide, before anything is written, where the mask's affine comes from.

    Raises ``PairingError`` when an ``.npz`` has no ``.pkl`` beside it (even
    with a reference: only the ``.pkl`` says which axes its probabilities are
    in) or a ``.npy`` has no reference, ``FileFormatError`` for a ``.pkl``
    that cannot be read safely or holds no geometry. An ``.npz`` with its ``.pkl`` keeps
    the ``.pkl`` in ``Geometry.pkl`` also when a reference gives the geometry.
    """
    score_path = os.fspath(score_path)
    suffix = split_suffix(os.path.basename(score_path), (".npz", ".npy", ".nii.gz", ".nii"))[1]
    if suffix in LABEL_SUFFIXES:
        return Geometry("scores")
    pkl = pkl_beside(score_path) if suffix == ".npz" else None
    if pkl is not None and not os.path.isfile(pkl):
        raise PairingError(
            f"{score_path}: {pkl} not found: nnU-Net writes it beside the .npz, and only it says which "
            "axes the probabilities are in (a mask cut in the wrong axes would be mirrored or transposed)"
        )
    pkl_geometry = None if pkl is None else read_pkl_geometry(pkl)
    plans = None if pkl is None else find_plans(score_path)
    if references is not None and case_id in references:
        return Geometry("reference", references[case_id], pkl, pkl_geometry, plans)
    if pkl is not None:
        return Geometry("pkl", pkl, pkl, pkl_geometry, plans)
    raise PairingError(
        f"{score_path}: no geometry for the mask: give --reference DIR with {case_id}.nii.gz"
    )


def save_mask(mask, path, geometry, score_volume):
    """Write a uint8 mask as NIfTI, atomically, with the geometry's affine and header.

    With a ``.pkl`` (``geometry.pkl``), a mask cut from scores still in the
    ``.npz`` axes (``score_volume.affine`` is None: read with
    ``read_scores``) is first brought back to the source image's axes, as
    nnU-Net does for its segmentation; a reference must then agree with the
    ``.pkl``'s affine.
    """
    pkl_geometry = None
    if geometry.kind == "pkl" and geometry.pkl is None:
        geometry = Geometry("pkl", geometry.path, geometry.path)
    if geometry.kind != "scores":
        pkl_geometry = geometry.read_pkl()
    if pkl_geometry is not None:
        if score_volume.affine is None:
            mask = pkl_geometry.to_original(np.asarray(mask), f"scores {score_volume.path}")
    if geometry.kind == "scores":
        affine, header = score_volume.affine, score_volume.header
    elif geometry.kind == "reference":
        affine, header, shape = read_header(geometry.path)
        shape = tuple(n for i, n in enumerate(shape) if i < 3 or n != 1)
        if shape != mask.shape:
            raise MismatchError(
                f"scores {score_volume.path} have shape {mask.shape} but reference {geometry.path} has shape {shape}"
            )
        if pkl_geometry is not None:
            check_affines(pkl_geometry.affine, affine, pkl_geometry.path, geometry.path)
    else:
        affine, header = pkl_geometry.affine, None
    write_atomic(mask_image(np.asarray(mask), affine, header), path)


def _float_scores(dtype, path, scaled=False):
    if np.dtype(dtype).kind != "f" and not scaled:
        raise FileFormatError(f"{path}: holds {np.dtype(dtype).name} values, not float scores "
                              "(probabilities or logits); a mask cut from them would mean nothing (a segmentation? "
                              "nnU-Net writes probabilities with --save_probabilities)")


def check_input(path, geometry, channel=None):
    """Check a score file against its geometry from headers only, before any mask is written.

    Reads the NIfTI or ``.npy`` header (an ``.npz`` member's ``.npy`` header,
    inflating nothing else) and checks: readable, float scores, the channel
    exists, and the shape against the reference (``geometry.kind ==
    "reference"``: shape in the source image's axes, and its affine against
    the ``.pkl``'s) and the ``.pkl``'s recorded shape (in the plans' axes:
    ``check_recorded_shape``). Returns the declared spatial shape
    ``(x, y, z)`` in the score file's axes; raises ``FileFormatError`` or
    ``MismatchError`` naming the file.
    """
    from .arrays import npy_header, npz_header
    from .nnunet_pkl import load_properties

    path = os.fspath(path)
    suffix = split_suffix(os.path.basename(path), (".npz", ".npy", ".nii.gz", ".nii"))[1]
    in_source = None  # the shape in the source image's axes, where it differs from the file's
    if suffix == ".npz":
        shape, dtype = npz_header(path)
        _float_scores(dtype, path)
        if len(shape) != 4:
            raise FileFormatError(f"{path}: 'probabilities' has shape {shape}, expected (C, z, y, x)")
        c = 1 if channel is None else channel
        if not 0 <= c < shape[0]:
            raise MismatchError(f"{path}: channel {c} does not exist ('probabilities' of shape {shape} "
                                f"has {shape[0]} channels)")
        spatial = tuple(shape[1:][::-1])
        pkl_geometry = geometry.read_pkl()
        if pkl_geometry is not None:
            in_source = pkl_geometry.original_shape(spatial)
        if geometry.pkl is not None:
            check_recorded_shape(path, shape, geometry.pkl, load_properties(geometry.pkl), geometry.plans)
    elif suffix == ".npy":
        shape, dtype = npy_header(path)
        _float_scores(dtype, path)
        spatial = tuple(shape)
        if len(shape) == 4:
            c = 1 if channel is None else channel
            if not 0 <= c < shape[0]:
                raise MismatchError(f"{path}: channel {c} does not exist (shape {shape})")
            spatial = tuple(shape[1:])
    else:
        _, header, shape = read_header(path)
        slope, _ = header.get_slope_inter()
        _float_scores(header.get_data_dtype(), path, scaled=slope not in (None, 1))
        while len(shape) > 3 and shape[-1] == 1:
            shape = shape[:-1]
        spatial = tuple(shape[:3])
        if len(shape) == 4:
            c = (1 if shape[3] > 1 else 0) if channel is None else channel
            if not 0 <= c < shape[3]:
                raise MismatchError(f"{path}: channel {c} does not exist (the last axis has {shape[3]} channels)")
        elif len(shape) != 3:
            raise MismatchError(f"{path}: a {len(shape)}-D image; scores are 3-D (or 4-D with channels last)")
    if geometry.kind == "reference":
        affine, _, ref_shape = read_header(geometry.path)
        ref_shape = tuple(n for i, n in enumerate(ref_shape) if i < 3 or n != 1)
        if (spatial if in_source is None else in_source) != ref_shape:
            where = "" if in_source in (None, spatial) else f" (in the source image's axes; {spatial} as saved)"
            raise MismatchError(f"scores {path} have shape {in_source or spatial}{where} but reference "
                                f"{geometry.path} has shape {ref_shape}")
        pkl_geometry = geometry.read_pkl()
        if pkl_geometry is not None:
            check_affines(pkl_geometry.affine, affine, pkl_geometry.path, geometry.path)
    return spatial


def check_inputs(plan, channel=None):
    """``check_input`` for every ``(path, geometry)`` of ``plan``: the first bad one raises, nothing is written."""
    for path, geometry in plan:
        check_input(path, geometry, channel)
