"""Owns what the web app reads about the contents of projects: task statistics rolled up from
subprojects (over the tasks a stats filter selects), which projects hold pipelines, datasets,
reports or a user's work, dataset counts and versions, what deleting a project would touch, and the
tags, users, parents, hyper-parameters, metrics and model metadata keys used inside them.

Every read is scoped to the caller's company and public objects (the counts before a delete: to the
caller's company), and restricted to the projects asked for (all when none); the scans over task
sections read only the section they need and stop at ``MAX_SCANNED`` tasks.

Only reads live here: these answers group tasks, models and projects together by project, so they
are project reads; every write to tasks and models goes through TaskBLL and ModelBLL.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from apiserver.apierrors import errors
from apiserver.bll import placement
from apiserver.bll import query as q
from apiserver.bll.patterns import compile_pattern
from apiserver.bll.tags import (
    ARCHIVED_TAG,
    CONTROLLER_TYPE,
    DATASET_TAG,
    DATASETS_FOLDER,
    PIPELINE_TAG,
    PIPELINES_FOLDER,
    REPORT_TYPE,
    REPORTS_TAG,
)
from apiserver.bll.tasks import status as st
from apiserver.bll.tasks.fields import escape_key, unescape_key
from apiserver.database.model.auth import User
from apiserver.database.model.base import utcnow
from apiserver.database.model.model import Model
from apiserver.database.model.project import Project
from apiserver.database.model.task import Task
from apiserver.database.store import store_of

MAX_SCANNED = 20_000
# Statuses whose completed time does not count a task as completed in the last 24 hours.
UNFINISHED = (st.QUEUED, st.IN_PROGRESS, st.FAILED)
STATUSES = (st.CREATED, st.QUEUED, st.IN_PROGRESS, st.STOPPED, st.PUBLISHED, st.PUBLISHING, st.CLOSED, st.FAILED,
            st.COMPLETED, "unknown")


def readable_match(company: str) -> dict[str, Any]:
    """The condition on what the caller reads: its company's objects and public ones."""
    return {"company": {"$in": [company, ""]}}


def _below(company: str, project_ids: list[str], include_hidden: bool = True,
           allowed: list[str] | None = None) -> list[dict[str, Any]]:
    """The projects nested (at any depth) below any of ``project_ids``: id, name and path; hidden ones
    only with ``include_hidden``, and only those among ``allowed`` when given."""
    cond: dict[str, Any] = {**readable_match(company), "path": {"$in": project_ids}}
    if not include_hidden:
        cond["system_tags"] = {"$ne": q.HIDDEN_TAG}
    if allowed is not None:
        cond["_id"] = {"$in": allowed}
    return list(store_of(Project).find(cond, {"_id": 1, "name": 1, "path": 1}))


def descendants(company: str, project_ids: list[str], include_hidden: bool = True,
                allowed: list[str] | None = None) -> dict[str, list[str]]:
    """Each project's id with the ids of every project nested below it (see ``_below``)."""
    return {p: [p, *(c["id"] for c in below)]
            for p, below in nested(company, project_ids, include_hidden, allowed).items()}


def nested(company: str, project_ids: list[str], include_hidden: bool = True,
           allowed: list[str] | None = None) -> dict[str, list[dict[str, str]]]:
    """Each project's nested projects at every depth as ``{id, name}``, by name (ClearML's
    ``sub_projects``; see ``_below``)."""
    out: dict[str, list[dict[str, str]]] = {p: [] for p in project_ids}
    for doc in sorted(_below(company, project_ids, include_hidden, allowed), key=lambda d: (d["name"], d["_id"])):
        for ancestor in doc.get("path") or []:
            if ancestor in out:
                out[ancestor].append({"id": doc["_id"], "name": doc["name"]})
    return out


def expand(company: str, projects: list[str] | None, include_subprojects: bool) -> list[str | None] | None:
    """The projects a project read covers, as ClearML: ``projects`` with their subprojects when
    asked; none named (None) without subprojects is the top level only (``[None]``); an empty list,
    or none named with subprojects, is every project (None)."""
    if projects is None and not include_subprojects:
        return [None]
    if not projects or not include_subprojects:
        return projects or None
    return sorted({p for ids in descendants(company, projects).values() for p in ids})


