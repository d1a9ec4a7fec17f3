"""PNG figures of an evaluation (needs matplotlib: the ``plot`` extra).

Uses ``matplotlib.figure.Figure`` directly (no pyplot, no global state, no
display needed). Each function draws one figure and returns its file name.
"""

import os

import numpy as np
from matplotlib.figure import Figure

from ..io._atomic import atomic_path
from .methods import fixed_cut
from .protocol import binomial_se

_DPI = 100
_COLORS = {
    "cls": "#1f77b4", "cls-pac": "#17becf", "crc": "#ff7f0e", "rcps": "#d62728",
    "authors": "#9467bd", "fixed": "#7f7f7f",
}
_MARKERS = {"cls": "o", "cls-pac": "s", "crc": "^", "rcps": "v", "authors": "D", "fixed": "x"}


def _style(method):
    key = "fixed" if fixed_cut(method) is not None else method
    return {"color": _COLORS.get(key, "black"), "marker": _MARKERS.get(key, ".")}


def _save(fig, outdir, name):
    """Write the figure atomically (a temporary file beside it, then ``os.replace``)."""
    with atomic_path(os.path.join(outdir, name), suffix=".png") as tmp:
        fig.savefig(tmp, dpi=_DPI, format="png")
    return name


def _series(entry):
    mean = np.array([np.nan if v is None else v for v in entry["mean"]], dtype=float)
    std = np.array([np.nan if v is None else v for v in entry["std"]], dtype=float)
    return mean, std


def ecr_vs_alpha(summary, outdir):
    """Mean ECR (± std over splits) against alpha, with the 1 - alpha line and its binomial band."""
    sweep = summary["sweeps"]["alpha"]
    alphas = np.array(sweep["values"])
    fig = Figure(figsize=(6.4, 4.4))
    ax = fig.add_subplot()
    fine = np.linspace(alphas.min(), alphas.max(), 100)
    band = 1.96 * np.array([binomial_se(a, sweep["n_test"]) for a in fine])
    ax.fill_between(fine, 1 - fine - band, 1 - fine + band, color="0.85",
                    label=f"1 − α ± 1.96 binomial SE ({sweep['n_test']} test cases)")
    ax.plot(fine, 1 - fine, color="black", lw=1.2, label="target 1 − α")
    for i, (method, entry) in enumerate(sweep["methods"].items()):
        mean, std = _series(entry)
        offset = (i - (len(sweep["methods"]) - 1) / 2) * 0.006
        ax.errorbar(alphas + offset, mean, yerr=std, capsize=2, lw=1, ms=4, label=f"{method} (mean ± std)",
                    **_style(method))
    ax.set_xlabel("α (tolerated miscoverage)")
    ax.set_ylabel(f"ECR: share of test cases with FNR ≤ {sweep['epsilon']:g}")
    ax.set_title(f"Coverage against α (ε = {sweep['epsilon']:g}, {summary['inputs']['splits']} splits)")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best", framealpha=0.9)
    fig.tight_layout()
    return _save(fig, outdir, "ecr_vs_alpha.png")


def ecr_vs_cal_fraction(summary, outdir):
    """Mean ECR (± std) against the calibration fraction, with the 1 - alpha target."""
    sweep = summary["sweeps"]["cal_fraction"]
    fractions = np.array(sweep["values"])
    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.add_subplot()
    ax.axhline(1 - sweep["alpha"], color="black", lw=1.2, label=f"target 1 − α = {1 - sweep['alpha']:g}")
    for i, (method, entry) in enumerate(sweep["methods"].items()):
        mean, std = _series(entry)
        offset = (i - (len(sweep["methods"]) - 1) / 2) * 0.006
        ax.errorbar(fractions + offset, mean, yerr=std, capsize=2, lw=1, ms=4, label=method, **_style(method))
    ax.set_xlabel("calibration fraction (share of cases used to calibrate)")
    ax.set_ylabel(f"ECR: share of test cases with FNR ≤ {sweep['epsilon']:g}")
    ax.set_title(f"Coverage against calibration size (ε = {sweep['epsilon']:g}, α = {sweep['alpha']:g})")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best", ncol=2, framealpha=0.9)
    fig.tight_layout()
    return _save(fig, outdir, "ecr_vs_cal_fraction.png")


