"""The package's architecture, read from its source: one direction of imports, no cycles.

Every module of ``clskern`` is parsed with ``ast`` (nothing is imported), and
every import in it counts, wherever it stands: module level, inside a function
(deferred), under ``try`` or ``if``; relative or absolute. A lazy name of a
PEP 562 ``_PUBLIC`` table (``clskern/__init__.py``,
``clskern/calibration/__init__.py``) counts as an import of its module, by
the table's package and by whoever imports the name from it. Importing ``a.b.c`` runs ``a/b/__init__.py`` first, so it is an import
of the package ``a.b`` too, unless the importer lies inside ``a.b`` (then the
package is already running).

The rules:

1. no import cycle anywhere in ``clskern``;
2. the kernels (``clskern.cpu``, ``clskern.cuda``) import nothing from the
   public layer, and nothing of ``clskern`` at all but their own package and
   the neutral modules (errors, input checks, the bin grid, device detection,
   the lesion-level rules, exact ranks, the kernel cache, thread control), which
   import only each other;
3. only the dispatch (``clskern._backend``) imports both ``clskern.cpu`` and
   ``clskern.cuda``;
4. every ``clskern`` module an import names exists (a move left no stale path).
"""

import ast
from collections import defaultdict
from itertools import pairwise
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "clskern"

KERNELS = ("clskern.cpu", "clskern.cuda")
DISPATCH = "clskern._backend"
PUBLIC_LAYER = tuple(
    f"clskern.{name}"
    for name in (
        "volume", "calibration", "apply", "batch", "io", "cli", "evaluation",
        "adapters", "store", "distributed", "synthetic",
    )
)
# What every layer may import: no clskern module above the kernels.
NEUTRAL = ("clskern.errors", "clskern._validate", "clskern._binning", "clskern._device", "clskern._lesions",
           "clskern._ranks", "clskern._version", "clskern._jit", "clskern._threads")


def _module_name(path):
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules():
    """``{module name: (path, is a package)}`` for every module of clskern."""
    return {_module_name(p): (p, p.name == "__init__.py") for p in sorted(PACKAGE.rglob("*.py"))}


def _within(name, package):
    return name == package or name.startswith(package + ".")


def _base(module, is_package, level, target):
    """The absolute name of ``from <level dots><target> import ...`` inside ``module``."""
    if level == 0:
        return target
    parts = module.split(".")
    if not is_package:
        parts = parts[:-1]
    if level > 1:
        parts = parts[: len(parts) - (level - 1)]
    return ".".join(parts + ([target] if target else []))


def _lazy_table(module, is_package, tree):
    """``{name: absolute module}`` of a PEP 562 ``_PUBLIC = {"name": ".module"}`` table, if any."""
    table = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_PUBLIC" for t in node.targets):
            for key, value in zip(node.value.keys, node.value.values):
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    level = len(value.value) - len(value.value.lstrip("."))
                    table[key.value] = (_base(module, is_package, level, value.value[level:]), node.lineno)
    return table


def _imported(module, is_package, tree, lazy):
    """``[(absolute name, line, must exist)]``: every module name ``module`` imports, lazily or not.

    ``from pkg import name`` imports ``pkg``, and ``pkg.name`` if a module has
    that name, or the module ``pkg``'s ``_PUBLIC`` table loads ``name`` from.
    """
    found = [(target, line, True) for target, line in lazy.get(module, {}).values()]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno, True) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _base(module, is_package, node.level, node.module)
            found.append((base, node.lineno, True))
            for alias in node.names:
                if alias.name in lazy.get(base, {}):
                    found.append((lazy[base][alias.name][0], node.lineno, True))
                elif alias.name != "*":
                    found.append((f"{base}.{alias.name}", node.lineno, False))
    return found


def _graph():
    """``(modules, edges, missing)``: ``edges[a][b]`` is a line of ``a`` importing clskern module ``b``."""
    modules = _modules()
    trees = {m: ast.parse(p.read_text(encoding="utf-8"), filename=str(p)) for m, (p, _) in modules.items()}
    lazy = {m: _lazy_table(m, modules[m][1], tree) for m, tree in trees.items()}
    edges = defaultdict(dict)
    missing = []
    for module, (path, is_package) in modules.items():
        for name, line, must_exist in _imported(module, is_package, trees[module], lazy):
            if not _within(name, "clskern"):
                continue
            if name not in modules:
                if must_exist:
                    missing.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {name}")
                continue
            parts = name.split(".")
            for i in range(1, len(parts) + 1):
                target = ".".join(parts[:i])  # the packages on the way run first
                if target in modules and target != module and not _within(module, target):
                    edges[module].setdefault(target, line)
    return modules, edges, missing


