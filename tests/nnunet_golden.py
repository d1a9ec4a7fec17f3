"""Golden files written by nnU-Net v2 itself: ``tests/data/nnunet/``.

Not a test: the script that made the committed files, kept so they can be made again.
It needs ``nnunetv2`` (and with it torch and SimpleITK), which clskern's tests
do not: the tests (``tests/test_io_nnunet_golden.py``) read the files with
numpy and nibabel only.

    python3 -m venv /work/nnunet-venv
    /work/nnunet-venv/bin/pip install torch==2.13.0 && /work/nnunet-venv/bin/pip install nnunetv2==2.8.1
    /work/nnunet-venv/bin/python tests/nnunet_golden.py tests/data/nnunet

Made with nnunetv2 2.8.1, torch 2.14.1 (pip upgraded the requested 2.13.0
with nnunetv2's torchvision; run on the CPU), SimpleITK 2.5.7, nibabel 5.4.2,
numpy 2.4.6 (``VERSIONS.json`` records what ran). The output is deterministic
up to the compressed bytes.

For each dataset (``DATASETS``: every image reader nnU-Net has, a plan whose
``transpose_forward`` is not the identity, a region-based dataset), in a
temporary ``nnUNet_raw``/``nnUNet_preprocessed``:

1. two cases are written (image and label, tiny volumes with the thick axis
   where ``DATASETS`` puts it, an empty border so cropping happens);
2. nnU-Net's fingerprint extractor and ``ExperimentPlanner`` plan the
   dataset (the reader chosen by ``overwrite_image_reader_writer`` in
   ``dataset.json``; the planner decides ``transpose_forward``);
3. ``DefaultPreprocessor.run_case`` gives each case's properties, and seeded
   logits in the preprocessed (transposed, cropped) axes go through
   ``export_prediction_from_logits(..., save_probabilities=True)``:
   ``pred/CASE.npz``, ``pred/CASE.pkl`` and nnU-Net's segmentation;
   ``pred/dataset.json`` and (for ``PLANS_BESIDE``) ``pred/plans.json`` are
   the dataset and the plans as ``nnUNetv2_predict`` copies them beside its
   output;
4. from the saved probabilities, with nnU-Net's reader and writer: the label
   read back by ``read_seg`` (the ``.npz`` axes) gives ``expected.json``
   (per case and class: the sorted lesion scores, the counts at
   ``THRESHOLD``), and ``write_seg`` writes ``masks/CASE.nii.gz``
   (``probabilities[channel] >= THRESHOLD``) and ``levels/CASE.nii.gz``
   (``floor(probabilities[channel] * 250) + 1``, a per-voxel code that shows
   where every voxel went) in the label's space.

``labelsTr/`` holds the labels. Only these files are kept (a few kB each).
"""

import json
import os
import shutil
import sys
import tempfile

import numpy as np

THRESHOLD = 0.5
LEVELS = 250
# nnUNetv2_predict copies plans.json beside its output; a fold's validation/ folder has none beside it
# (the model folder above holds it). 7 kB each: kept where the tests need one.
PLANS_BESIDE = ("sitk", "transposed", "transposed_reorient")
SHAPE = (9, 7, 6)  # the file's (x, y, z): no two axes alike, so a wrong transpose cannot pass by chance

