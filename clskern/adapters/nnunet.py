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
When ``dataset.json`` (the model folder's copy, else the one beside
``labelsTr``) names several classes or regions and neither ``channel`` nor
``label`` picks one, every class is calibrated, each on its own channel and
label values (a ``CalibrationSet``, as ``clskern calibrate --dataset-json``
writes); a single calibration records the channel and label it read
(``Calibration.reading``).

``apply_folder`` cuts every ``CASE.npz`` of a prediction folder at the
threshold, on the channel the calibration recorded and with its
``normalize``, and writes ``CASE.nii.gz`` (the name ``clskern apply``
writes) with the geometry of ``CASE.pkl`` into a folder of its own, all
masks or none; a calibration per class writes nnU-Net's label map. The
default folder is the sibling ``<predictions>_clskern``, except inside an
nnU-Net results tree (``$nnUNet_results``, a ``nnUNet_results`` folder or a
``TRAINER__PLANS__CONFIGURATION`` model folder, as ``fold_N/validation``),
where the output must be named: never inside nnU-Net's folders unless asked.

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
from ..calibration.record import channel_to_cut
from ..classes import apply_classes, dataset_reading
from ..errors import InputError
from ..io import collect_stats, find_files, pair_cases, split_suffix
from ..io._atomic import StagedFolder
from ..io.cases import LABEL_SUFFIXES, CasePair, dataset_json_beside, read_case_scores, read_case_scores_channels
from ..io.errors import PairingError
from ..io.masks import check_inputs, resolve_geometry, save_mask
from ..store import StatsStore
from ._threshold import load_calibration, load_calibration_or_set

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
        return self.dataset_json if self.dataset_json is not None else dataset_json_beside(labels_folder)


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


def _train_command(dataset, configuration, fold, trainer, plans):
    extra = ("" if trainer == "nnUNetTrainer" else f" -tr {trainer}") + ("" if plans == "nnUNetPlans" else f" -p {plans}")
    return f"nnUNetv2_train {dataset} {configuration} {fold}{extra} --val --npz"


def _check_folds(folds, present, model):
    """``folds`` as a list of ints: each at most once and each a ``fold_N`` of ``model``."""
    asked = []
    for fold in folds:
        if isinstance(fold, bool) or not isinstance(fold, (int, str)) or not str(fold).isdigit():
            raise InputError(f"fold {fold!r}: expected a fold number (0, 1, ...)")
        fold = int(fold)
        if fold in asked:
            raise InputError(f"fold {fold} asked twice (folds {', '.join(map(str, folds))}): each fold's cases "
                             "are pooled once")
        asked.append(fold)
    missing = [fold for fold in asked if fold not in present]
    if missing:
        raise PairingError(f"{model}: no fold {', '.join(map(str, missing))} (fold_N there: "
                           f"{', '.join(map(str, present)) or 'none'})")
    return asked


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
        Each at most once, each a ``fold_N`` folder of the model.

    Returns
    -------
    Results
        ``RESULTS/DatasetXXX_Name/TRAINER__PLANS__CONFIGURATION/fold_F/validation/CASE.npz`` of
        every fold (nnU-Net writes them with ``nnUNetv2_train ... --npz``), pooled.

    Raises
    ------
    InputError
        A fold asked twice.
    PairingError
        A fold asked that is not there (the folds there named), a fold
        without ``validation/`` (training not finished) or without ``.npz``
        predictions, or a case in two folds (the folds of one
        cross-validation are disjoint).
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
    present = sorted(int(n[5:]) for n in os.listdir(model)
                     if re.fullmatch(r"fold_\d+", n) and os.path.isdir(os.path.join(model, n)))
    if folds is None:
        if not present:
            raise PairingError(f"{model}: no fold_N folders (train with nnUNetv2_train ... FOLD --npz)")
        folds, picked = present, False
    else:
        folds, picked = _check_folds(list(folds), present, model), True
    found, cases, fold_of = {}, {}, {}
    for fold in folds:
        validation = os.path.join(model, f"fold_{fold}", "validation")
        if not os.path.isdir(validation):
            raise PairingError(f"{model}: fold {fold} has no validation/ folder: training not finished, or run "
                               + _train_command(name, configuration, fold, trainer, plans)
                               + ("" if picked else " (pick the finished folds)"))
        try:
            npz = find_files(validation, (".npz",), "nnU-Net probabilities")
        except PairingError:
            raise PairingError(f"{validation}: no CASE.npz (train with --npz, or run "
                               f"{_train_command(name, configuration, fold, trainer, plans)})") from None
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


