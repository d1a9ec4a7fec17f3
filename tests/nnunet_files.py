"""Test helper: write one case as nnU-Net v2 ``--save_probabilities`` writes it.

``write_nnunet_case(folder, case_id, scores, affine)`` writes ``CASE.npz``
(key ``probabilities``, ``(C, z, y, x)`` in the image reader's axes) and
``CASE.pkl`` (the reader's properties plus nnU-Net's cropping entries), and
optionally nnU-Net's own segmentation ``CASE.nii.gz``. ``scores`` is the
lesion probability in the label NIfTI's axes (nibabel's ``(x, y, z)``) and
``affine`` the label's affine; ``reader`` picks the nnU-Net image reader:

- ``"nibabel"`` (NibabelIO): ``nibabel_stuff['original_affine']``, the file's axes;
- ``"reorient"`` (NibabelIOWithReorient): also ``reoriented_affine``; the
  probabilities are saved in the image's axes reoriented to RAS;
- ``"sitk"`` (SimpleITKIO): ``sitk_stuff`` spacing, origin, direction (LPS);
- ``"sitk_reorient"`` (SimpleITKIOWithReorient): ``sitk_stuff`` of the image
  reoriented to RAS, plus ``original_orientation``; saved as ``"reorient"``.

``transpose_forward`` (the plans') records ``shape_before_cropping`` and the
cropping entries in the transposed axes, as nnU-Net's preprocessor does; the
``.npz`` stays in the reader's axes. ``tests/nnunet_golden.py`` has the same
files written by nnU-Net itself (``tests/data/nnunet``).
"""

import os
import pickle

import nibabel as nib
import numpy as np
from nibabel.orientations import io_orientation

READERS = ("nibabel", "reorient", "sitk", "sitk_reorient")


def sitk_stuff(affine):
    """SimpleITK's spacing, origin and direction (LPS) of a nibabel (RAS) affine, as tuples."""
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ np.asarray(affine, dtype=np.float64)
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    direction = lps[:3, :3] / spacing
    return {
        "spacing": tuple(float(v) for v in spacing),
        "origin": tuple(float(v) for v in lps[:3, 3]),
        "direction": tuple(float(v) for v in direction.ravel()),
    }


def nnunet_properties(affine, shape, reader="nibabel", transpose_forward=(0, 1, 2)):
    """The ``.pkl`` properties nnU-Net writes for an image of ``shape`` (x, y, z) and ``affine``."""
    affine = np.asarray(affine, dtype=np.float64)
    if reader == "sitk":
        props = {"sitk_stuff": sitk_stuff(affine), "spacing": list(sitk_stuff(affine)["spacing"][::-1])}
        zyx = tuple(shape[::-1])
    elif reader == "nibabel":
        zooms = np.linalg.norm(affine[:3, :3], axis=0)
        props = {"nibabel_stuff": {"original_affine": affine}, "spacing": [float(z) for z in zooms[::-1]]}
        zyx = tuple(shape[::-1])
    elif reader == "sitk_reorient":
        image = nib.Nifti1Image(np.zeros(shape, np.uint8), affine)
        reoriented = image.as_reoriented(io_orientation(affine))
        stuff = sitk_stuff(reoriented.affine)
        stuff["original_orientation"] = "".join(nib.aff2axcodes(affine))
        props = {"sitk_stuff": stuff, "spacing": list(stuff["spacing"][::-1])}
        zyx = tuple(reoriented.shape[::-1])
    elif reader == "reorient":
        image = nib.Nifti1Image(np.zeros(shape, np.uint8), affine)
        reoriented = image.as_reoriented(io_orientation(affine))
        zooms = reoriented.header.get_zooms()
        props = {"nibabel_stuff": {"original_affine": affine, "reoriented_affine": reoriented.affine},
                 "spacing": [float(z) for z in zooms[::-1]]}
        zyx = tuple(reoriented.shape[::-1])
    else:
        raise ValueError(f"reader must be one of {READERS}")
    zyx = tuple(zyx[i] for i in transpose_forward)  # nnU-Net: transpose, then record the shape, then crop
    props["shape_before_cropping"] = tuple(np.int64(n) for n in zyx)
    props["bbox_used_for_cropping"] = [[0, int(n)] for n in zyx]
    props["shape_after_cropping_and_before_resampling"] = zyx
    return props


def reader_axes(array, affine, reader="nibabel"):
    """``array`` (the label's axes) in the axes the reader gives nnU-Net, before its (z, y, x) transpose."""
    if reader in ("reorient", "sitk_reorient"):
        return np.asanyarray(nib.Nifti1Image(array, np.asarray(affine, float)).as_reoriented(
            io_orientation(affine)).dataobj)
    return array


def write_nnunet_case(folder, case_id, scores, affine, *, reader="nibabel", segmentation=False,
                      protocol=pickle.HIGHEST_PROTOCOL, properties=None, dtype=np.float32, transpose_forward=(0, 1, 2)):
    """Write ``CASE.npz`` + ``CASE.pkl`` (and ``CASE.nii.gz`` if ``segmentation``); return the ``.npz`` path.

    ``properties`` replaces the ``.pkl`` content (to write a wrong or
    malicious one); by default it is what ``reader`` would write.
    """
    folder = os.fspath(folder)
    scores = np.asarray(scores, dtype=dtype)
    saved = reader_axes(scores, affine, reader)
    probabilities = np.stack([1 - saved, saved]).transpose(0, 3, 2, 1)  # nnU-Net: (C, z, y, x)
    npz = os.path.join(folder, f"{case_id}.npz")
    np.savez_compressed(npz, probabilities=probabilities)
    props = nnunet_properties(affine, scores.shape, reader, transpose_forward) if properties is None else properties
    with open(os.path.join(folder, f"{case_id}.pkl"), "wb") as f:
        pickle.dump(props, f, protocol=protocol)
    if segmentation:  # nnU-Net writes its segmentation in the source image's axes
        nib.save(nib.Nifti1Image((scores >= 0.5).astype(np.uint8), affine), os.path.join(folder, f"{case_id}.nii.gz"))
    return npz


# Affines with other axis codes than RAS: nnU-Net's reorienting reader saves such cases in other axes.
LPS_AFFINE = np.array([[-0.8, 0, 0, 40.0], [0, -0.9, 0, 30.0], [0, 0, 2.5, -12.0], [0, 0, 0, 1]])
PERMUTED_AFFINE = np.array([[0, -0.8, 0, 30.0], [0, 0, 1.5, -20.0], [2.0, 0, 0, 5.0], [0, 0, 0, 1]])  # S, R flipped, A