def _state_match(state: str) -> dict[str, Any]:
    return {"system_tags": ARCHIVED_TAG} if state == "archived" else {"system_tags": {"$ne": ARCHIVED_TAG}}


def _families(project_ids: list[str], family: dict[str, list[str]]) -> dict[str, list[str]]:
    """For each member of a family, the requested projects it counts for."""
    owners: dict[str, list[str]] = {}
    for top in project_ids:
        for member in family.get(top, [top]):
            owners.setdefault(member, []).append(top)
    return owners


def project_stats(company: str, project_ids: list[str], states: list[str], family: dict[str, list[str]],
                  match: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """ClearML's ``stats`` per project over the tasks of its ``family`` (itself and the subprojects
    counted) that ``match``: for each state (active, archived) the task count per status, total
    tasks, total run time in seconds, tasks completed (and not queued, running or failed) in the last
    24 hours and the latest start. One grouped read per state, whatever the projects hold."""
    owners = _families(project_ids, family)
    tasks = store_of(Task)
    since = utcnow() - timedelta(hours=24)
    ran = {"$and": [{"$gt": ["$started", None]}, {"$gt": ["$completed", "$started"]}]}
    recent = {"$and": [{"$gt": ["$completed", since]}, {"$not": [{"$in": ["$status", list(UNFINISHED)]}]}]}
    group = {"_id": {"project": "$project", "status": "$status"}, "count": {"$sum": 1},
             "last_run": {"$max": "$started"},
             "runtime_ms": {"$sum": {"$cond": [ran, {"$subtract": ["$completed", "$started"]}, 0]}},
             "completed_24h": {"$sum": {"$cond": [recent, 1, 0]}}}
    stats: dict[str, dict[str, Any]] = {p: {} for p in project_ids}
    for state in states:
        for p in project_ids:
            stats[p][state] = {"status_count": dict.fromkeys(STATUSES, 0), "total_tasks": 0, "total_runtime": 0,
                               "completed_tasks_24h": 0, "last_task_run": None}
        scope = q.combine({**readable_match(company), "project": {"$in": list(owners)}}, _state_match(state),
                          match or {})
        runtime_ms: dict[str, int] = dict.fromkeys(project_ids, 0)
        for row in tasks.aggregate_indexed([{"$match": scope}, {"$group": group}]):
            for top in owners[row["_id"]["project"]]:
                entry = stats[top][state]
                status = row["_id"].get("status") or "unknown"
                entry["status_count"][status] = entry["status_count"].get(status, 0) + row["count"]
                entry["total_tasks"] += row["count"]
                entry["completed_tasks_24h"] += row["completed_24h"]
                runtime_ms[top] += row["runtime_ms"]
                if row.get("last_run") and (entry["last_task_run"] is None or row["last_run"] > entry["last_task_run"]):
                    entry["last_task_run"] = row["last_run"]
        for p in project_ids:
            stats[p][state]["total_runtime"] = int(runtime_ms[p] // 1000)
    return stats


def dataset_stats(company: str, project_ids: list[str], family: dict[str, list[str]],
                  match: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """``stats`` of ``children_type: dataset``: per project, how many dataset projects (that ``match``)
    sit in its family, and their tags."""
    owners = _families(project_ids, family)
    counts = {p: {"count": 0, "tags": set()} for p in project_ids}
    scope = q.combine({**readable_match(company), "parent": {"$in": list(owners)}, "system_tags": DATASET_TAG},
                      match or {})
    for doc in store_of(Project).scan(scope, {"parent": 1, "tags": 1}, MAX_SCANNED):
        for top in owners[doc["parent"]]:
            counts[top]["count"] += 1
            counts[top]["tags"].update(doc.get("tags") or [])
    return {p: {"datasets": {"count": c["count"], "tags": sorted(c["tags"])}} for p, c in counts.items()}


def own_datasets(company: str, project_ids: list[str], match: dict[str, Any] | None = None) -> dict[str, dict]:
    """``own_datasets``: the dataset projects (that ``match``) directly in each project."""
    out = {p: {"own_datasets": 0} for p in project_ids}
    scope = q.combine({**readable_match(company), "parent": {"$in": project_ids}, "system_tags": DATASET_TAG},
                      match or {})
    for row in store_of(Project).aggregate_indexed([{"$match": scope},
                                                       {"$group": {"_id": "$parent", "count": {"$sum": 1}}}]):
        out[row["_id"]]["own_datasets"] = row["count"]
    return out


def dataset_versions(company: str, project_ids: list[str], users: list[str] | None = None
                     ) -> dict[str, dict[str, int] | None]:
    """``dataset_stats``: per project, the file count and size its latest updated active task with
    a ``runtime`` reports (ClearML's dataset versions keep them in ``ds_file_count``/``ds_total_size``);
    null for a project with none."""
    out: dict[str, dict[str, int] | None] = dict.fromkeys(project_ids)
    scope = {**readable_match(company), "project": {"$in": project_ids}, "system_tags": {"$ne": ARCHIVED_TAG},
             "runtime": {"$nin": [None, {}]}}
    if users:
        scope["user"] = {"$in": users}
    latest: dict[str, dict[str, Any]] = {}
    for doc in store_of(Task).scan(scope, {"project": 1, "runtime": 1, "last_update": 1}, MAX_SCANNED):
        kept = latest.get(doc["project"])
        if kept is None or (doc.get("last_update") or datetime.min) > (kept.get("last_update") or datetime.min):
            latest[doc["project"]] = doc
    for project, doc in latest.items():
        runtime = doc.get("runtime") or {}
        out[project] = {"file_count": runtime.get("ds_file_count") or 0,
                        "total_size": runtime.get("ds_total_size") or 0}
    return out


def own_counts(company: str, project_ids: list[str], match: dict[str, Any] | None = None
               ) -> dict[str, dict[str, int]]:
    """Tasks and models (that ``match``) directly in each project (not in subprojects)."""
    out = {p: {"own_tasks": 0, "own_models": 0} for p in project_ids}
    for coll, key in ((store_of(Task), "own_tasks"), (store_of(Model), "own_models")):
        pipeline = [{"$match": q.combine({**readable_match(company), "project": {"$in": project_ids}}, match or {})},
                    {"$group": {"_id": "$project", "count": {"$sum": 1}}}]
        for row in coll.aggregate_indexed(pipeline):
            out[row["_id"]][key] = row["count"]
    return out


def state_match(state: str | None) -> dict[str, Any]:
    """Active or archived objects; both for None."""
    return _state_match(state) if state in ("active", "archived") else {}


def stats_filter(data: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The filter on what ``get_all_ex`` statistics count (ClearML's ``include_stats_filter``, else
    the one ``children_type`` implies) and whether hidden subprojects are counted."""
    if data.get("include_stats_filter") or not data.get("children_type"):
        return data.get("include_stats_filter") or {}, bool(data.get("search_hidden"))
    wanted = data.get("children_tags_filter") or data.get("children_tags")
    tags = {"tags": wanted} if wanted else {}
    if data["children_type"] == "pipeline":
        return {**tags, "system_tags": [PIPELINE_TAG], "type": [CONTROLLER_TYPE]}, True
    if data["children_type"] == "report":
        return {**tags, "system_tags": [REPORTS_TAG], "type": [REPORT_TYPE]}, True
    return tags, bool(data.get("search_hidden"))


def filter_match(filter_: dict[str, Any], users: list[str] | None, field: str = "include_stats_filter"
                 ) -> dict[str, Any]:
    """A filter of field -> allowed values (ClearML's list filter language: '-x' excludes, null for
    empty, '__$all' and the other list operators; or a ``filters`` object) and the users, as one."""
    conds: list[dict[str, Any]] = []
    for name, values in filter_.items():
        where = f"{field}.{name}"
        q.field_path(name, where)
        if isinstance(values, dict):
            conds.append(q.field_filter(q.FIELD_IDS.get(name, name), values))
            continue
        values = [values] if isinstance(values, str) else values
        if not isinstance(values, list) or not values or not all(v is None or isinstance(v, str) for v in values):
            raise errors.bad_request.ValidationError(f"field '{where}': a non-empty list of strings (rule: type)",
                                                     error_data={"field": where, "rule": "type"})
        conds.append(q.list_filter(q.FIELD_IDS.get(name, name), values))
    if users:
        conds.append({"user": {"$in": users}})
    return q.combine(*conds)


def selected_projects(company: str, data: dict[str, Any]) -> tuple[list[str], list[str]]:
    """``children_type`` / ``active_users``: the projects holding such children (dataset or pipeline
    projects, report tasks; with only ``active_users``, projects, tasks and models of those users),
    with every project above them. Answers (the ones to list: among the requested ``id`` when given,
    all of them). With ``id``, only children below those projects count."""
    users = data.get("active_users") or None
    kind = data.get("children_type")
    base = q.combine(readable_match(company) if data.get("allow_public", True) is not False else {"company": company},
                     {"user": {"$in": users}} if users else {})
    requested = data.get("id")
    requested = [requested] if isinstance(requested, str) else requested or None
    children = q.combine(base, *(make("tags", data[key]) for key, make in (
        ("children_tags", q.list_filter), ("children_tags_filter", q.field_filter)) if data.get(key)))
    sources: list[tuple[Any, dict[str, Any], str]]
    if kind == "dataset":
        sources = [(Project, q.combine(children, {"system_tags": DATASET_TAG, "basename": {"$ne": DATASETS_FOLDER}}),
                    "parent")]
    elif kind == "pipeline":
        sources = [(Project, q.combine(children, {"system_tags": PIPELINE_TAG, "basename": {"$ne": PIPELINES_FOLDER}}),
                    "parent")]
    elif kind == "report":
        sources = [(Task, q.combine(children, {"system_tags": REPORTS_TAG}), "project")]
    else:
        sources = [(Project, base, "_id"), (Task, base, "project"), (Model, base, "project")]
    if requested:
        below = sorted({p for ids in descendants(company, requested).values() for p in ids})
        sources = [(model, q.combine(cond, {where: {"$in": below}}), where) for model, cond, where in sources]
    found: set[str] = set()
    for model, cond, _ in sources:
        key = "project" if model is not Project else "_id"
        rows = store_of(model).aggregate_indexed([{"$match": cond}, {"$group": {"_id": f"${key}"}}])
        found.update(row["_id"] for row in rows if row["_id"])
    selected = set(found)
    for doc in store_of(Project).find({"_id": {"$in": sorted(found)}}, {"path": 1}):
        selected.update(doc.get("path") or [])
    chosen = sorted(selected & set(requested)) if requested else sorted(selected)
    return chosen, sorted(selected)


def active_users(company: str, project_ids: list[str], user_ids: list[str] | None = None) -> set[str]:
    """``users.get_all_ex``'s ``active_in_projects``: the users who created the company's projects,
    tasks or models in these projects or below them (anywhere when ``project_ids`` is empty), among
    ``user_ids`` when given."""
    base: dict[str, Any] = {"company": company}
    if user_ids:
        base["user"] = {"$in": user_ids}
    sources: list[tuple[Any, dict[str, Any]]] = [(Project, base), (Task, base), (Model, base)]
    if project_ids:
        within = sorted({p for ids in descendants(company, project_ids).values() for p in ids})
        sources = [(Project, {**base, "_id": {"$in": within}}), (Task, {**base, "project": {"$in": within}}),
                   (Model, {**base, "project": {"$in": within}})]
    found: set[str] = set()
    for model, cond in sources:
        rows = store_of(model).aggregate_indexed([{"$match": cond}, {"$group": {"_id": "$user"}}])
        found.update(row["_id"] for row in rows if row["_id"])
    return found


def tags_of(coll: Any, company: str, match: dict[str, Any] | None = None) -> dict[str, list[str]]:
    """The distinct tags and system tags among readable objects of ``coll`` matching ``match``."""
    return {field: q.distinct_values(coll, company, None, field, unwind=True, match=match)
            for field in ("tags", "system_tags")}


def project_tags(company: str, project_ids: list[str] | None,
                 flt: dict[str, list[str]] | None = None) -> dict[str, list[str]]:
    """projects.get_project_tags: the tags of these projects (all readable ones when none), of those
    whose tags and system tags match ``flt`` (list filters) when given."""
    conds = [{"_id": {"$in": project_ids}}] if project_ids else []
    conds += [q.list_filter(field, values) for field, values in (flt or {}).items() if values]
    return tags_of(store_of(Project), company, q.combine(*conds) if conds else None)


def model_tags(company: str, projects: list[str] | None) -> dict[str, list[str]]:
    """projects.get_model_tags: the tags of the models in these projects (all when none)."""
    return tags_of(store_of(Model), company, in_projects_match(projects) or None)


def task_tags(company: str, projects: list[str] | None) -> dict[str, list[str]]:
    """projects.get_task_tags: the tags of the tasks in these projects (all when none)."""
    return tags_of(store_of(Task), company, in_projects_match(projects) or None)


def user_names(company: str, projects: list[str] | None, entity: str | None) -> list[dict[str, Any]]:
    """The users who own the entity's (task's or model's) objects in ``projects`` (all when none)."""
    coll = store_of(Model if entity == "model" else Task)
    ids = q.distinct_values(coll, company, projects, "user")
    users = store_of(User).find({"_id": {"$in": ids}, "company": company}, {"name": 1})
    return sorted(({"id": u["_id"], "name": u.get("name")} for u in users),
                  key=lambda u: (u["name"] or "", u["id"]))


def delete_counts(company: str, project_ids: list[str]) -> dict[str, int]:
    """projects.validate_delete: the company's tasks of each kind (tasks, pipelines, datasets,
    reports) and models in these projects, all and non-archived ones, as ClearML counts them.

    One read per collection, grouped by the fields the kinds depend on (type and system tags: a few
    distinct values), and the groups counted here: each count on its own read every task of the
    projects again (ten reads, 11 s for a project of 30,000 tasks on the embedded database)."""
    scope = placement.in_projects(company, project_ids)
    out = {key: 0 for kind in ("tasks", "pipelines", "datasets", "reports", "models")
           for key in (kind, f"non_archived_{kind}")}
    by_kind = [{"$match": scope}, {"$group": {"_id": {"type": "$type", "tags": "$system_tags"}, "n": {"$sum": 1}}}]
    for group in store_of(Task).aggregate_indexed(by_kind):
        tags, n = _tag_list(group["_id"].get("tags")), group["n"]
        kinds = [kind for kind, member in (
            ("tasks", PIPELINE_TAG not in tags and DATASET_TAG not in tags and group["_id"].get("type") != REPORT_TYPE),
            ("pipelines", PIPELINE_TAG in tags), ("datasets", DATASET_TAG in tags),
            ("reports", group["_id"].get("type") == REPORT_TYPE)) if member]
        for kind in kinds:
            out[kind] += n
            out[f"non_archived_{kind}"] += 0 if ARCHIVED_TAG in tags else n
    by_tags = [{"$match": scope}, {"$group": {"_id": "$system_tags", "n": {"$sum": 1}}}]
    for group in store_of(Model).aggregate_indexed(by_tags):
        out["models"] += group["n"]
        out["non_archived_models"] += 0 if ARCHIVED_TAG in _tag_list(group["_id"]) else group["n"]
    return out


def _tag_list(value: Any) -> list:
    """A stored system_tags value as the list a query matches it as (a lone value is a list of one)."""
    return value if isinstance(value, list) else [] if value is None else [value]


def organization_tags(company: str, system_tags: list[str] | None, include_system: bool) -> dict[str, list[str]]:
    """organization.get_tags: the tags of the company's and public tasks, models and projects; with
    ``system_tags`` only of objects that have them (ClearML's list filter language)."""
    match = q.list_filter("system_tags", system_tags) if system_tags else None
    found: dict[str, set[str]] = {"tags": set(), "system_tags": set()}
    for coll in (store_of(Task), store_of(Model), store_of(Project)):
        for key, values in tags_of(coll, company, match).items():
            found[key].update(values)
    answer = {"tags": sorted(found["tags"])}
    if include_system:
        answer["system_tags"] = sorted(found["system_tags"])
    return answer


def in_projects_match(projects: list[str] | None) -> dict[str, Any]:
    """The condition on objects in ``projects`` (none: anywhere)."""
    return {"project": {"$in": projects}} if projects else {}


def hyper_parameters(company: str, projects: list[str] | None) -> list[dict[str, str]]:
    """Every (section, name) of the hyper-parameters of tasks in ``projects``, sorted."""
    found = set()
    scope = {**readable_match(company), **in_projects_match(projects), "hyperparams": {"$nin": [None, {}]}}
    for doc in store_of(Task).scan(scope, {"hyperparams": 1}, MAX_SCANNED):
        for section, params in (doc.get("hyperparams") or {}).items():
            for name in params or {}:
                found.add((unescape_key(section), unescape_key(name)))
    return [{"section": s, "name": n} for s, n in sorted(found)]


def hyperparam_values(company: str, projects: list[str] | None, section: str, name: str,
                      pattern: str | None = None) -> list[str]:
    """The distinct values; ``pattern`` (RE2, case-insensitive, as ClearML) keeps those it finds in."""
    q.field_path(escape_key(section), "section")
    q.field_path(escape_key(name), "name")
    field = f"hyperparams.{escape_key(section)}.{escape_key(name)}.value"
    values = q.distinct_values(store_of(Task), company, projects, field)
    if pattern:
        program = compile_pattern(pattern, "pattern", ignore_case=True)
        values = [v for v in values if program.search(str(v))]
    return values


def metric_variants(company: str, projects: list[str] | None, models: bool = False,
                    ids: list[str] | None = None) -> list[dict[str, str]]:
    """Every (metric, variant) in the last metrics of tasks (or models) in ``projects`` (and among
    ``ids`` when given)."""
    coll = store_of(Model if models else Task)
    found = {}
    scope = {**readable_match(company), **in_projects_match(projects), "last_metrics": {"$nin": [None, {}]}}
    if ids is not None:
        scope["_id"] = {"$in": ids}
    for doc in coll.scan(scope, {"last_metrics": 1}, MAX_SCANNED):
        for metric_hash, variants in (doc.get("last_metrics") or {}).items():
            for variant_hash, event in (variants or {}).items():
                if isinstance(event, dict):
                    found[(metric_hash, variant_hash)] = (event.get("metric"), event.get("variant"))
    rows = [{"metric": m, "metric_hash": mh, "variant": v, "variant_hash": vh}
            for (mh, vh), (m, v) in found.items()]
    return sorted(rows, key=lambda r: (r["metric"] or "", r["variant"] or ""))


def model_metadata_keys(company: str, projects: list[str] | None) -> list[str]:
    keys = set()
    scope = {**readable_match(company), **in_projects_match(projects), "metadata": {"$nin": [None, {}]}}
    for doc in store_of(Model).scan(scope, {"metadata": 1}, MAX_SCANNED):
        keys.update(unescape_key(k) for k in (doc.get("metadata") or {}))
    return sorted(keys)


def model_metadata_values(company: str, projects: list[str] | None, key: str) -> list[str]:
    q.field_path(escape_key(key), "key")
    return q.distinct_values(store_of(Model), company, projects, f"metadata.{escape_key(key)}.value")


def page_of(items: list[Any], page: int | None, page_size: int | None) -> tuple[list[Any], int, int]:
    """One page of a computed list: (items, total, remaining after this page)."""
    skip, limit = q.page_bounds(page, page_size)
    chosen = items[skip:skip + limit]
    return chosen, len(items), max(0, len(items) - skip - len(chosen))
