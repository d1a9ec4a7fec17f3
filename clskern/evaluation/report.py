"""Writing an evaluation to a directory: ``summary.json``, ``report.md`` and PNG plots.

Plots need matplotlib (the ``plot`` extra); without it the JSON and the
Markdown are still written and the report says the plots were skipped.
"""

from __future__ import annotations

import json
import math
import os
from typing import TYPE_CHECKING

from ..io._atomic import atomic_path
from .protocol import binomial_se

if TYPE_CHECKING:  # annotations only
    from .protocol import Evaluation
    from .sets import EvaluationSet

SUMMARY = "summary.json"
REPORT = "report.md"
PLOTS = ("fnr_vs_fpr.png", "critical_thresholds.png")
SWEEP_PLOTS = ("ecr_vs_alpha.png", "ecr_vs_cal_fraction.png", "dice_vs_epsilon.png")
SET_PLOTS = {"group": "ecr_by_group.png", "class": "ecr_by_class.png"}
REPORT_FILES = (SUMMARY, REPORT, *PLOTS, *SWEEP_PLOTS, *SET_PLOTS.values())  # every file write_report may write
REPORT_TITLE = "# clskern evaluation report"  # the first line of every report.md clskern writes
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def report_file_problem(path: str | os.PathLike[str]) -> str | None:
    """None when ``path`` is a report file clskern wrote, else why not; used before ``--overwrite`` replaces it.

    ``summary.json``: a JSON object with ``clskern_version``, ``inputs`` and ``methods`` or ``members``;
    ``report.md``: starts with ``REPORT_TITLE``; a plot: a PNG beside such a ``summary.json``.
    """
    path = os.fspath(path)
    name = os.path.basename(path)
    if not os.path.isfile(path):
        return "not a file"
    if name == SUMMARY:
        return _summary_problem(path)
    if name == REPORT:
        with open(path, "rb") as f:
            head = f.read(len(REPORT_TITLE))
        return None if head == REPORT_TITLE.encode() else f"does not start with {REPORT_TITLE!r}"
    with open(path, "rb") as f:
        if f.read(len(_PNG_MAGIC)) != _PNG_MAGIC:
            return "not a PNG file"
    beside = os.path.join(os.path.dirname(path), SUMMARY)
    if not os.path.isfile(beside) or _summary_problem(beside) is not None:
        return f"no {SUMMARY} clskern wrote beside it"
    return None


def _summary_problem(path):
    """None when ``path`` holds a summary clskern wrote, else why not."""
    if os.path.getsize(path) > 1 << 28:
        return "larger than any summary clskern writes"
    try:
        with open(path, encoding="utf-8") as f:
            summary = json.load(f)
    except (OSError, ValueError, RecursionError) as exc:
        return f"not a JSON summary ({type(exc).__name__})"
    if not (isinstance(summary, dict) and {"clskern_version", "inputs"} <= set(summary)
            and ("methods" in summary or "members" in summary)):
        return "not an evaluation summary (no clskern_version, inputs and methods)"
    return None

_COLUMNS = (
    ("ecr", "ECR"), ("v_fnr", "V-FNR"), ("p_fnr", "P-FNR"), ("v_fpr", "V-FPR"), ("pc", "PC"), ("dice", "Dice"),
)
_LESION_COLUMNS = (("l_fnr", "L-FNR"), ("l_ecr", "L-ECR"))


def _columns(inputs):
    """The metric columns of a table: the voxel ones, then L-FNR and L-ECR (and V-ECR at lesion level)."""
    columns = list(_COLUMNS)
    if inputs.get("lesion_metrics"):
        columns += _LESION_COLUMNS
    if inputs.get("level") == "lesion":
        columns.append(("v_ecr", "V-ECR"))
    return columns


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


def _cells(row, columns):
    missing = {"mean": None}  # a metric a member lacks (no lesion information there): n/a
    return [_fmt_small(row.get(key, missing)) if key in ("v_fpr", "pc") else _fmt(row.get(key, missing))
            for key, _ in columns]


