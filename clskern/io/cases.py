"""Finding cases on disk, pairing scores with labels by id, loading a pair.

A case id is a file name without its suffix. Scores pair with the label file
of the same id; a score file named like an nnU-Net image channel
(``CASE_0000.nii.gz``) pairs with ``CASE`` when no label is called
``CASE_0000``. In a folder holding both ``CASE.npz`` and ``CASE.nii.gz`` (what
nnU-Net's ``--save_probabilities`` writes: probabilities and segmentation),
the ``.npz`` is the score file.

Before a pair is used, its scores are shown to describe the label's voxels:
a NIfTI score file by its affine; an nnU-Net ``.npz`` by the ``CASE.pkl``
beside it (its geometry must match the label's affine, and probabilities
saved in reoriented axes by ``NibabelIOWithReorient`` are brought back to the
label's axes first); a ``.npy`` only by its shape (``LoadedCase.geometry``
says which).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .arrays import read_npy, read_npz_channels
from .errors import FileFormatError, MismatchError, PairingError
from .suffixes import NIFTI_SUFFIXES
from .nnunet_pkl import AFFINE_ATOL, pkl_beside, read_pkl_geometry

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

SCORE_SUFFIXES = (".npz", ".nii.gz", ".nii", ".npy")
LABEL_SUFFIXES = NIFTI_SUFFIXES


def _read_nifti(path, **options):
    """``clskern.io.nifti.read_nifti``, imported when a volume is read: pairing and resuming
    a store need no nibabel (a tenth of a resumed ``clskern stats``' start-up)."""
    from .nifti import read_nifti

    return read_nifti(path, **options)
_CHANNEL_SUFFIX = re.compile(r"^(.+)_\d{4}$")


def dataset_json_beside(labels_folder: str | os.PathLike[str]) -> str | None:
    """nnU-Net's ``dataset.json`` beside a ``labelsTr`` folder (as in nnUNet_raw), or None."""
    beside = os.path.join(os.path.dirname(os.path.abspath(os.fspath(labels_folder))), "dataset.json")
    return beside if os.path.isfile(beside) else None


def split_suffix(name: str, suffixes: Iterable[str]) -> tuple[str, str] | None:
    """``(stem, suffix)`` of a file name with one of ``suffixes``, else None."""
    for suffix in sorted(suffixes, key=len, reverse=True):
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)], suffix
    return None


def _listing(names, limit=8):
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def find_files(directory: str | os.PathLike[str], suffixes: Iterable[str], what: str) -> dict[str, str]:
    """``{stem: path}`` of the files in ``directory`` with one of ``suffixes``.

    A stem with an ``.npz`` and NIfTI files keeps the ``.npz`` (nnU-Net's
    probabilities beside its segmentation); any other stem with two files
    (``.nii`` beside ``.nii.gz``, say) is ambiguous and an error. Hidden files
    and other suffixes are ignored.
    """
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise FileNotFoundError(2, f"{what} directory not found", directory)
    by_stem: dict[str, dict[str, str]] = {}
    for name in sorted(os.listdir(directory)):
        split = split_suffix(name, suffixes)
        path = os.path.join(directory, name)
        if name.startswith(".") or split is None or not os.path.isfile(path):
            continue
        by_stem.setdefault(split[0], {})[split[1]] = path
    found = {}
    for stem, files in by_stem.items():
        if ".npz" in files and set(files) <= {".npz", *NIFTI_SUFFIXES}:
            files = {".npz": files[".npz"]}
        if len(files) > 1:
            raise PairingError(f"{what}: case {stem!r} has several files ({', '.join(files.values())}); keep one")
        found[stem] = next(iter(files.values()))
    if not found:
        raise PairingError(f"{directory}: no {what} files ({', '.join(suffixes)})")
    return found


@dataclass(frozen=True)
class CasePair:
    """A case id with its score file and label file."""

    case_id: str
    scores: str
    labels: str


