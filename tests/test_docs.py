"""The user documentation in docs/ builds without a warning, agrees with the code, and the README points at it."""

import math
import os
import re
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")

# Headings other modules' docstrings point at (docs/<page>#<anchor>): renaming one breaks them.
STABLE_ANCHORS = {
    "definitions": ("one-case", "lesions-instead-of-voxels", "several-classes", "min-max-normalisation",
                    "calibration", "checking-the-promise-on-your-data", "cases-without-lesions",
                    "exact-and-approximate-numbers", "groups"),
    "methods": ("when-clskern-refuses", "cls", "cls-pac", "crc", "rcps", "the-authors-procedure",
                "several-classes-at-once", "degenerate-cuts"),
    "files": ("nnu-net-probabilities", "nnu-net-geometry-files", "masks-written-back"),
}


def _read(name):
    with open(os.path.join(DOCS, name), encoding="utf-8") as f:
        return f.read()


def _build(root, site):
    # No -q: mkdocs counts the warnings of --strict through its logger, and -q silences them.
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site)],
                          cwd=root, capture_output=True, text=True)


def test_docs_build_strict(tmp_path):
    pytest.importorskip("mkdocs")
    run = _build(ROOT, tmp_path / "site")
    assert run.returncode == 0, run.stderr
    assert "WARNING" not in run.stderr, run.stderr
    for page, anchors in STABLE_ANCHORS.items():
        with open(tmp_path / "site" / page / "index.html", encoding="utf-8") as f:
            ids = set(re.findall(r'\bid="([^"]+)"', f.read()))
        missing = [a for a in anchors if a not in ids]
        assert not missing, f"docs/{page}.md lost the heading anchor(s) {missing}"


def test_a_broken_anchor_fails_the_build(tmp_path):
    """The build really checks anchors (mkdocs.yml's validation), so a renamed heading is caught."""
    pytest.importorskip("mkdocs")
    shutil.copytree(DOCS, tmp_path / "docs")
    shutil.copy(os.path.join(ROOT, "mkdocs.yml"), tmp_path / "mkdocs.yml")
    with open(tmp_path / "docs" / "files.md", "a", encoding="utf-8") as f:
        f.write("\nSee [nothing](definitions.md#no-such-heading).\n")
    run = _build(tmp_path, tmp_path / "site")
    assert run.returncode != 0 and "no-such-heading" in run.stderr, run.stderr


def test_every_page_is_in_the_nav():
    with open(os.path.join(ROOT, "mkdocs.yml"), encoding="utf-8") as f:
        config = f.read()
    for name in os.listdir(DOCS):
        if name.endswith(".md"):
            assert re.search(rf":\s*{re.escape(name)}\s*$", config, re.M), f"docs/{name} is not in mkdocs.yml's nav"


