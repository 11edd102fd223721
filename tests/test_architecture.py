"""Architecture rules, from an ``ast`` walk over the project's .py files (core, utils, services, experiments,
deployment, benchmarks; tests and notebooks are not walked):

- no import cycles between project modules. Every ``import`` / ``from ... import`` counts, those inside
  functions included; imports under ``if TYPE_CHECKING:`` are excluded (they never run). ``from pkg import name``
  is an edge to ``pkg.name`` when that is a project module, else to ``pkg``; relative imports are resolved
  against the importing module's package, and a bare name that is a sibling module (a script run from its own
  folder: ``from bench_common import ...``) against the importer's folder. Imports by string
  (``importlib.import_module``) are not seen;
- lower layers never import upper ones: nothing in ``core/`` or ``utils/`` imports ``services/``,
  ``experiments/``, ``deployment/`` or ``benchmarks/``;
- no .py file over 700 lines and no function (or method) over 100 lines, from its ``def`` line to its last line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "utils", "services", "experiments", "deployment", "benchmarks")
LOWER = ("core", "utils")
UPPER = ("services", "experiments", "deployment", "benchmarks")
MAX_FILE_LINES = 700
MAX_FUNCTION_LINES = 100


def _module_name(path: Path) -> str:
    """core/data/manager.py -> core.data.manager; core/data/__init__.py -> core.data."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _project_files() -> dict[str, Path]:
    """Module name -> file, for every .py file under the walked packages."""
    files = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "__pycache__" not in path.parts and ".ipynb_checkpoints" not in path.parts:
                files[_module_name(path)] = path
    return files


def _is_type_checking(test: ast.expr) -> bool:
    """``TYPE_CHECKING`` or ``typing.TYPE_CHECKING``."""
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST) -> list[ast.stmt]:
    """Every Import / ImportFrom in ``tree``, at any depth, except those under ``if TYPE_CHECKING:``."""
    found: list[ast.stmt] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _imported_modules(module: str, path: Path, tree: ast.AST, known: set[str]) -> set[str]:
    """The project modules that ``module`` imports (see the module docstring for how names are resolved)."""

    def project_prefix(name: str) -> str | None:
        parts = name.split(".")
        for n in range(len(parts), 0, -1):
            if ".".join(parts[:n]) in known:
                return ".".join(parts[:n])
        return None

    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    targets: set[str] = set()
    for node in _import_nodes(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        for name in names:
            target = project_prefix(name)
            sibling = f"{package}.{name.split('.')[0]}"
            if target is None and package and not getattr(node, "level", 0) and sibling in known:
                # a script run from its own folder imports its siblings by bare name (``from bench_common import``)
                target = project_prefix(f"{package}.{name}")
            if target is not None and target != module:
                targets.add(target)
    return targets


def _parse_all() -> dict[str, tuple[Path, ast.AST, int]]:
    """Module -> (file, syntax tree, line count)."""
    parsed = {}
    for module, path in _project_files().items():
        text = path.read_text(encoding="utf-8")
        parsed[module] = (path, ast.parse(text, filename=str(path)), len(text.splitlines()))
    return parsed


@pytest.fixture(scope="module")
def parsed() -> dict[str, tuple[Path, ast.AST, int]]:
    return _parse_all()


def _import_graph(parsed: dict[str, tuple[Path, ast.AST, int]]) -> dict[str, set[str]]:
    known = set(parsed)
    return {m: _imported_modules(m, path, tree, known) for m, (path, tree, _) in parsed.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan 1972), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def strongconnect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                strongconnect(w)
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
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    return components


def _cycle_violations(parsed) -> list[str]:
    graph = _import_graph(parsed)
    return [" <-> ".join(c) + " (edges: " + ", ".join(f"{a} -> {b}" for a in c for b in sorted(graph[a])
                                                      if b in c) + ")"
            for c in _cycles(graph)]


def _layer_violations(parsed) -> list[str]:
    graph = _import_graph(parsed)
    return [f"{m} imports {t}" for m in sorted(graph) if m.split(".")[0] in LOWER
            for t in sorted(graph[m]) if t.split(".")[0] in UPPER]


def _size_violations(parsed) -> list[str]:
    out = []
    for module, (path, tree, n_lines) in sorted(parsed.items()):
        rel = path.relative_to(ROOT)
        if n_lines > MAX_FILE_LINES:
            out.append(f"{rel}: {n_lines} lines (max {MAX_FILE_LINES})")
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    out.append(f"{rel}:{node.lineno} {node.name}(): {length} lines (max {MAX_FUNCTION_LINES})")
    return out


def test_walk_finds_the_project(parsed) -> None:
    # guards the walk itself: a wrong root or package list would make every rule pass vacuously
    assert {"core.model", "core.config", "utils.metrics", "deployment.app"} <= set(parsed)
    graph = _import_graph(parsed)
    assert "core.config" in graph["deployment.export"]
    assert "benchmarks.bench_common" in graph["benchmarks.train_throughput"]  # a script's sibling import


def test_the_checks_on_a_toy_project() -> None:
    source = ("from typing import TYPE_CHECKING\n"
              "import core.a\n"
              "from . import b\n"
              "if TYPE_CHECKING:\n"
              "    from core import c\n"
              "def f():\n"
              "    from core.d import thing\n")
    known = {"core", "core.a", "core.b", "core.c", "core.d"}
    imported = _imported_modules("core.x", ROOT / "core" / "x.py", ast.parse(source), known)
    assert imported == {"core.a", "core.b", "core.d"}  # function-level counts, TYPE_CHECKING does not
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles(parsed) -> None:
    cycles = _cycle_violations(parsed)
    assert not cycles, "import cycles between project modules:\n" + "\n".join(cycles)


def test_core_and_utils_do_not_import_upper_layers(parsed) -> None:
    upward = _layer_violations(parsed)
    assert not upward, f"{'/'.join(LOWER)} must not import {'/'.join(UPPER)}:\n" + "\n".join(upward)


def test_file_and_function_sizes(parsed) -> None:
    too_long = _size_violations(parsed)
    assert not too_long, "too long:\n" + "\n".join(too_long)


if __name__ == "__main__":  # print every violation: python tests/test_architecture.py
    modules = _parse_all()
    for title, found in (("cycles", _cycle_violations(modules)), ("upward imports", _layer_violations(modules)),
                         ("sizes", _size_violations(modules))):
        print(f"{title}: {len(found)}")
        for line in found:
            print("  " + line)
