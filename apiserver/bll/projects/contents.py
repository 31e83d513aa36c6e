"""Owns what the web app reads about the contents of projects: task statistics rolled up from
subprojects, the tags, parents, hyper-parameters, metrics and model metadata keys used inside them.

Every read is scoped to the caller's company and public objects, and restricted to the projects
asked for (all when none); the scans over task sections read only the section they need and stop
at ``MAX_SCANNED`` tasks.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from apiserver.bll import query as q
from apiserver.bll.tags import ARCHIVED_TAG
from apiserver.bll.tasks import status as st
from apiserver.bll.tasks.fields import escape_key, unescape_key
from apiserver.database.model.base import utcnow
from apiserver.database.model.model import Model
from apiserver.database.model.project import Project
from apiserver.database.model.task import Task

MAX_SCANNED = 20_000
STATUSES = (st.CREATED, st.QUEUED, st.IN_PROGRESS, st.STOPPED, st.PUBLISHED, st.PUBLISHING, st.CLOSED, st.FAILED,
            st.COMPLETED, "unknown")


def _readable(company: str) -> dict[str, Any]:
    return {"company": {"$in": [company, ""]}}


def descendants(company: str, project_ids: list[str]) -> dict[str, list[str]]:
    """Each project's id with the ids of every project nested below it."""
    out = {p: [p] for p in project_ids}
    for doc in Project._get_collection().find({**_readable(company), "path": {"$in": project_ids}},
                                              {"_id": 1, "path": 1}):
        for ancestor in doc.get("path") or []:
            if ancestor in out:
                out[ancestor].append(doc["_id"])
    return out


def expand(company: str, projects: list[str] | None, include_subprojects: bool) -> list[str] | None:
    """``projects`` (None: all), with their subprojects when asked."""
    if not projects or not include_subprojects:
        return projects or None
    return sorted({p for ids in descendants(company, projects).values() for p in ids})


def _state_match(state: str) -> dict[str, Any]:
    return {"system_tags": ARCHIVED_TAG} if state == "archived" else {"system_tags": {"$ne": ARCHIVED_TAG}}


def project_stats(company: str, project_ids: list[str], states: list[str], with_children: bool = True
                  ) -> dict[str, dict[str, Any]]:
    """ClearML's ``stats`` per project: for each state (active, archived) the task count per status,
    total tasks, total run time in seconds, tasks completed in the last 24 hours and the latest start."""
    family = descendants(company, project_ids) if with_children else {p: [p] for p in project_ids}
    owners: dict[str, list[str]] = {}
    for top, members in family.items():
        for member in members:
            owners.setdefault(member, []).append(top)
    tasks = Task._get_collection()
    since = utcnow() - timedelta(hours=24)
    stats: dict[str, dict[str, Any]] = {p: {} for p in project_ids}
    for state in states:
        for p in project_ids:
            stats[p][state] = {"status_count": dict.fromkeys(STATUSES, 0), "total_tasks": 0, "total_runtime": 0,
                               "completed_tasks_24h": 0, "last_task_run": None}
        match = {**_readable(company), "project": {"$in": list(owners)}, **_state_match(state)}
        pipeline = [{"$match": match}, {"$group": {"_id": {"project": "$project", "status": "$status"},
                                                   "count": {"$sum": 1}, "last_run": {"$max": "$started"}}}]
        for row in tasks.aggregate(pipeline):
            for top in owners[row["_id"]["project"]]:
                entry = stats[top][state]
                status = row["_id"].get("status") or "unknown"
                entry["status_count"][status] = entry["status_count"].get(status, 0) + row["count"]
                entry["total_tasks"] += row["count"]
                if row.get("last_run") and (entry["last_task_run"] is None or row["last_run"] > entry["last_task_run"]):
                    entry["last_task_run"] = row["last_run"]
        finished = {**match, "started": {"$ne": None}, "completed": {"$ne": None}}
        for doc in tasks.find(finished, {"project": 1, "started": 1, "completed": 1}).limit(MAX_SCANNED):
            for top in owners[doc["project"]]:
                entry = stats[top][state]
                entry["total_runtime"] += max(0, int((doc["completed"] - doc["started"]).total_seconds()))
                entry["completed_tasks_24h"] += doc["completed"] >= since
    return stats


def own_counts(company: str, project_ids: list[str]) -> dict[str, dict[str, int]]:
    """Tasks and models directly in each project (not in subprojects)."""
    out = {p: {"own_tasks": 0, "own_models": 0} for p in project_ids}
    for coll, key in ((Task._get_collection(), "own_tasks"), (Model._get_collection(), "own_models")):
        pipeline = [{"$match": {**_readable(company), "project": {"$in": project_ids}}},
                    {"$group": {"_id": "$project", "count": {"$sum": 1}}}]
        for row in coll.aggregate(pipeline):
            out[row["_id"]][key] = row["count"]
    return out


def sub_projects(company: str, project_ids: list[str]) -> dict[str, list[dict[str, str]]]:
    """The projects one level below each project, by name."""
    out: dict[str, list[dict[str, str]]] = {p: [] for p in project_ids}
    found = Project._get_collection().find({**_readable(company), "parent": {"$in": project_ids}},
                                           {"name": 1, "parent": 1}).sort("name", 1)
    for doc in found:
        out[doc["parent"]].append({"id": doc["_id"], "name": doc["name"]})
    return out