def fnr_vs_fpr(evaluation, outdir):
    """Per test case FNR against FPR in the first split: CLS versus the fixed cuts."""
    eps = evaluation.inputs["epsilon"]
    shown = [m for m in evaluation.results if m == "cls" or fixed_cut(m) is not None]
    if not shown:  # neither cls nor a fixed cut was evaluated: show what was
        shown = list(evaluation.results)[:2]
    fig = Figure(figsize=(6.4, 4.4))
    ax = fig.add_subplot()
    for method in shown:
        example = evaluation.results[method].example
        if not example["fnr"]:
            continue
        fnr = np.array(example["fnr"])
        fpr = 100 * np.array(example["fpr"])
        covered = np.mean(fnr <= eps)
        style = _style(method)
        ax.scatter(fpr, fnr, s=14, alpha=0.6, color=style["color"], marker=style["marker"],
                   label=f"{method}: {covered:.0%} of cases with FNR ≤ {eps:g}")
    ax.axhline(eps, color="black", ls="--", lw=1, label=f"ε = {eps:g}")
    ax.set_xlabel("FPR per case (share of background voxels predicted lesion)")
    ax.set_ylabel("FNR per case (share of lesion voxels missed)")
    ax.set_title("Per-case errors, one split's test cases")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    return _save(fig, outdir, "fnr_vs_fpr.png")


