"""Writing an evaluation to a directory: ``summary.json``, ``report.md`` and PNG plots.

Plots need matplotlib (the ``plot`` extra); without it the JSON and the
Markdown are still written and the report says the plots were skipped.
"""

import json
import math
import os

from ..io._atomic import atomic_path
from .protocol import binomial_se

SUMMARY = "summary.json"
REPORT = "report.md"
PLOTS = ("fnr_vs_fpr.png", "critical_thresholds.png")
SWEEP_PLOTS = ("ecr_vs_alpha.png", "ecr_vs_cal_fraction.png", "dice_vs_epsilon.png")
REPORT_FILES = (SUMMARY, REPORT, *PLOTS, *SWEEP_PLOTS)  # every file write_report may write

_COLUMNS = (
    ("ecr", "ECR"), ("v_fnr", "V-FNR"), ("p_fnr", "P-FNR"), ("v_fpr", "V-FPR"), ("pc", "PC"), ("dice", "Dice"),
)


class ReportExistsError(FileExistsError):
    """The output directory already holds a report and overwriting was not asked for."""


def _fmt(entry, digits=3):
    if entry["mean"] is None:
        return "n/a"
    return f"{entry['mean']:.{digits}f} ± {entry['std']:.{digits}f}"


def _fmt_small(entry):
    if entry["mean"] is None:
        return "n/a"
    return f"{entry['mean']:.2e} ± {entry['std']:.1e}"