# name: (reader, the file's affine (nibabel, RAS), regions?)
DATASETS = {
    "sitk": ("SimpleITKIO", np.diag([-0.8, -0.9, 2.5, 1.0]) + np.c_[np.zeros((4, 3)), [40.0, 30.0, -12.0, 0]], False),
    "nibabel": ("NibabelIO", np.diag([-0.8, 0.9, 2.5, 1.0]) + np.c_[np.zeros((4, 3)), [40.0, -30.0, 12.0, 0]], False),
    "nibabel_reorient": ("NibabelIOWithReorient",
                         np.array([[0, -0.8, 0, 30.0], [0, 0, 0.9, -20.0], [2.5, 0, 0, 5.0], [0, 0, 0, 1]]), False),
    "sitk_reorient": ("SimpleITKIOWithReorient",
                      np.array([[0, 0.8, 0, -30.0], [-0.9, 0, 0, 20.0], [0, 0, -2.5, 5.0], [0, 0, 0, 1]]), False),
    # the thick axis is the file's x: SimpleITK's last array axis, so the planner transposes [2, 0, 1]
    "transposed": ("SimpleITKIO", np.diag([3.0, -0.8, 0.9, 1.0]) + np.c_[np.zeros((4, 3)), [-10.0, 20.0, 5.0, 0]],
                   False),
    "transposed_reorient": ("NibabelIOWithReorient",
                            np.array([[0, 0, -0.9, 10.0], [3.0, 0, 0, -20.0], [0, 0.8, 0, 5.0], [0, 0, 0, 1]]), False),
    "regions": ("NibabelIO", np.diag([0.8, 0.9, 2.5, 1.0]), True),
}


def _case(rng, affine):
    """An image (an empty border of one voxel on x: nnU-Net crops it) and a label with two lesion labels."""
    image = rng.uniform(1.0, 2.0, SHAPE).astype(np.float32)
    image[0] = 0
    label = np.zeros(SHAPE, np.uint8)
    x, y, z = rng.integers(1, 4), rng.integers(0, 3), rng.integers(0, 3)
    label[x : x + 4, y : y + 3, z : z + 3] = 1
    label[x + 1 : x + 3, y + 1 : y + 3, z + 1 : z + 2] = 2
    label[SHAPE[0] - 1, SHAPE[1] - 1, 0] = 1  # an asymmetric voxel: a flip moves it
    return image, label