def _what_to_read(dataset_json, channel, label):
    """``("one", channel, label)`` or ``("classes", classes, regions_class_order)``: what ``calibrate_folder`` reads.

    Without ``dataset.json``: ``channel`` (default 1) against ``label`` (default
    every label > 0). With it: ``clskern.classes.dataset_reading``, the rule
    ``clskern stats`` and ``calibrate`` follow too.
    """
    if dataset_json is None:
        return "one", 1 if channel is None else channel, label
    reading = dataset_reading(dataset_json, channel, label)
    if reading.kind == "classes":
        return "classes", reading.classes, reading.regions_class_order
    return "one", 1 if reading.channel is None else reading.channel, reading.label


def calibrate_folder(predictions, labels=None, *, epsilon, alpha=None, method="cls", delta=None, empty="skip",
                     channel=None, label=None, dataset_json=None, store=None, jobs=1):
    """Calibrate a threshold from nnU-Net probabilities and ground truth, one class or each class.

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
        As in ``clskern.calibrate`` (``epsilon`` may be ``{class: epsilon}``
        when every class is calibrated).
    channel : int, optional
        The class's channel in the probabilities (0 is background).
    label : number, optional
        The class's label value in multi-label ``labelsTr`` masks.
    dataset_json : str or os.PathLike, optional
        nnU-Net's ``dataset.json``, which names the classes (default: the
        model folder's copy for ``Results``, else the one beside ``labelsTr``,
        as nnU-Net keeps it in ``nnUNet_raw``). Without one, ``channel``
        defaults to 1 and ``label`` to every label > 0. With one, and neither
        ``channel`` nor ``label`` given, every class it names is calibrated
        (each its own channel and label values, as ``clskern stats
        --dataset-json`` reads them); one of them given picks the class it
        names (a softmax dataset's label 2 is channel 2).
    store : str or os.PathLike, optional
        A statistics store to fill and resume from (``clskern stats``'s
        format; per class, ``ClassStatsStore``'s): re-running reads only new
        or changed cases.
    jobs : int
        Reader threads.

    Returns
    -------
    Calibration or CalibrationSet
        One class: a ``Calibration`` whose ``reading`` records the label and
        channel read (``apply_folder`` cuts that channel). Several classes, or
        a region of several label values: a
        ``CalibrationSet`` (``by="class"``, family ``"none"``: each class its
        own guarantee) with ``calibrations[name]`` each class's
        ``Calibration``; ``to_json()`` writes the file ``clskern apply``
        reads, and ``apply_folder`` writes nnU-Net's label map from it.
    """
    import dataclasses

    if isinstance(predictions, Results):
        labels = predictions.labels_folder(labels)
        pairs, _ = results_pairs(predictions, labels)
        if dataset_json is None:
            dataset_json = predictions.dataset_json_for(labels)
    elif labels is None:
        raise InputError("calibrate_folder: give the labelsTr folder (labels=...)")
    else:
        pairs = _pairs(predictions, labels)
    if dataset_json is None:
        dataset_json = dataset_json_beside(labels)
    kind, *what = _what_to_read(dataset_json, channel, label)
    if kind == "classes":
        return _calibrate_classes(pairs, *what, epsilon=epsilon, alpha=alpha, method=method, delta=delta,
                                  empty=empty, store=store, jobs=jobs)
    channel, label = what
    if store is None:
        result = collect_stats(pairs, label=label, channel=channel, empty=empty, jobs=jobs)
    else:
        with StatsStore(store) as s:
            result = collect_stats(pairs, store=s, label=label, channel=channel, empty=empty, jobs=jobs)
    calibration = calibrate(result.stats, epsilon=epsilon, alpha=alpha, method=method, delta=delta, empty=empty)
    return dataclasses.replace(calibration, reading={"label": label, "channel": channel})


