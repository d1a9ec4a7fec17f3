"""nnU-Net v2: calibrate from a ``--save_probabilities`` folder, write masks next to nnU-Net's.

nnU-Net writes, per case, ``CASE.npz`` (key ``probabilities``, ``(C, z, y, x)``),
``CASE.pkl`` (the geometry) and its own segmentation ``CASE.nii.gz`` (or
another file ending). ``calibrate_folder`` pairs the ``.npz`` files with the
dataset's ``labelsTr`` by case id (``labelsTr`` may hold more cases than were
predicted), gathers each case's statistics once (optionally into a resumable
store) and calibrates. ``apply_folder`` cuts every ``CASE.npz`` of a
prediction folder at the threshold and writes ``CASE<suffix>.nii.gz`` with the
geometry of ``CASE.pkl``: beside nnU-Net's files by default, never over them.

Every ``CASE.npz`` is checked against its label through ``CASE.pkl`` (read
with an allow-list, never running code): the geometry there must match the
label's affine, and probabilities that nnU-Net's ``NibabelIOWithReorient``
saved in reoriented (RAS) axes are brought back to the label's axes first,
as nnU-Net does for its segmentation. Masks are written in the source
image's axes with its affine, like nnU-Net's ``CASE.nii.gz``.
"""

import os

from ..apply import apply_threshold
from ..calibration import calibrate
from ..errors import InputError
from ..io import collect_stats, find_files, pair_cases
from ..io.cases import read_case_scores
from ..io.errors import PairingError
from ..io.masks import resolve_geometry, save_mask
from ..store import StatsStore
from ._threshold import load_threshold

DEFAULT_SUFFIX = "_cls"


def calibrate_folder(predictions, labels, *, epsilon, alpha=None, method="cls", delta=None, empty="skip",
                     channel=1, label=None, store=None, jobs=1):
    """Calibrate a threshold from nnU-Net probabilities and ground truth.

    Parameters
    ----------
    predictions : str or os.PathLike
        An nnU-Net output folder written with ``--save_probabilities``
        (``CASE.npz`` with its ``CASE.pkl``, which gives the geometry; the
        ``.json`` and segmentation files beside them are ignored).
    labels : str or os.PathLike
        The dataset's ``labelsTr`` (``CASE.nii.gz``); cases without
        predictions are left out, predictions without labels are an error.
    epsilon, alpha, method, delta, empty
        As in ``clskern.calibrate``.
    channel : int
        The lesion class in the probabilities (0 is background).
    label : number, optional
        The lesion label value in multi-label ``labelsTr`` masks (default:
        every label > 0).
    store : str or os.PathLike, optional
        A statistics store to fill and resume from (``clskern stats``'s
        format): re-running reads only new or changed cases.
    jobs : int
        Reader threads.

    Returns
    -------
    Calibration
    """
    pairs = _pairs(predictions, labels)
    if store is None:
        result = collect_stats(pairs, label=label, channel=channel, empty=empty, jobs=jobs)
    else:
        with StatsStore(store) as s:
            result = collect_stats(pairs, store=s, label=label, channel=channel, empty=empty, jobs=jobs)
    return calibrate(result.stats, epsilon=epsilon, alpha=alpha, method=method, delta=delta, empty=empty)


def _pairs(predictions, labels):
    npz = find_files(predictions, (".npz",), "nnU-Net probabilities")
    pairs, unmatched = pair_cases(predictions, labels, allow_unmatched=True)
    predicted = {os.path.normpath(p) for p in npz.values()}
    orphans = [p for p in unmatched if os.path.normpath(p) in predicted]
    if orphans:
        raise PairingError(f"{len(orphans)} prediction(s) without a label in {os.fspath(labels)}: "
                           + ", ".join(orphans[:8]))
    pairs = [p for p in pairs if os.path.normpath(p.scores) in predicted]
    if not pairs:
        raise PairingError(f"{os.fspath(predictions)}: no CASE.npz with a label in {os.fspath(labels)} "
                           "(run nnU-Net with --save_probabilities)")
    return pairs


def apply_folder(calibration, predictions, *, output=None, suffix=DEFAULT_SUFFIX, channel=1, overwrite=False):
    """Write ``score >= threshold`` masks for every ``CASE.npz`` of an nnU-Net output folder.

    Parameters
    ----------
    calibration : Calibration, str, os.PathLike or float
        A ``Calibration``, its JSON file, or a threshold.
    predictions : str or os.PathLike
        nnU-Net output folder with ``CASE.npz`` and ``CASE.pkl``.
    output : str or os.PathLike, optional
        Folder for the masks (default: ``predictions``, beside nnU-Net's own).
    suffix : str
        Masks are ``CASE<suffix>.nii.gz``; in ``predictions`` it must not be
        empty, so nnU-Net's ``CASE.nii.gz`` is never replaced.
    channel : int
        The lesion class in the probabilities.
    overwrite : bool
        Replace existing masks (otherwise an error before anything is written).

    Returns
    -------
    dict
        ``{case_id: mask path}``.
    """
    threshold = load_threshold(calibration)
    inputs = find_files(predictions, (".npz",), "nnU-Net probabilities")
    output = os.fspath(predictions if output is None else output)
    if not suffix and os.path.abspath(output) == os.path.abspath(os.fspath(predictions)):
        raise InputError(f"{output}: masks with an empty suffix would replace nnU-Net's own CASE.nii.gz")
    plan = {case_id: (path, resolve_geometry(path, case_id), os.path.join(output, f"{case_id}{suffix}.nii.gz"))
            for case_id, path in inputs.items()}
    existing = [out for _, _, out in plan.values() if os.path.exists(out)]
    if existing and not overwrite:
        raise FileExistsError(17, f"{len(existing)} mask(s) exist (pass overwrite=True)", existing[0])
    os.makedirs(output, exist_ok=True)
    written = {}
    for case_id, (path, geometry, out) in plan.items():
        volume = read_case_scores(path, channel, geometry)
        mask = apply_threshold(volume.array, threshold, name=case_id)
        save_mask(mask, out, geometry, volume)
        written[case_id] = out
    return written
