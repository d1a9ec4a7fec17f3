"""nnU-Net v2: calibrate from a ``--save_probabilities`` folder or a results folder, write masks.

nnU-Net writes, per case, ``CASE.npz`` (key ``probabilities``, ``(C, z, y, x)``),
``CASE.pkl`` (the geometry) and its own segmentation ``CASE.nii.gz`` (or
another file ending). ``calibrate_folder`` pairs the ``.npz`` files with the
dataset's ``labelsTr`` by case id (``labelsTr`` may hold more cases than were
predicted: a fold holds part of it), gathers each case's statistics once
(optionally into a resumable store) and calibrates. ``results_folder`` finds a
trained model's cross-validation predictions in ``nnUNet_results`` as nnU-Net
lays them out (``DatasetXXX_Name/TRAINER__PLANS__CONFIGURATION/fold_F/validation``,
written with ``--npz``) and pools every fold's cases, as nnU-Net's own
cross-validation does; ``calibrate_folder`` takes it in place of a folder.
``apply_folder`` cuts every ``CASE.npz`` of a prediction folder at the
threshold and writes ``CASE.nii.gz`` (the name ``clskern apply`` writes) with
the geometry of ``CASE.pkl`` into a folder of its own, by default the sibling
``<predictions>_clskern``: never inside nnU-Net's folders unless asked.

Every ``CASE.npz`` is checked against its label through ``CASE.pkl`` (read
with an allow-list, never running code): the geometry there must match the
label's affine, and probabilities that nnU-Net's ``NibabelIOWithReorient``
saved in reoriented (RAS) axes are brought back to the label's axes first,
as nnU-Net does for its segmentation. Masks are written in the source
image's axes with its affine, like nnU-Net's ``CASE.nii.gz``.
"""

import os
import re
from dataclasses import dataclass, field

from ..apply import apply_threshold
from ..calibration import calibrate
from ..errors import InputError
from ..io import collect_stats, find_files, pair_cases
from ..io.cases import LABEL_SUFFIXES, CasePair, read_case_scores
from ..io.errors import PairingError
from ..io.masks import check_inputs, resolve_geometry, save_mask
from ..store import StatsStore
from ._threshold import load_threshold

OUTPUT_SUFFIX = "_clskern"  # apply_folder's default output: the predictions folder's sibling


@dataclass(frozen=True)
class Results:
    """A trained model's cross-validation predictions, found by ``results_folder``.

    Attributes
    ----------
    model : str
        ``nnUNet_results/DatasetXXX_Name/TRAINER__PLANS__CONFIGURATION``.
    dataset : str
        ``DatasetXXX_Name``.
    folds : dict
        ``{fold: its validation folder}``.
    cases : dict
        ``{case_id: CASE.npz}``, every fold's cases pooled (sorted by id).
    fold_of : dict
        ``{case_id: fold}``.
    dataset_json : str or None
        ``dataset.json`` as nnU-Net copies it into the model folder, if there.
    """

    model: str
    dataset: str
    folds: dict
    cases: dict
    fold_of: dict = field(repr=False)
    dataset_json: str | None = None

    def labels_folder(self, labels=None):
        """``labels``, else ``$nnUNet_raw/<dataset>/labelsTr``."""
        if labels is not None:
            return os.fspath(labels)
        raw = os.environ.get("nnUNet_raw")
        if not raw:
            raise InputError(f"{self.dataset}: where are its labels? give the labelsTr folder "
                             "(--labels) or set nnUNet_raw")
        return os.path.join(raw, self.dataset, "labelsTr")

    def dataset_json_for(self, labels_folder):
        """The model's ``dataset.json``, else the one beside ``labelsTr`` in nnUNet_raw, else None."""
        if self.dataset_json is not None:
            return self.dataset_json
        beside = os.path.join(os.path.dirname(os.path.abspath(labels_folder)), "dataset.json")
        return beside if os.path.isfile(beside) else None


def _dataset_name(results, dataset):
    """``DatasetXXX_Name`` in ``results`` from a number (42, "042"), ``Dataset042`` or the full name."""
    text = str(dataset)
    if text.isdigit():
        prefix = f"Dataset{int(text):03d}_"
    elif re.fullmatch(r"Dataset\d{3}", text):
        prefix = text + "_"
    else:
        if os.path.isdir(os.path.join(results, text)):
            return text
        raise FileNotFoundError(2, f"dataset {text!r} not found in nnUNet_results", os.path.join(results, text))
    found = sorted(n for n in os.listdir(results) if n.startswith(prefix) and os.path.isdir(os.path.join(results, n)))
    if len(found) != 1:
        raise InputError(f"{results}: {'no' if not found else 'several'} folder(s) {prefix}* for dataset {text}"
                         + (f" ({', '.join(found)})" if found else ""))
    return found[0]