def pair_cases(scores_dir: str | os.PathLike[str], labels_dir: str | os.PathLike[str], *,
               allow_unmatched: bool = False) -> tuple[list[CasePair], list[str]]:
    """Pair score and label files by case id.

    Parameters
    ----------
    scores_dir, labels_dir : str or os.PathLike
        Folders of score files (``.nii.gz``, ``.nii``, ``.npz``, ``.npy``)
        and label files (``.nii.gz``, ``.nii``).
    allow_unmatched : bool
        Leave out score files without a label instead of raising. Labels
        without scores are always left out: a fold's predictions cover part
        of ``labelsTr``.

    Returns
    -------
    pairs : list of CasePair
        Sorted by case id.
    unmatched : list of str
        Files without a partner: score files without a label (only with
        ``allow_unmatched``), then label files without scores.

    Raises
    ------
    PairingError
        Listing score files without a label, or naming two score files of one case.
    """
    scores = find_files(scores_dir, SCORE_SUFFIXES, "scores")
    labels = find_files(labels_dir, LABEL_SUFFIXES, "labels")
    by_id: dict[str, str] = {}
    for stem, path in scores.items():
        case_id = stem
        if stem not in labels:
            m = _CHANNEL_SUFFIX.match(stem)
            if m and m.group(1) in labels:
                case_id = m.group(1)
        if case_id in by_id:
            raise PairingError(f"case {case_id!r} has two score files, {by_id[case_id]} and {path}; keep one")
        by_id[case_id] = path
    pairs = [CasePair(i, by_id[i], labels[i]) for i in sorted(by_id) if i in labels]
    orphans = [by_id[i] for i in sorted(by_id) if i not in labels]
    if orphans and not allow_unmatched:
        raise PairingError(
            f"{len(orphans)} score file(s) without a label (no label file with the same case id in "
            f"{os.fspath(labels_dir)}): {_listing(orphans)}; pass --allow-unmatched to leave them out"
        )
    unmatched = orphans + [labels[i] for i in sorted(labels) if i not in by_id]
    if not pairs:
        raise PairingError(f"no case pairs between {scores_dir} and {labels_dir}")
    return pairs, unmatched


def _squeeze_trailing(array):
    while array.ndim > 3 and array.shape[-1] == 1:
        array = array[..., 0]
    return array


def _pick_channel(array, channel, path, ndim):
    """Last-axis channel of a NIfTI score volume with one more axis than the labels."""
    if array.ndim != ndim + 1:
        if channel not in (None, 0):
            raise MismatchError(f"{path}: channel {channel} does not exist (the file has 1 channel)")
        return array
    n = array.shape[-1]
    c = (1 if n > 1 else 0) if channel is None else channel
    if not 0 <= c < n:
        raise MismatchError(f"{path}: channel {c} does not exist (the last axis has {n} channels)")
    return array[..., c]


@dataclass
class ScoreVolume:
    """Scores of one case, aligned to nibabel's axes, with geometry when known.

    ``affine`` is None for ``.npz``/``.npy`` scores read by ``read_scores``
    (the file's own axes, which for nnU-Net's reorienting reader are not the
    source image's); ``read_case_scores`` fills it once the scores are in the
    source image's axes.
    """

    array: np.ndarray
    path: str
    affine: np.ndarray | None = None
    header: object = None


def read_scores(path: str | os.PathLike[str], *, channel: int | None = None, ndim: int = 3, backend: str | None = None,
                spatial_shape: tuple[int, ...] | None = None) -> ScoreVolume:
    """Read a score file of any supported format, aligned to nibabel's ``(x, y, z)``.

    An ``.npz`` comes back in the axes nnU-Net saved it in (reversed to
    ``(x, y, z)``), which for its ``NibabelIOWithReorient`` reader are not
    the source image's: ``load_case`` and ``read_case_scores`` use the
    ``.pkl`` to bring it back.

    ``channel`` picks the class of a multi-channel file (default: 1, or 0
    when there is a single channel); ``ndim`` is the label volume's number
    of axes (3 unless known otherwise). ``spatial_shape`` (the labels' shape)
    refuses a file declaring another shape before its voxels are inflated
    (for an ``.npz`` up to the order of the axes, which its ``.pkl`` settles).
    """
    return read_scores_channels(path, [channel], ndim=ndim, backend=backend, spatial_shape=spatial_shape)[0]


