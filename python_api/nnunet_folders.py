"""nnU-Net v2: calibrate from ``--save_probabilities`` output and ``labelsTr``, then write masks.

    python python_api/nnunet_folders.py                       # on a synthetic nnU-Net layout
    python python_api/nnunet_folders.py --validation DIR --labels labelsTr --predictions DIR [--output DIR]

``DIR`` holds what ``nnUNetv2_predict ... --save_probabilities`` writes:
``CASE.npz`` (probabilities), ``CASE.pkl`` (geometry), ``CASE.nii.gz``.
Each ``CASE.npz`` is checked against ``labelsTr`` through its ``CASE.pkl``
(read with an allow-list: a ``.pkl`` holding anything but containers,
numbers and NumPy arrays is refused); probabilities saved in reoriented axes
by nnU-Net's ``NibabelIOWithReorient`` are brought back to the labels' axes.
Masks are written as ``CASE.nii.gz`` (the name ``clskern apply`` writes) into
``<predictions>_clskern``, beside nnU-Net's folder and never inside it, in the
source image's axes and affine, like nnU-Net's segmentation (all masks or
none). Inside an nnU-Net results tree (``nnUNet_results``, a
``TRAINER__PLANS__CONFIGURATION`` folder) no default is guessed: give
``--output``. When ``dataset.json`` beside ``labelsTr`` names several classes,
each is calibrated (a calibration set) and the masks are nnU-Net label maps.
"""

import argparse
import os
import pickle
import tempfile

import nibabel as nib
import numpy as np

from clskern.adapters.nnunet import apply_folder, calibrate_folder
from clskern.synthetic import affine, synthetic_case


def write_synthetic_nnunet(root, n_validation=16, n_test=3, shape=(32, 32, 24)):
    """nnU-Net-shaped folders: ``validation/``, ``predictions/`` and ``labelsTr/``."""
    rng = np.random.default_rng(0)
    a = affine(shape)
    zooms = np.linalg.norm(a[:3, :3], axis=0)
    for name in ("validation", "predictions", "labelsTr"):
        os.makedirs(os.path.join(root, name), exist_ok=True)
    for i in range(n_validation + n_test):
        case_id = f"LESION_{i:03d}"
        scores, labels = synthetic_case(rng, shape, lesion_free=i % 8 == 7)
        folder = os.path.join(root, "validation" if i < n_validation else "predictions")
        probabilities = np.stack([1 - scores, scores]).transpose(0, 3, 2, 1)  # nnU-Net: (C, z, y, x)
        np.savez_compressed(os.path.join(folder, case_id + ".npz"), probabilities=probabilities)
        with open(os.path.join(folder, case_id + ".pkl"), "wb") as f:  # NibabelIO's properties
            pickle.dump({"nibabel_stuff": {"original_affine": a}, "spacing": [float(z) for z in zooms[::-1]]}, f)
        nib.save(nib.Nifti1Image((scores >= 0.5).astype(np.uint8), a), os.path.join(folder, case_id + ".nii.gz"))
        nib.save(nib.Nifti1Image(labels, a), os.path.join(root, "labelsTr", case_id + ".nii.gz"))
    return [os.path.join(root, name) for name in ("validation", "labelsTr", "predictions")]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--validation", help="nnU-Net output folder of held-out cases (with .npz)")
    parser.add_argument("--labels", help="the dataset's labelsTr")
    parser.add_argument("--predictions", help="nnU-Net output folder to cut (masks go to <predictions>_clskern)")
    parser.add_argument("--output", help="folder for the masks (needed inside nnUNet_results)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        if args.validation is None:
            args.validation, args.labels, args.predictions = write_synthetic_nnunet(tmp)
        calibration = calibrate_folder(args.validation, args.labels, epsilon=0.2, alpha=0.2,
                                       store=os.path.join(tmp, "stats.sqlite"))  # resumable
        for name, member in getattr(calibration, "calibrations", {"": calibration}).items():
            print(f"calibrated {name + ' ' if name else ''}on {member.n} cases: threshold {member.threshold!r} "
                  f"(channel {member.reading['channel']})")
        written = apply_folder(calibration, args.predictions, output=args.output, overwrite=True)
        for case_id, path in written.items():
            print(f"  {case_id}: {os.path.basename(path)}")
        return calibration, {c: np.asarray(nib.load(p).dataobj) for c, p in written.items()}


if __name__ == "__main__":
    main()