def _cycles(nodes, edges):
    """``[(one cycle, its component)]``: the strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def connect(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, {}):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append((_cycle_in(sorted(component), edges), sorted(component)))

    for v in sorted(nodes):
        if v not in index:
            connect(v)
    return found


def _cycle_in(component, edges):
    """The shortest cycle through the component's first module, as ``[a, b, ..., a]``."""
    start, inside = component[0], set(component)
    previous = {start: None}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in edges.get(v, {}):
            if w == start:
                path = [v]
                while previous[path[-1]] is not None:
                    path.append(previous[path[-1]])
                return path[::-1] + [start]
            if w in inside and w not in previous:
                previous[w] = v
                queue.append(w)
    raise AssertionError(f"no cycle through {start} in {component}")  # a component always has one


def _describe(cycle, modules, edges):
    steps = []
    for a, b in pairwise(cycle):
        path = modules[a][0].relative_to(PACKAGE.parent)
        steps.append(f"  {a} -> {b}   ({path}:{edges[a][b]})")
    return "\n".join(steps)


@pytest.fixture(scope="module")
def graph():
    return _graph()


def test_every_imported_clskern_module_exists(graph):
    _, _, missing = graph
    assert not missing, "imports of clskern modules that do not exist:\n" + "\n".join(missing)


def test_no_import_cycle(graph):
    modules, edges, _ = graph
    cycles = _cycles(modules, edges)
    message = "\n\n".join(
        f"import cycle: {' -> '.join(cycle)}\n{_describe(cycle, modules, edges)}\n"
        f"  (modules caught in cycles with it: {', '.join(component)})"
        for cycle, component in cycles
    )
    assert not cycles, message


def test_the_graph_sees_deferred_and_lazy_imports(graph):
    """The parser is not blind: known function-level and PEP 562 imports are edges."""
    _, edges, _ = graph
    assert "clskern.volume" in edges["clskern.store"]  # deferred, inside methods
    assert "clskern.volume" in edges["clskern"]  # the lazy public names
    assert "clskern.calibration.methods" in edges["clskern.cli.calibrate"]  # a lazy name, imported
    assert "clskern.cuda" in edges[DISPATCH]  # the GPU path, imported on first use


def test_kernels_import_only_their_backend_and_the_neutral_modules(graph):
    modules, edges, _ = graph
    wrong = []
    for module in modules:
        backend = next((k for k in KERNELS if _within(module, k)), None)
        if backend is None:
            continue
        for target, line in edges.get(module, {}).items():
            public = any(_within(target, p) for p in PUBLIC_LAYER)
            if public or not (_within(target, backend) or target in NEUTRAL):
                wrong.append(f"{modules[module][0].relative_to(PACKAGE.parent)}:{line}: {module} imports {target}")
    assert not wrong, "kernels must not import the layers above them:\n" + "\n".join(wrong)


def test_the_neutral_modules_import_only_each_other(graph):
    modules, edges, _ = graph
    wrong = [
        f"{modules[m][0].relative_to(PACKAGE.parent)}:{line}: {m} imports {target}"
        for m in NEUTRAL
        for target, line in edges.get(m, {}).items()
        if target not in NEUTRAL
    ]
    assert not wrong, "the neutral modules must stay below both backends:\n" + "\n".join(wrong)


def test_only_the_dispatch_knows_both_backends(graph):
    modules, edges, _ = graph
    both = sorted(
        module
        for module in modules
        if not any(_within(module, k) for k in KERNELS)
        and all(any(_within(t, k) for t in edges.get(module, {})) for k in KERNELS)
    )
    assert both == [DISPATCH], f"modules importing both clskern.cpu and clskern.cuda: {both}"


def test_the_cycle_report_names_each_step():
    """A planted cycle is found and printed step by step (the failure message is useful)."""
    edges = {"a": {"b": 1}, "b": {"c": 2}, "c": {"a": 3}, "d": {"a": 4}}
    assert _cycles(["a", "b", "c", "d"], edges) == [(["a", "b", "c", "a"], ["a", "b", "c"])]
    assert _cycles(["a", "b"], {"a": {"b": 1}}) == []