def tags_of(coll: Any, company: str, match: dict[str, Any] | None = None) -> dict[str, list[str]]:
    """The distinct tags and system tags among readable objects of ``coll`` matching ``match``."""
    return {field: q.distinct_values(coll, company, None, field, unwind=True, match=match)
            for field in ("tags", "system_tags")}


def project_tags(company: str, project_ids: list[str] | None) -> dict[str, list[str]]:
    """projects.get_project_tags: the tags of these projects (all readable ones when none)."""
    return tags_of(Project._get_collection(), company, {"_id": {"$in": project_ids}} if project_ids else None)


def model_tags(company: str, projects: list[str] | None) -> dict[str, list[str]]:
    """projects.get_model_tags: the tags of the models in these projects (all when none)."""
    return tags_of(Model._get_collection(), company, _in_projects(projects) or None)


def organization_tags(company: str, system_tags: list[str] | None, include_system: bool) -> dict[str, list[str]]:
    """organization.get_tags: the tags of the company's and public tasks, models and projects; with
    ``system_tags`` only of objects that have them (ClearML's list filter language)."""
    match = q.list_filter("system_tags", system_tags) if system_tags else None
    found: dict[str, set[str]] = {"tags": set(), "system_tags": set()}
    for coll in (Task._get_collection(), Model._get_collection(), Project._get_collection()):
        for key, values in tags_of(coll, company, match).items():
            found[key].update(values)
    answer = {"tags": sorted(found["tags"])}
    if include_system:
        answer["system_tags"] = sorted(found["system_tags"])
    return answer


def _in_projects(projects: list[str] | None) -> dict[str, Any]:
    return {"project": {"$in": projects}} if projects else {}


def task_parents(company: str, projects: list[str] | None, state: str | None) -> list[dict[str, Any]]:
    """The tasks that are parents of tasks in ``projects``: ``{id, name, project: {id}}``."""
    match = {**_readable(company), **_in_projects(projects), "parent": {"$nin": [None, ""]}}
    if state in ("active", "archived"):
        match.update(_state_match(state))
    tasks = Task._get_collection()
    ids = [row["_id"] for row in tasks.aggregate([{"$match": match}, {"$group": {"_id": "$parent"}}])]
    found = tasks.find({**_readable(company), "_id": {"$in": ids}}, {"name": 1, "project": 1}).sort("name", 1)
    return [{"id": d["_id"], "name": d.get("name"), "project": {"id": d.get("project")}} for d in found]


def hyper_parameters(company: str, projects: list[str] | None) -> list[dict[str, str]]:
    """Every (section, name) of the hyper-parameters of tasks in ``projects``, sorted."""
    found = set()
    scope = {**_readable(company), **_in_projects(projects), "hyperparams": {"$nin": [None, {}]}}
    for doc in Task._get_collection().find(scope, {"hyperparams": 1}).limit(MAX_SCANNED):
        for section, params in (doc.get("hyperparams") or {}).items():
            for name in params or {}:
                found.add((unescape_key(section), unescape_key(name)))
    return [{"section": s, "name": n} for s, n in sorted(found)]


def hyperparam_values(company: str, projects: list[str] | None, section: str, name: str) -> list[str]:
    q.field_path(escape_key(section), "section")
    q.field_path(escape_key(name), "name")
    field = f"hyperparams.{escape_key(section)}.{escape_key(name)}.value"
    return q.distinct_values(Task._get_collection(), company, projects, field)


def metric_variants(company: str, projects: list[str] | None, models: bool = False) -> list[dict[str, str]]:
    """Every (metric, variant) in the last metrics of tasks (or models) in ``projects``."""
    coll = (Model if models else Task)._get_collection()
    found = {}
    scope = {**_readable(company), **_in_projects(projects), "last_metrics": {"$nin": [None, {}]}}
    for doc in coll.find(scope, {"last_metrics": 1}).limit(MAX_SCANNED):
        for metric_hash, variants in (doc.get("last_metrics") or {}).items():
            for variant_hash, event in (variants or {}).items():
                if isinstance(event, dict):
                    found[(metric_hash, variant_hash)] = (event.get("metric"), event.get("variant"))
    rows = [{"metric": m, "metric_hash": mh, "variant": v, "variant_hash": vh}
            for (mh, vh), (m, v) in found.items()]
    return sorted(rows, key=lambda r: (r["metric"] or "", r["variant"] or ""))


def model_metadata_keys(company: str, projects: list[str] | None) -> list[str]:
    keys = set()
    scope = {**_readable(company), **_in_projects(projects), "metadata": {"$nin": [None, {}]}}
    for doc in Model._get_collection().find(scope, {"metadata": 1}).limit(MAX_SCANNED):
        keys.update(unescape_key(k) for k in (doc.get("metadata") or {}))
    return sorted(keys)


def model_metadata_values(company: str, projects: list[str] | None, key: str) -> list[str]:
    q.field_path(escape_key(key), "key")
    return q.distinct_values(Model._get_collection(), company, projects, f"metadata.{escape_key(key)}.value")


def page_of(items: list[Any], page: int | None, page_size: int | None) -> tuple[list[Any], int, int]:
    """One page of a computed list: (items, total, remaining after this page)."""
    skip, limit = q.page_bounds(page, page_size)
    chosen = items[skip:skip + limit]
    return chosen, len(items), max(0, len(items) - skip - len(chosen))