def _main_table(summary):
    inputs = summary["inputs"]
    columns = _columns(inputs)
    lines = [
        "| method | target | " + " | ".join(title for _, title in columns) + " | threshold | uncertified |",
        "|---|---|" + "---|" * len(columns) + "---|---|",
    ]
    for method, row in summary["methods"].items():
        target = _target(method, inputs)
        threshold = _fmt(row["threshold"], 4)
        lines.append(f"| {method} | {target} | " + " | ".join(_cells(row, columns))
                     + f" | {threshold} | {row['n_uncertified']} |")
    if "authors" in summary["methods"]:
        lines += ["", "The threshold column is the score cut (mean over splits); for authors it is the cut on each "
                      "case's min-max normalised scores q = (p - min) / (max - min), as the authors cut."]
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
    fnr = "L-FNR" if inputs.get("level") == "lesion" else "V-FNR"
    if method in ("cls", "authors"):
        return f"ECR ≥ {1 - alpha:g}"
    if method == "cls-pac":
        return f"ECR ≥ {1 - alpha:g} w.p. {1 - delta:g}"
    if method == "crc":
        return f"{fnr} ≤ {eps:g}"
    if method == "rcps":
        return f"{fnr} ≤ {eps:g} w.p. {1 - delta:g}"
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
    keys = ["ecr", "v_fnr", "p_fnr", "dice"]
    if any("l_fnr" in entries for entries in sweep["methods"].values()):
        keys.append("l_fnr")
    titles = {"ecr": "ECR", "v_fnr": "V-FNR", "p_fnr": "P-FNR", "dice": "Dice", "l_fnr": "L-FNR"}
    lines = ["| method | epsilon | " + " | ".join(titles[k] for k in keys) + " |", "|---|---|" + "---|" * len(keys)]
    for m, entries in sweep["methods"].items():
        for j, eps in enumerate(sweep["values"]):
            cells = [_fmt({"mean": entries[k]["mean"][j], "std": entries[k]["std"][j]}) for k in keys]
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
        f"epsilon = {inputs['epsilon']:g}, alpha = {inputs['alpha']:g}, delta = {inputs['delta']:g}"
        + (f", lesion level (overlap {inputs['overlap']:g})" if inputs.get("level") == "lesion" else "") + ". "
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
        *_lesion_note(inputs),
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


def _lesion_note(inputs):
    """How to read L-FNR, L-ECR and the level of ECR (nothing without lesion information)."""
    if not inputs.get("lesion_metrics"):
        return []
    overlap = inputs.get("overlap", 0.0)
    detected = ("any one of its voxels scores at or above the threshold" if overlap == 0
                else f"at least max(1, ceil({overlap:g} × its size)) of its voxels score at or above the threshold")
    lines = [
        "- **L-FNR**: mean over test cases of the share of the case's lesions missed (a lesion, a connected",
        f"  component at connectivity {inputs.get('connectivity')}, is detected when {detected}).",
        "  **L-ECR**: share of test cases whose L-FNR is at most epsilon.",
    ]
    if inputs.get("level") == "lesion":
        lines.append("- Lesion level: every method calibrated on L-FNR, and **ECR is L-ECR**; V-ECR is the voxel "
                     "coverage at the same thresholds.")
    return lines


def _member_table(summary, by):
    """Per group or class: one row per (member, method), and the pooled rows for groups."""
    inputs = summary["inputs"]
    lesions = any("l_fnr" in row for m in summary["members"].values() for row in m["methods"].values())
    columns = [(k, t) for k, t in _columns({**inputs, "lesion_metrics": lesions}) if k not in ("v_fpr", "pc")]
    lines = [
        f"| {by} | method | cases | epsilon | alpha | " + " | ".join(t for _, t in columns)
        + " | threshold | uncertified |",
        "|---|---|---|---|---|" + "---|" * len(columns) + "---|---|",
    ]
    def alpha(method, value):  # crc, rcps and fixed cuts take no alpha
        return f"{value:g}" if method in _TAKE_ALPHA else "–"

    for name, member in summary["members"].items():
        for method, row in member["methods"].items():
            lines.append(f"| {name} | {method} | {member['n_cases']} | {member['epsilon']:g} | "
                         f"{alpha(method, member['alpha'])} | " + " | ".join(_cells(row, columns))
                         + f" | {_fmt(row['threshold'], 4)} | {row['n_uncertified']} |")
    for method, row in (summary.get("pooled") or {}).items():
        lines.append(f"| pooled | {method} | {summary['n_cases']} | {inputs['epsilon']:g} | "
                     f"{alpha(method, inputs['alpha'])} | " + " | ".join(_cells(row, columns))
                     + f" | – | {row['n_uncertified']} |")
    return lines


_TAKE_ALPHA = ("cls", "cls-pac", "authors")