def _main_table(summary):
    inputs = summary["inputs"]
    lines = [
        "| method | target | ECR | V-FNR | P-FNR | V-FPR | PC | Dice | threshold | uncertified |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for method, row in summary["methods"].items():
        target = _target(method, inputs)
        cells = []
        for key, _ in _COLUMNS:
            cells.append(_fmt_small(row[key]) if key in ("v_fpr", "pc") else _fmt(row[key]))
        threshold = _fmt(row["threshold"], 4)
        lines.append(f"| {method} | {target} | " + " | ".join(cells) + f" | {threshold} | {row['n_uncertified']} |")
    return lines


def _uncertified_note(summary):
    failed = {m: r["n_uncertified"] for m, r in summary["methods"].items() if r["n_uncertified"]}
    if not failed:
        return []
    listed = ", ".join(f"`{m}` in {k} of {summary['inputs']['splits']}" for m, k in failed.items())
    return [
        "",
        f"Uncertified splits: {listed}. With {summary['n_calibration']} calibration cases the request "
        "cannot be certified there (`clskern.calibrate` raises `CalibrationError` and names the "
        "smallest calibration set that would do); lower the demand (larger epsilon or alpha) or "
        "raise `--cal-fraction`.",
    ]


def _target(method, inputs):
    eps, alpha, delta = inputs["epsilon"], inputs["alpha"], inputs["delta"]
    if method in ("cls", "authors"):
        return f"ECR ≥ {1 - alpha:g}"
    if method == "cls-pac":
        return f"ECR ≥ {1 - alpha:g} w.p. {1 - delta:g}"
    if method == "crc":
        return f"V-FNR ≤ {eps:g}"
    if method == "rcps":
        return f"V-FNR ≤ {eps:g} w.p. {1 - delta:g}"
    return "none (fixed cut)"


def _alpha_table(sweep):
    methods = list(sweep["methods"])
    lines = [
        "| alpha | 1 - alpha | ±1.96 SE | " + " | ".join(methods) + " |",
        "|---|---|---|" + "---|" * len(methods),
    ]
    for j, alpha in enumerate(sweep["values"]):
        band = 1.96 * binomial_se(alpha, sweep["n_test"])
        cells = [_fmt({"mean": sweep["methods"][m]["mean"][j], "std": sweep["methods"][m]["std"][j]}) for m in methods]
        lines.append(f"| {alpha:g} | {1 - alpha:g} | {band:.3f} | " + " | ".join(cells) + " |")
    return lines


def _fraction_table(sweep):
    methods = list(sweep["methods"])
    lines = ["| cal. fraction | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for j, f in enumerate(sweep["values"]):
        cells = [_fmt({"mean": sweep["methods"][m]["mean"][j], "std": sweep["methods"][m]["std"][j]}) for m in methods]
        lines.append(f"| {f:g} | " + " | ".join(cells) + " |")
    return lines


def _epsilon_table(sweep):
    lines = ["| method | epsilon | ECR | V-FNR | P-FNR | Dice |", "|---|---|---|---|---|---|"]
    for m, entries in sweep["methods"].items():
        for j, eps in enumerate(sweep["values"]):
            cells = [_fmt({"mean": entries[k]["mean"][j], "std": entries[k]["std"][j]}) for k in ("ecr", "v_fnr", "p_fnr", "dice")]
            lines.append(f"| {m} | {eps:g} | " + " | ".join(cells) + " |")
    return lines


def _markdown(summary, plots, plot_note):
    inputs = summary["inputs"]
    out = [
        "# clskern evaluation report",
        "",
        f"{summary['n_cases']} cases with lesion voxels ({summary['n_skipped_empty']} without were left out); "
        f"{inputs['splits']} random splits, {summary['n_calibration']} calibration and "
        f"{summary['n_cases'] - summary['n_calibration']} test cases each (seed {inputs['seed']}). "
        f"epsilon = {inputs['epsilon']:g}, alpha = {inputs['alpha']:g}, delta = {inputs['delta']:g}. "
        f"clskern {summary['clskern_version']}, {summary['seconds']:.2f} s.",
        "",
        "## How to read this",
        "",
        "- **ECR**: share of test cases whose FNR is at most epsilon. `cls` promises a mean ECR of at",
        "  least 1 - alpha over splits (the number to check first); a single split may fall below it",
        "  by about two binomial standard errors.",
        "- **V-FNR**: mean FNR over test cases (`crc` promises V-FNR ≤ epsilon). **P-FNR**: share of",
        "  test cases whose lesion voxels are all missed (FNR = 1; a share of cases, not of lesions). **V-FPR**: mean false-positive rate",
        "  over background voxels; **PC**: share of voxels predicted lesion; **Dice**: mean Dice.",
        "- Entries are mean ± standard deviation over the splits. *uncertified*: splits whose",
        "  calibration set was too small to certify the request (clskern refuses rather than clip);",
        "  their metrics are left out of the means. V-FPR, PC and Dice use the background histogram",
        "  (relative resolution 2^-8); FNR and ECR are exact.",
        "",
        "## Methods at the requested setting",
        "",
        *_main_table(summary),
        *_uncertified_note(summary),
    ]
    sweeps = summary.get("sweeps") or {}
    if sweeps:
        out += [
            "",
            f"## ECR against alpha (epsilon = {sweeps['alpha']['epsilon']:g})",
            "",
            *_alpha_table(sweeps["alpha"]),
            "",
            f"## ECR against the calibration fraction (epsilon = {sweeps['cal_fraction']['epsilon']:g}, "
            f"alpha = {sweeps['cal_fraction']['alpha']:g})",
            "",
            *_fraction_table(sweeps["cal_fraction"]),
            "",
            "## V-FNR, P-FNR and Dice against epsilon",
            "",
            *_epsilon_table(sweeps["epsilon"]),
        ]
    out += ["", "## Plots", ""]
    if plots:
        out += [f"![{title}]({name})" for name, title in plots]
    else:
        out.append(plot_note)
    return "\n".join(out) + "\n"


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _write_text(path, text):
    """Write ``text`` atomically: a temporary file in the same folder, then ``os.replace``."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)


def _load_plotting():
    """The plotting module; raises ImportError without matplotlib."""
    from . import plots

    return plots


def write_report(evaluation, outdir, *, overwrite=False, plots=True):
    """Write ``summary.json``, ``report.md`` and the PNG plots of an evaluation.

    Parameters
    ----------
    evaluation : Evaluation
    outdir : str or path
        Created if missing.
    overwrite : bool
        Replace an existing report in ``outdir``; otherwise raise
        ``ReportExistsError`` (a ``FileExistsError``, naming the file) if any
        file this call would write (JSON, Markdown or a PNG) exists. Every
        file is written atomically (temporary file, then ``os.replace``).
    plots : bool
        Draw the PNGs (needs matplotlib; skipped with a note if missing).

    Returns
    -------
    list of str
        Paths of the files written.
    """
    outdir = os.fspath(outdir)
    os.makedirs(outdir, exist_ok=True)
    summary = _json_safe(evaluation.to_dict())
    names = [SUMMARY, REPORT]
    if plots:
        names += list(PLOTS) + (list(SWEEP_PLOTS) if summary.get("sweeps") else [])
    for name in names:
        path = os.path.join(outdir, name)
        if os.path.lexists(path) and not overwrite:
            raise ReportExistsError(f"{path} exists; pass overwrite=True (--overwrite) to replace it")
    written, drawn, note = [], [], ""
    if plots:
        try:
            plotting = _load_plotting()
        except ImportError:
            note = "matplotlib is not installed (`pip install clskern[plot]`): no plots drawn."
        else:
            drawn = plotting.draw_all(evaluation, summary, outdir)
            written += [os.path.join(outdir, name) for name, _ in drawn]
    else:
        note = "Plots were not requested."
    _write_text(os.path.join(outdir, SUMMARY), json.dumps(summary, indent=1) + "\n")
    _write_text(os.path.join(outdir, REPORT), _markdown(summary, drawn, note))
    return [os.path.join(outdir, SUMMARY), os.path.join(outdir, REPORT)] + written
