"""``clskern apply``: masks ``score >= threshold`` written as NIfTI."""

import os
import sys

from ..calibration.record import Calibration, channel_to_cut
from ..apply import apply_threshold
from ..io import SCORE_SUFFIXES, find_files, split_suffix
from ..io.cases import read_case_scores
from ..io.errors import FileFormatError
from ..io.masks import check_inputs
from ._common import add_channel, add_jobs, add_overwrite, add_quiet
from ._masks import plan_masks, write_masks
from . import _sets

HELP = "write masks score >= the calibrated threshold"


def add_parser(subparsers):
    p = subparsers.add_parser(
        "apply", help=HELP, description=(
            "Cut score volumes at a calibrated threshold: uint8 NIfTI masks (score >= threshold) "
            "with the source affine and header (for .npz/.npy scores: --reference DIR, or "
            "nnU-Net's CASE.pkl beside CASE.npz)."
        ),
    )
    p.add_argument("--calibration", required=True, metavar="JSON", help="written by clskern calibrate")
    p.add_argument("--scores", required=True, metavar="DIR_OR_FILE", help="score file or folder")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="folder for CASE.nii.gz masks")
    p.add_argument("--reference", metavar="DIR", help="NIfTI files giving .npz/.npy masks their geometry")
    add_channel(p)
    _sets.add_apply_options(p)
    add_jobs(p)
    add_overwrite(p)
    add_quiet(p)
    return p


def load_calibration(path):
    """A checked ``Calibration`` from a JSON file (edited or inconsistent files refused, naming the file)."""
    return Calibration.read(path)


def load_calibration_or_set(path):
    """A checked ``Calibration``, or a ``CalibrationSet`` (per class or per group), from a JSON file."""
    from ..calibration.sets import read_calibration

    return read_calibration(path)


def channel_of(calibration, asked, path):
    """The score channel to cut: the one the calibration cases were read from, where it says.

    A threshold calibrated on one class says nothing about another, so an
    explicit ``--channel`` that differs is refused.
    """
    recorded = None if calibration.reading is None else calibration.reading.get("channel")
    return channel_to_cut(recorded, asked, where=f"{path}: ", spell="--channel ")


def _inputs(scores):
    if os.path.isdir(scores):
        return find_files(scores, SCORE_SUFFIXES, "scores")
    split = split_suffix(os.path.basename(scores), SCORE_SUFFIXES)
    if split is None:
        if not os.path.exists(scores):
            raise FileNotFoundError(2, "No such file or directory", scores)
        raise FileFormatError(f"{scores}: not a score file ({', '.join(SCORE_SUFFIXES)})")
    if not os.path.isfile(scores):
        raise FileNotFoundError(2, "No such file or directory", scores)
    return {split[0]: scores}


def run(args):
    calibration = load_calibration_or_set(args.calibration)
    if _sets.is_set(calibration):
        return _sets.run_apply(args, calibration, find_inputs=_inputs, channel_of=channel_of)
    _sets.refuse_set_options(args)
    threshold = calibration.threshold
    level = "" if calibration.level == "voxel" else (
        f"; calibrated at lesion level, overlap {calibration.overlap:g}, connectivity {calibration.connectivity}")
    args.channel = channel_of(calibration, args.channel, args.calibration)
    plan = plan_masks(args, _inputs(args.scores))
    n_npy = sum(1 for _, path, _, _ in plan if path.endswith(".npy"))
    if n_npy and not args.quiet:
        print(f"apply: {n_npy} .npy score file(s) carry no geometry: cut in the axes of their --reference, "
              "checked by shape only", file=sys.stderr)
    check_inputs([(path, geometry) for _, path, geometry, _ in plan], args.channel)  # all, before the first mask
    n_voxels = n_on = 0

    def cut(case_id, volume):
        nonlocal n_voxels, n_on
        mask = apply_threshold(volume.array, threshold, normalize=calibration.normalize, name=case_id)
        n_voxels += mask.size
        n_on += int(mask.sum(dtype="int64"))
        return mask, volume

    write_masks(args, plan, lambda item: read_case_scores(item[1], channel=args.channel, geometry=item[2]), cut,
                nbytes=lambda volume: volume.array.nbytes)
    if not args.quiet:
        scale = "" if calibration.normalize == "none" else " (each case min-max normalised)"
        print(f"apply: {len(plan)} mask(s) at threshold {threshold!r}{scale} -> {args.output} "
              f"({100 * n_on / max(n_voxels, 1):.2f} % of voxels on{level})", file=sys.stdout)
    return 0