def read_scores_channels(path: str | os.PathLike[str], channels: Iterable[int | None], *, ndim: int = 3,
                         backend: str | None = None,
                         spatial_shape: tuple[int, ...] | None = None) -> list[ScoreVolume]:
    """``read_scores`` for several channels of one file, read once: views of one inflated
    ``.npz`` or ``.nii.gz`` (a case with k classes is not inflated k times)."""
    path = os.fspath(path)
    channels = list(channels)
    split = split_suffix(os.path.basename(path), SCORE_SUFFIXES)
    if split is None:
        raise FileFormatError(f"{path}: not a score file ({', '.join(SCORE_SUFFIXES)})")
    suffix = split[1]
    if suffix == ".npz":
        arrays = read_npz_channels(path, [1 if c is None else c for c in channels], spatial_shape=spatial_shape,
                                   any_axis_order=True)
        return [ScoreVolume(a, path) for a in arrays]
    if suffix == ".npy":  # memory-mapped: nothing is read until used
        return [ScoreVolume(read_npy(path, c, ndim), path) for c in channels]
    vol = _read_nifti(path, backend=backend, spatial_shape=spatial_shape)
    array = _squeeze_trailing(vol.array)
    return [ScoreVolume(_pick_channel(array, c, path, ndim), path, vol.affine, vol.header) for c in channels]


def read_case_scores(path, channel=None, geometry=None, *, ndim=3, backend=None, affine_atol=AFFINE_ATOL):
    """Scores of a case in the axes of its source image, ready for a mask.

    Parameters
    ----------
    path : str or os.PathLike
        A score file (``.npz``, ``.nii.gz``, ``.nii``, ``.npy``).
    channel : int, optional
        As in ``read_scores``.
    geometry : clskern.io.masks.Geometry, optional
        From ``resolve_geometry``. For an ``.npz`` whose geometry names an
        nnU-Net ``.pkl`` (``kind == "pkl"``, or ``pkl`` set beside a
        reference), the probabilities are brought back from nnU-Net's
        reoriented axes to the source image's (a view) and ``affine`` is the
        ``.pkl``'s original affine. Otherwise this is ``read_scores``.

    Raises
    ------
    FileFormatError, MismatchError
        An unreadable or unsafe ``.pkl``, or one that does not fit the array.
    """
    return read_case_scores_channels(path, [channel], geometry, ndim=ndim, backend=backend,
                                     affine_atol=affine_atol)[0]


def read_case_scores_channels(path, channels, geometry=None, *, ndim=3, backend=None, affine_atol=AFFINE_ATOL):
    """``read_case_scores`` for several channels, the file read once (``read_scores_channels``)."""
    volumes = read_scores_channels(path, channels, ndim=ndim, backend=backend)
    if geometry is None or geometry.kind == "scores" or not os.fspath(path).endswith(".npz"):
        return volumes
    if geometry.kind == "pkl" and geometry.pkl is None:  # a Geometry("pkl", path) built by hand
        pkl_geometry = read_pkl_geometry(geometry.path)
    else:
        pkl_geometry = geometry.read_pkl()
        if pkl_geometry is None:  # a reference and no .pkl: the .npz is taken in the reference's axes
            return volumes
    return [ScoreVolume(pkl_geometry.to_original(v.array, f"scores {v.path}", affine_atol), v.path,
                        pkl_geometry.affine, None) for v in volumes]


def read_labels(path: str | os.PathLike[str], *, backend: str | None = None) -> tuple[np.ndarray, np.ndarray, Any]:
    """A label NIfTI: ``(array, affine, header)``, trailing singleton axes dropped."""
    vol = _read_nifti(path, backend=backend)
    return _squeeze_trailing(vol.array), vol.affine, vol.header


def check_affines(a: ArrayLike, b: ArrayLike, path_a: str, path_b: str, atol: float = AFFINE_ATOL) -> None:
    """Raise ``MismatchError`` unless two affines agree within ``atol``."""
    if not np.allclose(a, b, rtol=0, atol=atol):
        worst = float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
        raise MismatchError(
            f"affine mismatch between {path_a} and {path_b} (largest difference {worst:.3g} > {atol:g})"
        )


GEOMETRY_CHECKS = ("affine", "pkl", "shape")


@dataclass
class LoadedCase:
    """A case read from disk, ready for ``volume_stats``.

    ``geometry`` says how the scores were shown to describe the label's
    voxels: ``"affine"`` (a NIfTI score file whose affine matches the
    label's), ``"pkl"`` (an nnU-Net ``.npz`` whose ``CASE.pkl`` geometry
    matches the label's affine, brought back from reoriented axes if need
    be), or ``"shape"`` (a ``.npy``: no geometry, paired by shape only).
    """

    case_id: str
    scores: np.ndarray
    labels: np.ndarray
    pair: CasePair
    geometry: str = "shape"

    @property
    def geometry_checked(self) -> bool:
        """True unless the pair was matched by shape only (``.npy`` scores)."""
        return self.geometry != "shape"

    @property
    def nbytes(self) -> int:
        """Decompressed bytes of scores and labels (for throughput)."""
        return self.scores.nbytes + self.labels.nbytes