def _family_table(summary):
    inputs = summary["inputs"]
    bonferroni = inputs["family"] == "bonferroni"
    lines = ["| method | every class meets its epsilon (mean ± std) | target | uncertified |", "|---|---|---|---|"]
    for method, row in summary["family"].items():
        target = f"≥ {1 - inputs['alpha']:g}" if bonferroni and method == "cls" else "none"
        lines.append(f"| {method} | {_fmt(row['family_ecr'])} | {target} | {row['n_uncertified']} |")
    return lines


def _set_markdown(summary, plots, plot_note):
    inputs, by = summary["inputs"], summary["by"]
    epsilon = inputs["epsilon"]
    eps_text = (", ".join(f"{k} {v:g}" for k, v in epsilon.items()) if isinstance(epsilon, dict) else f"{epsilon:g}")
    level = inputs["level"] + (f", overlap {inputs['overlap']:g}" if inputs["level"] == "lesion" else "")
    out = [
        f"# clskern evaluation report, per {by}",
        "",
        f"{summary['n_cases']} cases ({summary['n_skipped_empty']} without lesion voxels left out); "
        f"{inputs['splits']} random splits at calibration fraction {inputs['cal_fraction']:g} (seed {inputs['seed']}). "
        f"epsilon = {eps_text}, alpha = {inputs['alpha']:g}, delta = {inputs['delta']:g}, level {level}. "
        f"clskern {summary['clskern_version']}, {summary['seconds']:.2f} s.",
        "",
        "## How to read this",
        "",
    ]
    if by == "group":
        out += [
            "- Each group is split and calibrated on its own cases only (Mondrian calibration), exactly",
            "  as `clskern evaluate` on that group's cases alone: each row is that group's promise. *pooled*: every",
            "  group's test cases together, each cut at its group's threshold (metrics weighted by test cases).",
        ]
    else:
        family = inputs["family"]
        out += [
            "- The cases are split once, the same split for every class; each class calibrates on the split's",
            "  calibration cases that hold it (a case without the class is skipped for that class only) and is",
            "  measured on the test cases that hold it. *cases*: cases holding the class.",
            f"- Family `{family}`: " + (
                f"each class calibrated at alpha / {len(summary['members'])} (its *alpha* column), so that "
                f"every class meets its epsilon at once with probability ≥ {1 - inputs['alpha']:g} (`cls`)."
                if family == "bonferroni" else "each class at alpha, with its own promise; nothing is promised "
                "for every class at once."),
        ]
    out += [
        "- ECR: share of test cases with FNR ≤ epsilon (L-FNR at lesion level); V-FNR: mean FNR; P-FNR: share",
        "  of test cases whose lesion voxels are all missed; L-FNR: mean share of a case's lesions missed; L-ECR:",
        "  share with L-FNR ≤ epsilon. Mean ± std over splits; *uncertified* splits are left out of the means.",
        "",
        f"## Per {by}",
        "",
        *_member_table(summary, by),
    ]
    if by == "class":
        out += ["", "## Every class at once (family-wise coverage)", "",
                "Share of a split's test cases in which every class present meets its epsilon.", "",
                *_family_table(summary)]
    out += ["", "## Plots", ""]
    out += [f"![{title}]({name})" for name, title in plots] if plots else [plot_note]
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


def write_report(evaluation: Evaluation | EvaluationSet, outdir: str | os.PathLike[str], *, overwrite: bool = False,
                 plots: bool = True) -> list[str]:
    """Write ``summary.json``, ``report.md`` and the PNG plots of an evaluation.

    Parameters
    ----------
    evaluation : Evaluation or EvaluationSet
        An ``EvaluationSet`` (per group or class) writes its per-member
        tables and one figure (ECR per group or class).
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
    is_set = "members" in summary  # an EvaluationSet (clskern.evaluation.sets)
    names = [SUMMARY, REPORT]
    if plots and is_set:
        names.append(SET_PLOTS[summary["by"]])
    elif plots:
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
            drawn = plotting.draw_set(summary, outdir) if is_set else plotting.draw_all(evaluation, summary, outdir)
            written += [os.path.join(outdir, name) for name, _ in drawn]
    else:
        note = "Plots were not requested."
    _write_text(os.path.join(outdir, SUMMARY), json.dumps(summary, indent=1) + "\n")
    markdown = _set_markdown(summary, drawn, note) if is_set else _markdown(summary, drawn, note)
    _write_text(os.path.join(outdir, REPORT), markdown)
    return [os.path.join(outdir, SUMMARY), os.path.join(outdir, REPORT)] + written