def results_folder(results, dataset, configuration, *, trainer="nnUNetTrainer", plans="nnUNetPlans", folds=None):
    """A trained model's validation predictions in nnU-Net's results layout, every fold pooled.

    Parameters
    ----------
    results : str or os.PathLike
        ``nnUNet_results``.
    dataset : int or str
        Its number (42), ``Dataset042`` or ``Dataset042_Name``.
    configuration, trainer, plans : str
        As given to ``nnUNetv2_train`` (``3d_fullres``, ``nnUNetTrainer``, ``nnUNetPlans``).
    folds : iterable of int, optional
        Default: every ``fold_N`` there (``fold_all`` is trained on every case: it has no validation).

    Returns
    -------
    Results
        ``RESULTS/DatasetXXX_Name/TRAINER__PLANS__CONFIGURATION/fold_F/validation/CASE.npz`` of
        every fold (nnU-Net writes them with ``nnUNetv2_train ... --npz``), pooled.

    Raises
    ------
    PairingError
        A fold without ``.npz`` predictions, or a case in two folds (the folds
        of one cross-validation are disjoint).
    """
    results = os.fspath(results)
    if not os.path.isdir(results):
        raise FileNotFoundError(2, "nnUNet_results folder not found", results)
    name = _dataset_name(results, dataset)
    model = os.path.join(results, name, f"{trainer}__{plans}__{configuration}")
    if not os.path.isdir(model):
        there = sorted(os.listdir(os.path.join(results, name)))
        raise FileNotFoundError(2, f"no model {trainer}__{plans}__{configuration} (there: {', '.join(there) or 'none'})",
                                model)
    if folds is None:
        folds = sorted(int(n[5:]) for n in os.listdir(model)
                       if re.fullmatch(r"fold_\d+", n) and os.path.isdir(os.path.join(model, n)))
        if not folds:
            raise PairingError(f"{model}: no fold_N folders (train with nnUNetv2_train ... FOLD --npz)")
    found, cases, fold_of = {}, {}, {}
    for fold in folds:
        validation = os.path.join(model, f"fold_{fold}", "validation")
        try:
            npz = find_files(validation, (".npz",), "nnU-Net probabilities")
        except PairingError:
            raise PairingError(f"{validation}: no CASE.npz (train with --npz, or run nnUNetv2_train ... "
                               "--val --npz)") from None
        found[fold] = validation
        for case_id, path in npz.items():
            if case_id in cases:
                raise PairingError(f"case {case_id!r} is in fold {fold_of[case_id]} and fold {fold} "
                                   f"({cases[case_id]}, {path}); the folds of one cross-validation are disjoint")
            cases[case_id], fold_of[case_id] = path, fold
    dataset_json = os.path.join(model, "dataset.json")
    return Results(model, name, found, dict(sorted(cases.items())), fold_of,
                   dataset_json if os.path.isfile(dataset_json) else None)


def results_pairs(results, labels):
    """``(pairs, unused_labels)`` of a ``Results`` with the ``labelsTr`` folder ``labels``.

    Every prediction needs a label (an error naming those without); labels
    without a prediction are normal and returned.
    """
    label_files = find_files(labels, LABEL_SUFFIXES, "labels")
    orphans = [path for case_id, path in results.cases.items() if case_id not in label_files]
    if orphans:
        raise PairingError(f"{len(orphans)} prediction(s) without a label in {os.fspath(labels)}: "
                           + ", ".join(orphans[:8]) + (" and more" if len(orphans) > 8 else ""))
    pairs = [CasePair(case_id, path, label_files[case_id]) for case_id, path in results.cases.items()]
    unused = [path for case_id, path in sorted(label_files.items()) if case_id not in results.cases]
    return pairs, unused


