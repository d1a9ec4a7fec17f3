"""Is a certified cut of any use? ``degenerate_cut``: warnings from the calibration statistics.

A threshold can meet its FNR promise and still be useless: an underconfident
model (or a tiny epsilon) certifies a cut so low that most of the volume is
predicted lesion (a threshold of 0.024 with 38 % of voxels predicted lesion
and Dice 0.01). Nothing in the guarantee says so; these checks do, on the very
cases the threshold was calibrated on, at the voxel level (at lesion level the
cut is still a score cut, and the voxel numbers still tell what the mask looks
like):

- the median share of voxels predicted lesion (``PC``, ``VolumeStats.pc``),
  over every case given, lesion-free ones too (the warning says how many of
  each: ``empty="skip"`` calibrates on the cases with lesions only),
  above ``max_pc`` (10 % by default) *and* above twice the median share of
  voxels that are lesion: lesions are a few percent of a volume at most (MS
  lesions, metastases, liver tumours: well under 1 %; a whole brain tumour a
  few percent), so a mask over a tenth of the volume is mostly background,
  while a task whose lesions do fill the volume (a tight crop) is not flagged
  for predicting what is there;
- the median Dice at the cut below half the median Dice at the 0.5 cut (in
  ``q`` with ``normalize="minmax"``), over the cases with lesion voxels: the
  mask lost at least half its overlap against the plain cut.

Both need the background (``FP``): statistics read with
``StatsStore.lesion_stats`` (no background) give no verdict (``None``).
``FP`` comes from the histogram, exact at bin edges (0.5 is one) and
interpolated within a bin elsewhere, which is more than precise enough here.
"""

import numpy as np

MAX_PC = 0.10
DICE_FRACTION = 0.5


def has_background(volumes):
    """Whether every ``VolumeStats`` carries its background (not ``lesion_stats``' fast-path ones)."""
    volumes = list(volumes.values() if isinstance(volumes, dict) else volumes)
    return bool(volumes) and all(v.n_voxels > v.n_fg or v.bg_counts.size for v in volumes)


def cut_quality(volumes, threshold, *, normalize="none", reference=0.5):
    """Median PC, median lesion share and median Dice at ``threshold`` and at ``reference``.

    ``volumes``: ``VolumeStats`` (a sequence or a mapping), with their
    background. PC and the lesion share are over every case; Dice over the
    cases with lesion voxels (None if there is none).
    """
    volumes = list(volumes.values() if isinstance(volumes, dict) else volumes)
    pc = [float(v.pc(threshold, normalize=normalize)) for v in volumes]
    share = [v.n_fg / max(v.n_voxels, 1) for v in volumes]
    lesioned = [v for v in volumes if v.n_fg > 0]
    dice = [float(v.dice(threshold, normalize=normalize)) for v in lesioned]
    dice_ref = [float(v.dice(reference, normalize=normalize)) for v in lesioned]
    med = lambda xs: float(np.median(xs)) if xs else None  # noqa: E731
    return {"pc": med(pc), "lesion_share": med(share), "dice": med(dice), "dice_reference": med(dice_ref),
            "n": len(volumes), "n_lesioned": len(lesioned)}


def degenerate_cut(volumes, threshold, *, normalize="none", max_pc=MAX_PC, dice_fraction=DICE_FRACTION):
    """Warnings (a list of one-line strings, empty when the cut looks sound) about ``threshold`` on the
    calibration statistics ``volumes``; None when they carry no background (``lesion_stats``)."""
    if not has_background(volumes):
        return None
    q = cut_quality(volumes, threshold, normalize=normalize)
    scale = " (min-max normalised scores)" if normalize != "none" else ""
    out = []
    pc, share = q["pc"], q["lesion_share"]
    shown = f"{threshold:.4g}"  # as the tables show it; the calibration JSON keeps every digit
    if pc > max_pc and pc > 2 * share:
        n, free = q["n"], q["n"] - q["n_lesioned"]
        cases = f"over {n} cases" + (f", {q['n_lesioned']} with lesions and {free} lesion-free" if free else "")
        out.append(f"degenerate cut: at threshold {shown}{scale} the median calibration case has "
                   f"{pc:.2%} of its voxels predicted lesion (bound {max_pc:.0%}; median lesion share "
                   f"{share:.2%}; medians {cases})")
    dice, ref = q["dice"], q["dice_reference"]
    if dice is not None and dice < dice_fraction * ref:
        out.append(f"degenerate cut: median Dice {dice:.3f} at threshold {shown}{scale}, against {ref:.3f} "
                   f"at the 0.5 cut: below {dice_fraction:.0%} of it ({dice_fraction * ref:.3f}; "
                   f"{q['n_lesioned']} cases with lesions)")
    return out
