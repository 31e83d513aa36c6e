"""Owns ``projects.get_task_parents``: the tasks that are parents of tasks in some projects, as
ClearML lists them (by name, each with its project's id and name when it is in one)."""

from __future__ import annotations

from typing import Any

from apiserver.bll import access
from apiserver.bll.patterns import compile_pattern
from apiserver.bll.projects.contents import in_projects_match, readable_match, state_match
from apiserver.database.model.project import Project
from apiserver.database.model.task import Task
from apiserver.database.store import store_of


def task_parents(company: str, projects: list[str | None] | None, state: str | None,
                 name: str | None = None) -> list[dict[str, Any]]:
    """The parents of the tasks in ``projects`` (all when None) that are ``state`` (active or
    archived; both when None); ``name``, a pattern (RE2), keeps the parents whose name it finds in."""
    match = {**readable_match(company), **in_projects_match(projects), **state_match(state),
             "parent": {"$nin": [None, ""]}}
    tasks = store_of(Task)
    ids = [row["_id"] for row in tasks.aggregate_indexed([{"$match": match}, {"$group": {"_id": "$parent"}}])]
    found = list(access.readable_many(tasks, company, ids, {"name": 1, "project": 1}).values())
    if name:
        program = compile_pattern(name, "task_name")
        found = [d for d in found if program.search(d.get("name") or "")]
    names = {p["_id"]: p.get("name") for p in access.readable_many(
        store_of(Project), company, sorted({d["project"] for d in found if d.get("project")}), {"name": 1}).values()}
    found.sort(key=lambda d: (d.get("name") or "", d["_id"]))
    return [{"id": d["_id"], "name": d.get("name"),
             **({"project": {"id": d["project"], "name": names.get(d["project"])}} if d.get("project") else {})}
            for d in found]
