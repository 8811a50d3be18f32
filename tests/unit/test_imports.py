"""No import cycles, also none hidden in function-level imports (read with ``ast``).

Every ``import`` statement counts, wherever it is (module level or inside a function), except
under ``if TYPE_CHECKING:``. Importing ``a.b.c`` also runs the packages ``a`` and ``a.b``, so
those count as imported too, except a module's own enclosing packages (already running).
"""

from __future__ import annotations

import ast
import importlib
from collections.abc import Iterator
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]
PACKAGES = ("harness", "runtime", "vm", "hostkit", "imagestore")
# Cycles outside harness/ that exist today; remove an entry once its cycle is gone.
KNOWN_CYCLES: set[frozenset[str]] = set()  # none left; add one only with a reason


def modules(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    """Dotted module name → file, for every ``.py`` file of ``packages`` under ``root``."""
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for statement in node.body:
                skipped.update(id(child) for child in ast.walk(statement))
    return skipped


def imported_names(module: str, path: Path, known: dict[str, Path],
                   type_checking: bool = False) -> Iterator[str]:
    """Every name ``module`` imports (absolute, as written or resolved from a relative one);
    those under ``if TYPE_CHECKING:`` only if ``type_checking``."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    skipped = set() if type_checking else _type_checking_nodes(tree)
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            for alias in node.names:  # `from a import b`: the module a.b if there is one
                yield f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base


def import_graph(root: Path, packages: tuple[str, ...], type_checking: bool = False
                 ) -> dict[str, set[str]]:
    """Module → the project modules that importing it runs first (with ``type_checking``,
    also those it names only for type checkers)."""
    known = modules(root, packages)
    graph: dict[str, set[str]] = {}
    for module, path in known.items():
        edges = set()
        for name in imported_names(module, path, known, type_checking):
            parts = name.split(".")
            for end in range(1, len(parts) + 1):
                target = ".".join(parts[:end])
                if target in known and target != module and not module.startswith(target + "."):
                    edges.add(target)
        graph[module] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph[successor]))))
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(frozenset(component))
    return found


def test_harness_has_no_import_cycle() -> None:
    found = [cycle for cycle in cycles(import_graph(REPOSITORY, PACKAGES))
             if any(module.startswith("harness") for module in cycle)]
    assert found == [], [sorted(cycle) for cycle in found]


def test_harness_has_no_import_cycle_even_for_type_checkers() -> None:
    """The kinds' registry loads each kind when asked (as the backends' does), so the scenario
    loader, the run context and the kinds do not lean on each other even in type hints."""
    graph = import_graph(REPOSITORY, PACKAGES, type_checking=True)
    found = [cycle for cycle in cycles(graph) if any(m.startswith("harness") for m in cycle)]
    assert found == [], [sorted(cycle) for cycle in found]
    assert not {m for m in graph["harness.kinds.registry"] if m.startswith("harness.kinds.")} \
        - {"harness.kinds.base"}  # no kind imported by the table


def test_no_new_import_cycle_elsewhere() -> None:
    found = set(cycles(import_graph(REPOSITORY, PACKAGES))) - KNOWN_CYCLES
    assert found == set(), [sorted(cycle) for cycle in found]


@pytest.mark.parametrize("module", sorted(m for m in modules(REPOSITORY, ("harness",))))
def test_every_harness_module_imports(module: str) -> None:
    importlib.import_module(module)


# ---------------------------------------------------------------- the checker itself


def _package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_a_cycle_through_a_function_level_import_is_found(tmp_path) -> None:
    root = _package(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/cli.py": "from pkg import compare\n",
        "pkg/compare.py": "def handle():\n    from pkg.cli import UsageError\n",
        "pkg/other.py": "from . import compare\n",
    })
    assert cycles(import_graph(root, ("pkg",))) == [frozenset({"pkg.cli", "pkg.compare"})]


def test_type_checking_imports_and_own_packages_are_no_cycle(tmp_path) -> None:
    root = _package(tmp_path, {
        "pkg/__init__.py": "from pkg.sub import a\n",  # a package re-exporting its submodule
        "pkg/sub/__init__.py": "",
        "pkg/sub/a.py": "from typing import TYPE_CHECKING\nfrom ..sub import b\n"
                        "if TYPE_CHECKING:\n    from pkg.sub.c import C\n",
        "pkg/sub/b.py": "",
        "pkg/sub/c.py": "from pkg.sub import a\n",
    })
    graph = import_graph(root, ("pkg",))
    assert graph["pkg.sub.a"] == {"pkg.sub.b"}
    assert graph["pkg.sub.c"] == {"pkg.sub.a"}
    assert cycles(graph) == []
    assert cycles(import_graph(root, ("pkg",), type_checking=True)) == [
        frozenset({"pkg.sub.a", "pkg.sub.c"})]  # a cycle for type checkers only
    # importing pkg.sub.a from outside runs the packages pkg and pkg.sub first
    _package(root, {"pkg2/__init__.py": "", "pkg2/x.py": "import pkg.sub.a\n"})
    assert "pkg" in import_graph(root, ("pkg", "pkg2"))["pkg2.x"]


# Which package may import which: the libraries never lean sideways or up.
ALLOWED = {
    "hostkit": {"hostkit"},
    "imagestore": {"imagestore", "hostkit"},
    "runtime": {"runtime", "hostkit", "imagestore"},
    "vm": {"vm", "hostkit", "imagestore"},
    "harness": {"harness", "runtime", "vm", "hostkit", "imagestore"},
}


def test_layers_never_lean_sideways() -> None:
    graph = import_graph(REPOSITORY, PACKAGES)
    wrong = sorted(f"{module} -> {target}" for module, targets in graph.items()
                   for target in targets
                   if target.split(".")[0] not in ALLOWED[module.split(".")[0]])
    assert wrong == []


def test_vm_backends_load_no_container_code() -> None:
    import subprocess
    import sys

    code = ("import sys, harness.backends.qemu, harness.backends.libvirt;"
            "print(sorted(m for m in sys.modules if m.startswith('runtime')))")
    loaded = subprocess.run([sys.executable, "-c", code], cwd=REPOSITORY, capture_output=True,
                            text=True, check=True).stdout.strip()
    assert loaded == "[]"