def _refusal_table():
    """``{method: (needs, condition)}`` from the table under 'When clskern refuses' in methods.md."""
    text = _read("methods.md")
    section = text.split("## When clskern refuses", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        m = re.fullmatch(r"`([a-z-]+)`", cells[0]) if line.startswith("|") else None
        if m:
            rows[m.group(1)] = re.match(r"`([^`]+)`", cells[1]).group(1)
    return rows


def _needs_table():
    """``{method: set of parameters marked 'needed'}`` from 'Parameters at a glance' in methods.md."""
    section = _read("methods.md").split("## Parameters at a glance", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        m = re.fullmatch(r"`([a-z-]+)`", cells[0]) if line.startswith("|") else None
        if m:
            rows[m.group(1)] = {p for p, cell in zip(("alpha", "delta"), cells[1:3]) if cell == "needed"}
    return rows


def test_every_method_is_documented_with_what_it_needs():
    from clskern.calibration import METHODS, _NEEDS

    needs = _needs_table()
    assert set(needs) == set(METHODS), f"methods.md 'Parameters at a glance' lists {sorted(needs)}, code {METHODS}"
    for method in METHODS:
        assert needs[method] == set(_NEEDS[method]), f"{method}: docs say it needs {needs[method]}"
    definitions = _read("definitions.md")
    for method in METHODS:
        assert re.search(rf"^\| `{re.escape(method)}` \|", definitions, re.M), f"definitions.md: no row for {method}"
        assert f"## {method}\n" in _read("methods.md"), f"methods.md: no section for {method}"


def _documented(condition, **values):
    """Evaluate a documented refusal condition such as ``(1 - alpha)^n > delta``."""
    return eval(condition.replace("^", "**"), {"__builtins__": {}}, values)  # noqa: S307 - our own docs


def _refused(method, n, epsilon, alpha, delta):
    import numpy as np

    from clskern import CalibrationError, VolumeStats, calibrate

    kwargs = {"alpha": alpha, "delta": delta}
    from clskern.calibration import _NEEDS

    kwargs = {k: v for k, v in kwargs.items() if k in _NEEDS[method]}
    if method in ("cls", "cls-pac"):
        volumes = [0.1 + 0.01 * i for i in range(n)]  # critical thresholds
    else:
        volumes = [VolumeStats(4, 4, np.array([0.2, 0.4, 0.6, 0.8]), [], [], f"c{i}") for i in range(n)]
    try:
        calibrate(volumes, epsilon=epsilon, method=method, **kwargs)
    except CalibrationError:
        return True
    return False


@pytest.mark.parametrize("method", ["cls", "cls-pac", "crc", "rcps"])
def test_documented_refusal_conditions_match_the_code(method):
    conditions = _refusal_table()
    assert method in conditions, f"methods.md 'When clskern refuses' has no row for {method}"
    condition = conditions[method]
    checked = 0
    for n in (1, 2, 5, 8, 9, 10, 19, 21, 22, 23, 30, 44, 45, 46, 60, 99, 100):
        for epsilon, alpha, delta in ((0.2, 0.1, 0.1), (0.05, 0.05, 0.1), (0.1, 0.3, 0.01), (0.01, 0.02, 0.2)):
            values = dict(n=n, epsilon=epsilon, alpha=alpha, delta=delta)
            # skip values within rounding of the boundary: the code decides those exactly
            sides = condition.split(">")
            if len(sides) == 2 and math.isclose(_documented(sides[0], **values), _documented(sides[1], **values),
                                                rel_tol=1e-9):
                continue
            assert _refused(method, n, epsilon, alpha, delta) == _documented(condition, **values), (
                f"{method}: docs say refused when {condition}; code disagrees at {values}")
            checked += 1
    assert checked > 50


def test_the_authors_procedure_matches_its_constants():
    from clskern.evaluation import authors

    text = _read("methods.md").split("## The authors' procedure", 1)[1].split("\n## ", 1)[0]
    text = " ".join(text.split())
    steps = re.search(r"at most (\d+) steps", text)
    tolerance = re.search(r"\|loss - epsilon\| < ([0-9.e-]+)`", text)
    assert steps and int(steps.group(1)) == authors.MAX_STEPS, "methods.md: the authors' bisection steps"
    assert tolerance and float(tolerance.group(1)) == authors.TOLERANCE, "methods.md: the authors' tolerance"


def test_sweep_ranges_match_the_protocol():
    from clskern.evaluation import protocol

    text = _read("definitions.md").split("### Sweeps", 1)[1]
    for grid in (protocol.SWEEP_ALPHAS, protocol.SWEEP_FRACTIONS):
        assert f"{grid[0]:g}, {grid[1]:g}, ..., {grid[-1]:g}" in text
    assert ", ".join(f"{e:g}" for e in protocol.SWEEP_EPSILONS) in text


def test_the_python_example_on_the_home_page_runs(tmp_path):
    code = re.findall(r"```python\n(.*?)```", _read("index.md"), re.S)
    assert code, "docs/index.md has no Python example"
    run = subprocess.run([sys.executable, "-c", code[0]], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "it needs n >= 9" in run.stdout


def test_readme_links_the_definitions_inside_the_repository():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    assert "](docs/definitions.md)" in readme and "../shared" not in readme
