"""The layer rules of DESIGN.md, checked on the code: only ``apiserver/database`` touches the
database driver or a collection; no import cycles; no private name imported from another module; no
module of ``bll/`` over 450 lines. Each check has a positive control that plants a violation in a
probe file and must find it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.helpers import ROOT

PACKAGE = ROOT / "apiserver"
DATABASE = PACKAGE / "database"
DRIVER_MODULES = ("pymongo", "bson", "gridfs")
MAX_BLL_LINES = 450
# Parts still being moved: each entry names what is left and is removed when it is done.
PENDING: dict[str, str] = {}


def _sources() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "webapp" not in p.relative_to(PACKAGE).parts)


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """Nodes under ``if TYPE_CHECKING:``: imports for annotations only, never run."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            found.update(id(n) for n in ast.walk(node))
    return found


def driver_uses(paths: list[Path]) -> list[str]:
    """Where a module outside ``apiserver/database`` imports the driver or calls ``_get_collection``."""
    found = []
    for path in paths:
        if DATABASE in path.parents or _rel(path) in PENDING:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            if any(n.split(".")[0] in DRIVER_MODULES for n in names):
                found.append(f"{_rel(path)}:{node.lineno}: imports {', '.join(names)}")
            if isinstance(node, ast.Attribute) and node.attr == "_get_collection":
                found.append(f"{_rel(path)}:{node.lineno}: calls _get_collection")
    return found


def import_cycles(paths: list[Path]) -> list[list[str]]:
    """The groups of modules of the package that import each other, directly or in a ring (imports
    inside functions count: they run; those under ``TYPE_CHECKING`` do not)."""
    modules = {_module(p): p for p in paths}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        skip = _type_checking_nodes(tree)
        targets: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets.add(node.module)
                targets.update(f"{node.module}.{a.name}" for a in node.names)
        graph[name] = {t for t in targets if t in modules and t != name}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                top = stack.pop()
                group.append(top)
                if top == node:
                    break
            if len(group) > 1 and not any(_rel(modules[m]) in PENDING for m in group):
                cycles.append(sorted(group))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return cycles


def private_imports(paths: list[Path]) -> list[str]:
    """``from apiserver.x import _name``: another module's private name (dunders such as
    ``__version__`` are public)."""
    found = []
    for path in paths:
        if _rel(path) in PENDING:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("apiserver"):
                private = [a.name for a in node.names if a.name.startswith("_") and not a.name.endswith("__")]
                if private:
                    found.append(f"{_rel(path)}:{node.lineno}: {', '.join(private)} from {node.module}")
    return found


def long_bll_modules(paths: list[Path]) -> list[str]:
    return [f"{_rel(p)}: {n} lines" for p in paths
            if PACKAGE / "bll" in p.parents and _rel(p) not in PENDING
            and (n := len(p.read_text().splitlines())) > MAX_BLL_LINES]


def test_only_the_database_layer_touches_the_driver_and_collections():
    assert driver_uses(_sources()) == []


def test_no_import_cycles():
    assert import_cycles(_sources()) == [], "modules that import each other"


def test_no_private_name_is_imported_from_another_module():
    assert private_imports(_sources()) == []


def test_no_bll_module_is_over_450_lines():
    assert long_bll_modules(_sources()) == []


def test_every_pending_exception_still_names_a_file():
    assert all((ROOT / path).is_file() for path in PENDING), "a pending entry outlived its file: remove it"


@pytest.fixture()
def probes():
    """Probe modules inside the package, removed afterwards."""
    made: list[Path] = []

    def make(relative: str, text: str) -> Path:
        path = PACKAGE / relative
        path.write_text(text)
        made.append(path)
        return path

    yield make
    for path in made:
        path.unlink()


def test_the_checks_find_what_they_look_for(probes):
    """Positive controls: a driver import and a collection call in bll, a ring of two modules, a
    private import and a long bll module are each found."""
    driver = probes("bll/_layers_probe_driver.py",
                    "import pymongo\nfrom apiserver.database.model.task import Task\n\n"
                    "def peek():\n    return Task._get_collection()\n")
    ring_a = probes("bll/layers_probe_a.py", "from apiserver.bll import layers_probe_b\n")
    ring_b = probes("bll/layers_probe_b.py", "def later():\n    from apiserver.bll import layers_probe_a\n")
    private = probes("bll/_layers_probe_private.py", "from apiserver.bll.query import _given\n")
    long = probes("bll/_layers_probe_long.py", "x = 1\n" * (MAX_BLL_LINES + 1))
    paths = _sources()
    assert driver_uses([driver]) == [f"{_rel(driver)}:1: imports pymongo", f"{_rel(driver)}:5: calls _get_collection"]
    assert ["apiserver.bll.layers_probe_a", "apiserver.bll.layers_probe_b"] in import_cycles(paths)
    assert private_imports([private, ring_a, ring_b]) == [f"{_rel(private)}:1: _given from apiserver.bll.query"]
    assert long_bll_modules([long]) == [f"{_rel(long)}: {MAX_BLL_LINES + 1} lines"]