def calibrate_folder(predictions, labels=None, *, epsilon, alpha=None, method="cls", delta=None, empty="skip",
                     channel=1, label=None, store=None, jobs=1):
    """Calibrate a threshold from nnU-Net probabilities and ground truth.

    Parameters
    ----------
    predictions : str, os.PathLike or Results
        An nnU-Net output folder written with ``--save_probabilities``
        (``CASE.npz`` with its ``CASE.pkl``, which gives the geometry; the
        ``.json`` and segmentation files beside them are ignored), or
        ``results_folder(...)``: every fold's validation predictions pooled.
    labels : str or os.PathLike
        The dataset's ``labelsTr`` (``CASE.nii.gz``); cases without
        predictions are left out, predictions without labels are an error.
        With ``Results``, default ``$nnUNet_raw/DatasetXXX_Name/labelsTr``.
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
    if isinstance(predictions, Results):
        pairs, _ = results_pairs(predictions, predictions.labels_folder(labels))
    elif labels is None:
        raise InputError("calibrate_folder: give the labelsTr folder (labels=...)")
    else:
        pairs = _pairs(predictions, labels)
    if store is None:
        result = collect_stats(pairs, label=label, channel=channel, empty=empty, jobs=jobs)
    else:
        with StatsStore(store) as s:
            result = collect_stats(pairs, store=s, label=label, channel=channel, empty=empty, jobs=jobs)
    return calibrate(result.stats, epsilon=epsilon, alpha=alpha, method=method, delta=delta, empty=empty)


def _pairs(predictions, labels):
    find_files(predictions, (".npz",), "nnU-Net probabilities")  # no .npz: say so, not "no pairs"
    try:
        pairs, _ = pair_cases(predictions, labels)
    except PairingError as exc:
        raise PairingError(str(exc).replace("score file(s)", "prediction(s)")) from None
    if not all(p.scores.endswith(".npz") for p in pairs):
        raise PairingError(f"{os.fspath(predictions)}: case(s) without CASE.npz ("
                           + ", ".join(p.case_id for p in pairs if not p.scores.endswith(".npz"))[:200]
                           + "); run nnU-Net with --save_probabilities")
    return pairs


def _inside(path, folder):
    path, folder = os.path.realpath(os.fspath(path)), os.path.realpath(os.fspath(folder))
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def default_output(predictions):
    """Where ``apply_folder`` writes by default: ``<predictions>_clskern``, beside nnU-Net's folder."""
    predictions = os.path.abspath(os.fspath(predictions)).rstrip(os.sep)
    return predictions + OUTPUT_SUFFIX


def apply_folder(calibration, predictions, *, output=None, channel=1, overwrite=False, inside=False):
    """Write ``score >= threshold`` masks ``CASE.nii.gz`` for every ``CASE.npz`` of an nnU-Net output folder.

    Every input is checked first (readable ``.npy`` header, float scores, the
    channel, shape against ``CASE.pkl``, the ``.pkl``'s geometry): a bad one
    raises before the first mask is written.

    Parameters
    ----------
    calibration : Calibration, str, os.PathLike or float
        A ``Calibration``, its JSON file, or a threshold.
    predictions : str or os.PathLike
        nnU-Net output folder with ``CASE.npz`` and ``CASE.pkl``.
    output : str or os.PathLike, optional
        Folder for the masks, named ``CASE.nii.gz`` as ``clskern apply``
        names them (default: ``<predictions>_clskern``, beside it).
    channel : int
        The lesion class in the probabilities.
    overwrite : bool
        Replace existing masks (otherwise an error before anything is written).
    inside : bool
        Allow ``output`` inside ``predictions`` (nnU-Net's folder; refused by
        default). ``predictions`` itself is always refused: nnU-Net's own
        segmentation is ``CASE.nii.gz`` there.

    Returns
    -------
    dict
        ``{case_id: mask path}``.
    """
    threshold = load_threshold(calibration)
    inputs = find_files(predictions, (".npz",), "nnU-Net probabilities")
    output = default_output(predictions) if output is None else os.fspath(output)
    if _inside(output, predictions):
        if os.path.realpath(output) == os.path.realpath(os.fspath(predictions)):
            raise InputError(f"{output}: masks CASE.nii.gz there would replace nnU-Net's own segmentation; "
                             "name another output folder")
        if not inside:
            raise InputError(f"{output}: inside nnU-Net's prediction folder {os.fspath(predictions)}; name a "
                             "folder outside it (default: <predictions>_clskern) or pass inside=True")
    plan = {case_id: (path, resolve_geometry(path, case_id), os.path.join(output, f"{case_id}.nii.gz"))
            for case_id, path in inputs.items()}
    existing = [out for _, _, out in plan.values() if os.path.exists(out)]
    if existing and not overwrite:
        raise FileExistsError(17, f"{len(existing)} mask(s) exist (pass overwrite=True)", existing[0])
    check_inputs([(path, geometry) for path, geometry, _ in plan.values()], channel)
    os.makedirs(output, exist_ok=True)
    written = {}
    for case_id, (path, geometry, out) in plan.items():
        volume = read_case_scores(path, channel, geometry)
        mask = apply_threshold(volume.array, threshold, name=case_id)
        save_mask(mask, out, geometry, volume)
        written[case_id] = out
    return written
