"""Every query the business layer sends to the tasks collection is scoped by company.

A static check over ``apiserver/bll``: any call of a query or write method on the tasks collection
(``store_of(Task)`` anywhere, ``self.store`` inside the tasks bll, or ``coll`` in
``bll/placement.py``, the helpers TaskBLL hands its store to) must name ``company`` in its
filter. A lookup by id alone would show or change another company's task. (``bll/access.by_id`` reads
by id alone on purpose and checks the company on the record it gets; ``test_isolation`` covers it.)
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers import ROOT

QUERY_METHODS = {"find", "find_one", "find_one_and_update", "find_one_and_delete", "update_one", "update_many",
                 "delete_one", "delete_many", "count_documents", "replace_one", "distinct"}
TASKS_BLL = ROOT / "apiserver" / "bll" / "tasks"
PLACEMENT = ROOT / "apiserver" / "bll" / "placement.py"


def _is_tasks_collection(node: ast.AST, path: Path) -> bool:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "store_of":
        return len(node.args) == 1 and isinstance(node.args[0], ast.Name) and node.args[0].id == "Task"
    if TASKS_BLL in path.parents and isinstance(node, ast.Attribute) and node.attr == "store":
        return isinstance(node.value, ast.Name) and node.value.id == "self"
    return path == PLACEMENT and isinstance(node, ast.Name) and node.id == "coll"


ALL_COMPANIES = "# all companies:"  # marks a deliberate server-wide query (a background sweep), with why


def unscoped_task_queries() -> list[str]:
    found = []
    for path in sorted((ROOT / "apiserver" / "bll").rglob("*.py")):
        source = path.read_text()
        lines = source.splitlines()
        tree = ast.parse(source)
        for func in [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]:
            for node in ast.walk(func):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and node.func.attr in QUERY_METHODS and _is_tasks_collection(node.func.value, path)):
                    continue
                where = f"{path.relative_to(ROOT)}:{node.lineno}"
                if any(ALL_COMPANIES in lines[i] for i in range(max(0, node.lineno - 2), node.end_lineno)):
                    continue
                if not node.args:
                    found.append(f"{where}: no filter")
                    continue
                arg = node.args[0]
                text = ast.get_source_segment(source, arg) or ""
                # a filter built earlier in the function, or spread into this one ({**flt, "status": ...})
                names = [arg.id] if isinstance(arg, ast.Name) else \
                    [v.id for k, v in zip(arg.keys, arg.values, strict=True) if k is None and isinstance(v, ast.Name)] \
                    if isinstance(arg, ast.Dict) else []
                if names:
                    text += " " + " ".join(ast.get_source_segment(source, a.value) or "" for a in ast.walk(func)
                                           for name in names if _assigns(a, name))
                if "company" not in text:
                    found.append(f"{where}: {ast.get_source_segment(source, arg)[:80]}")
    return sorted(set(found))


def _assigns(node: ast.AST, name: str) -> bool:
    if isinstance(node, ast.Assign):
        return any(isinstance(t, ast.Name) and t.id == name for t in node.targets)
    return isinstance(node, ast.AnnAssign) and node.value is not None and \
        isinstance(node.target, ast.Name) and node.target.id == name


def test_every_task_query_in_the_bll_names_a_company():
    assert unscoped_task_queries() == []


def test_the_check_finds_an_unscoped_query(tmp_path, monkeypatch):
    """Positive control: the check flags a lookup by id alone."""
    bad = ROOT / "apiserver" / "bll" / "_scoping_probe.py"
    bad.write_text("from apiserver.database.model.task import Task\nfrom apiserver.database.store import store_of\n\n"
                   "def peek(task_id):\n    return store_of(Task).find_one({'_id': task_id})\n")
    try:
        assert unscoped_task_queries() == ["apiserver/bll/_scoping_probe.py:5: {'_id': task_id}"]
    finally:
        bad.unlink()
