"""Where a mask's geometry comes from, and writing it.

A NIfTI score file lends its own affine and header. ``.npz`` and ``.npy``
scores carry none: a reference NIfTI of the same case id (``--reference``),
or nnU-Net's ``CASE.pkl`` beside the ``.npz``, supplies it.
"""

import os
from dataclasses import dataclass

import numpy as np

from .arrays import read_pkl_affine
from .cases import _CHANNEL_SUFFIX, LABEL_SUFFIXES, find_files, split_suffix
from .errors import MismatchError, PairingError
from .nifti import mask_image, read_header, write_atomic


@dataclass(frozen=True)
class Geometry:
    """Where a case's mask geometry comes from: a NIfTI file, a ``.pkl``, or the scores."""

    kind: str  # "scores", "reference", "pkl"
    path: str | None = None


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

    Raises ``PairingError`` when a ``.npz``/``.npy`` case has neither a
    reference nor a ``.pkl``.
    """
    suffix = split_suffix(os.path.basename(score_path), (".npz", ".npy", ".nii.gz", ".nii"))[1]
    if suffix in LABEL_SUFFIXES:
        return Geometry("scores")
    if references is not None and case_id in references:
        return Geometry("reference", references[case_id])
    pkl = os.path.join(os.path.dirname(score_path), case_id + ".pkl")
    if suffix == ".npz" and os.path.isfile(pkl):
        return Geometry("pkl", pkl)
    raise PairingError(
        f"{score_path}: no geometry for the mask: give --reference DIR with {case_id}.nii.gz"
        + (" or keep nnU-Net's .pkl beside the .npz" if suffix == ".npz" else "")
    )


def save_mask(mask, path, geometry, score_volume):
    """Write a uint8 mask as NIfTI, atomically, with the geometry's affine and header."""
    if geometry.kind == "scores":
        affine, header = score_volume.affine, score_volume.header
    elif geometry.kind == "reference":
        affine, header, shape = read_header(geometry.path)
        shape = tuple(n for i, n in enumerate(shape) if i < 3 or n != 1)
        if shape != mask.shape:
            raise MismatchError(
                f"scores {score_volume.path} have shape {mask.shape} but reference {geometry.path} has shape {shape}"
            )
    else:
        affine, header = read_pkl_affine(geometry.path), None
    write_atomic(mask_image(np.asarray(mask), affine, header), path)