def make(outdir):
    work = tempfile.mkdtemp(prefix="nnunet_golden_")
    for sub in ("raw", "preprocessed", "results"):
        os.makedirs(os.path.join(work, sub))
    os.environ.update(nnUNet_raw=os.path.join(work, "raw"), nnUNet_preprocessed=os.path.join(work, "preprocessed"),
                      nnUNet_results=os.path.join(work, "results"))
    import nibabel as nib
    import SimpleITK
    import torch
    from importlib.metadata import version

    from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprint_dataset, plan_experiment_dataset
    from nnunetv2.inference.export_prediction import export_prediction_from_logits
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    torch.set_num_threads(1)
    os.makedirs(outdir, exist_ok=True)
    for number, (name, (reader, affine, regions)) in enumerate(DATASETS.items(), start=501):
        rng = np.random.default_rng(number)
        dataset = f"Dataset{number}_{name}"
        raw = os.path.join(work, "raw", dataset)
        for sub in ("imagesTr", "labelsTr"):
            os.makedirs(os.path.join(raw, sub))
        labels = ({"background": 0, "whole": [1, 2], "core": 2} if regions
                  else {"background": 0, "lesion": 1, "core": 2})
        dataset_json = {"channel_names": {"0": "CT"}, "labels": labels, "numTraining": 2, "file_ending": ".nii.gz",
                        "overwrite_image_reader_writer": reader}
        if regions:
            dataset_json["regions_class_order"] = [1, 2]
        with open(os.path.join(raw, "dataset.json"), "w") as f:
            json.dump(dataset_json, f, indent=1)
        cases = [f"{name}_{i:03d}" for i in range(2)]
        for case in cases:
            image, label = _case(rng, affine)
            nib.save(nib.Nifti1Image(image, affine), os.path.join(raw, "imagesTr", f"{case}_0000.nii.gz"))
            nib.save(nib.Nifti1Image(label, affine), os.path.join(raw, "labelsTr", f"{case}.nii.gz"))
        extract_fingerprint_dataset(number, num_processes=1, verbose=False, show_progress_bar=False)
        plans, identifier = plan_experiment_dataset(number)
        plans_file = os.path.join(work, "preprocessed", dataset, f"{identifier}.json")
        plans_manager = PlansManager(plans_file)
        configuration = plans_manager.get_configuration("3d_fullres")
        label_manager = plans_manager.get_label_manager(dataset_json)
        rw = plans_manager.image_reader_writer_class()
        out = os.path.join(outdir, name)
        if os.path.isdir(out):
            shutil.rmtree(out)
        for sub in ("pred", "masks", "levels", "labelsTr"):
            os.makedirs(os.path.join(out, sub))
        if name in PLANS_BESIDE:
            shutil.copy(plans_file, os.path.join(out, "pred", "plans.json"))
        with open(os.path.join(out, "pred", "dataset.json"), "w") as f:
            json.dump(dataset_json, f, indent=1)
        expected = {"reader": reader, "transpose_forward": plans_manager.transpose_forward, "threshold": THRESHOLD,
                    "levels": LEVELS, "cases": {}}
        channels = {"whole": 0, "core": 1} if regions else {"lesion": 1, "core": 2}
        values = {"whole": (1, 2), "core": (2,)} if regions else {"lesion": (1,), "core": (2,)}
        expected["channels"] = channels
        expected["values"] = {k: list(v) for k, v in values.items()}
        for case in cases:
            preprocessor = configuration.preprocessor_class(verbose=False)
            image_file = os.path.join(raw, "imagesTr", f"{case}_0000.nii.gz")
            label_file = os.path.join(raw, "labelsTr", f"{case}.nii.gz")
            data, seg, properties = preprocessor.run_case([image_file], label_file, plans_manager, configuration,
                                                          dataset_json)
            # seeded logits in the preprocessed axes: high for the lesion labels where nnU-Net's seg has them
            n = label_manager.num_segmentation_heads
            logits = rng.normal(0.0, 1.5, (n, *data.shape[1:])).astype(np.float32)
            for k, channel in channels.items():
                inside = np.isin(seg[0], values[k])
                logits[channel][inside] += 2.0
            truncated = os.path.join(out, "pred", case)
            export_prediction_from_logits(torch.from_numpy(logits), properties, configuration, plans_manager,
                                          dataset_json, truncated, save_probabilities=True, num_threads_torch=1)
            os.remove(truncated + ".nii.gz")  # nnU-Net's argmax segmentation: not needed, keep the files few
            probabilities = np.load(truncated + ".npz")["probabilities"]
            label_npz_axes, _ = rw.read_seg(label_file)  # the label as nnU-Net reads it: the .npz's axes
            shutil.copy(label_file, os.path.join(out, "labelsTr", f"{case}.nii.gz"))
            record = {}
            for k, channel in channels.items():
                p = probabilities[channel]
                truth = np.isin(label_npz_axes[0], values[k])
                record[k] = {
                    "lesion_scores": [float(v) for v in np.sort(p[truth])],
                    "n_voxels": int(p.size), "n_fg": int(truth.sum()),
                    "fp": int(np.sum(~truth & (p >= THRESHOLD))), "fn": int(np.sum(truth & (p < THRESHOLD))),
                }
            expected["cases"][case] = record
            p = probabilities[next(iter(channels.values()))]  # the first class: lesion (or the region "whole")
            rw.write_seg((p >= THRESHOLD).astype(np.uint8), os.path.join(out, "masks", f"{case}.nii.gz"), properties)
            levels = (np.floor(p.astype(np.float64) * LEVELS) + 1).astype(np.uint8)
            rw.write_seg(levels, os.path.join(out, "levels", f"{case}.nii.gz"), properties)
        expected["mask_channel"] = next(iter(channels.values()))
        with open(os.path.join(out, "expected.json"), "w") as f:
            json.dump(expected, f, indent=1)
    versions = {"nnunetv2": version("nnunetv2"), "torch": torch.__version__, "SimpleITK": SimpleITK.__version__,
                "nibabel": nib.__version__, "numpy": np.__version__, "python": sys.version.split()[0]}
    with open(os.path.join(outdir, "VERSIONS.json"), "w") as f:
        json.dump(versions, f, indent=1)
    shutil.rmtree(work)


if __name__ == "__main__":
    make(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "data", "nnunet"))