def load_case(pair: CasePair, *, channel: int | None = None, backend: str | None = None,
              affine_atol: float = AFFINE_ATOL) -> LoadedCase:
    """Read a case's scores and labels and check that they line up.

    A NIfTI score file must have the label's shape and affine. An nnU-Net
    ``CASE.npz`` needs its ``CASE.pkl``: the geometry there must match the
    label's affine, and probabilities in reoriented axes
    (``NibabelIOWithReorient``) are first brought back to the label's axes,
    as nnU-Net does for its segmentation. A ``.npy`` is matched by shape
    only (``LoadedCase.geometry == "shape"``).

    Raises
    ------
    MismatchError
        Shapes or affines that disagree; the case and the files are named.
    FileFormatError
        For a file that cannot be read, an ``.npz`` without its ``.pkl``, or
        a ``.pkl`` without geometry or that would run code.
    """
    return load_case_channels(pair, [channel], backend=backend, affine_atol=affine_atol)[0]


def load_case_channels(pair: CasePair, channels: Iterable[int | None], *, backend: str | None = None,
                       affine_atol: float = AFFINE_ATOL) -> list[LoadedCase]:
    """``load_case`` for several channels of one case, its files read once (labels and scores)."""
    labels, label_affine, _ = read_labels(pair.labels, backend=backend)
    try:  # a file declaring another shape is refused before its voxels are inflated
        volumes = read_scores_channels(pair.scores, channels, ndim=labels.ndim, backend=backend,
                                       spatial_shape=labels.shape)
    except MismatchError as exc:
        raise MismatchError(f"case {pair.case_id!r}: {exc}; labels {pair.labels} have shape {labels.shape}") from None
    out = []
    for scores in volumes:
        array = scores.array
        if scores.affine is not None:
            geometry = "affine"
        elif pair.scores.endswith(".npz"):
            geometry = "pkl"
            array = _npz_in_label_axes(pair, array, labels, label_affine, affine_atol)
        else:
            geometry = "shape"
        if array.shape != labels.shape:
            raise MismatchError(
                f"case {pair.case_id!r}: scores {pair.scores} have shape {array.shape} "
                f"but labels {pair.labels} have shape {labels.shape}"
            )
        if scores.affine is not None:
            check_affines(scores.affine, label_affine, pair.scores, pair.labels, affine_atol)
        out.append(LoadedCase(pair.case_id, array, labels, pair, geometry))
    return out


def _npz_in_label_axes(pair, array, labels, label_affine, atol):
    """nnU-Net probabilities checked against the label through ``CASE.pkl``, in the label's axes."""
    pkl = pkl_beside(pair.scores)
    if not os.path.isfile(pkl):
        raise FileFormatError(
            f"case {pair.case_id!r}: {pkl} not found: nnU-Net writes it beside {pair.scores} "
            f"(--save_probabilities); without it the orientation of the probabilities against "
            f"labels {pair.labels} cannot be checked"
        )
    try:
        geometry = read_pkl_geometry(pkl)
    except FileFormatError as exc:
        raise FileFormatError(f"case {pair.case_id!r}: {exc} (scores {pair.scores}, labels {pair.labels})") from None
    if labels.ndim != 3:
        raise MismatchError(
            f"case {pair.case_id!r}: labels {pair.labels} have {labels.ndim} axes; {pkl} describes a 3-D image"
        )
    if not np.allclose(geometry.affine, label_affine, rtol=0, atol=atol):
        worst = float(np.max(np.abs(geometry.affine - np.asarray(label_affine))))
        raise MismatchError(
            f"case {pair.case_id!r}: affine mismatch between {pkl} (geometry of {pair.scores}) and "
            f"labels {pair.labels} (largest difference {worst:.3g} > {atol:g})"
        )
    try:
        return geometry.to_original(array, f"case {pair.case_id!r}: scores {pair.scores}", atol)
    except MismatchError as exc:
        raise MismatchError(f"{exc} (labels {pair.labels} have shape {labels.shape})") from None
