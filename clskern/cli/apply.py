"""``clskern apply``: masks ``score >= threshold`` written as NIfTI."""

import os
import sys

from ..calibration.record import Calibration, channel_to_cut
from ..apply import apply_threshold
from ..io import SCORE_SUFFIXES, find_files, prefetch, split_suffix
from ..io.cases import read_case_scores
from ..io._atomic import StagedFolder
from ..io.errors import FileFormatError
from ..io.masks import check_inputs, reference_index, resolve_geometry, save_mask
from ._common import add_channel, add_jobs, add_overwrite, add_quiet
from ._output import refuse_existing, refuse_inputs_as_outputs
from ._progress import Progress
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
    from ..calibration.sets import read_calibration_file

    return read_calibration_file(path)


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
    inputs = _inputs(args.scores)
    references = reference_index(args.reference) if args.reference else None
    plan = []
    for case_id, path in inputs.items():
        out = os.path.join(args.output, case_id + ".nii.gz")
        plan.append((case_id, path, resolve_geometry(path, case_id, references), out))
    sources = [args.scores, args.reference, args.calibration, *inputs.values(), *(references or {}).values()]
    sources += [p for _, _, geometry, _ in plan for p in (geometry.path, geometry.pkl)]
    refuse_inputs_as_outputs([args.output, *(out for *_, out in plan)], sources)
    refuse_existing([out for *_, out in plan], args.overwrite)
    n_npy = sum(1 for _, path, _, _ in plan if path.endswith(".npy"))
    if n_npy and not args.quiet:
        print(f"apply: {n_npy} .npy score file(s) carry no geometry: cut in the axes of their --reference, "
              "checked by shape only", file=sys.stderr)
    check_inputs([(path, geometry) for _, path, geometry, _ in plan], args.channel)  # all, before the first mask
    progress = Progress(len(plan), "apply", quiet=args.quiet)

    def load(item):
        return read_case_scores(item[1], channel=args.channel, geometry=item[2])

    n_voxels = n_on = 0
    stream = prefetch(plan, load, jobs=args.jobs, nbytes=lambda volume: volume.array.nbytes)
    try:
        with StagedFolder(args.output) as staged:  # all masks or none: a late failure leaves no mask
            for (case_id, _, geometry, out), volume, error in stream:
                if error is not None:
                    raise error
                mask = apply_threshold(volume.array, threshold, normalize=calibration.normalize, name=case_id)
                save_mask(mask, staged.path(os.path.basename(out)), geometry, volume)
                n_voxels += mask.size
                n_on += int(mask.sum(dtype="int64"))
                progress.step(case_id, "done", volume.array.nbytes)
    finally:
        stream.close()
        progress.close()
    if not args.quiet:
        scale = "" if calibration.normalize == "none" else " (each case min-max normalised)"
        print(f"apply: {len(plan)} mask(s) at threshold {threshold!r}{scale} -> {args.output} "
              f"({100 * n_on / max(n_voxels, 1):.2f} % of voxels on{level})", file=sys.stdout)
    return 0