def _calibrate_classes(pairs, classes, order, *, epsilon, alpha, method, delta, empty, store, jobs):
    import dataclasses

    from ..calibration.sets import CalibrationSet
    from ..class_store import ClassStatsStore
    from ..io.class_batch import collect_class_stats

    if store is None:
        result = collect_class_stats(pairs, classes, regions_class_order=order, empty=empty, jobs=jobs)
    else:
        with ClassStatsStore(store) as s:
            result = collect_class_stats(pairs, classes, regions_class_order=order, store=s, empty=empty, jobs=jobs)
    calibrations = calibrate(result.stats, epsilon=epsilon, alpha=alpha, method=method, delta=delta, empty=empty,
                             family="none")
    calibrations = {name: dataclasses.replace(c, reading={"label": None, "channel": classes[name][0]})
                    for name, c in calibrations.items()}
    first = next(iter(calibrations.values()))
    return CalibrationSet(by="class", calibrations=calibrations, family="none", alpha=first.alpha, delta=first.delta,
                          classes=dict(classes), regions_class_order=order)


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


def _model_folder(name):
    """Whether a folder name is nnU-Net's ``TRAINER__PLANS__CONFIGURATION``."""
    parts = name.split("__")
    return len(parts) == 3 and all(parts)


def results_tree(path):
    """The nnU-Net results folder that ``path`` lies in, or None.

    ``path`` is inside one when ``$nnUNet_results`` holds it, or when a
    folder on its (resolved) path is named ``nnUNet_results`` or is a model
    folder ``TRAINER__PLANS__CONFIGURATION`` (whose ``fold_N/validation`` nnU-Net writes).
    """
    real = os.path.realpath(os.fspath(path))
    env = os.environ.get("nnUNet_results")
    if env and _inside(real, env):
        return os.path.realpath(env)
    head = real
    while True:
        head_, name = os.path.split(head)
        if name == "nnUNet_results" or _model_folder(name):
            return head
        if head_ == head or not name:
            return None
        head = head_


def default_output(predictions):
    """Where ``apply_folder`` writes by default: ``<predictions>_clskern``, beside nnU-Net's folder.

    Never inside an nnU-Net results tree (``results_tree``: inside
    ``$nnUNet_results``, a folder named ``nnUNet_results`` or a model folder
    ``TRAINER__PLANS__CONFIGURATION``, as a fold's ``validation/`` is): there
    no default is guessed and ``InputError`` asks for an output folder.
    """
    predictions = os.path.abspath(os.fspath(predictions)).rstrip(os.sep)
    tree = results_tree(predictions)
    if tree is not None:
        raise InputError(f"{predictions}: inside nnU-Net's results tree ({tree}), where clskern writes nothing "
                         "unasked; name the output folder (output=...)")
    return predictions + OUTPUT_SUFFIX


SEGMENTATION_ENDINGS = (".nii.gz", ".nii", ".mha", ".nrrd", ".nhdr", ".tif", ".tiff", ".png", ".bmp")


def prediction_files(predictions):
    """``{case_id: CASE.npz}`` of an nnU-Net output folder; a case with only nnU-Net's segmentation is refused."""
    folder = os.fspath(predictions)
    try:
        inputs = find_files(folder, (".npz",), "nnU-Net probabilities")
    except PairingError as exc:
        inputs, missing = {}, exc
    else:
        missing = None
    segmentation_only = []
    for name in sorted(os.listdir(folder)):
        split = split_suffix(name, SEGMENTATION_ENDINGS)
        if split is not None and not name.startswith(".") and split[0] not in inputs \
                and os.path.isfile(os.path.join(folder, name)):
            segmentation_only.append(name)
    if segmentation_only:
        more = f" and {len(segmentation_only) - 8} more" if len(segmentation_only) > 8 else ""
        raise PairingError(f"{folder}: no CASE.npz for {len(segmentation_only)} case(s) with only nnU-Net's "
                           f"segmentation ({', '.join(segmentation_only[:8])}{more}): run nnUNetv2_predict with "
                           "--save_probabilities")
    if missing is not None:
        raise missing
    return inputs