def critical_thresholds(evaluation, outdir):
    """Histogram of the cases' critical thresholds with the calibrated CLS cut marked."""
    eps, alpha = evaluation.inputs["epsilon"], evaluation.inputs["alpha"]
    values = np.array(evaluation.critical_thresholds)
    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.add_subplot()
    finite = values[np.isfinite(values)]
    ax.hist(finite, bins=min(40, max(10, finite.size // 5)), color="#aec7e8", edgecolor="white",
            label=f"critical thresholds λ*(ε = {eps:g}), {finite.size} cases")
    if "cls" in evaluation.results:
        cuts = evaluation.results["cls"].cut
        cuts = cuts[~np.isnan(cuts)]
        if cuts.size:
            low, mid, high = np.quantile(cuts, [0.05, 0.5, 0.95])
            ax.axvspan(low, high, color=_COLORS["cls"], alpha=0.15, label="cls cut, 5–95 % over splits")
            ax.axvline(mid, color=_COLORS["cls"], lw=2, label=f"cls cut, median {mid:.3f} (α = {alpha:g})")
    for method in evaluation.results:
        cut = fixed_cut(method)
        if cut is not None:
            ax.axvline(cut, color=_COLORS["fixed"], lw=1.5, ls="--", label=f"{method} cut")
    ax.set_xlabel("score threshold (a case has FNR ≤ ε when cut at or below its λ*)")
    ax.set_ylabel("cases")
    ax.set_title("Where each case stops meeting the FNR tolerance")
    ax.legend(fontsize=8, loc="best", framealpha=0.9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, outdir, "critical_thresholds.png")


def dice_vs_epsilon(summary, outdir):
    """Dice, V-FNR and P-FNR (mean ± std over splits) against epsilon, per method."""
    sweep = summary["sweeps"]["epsilon"]
    eps = np.array(sweep["values"])
    fig = Figure(figsize=(10.5, 3.6))
    panels = (("dice", "Dice (mean over test cases)"), ("v_fnr", "V-FNR (mean FNR)"),
              ("p_fnr", "P-FNR (share of cases with every lesion voxel missed)"))
    for k, (key, label) in enumerate(panels):
        ax = fig.add_subplot(1, 3, k + 1)
        for i, (method, entries) in enumerate(sweep["methods"].items()):
            mean, std = _series(entries[key])
            offset = (i - (len(sweep["methods"]) - 1) / 2) * 0.006
            ax.errorbar(eps + offset, mean, yerr=std, capsize=2, lw=1, ms=4, label=method, **_style(method))
        if key == "v_fnr":
            ax.plot(eps, eps, color="black", lw=0.8, ls=":", label="V-FNR = ε")
        ax.set_xlabel("ε (tolerated FNR)")
        ax.set_ylabel(label)
        ax.set_xticks(eps)
        ax.grid(alpha=0.3)
        if k == 0:
            ax.legend(fontsize=7, loc="best", framealpha=0.9)
    fig.suptitle(f"Cost of the FNR tolerance (α = {summary['inputs']['alpha']:g})", fontsize=10)
    fig.tight_layout()
    return _save(fig, outdir, "dice_vs_epsilon.png")


def ecr_by_member(summary, outdir):
    """Mean ECR (± std over splits) per group or class and method, with the 1 - alpha line.

    Groups: each group and the pool; classes: each class (at its own alpha
    under Bonferroni, dashed) and every class at once.
    """
    by, inputs = summary["by"], summary["inputs"]
    members = list(summary["members"])
    combined = summary.get("pooled") or summary.get("family") or {}
    labels = members + (["pooled"] if by == "group" else ["every class"])
    methods = list(inputs["methods"])
    fig = Figure(figsize=(max(6.4, 1.1 * len(labels) + 2), 4.4))
    ax = fig.add_subplot()
    x = np.arange(len(labels))
    for i, method in enumerate(methods):
        mean, std = [], []
        for name in members:
            entry = summary["members"][name]["methods"][method]["ecr"]
            mean.append(np.nan if entry["mean"] is None else entry["mean"])
            std.append(np.nan if entry["std"] is None else entry["std"])
        key = "ecr" if by == "group" else "family_ecr"
        entry = combined.get(method, {}).get(key, {"mean": None, "std": None})
        mean.append(np.nan if entry["mean"] is None else entry["mean"])
        std.append(np.nan if entry["std"] is None else entry["std"])
        offset = (i - (len(methods) - 1) / 2) * 0.12
        ax.errorbar(x + offset, mean, yerr=std, capsize=3, lw=0, elinewidth=1, ms=6, label=method, **_style(method))
    alpha = inputs["alpha"]
    ax.axhline(1 - alpha, color="black", lw=1.2, label=f"target 1 − α = {1 - alpha:g}")
    if by == "class" and inputs.get("family") == "bonferroni":
        alpha_c = alpha / len(members)
        ax.axhline(1 - alpha_c, color="black", lw=1, ls="--", label=f"each class: 1 − α/{len(members)} = {1 - alpha_c:.3g}")
    ax.set_xticks(x)
    ax.set_xticklabels(labels)
    level = "L-FNR" if inputs.get("level") == "lesion" else "FNR"
    ax.set_ylabel(f"ECR: share of test cases with {level} ≤ ε")
    what = "group (each calibrated on its own cases)" if by == "group" else f"class (family {inputs.get('family')})"
    ax.set_title(f"Coverage per {what}, {inputs['splits']} splits")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8, loc="lower left", framealpha=0.9)
    fig.tight_layout()
    return _save(fig, outdir, f"ecr_by_{by}.png")


def draw_set(summary, outdir):
    """The figure of a per-group or per-class evaluation; returns ``[(file, title)]``."""
    return [(ecr_by_member(summary, outdir), f"ECR per {summary['by']}")]


def draw_all(evaluation, summary, outdir):
    """Draw every figure the evaluation has data for; returns ``[(file, title)]``."""
    drawn = [(fnr_vs_fpr(evaluation, outdir), "Per-case FNR against FPR"),
             (critical_thresholds(evaluation, outdir), "Critical thresholds and the calibrated cut")]
    if summary.get("sweeps"):
        drawn = [(ecr_vs_alpha(summary, outdir), "ECR against alpha")] + drawn
        drawn.append((ecr_vs_cal_fraction(summary, outdir), "ECR against the calibration fraction"))
        drawn.append((dice_vs_epsilon(summary, outdir), "Dice, V-FNR and P-FNR against epsilon"))
    return drawn
