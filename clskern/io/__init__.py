"""Reading cases from files: NIfTI, nnU-Net ``.npz``, ``.npy``; pairing; batches.

- ``pair_cases(scores_dir, labels_dir)`` pairs files by case id.
- ``load_case(pair)`` reads a pair, aligned and checked (shape, affine).
- ``read_scores`` / ``read_labels`` / ``read_nifti`` read single files.
- ``collect_stats(pairs, store=...)`` runs ``volume_stats`` over a folder,
  reading ahead on threads, resuming from a ``clskern.store.StatsStore``.
"""

from typing import TYPE_CHECKING

from ._gzip import available_backends as gzip_backends
from ._gzip import gunzip
from .arrays import read_npy, read_npz
from .nnunet_pkl import read_pkl_affine
from .batch import BatchResult, CaseEvent, collect_stats
from .cases import (
    SCORE_SUFFIXES,
    CasePair,
    LoadedCase,
    ScoreVolume,
    check_affines,
    find_files,
    load_case,
    pair_cases,
    read_labels,
    read_scores,
    split_suffix,
)
from .errors import FileFormatError, MismatchError, PairingError
from .prefetch import prefetch

if TYPE_CHECKING:  # what type checkers see; at run time nibabel loads on first use (``__getattr__``)
    from .nifti import NiftiVolume, mask_image, read_header, read_nifti, write_atomic

_NIFTI_NAMES = ("NiftiVolume", "mask_image", "read_header", "read_nifti", "write_atomic")


def __getattr__(name: str) -> object:
    """The NIfTI names load nibabel, on first use only (PEP 562)."""
    if name in _NIFTI_NAMES:
        from . import nifti

        return getattr(nifti, name)
    raise AttributeError(f"module 'clskern.io' has no attribute {name!r}")

__all__ = [
    "SCORE_SUFFIXES",
    "BatchResult",
    "CaseEvent",
    "CasePair",
    "FileFormatError",
    "LoadedCase",
    "MismatchError",
    "NiftiVolume",
    "PairingError",
    "ScoreVolume",
    "check_affines",
    "collect_stats",
    "find_files",
    "gunzip",
    "gzip_backends",
    "load_case",
    "mask_image",
    "pair_cases",
    "prefetch",
    "read_header",
    "read_labels",
    "read_nifti",
    "read_npy",
    "read_npz",
    "read_pkl_affine",
    "read_scores",
    "split_suffix",
    "write_atomic",
]