def _single_cut(calibration, channel, where):
    """``(threshold, channel, normalize)``: the recorded channel wins, a different ``channel`` is refused."""
    threshold, recorded, normalize = load_calibration(calibration)
    channel = channel_to_cut(recorded, channel, where=where)
    return threshold, 1 if channel is None else channel, normalize


def _class_cut(calibration_set, channel, where):
    """``(channels, stacked classes, regions_class_order)`` of a calibration per class, for ``apply_classes``."""
    from ..classes import stacked_layout

    names = ", ".join(calibration_set.names)
    if calibration_set.by != "class":
        raise InputError(f"{where}a calibration per {calibration_set.by} ({names}): each case needs its group's "
                         "threshold; cut with clskern apply --groups, or pass one member (the_set[NAME])")
    if channel is not None:
        raise InputError(f"{where}a calibration per class ({names}) reads each class's own channel; channel= "
                         "does not apply")
    classes = calibration_set.classes
    if classes is None:
        raise InputError(f"{where}a calibration per class ({names}) that does not say which channel each class reads")
    order = calibration_set.regions_class_order
    channels, stacked = stacked_layout(classes, order, where)
    return channels, stacked, order


def apply_folder(calibration, predictions, *, output=None, channel=None, overwrite=False, inside=False):
    """Write ``score >= threshold`` masks ``CASE.nii.gz`` for every ``CASE.npz`` of an nnU-Net output folder.

    Every input is checked first (readable ``.npy`` header, float scores, the
    channel, shape against ``CASE.pkl``, the ``.pkl``'s geometry): a bad one
    raises before the first mask is written; damage found only while reading
    the voxels (a CRC error, NaN scores) leaves no mask either (all masks or
    none, older ones kept under ``overwrite``). A case with only nnU-Net's
    segmentation and no ``CASE.npz`` is refused.

    Parameters
    ----------
    calibration : Calibration, CalibrationSet, str, os.PathLike or float
        A ``Calibration``, a calibration per class (``calibrate_folder`` on
        several classes, ``clskern calibrate --dataset-json``), its JSON
        file, or a threshold. A calibration per class writes nnU-Net's label
        map (``clskern.classes.apply_classes``), as ``clskern apply`` does.
    predictions : str or os.PathLike
        nnU-Net output folder with ``CASE.npz`` and ``CASE.pkl``.
    output : str or os.PathLike, optional
        Folder for the masks, named ``CASE.nii.gz`` as ``clskern apply``
        names them (default: ``default_output(predictions)``,
        ``<predictions>_clskern`` beside it; none inside an nnU-Net results
        tree, where ``output`` is required).
    channel : int, optional
        The lesion class in the probabilities: the channel the calibration
        recorded (``Calibration.reading``; another one is refused), else 1.
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
    import numpy as np

    from ..calibration.sets import CalibrationSet

    where = f"{os.fspath(calibration)}: " if isinstance(calibration, (str, os.PathLike)) else ""
    calibration = load_calibration_or_set(calibration)
    if isinstance(calibration, CalibrationSet):
        channels, stacked, order = _class_cut(calibration, channel, where)
        need = max(channels)
    else:
        threshold, channel, normalize = _single_cut(calibration, channel, where)
        need = channel
    inputs = prediction_files(predictions)
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
    check_inputs([(path, geometry) for path, geometry, _ in plan.values()], need)
    written = {}
    with StagedFolder(output) as staged:  # all masks or none: a late failure (CRC, NaN) leaves no mask
        for case_id, (path, geometry, out) in plan.items():
            if isinstance(calibration, CalibrationSet):
                volumes = read_case_scores_channels(path, channels, geometry)  # the file read once
                mask = apply_classes(np.stack([v.array for v in volumes]), calibration.calibrations, stacked,
                                     regions_class_order=order, name=case_id).astype(np.uint8, copy=False)
                volume = volumes[0]
            else:
                volume = read_case_scores(path, channel, geometry)
                mask = apply_threshold(volume.array, threshold, normalize=normalize, name=case_id)
            save_mask(mask, staged.path(os.path.basename(out)), geometry, volume)
            written[case_id] = out
    return written
