"""Owns task records: creation, editing, cloning, every status change, queues and listing.

Every status change is one ``update_one`` whose filter holds the status the check was made
against, so of two concurrent changes at most one succeeds; the loser gets 400/121.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from apiserver.apierrors import errors
from apiserver.bll import access, placement, tags
from apiserver.bll import query as q
from apiserver.bll.auth.identity import Identity
from apiserver.bll.projects.projects import ProjectBLL
from apiserver.bll.queues.entries import QueueEntries
from apiserver.bll.tags import ARCHIVED_TAG
from apiserver.bll.tasks import status as st
from apiserver.bll.tasks.fields import (
    DATE_FIELDS,
    artifact_id,
    dotted_changes,
    escape_key,
    legacy_to_sections,
    metric_hash,
    storage_path,
    to_api,
    to_storage,
    unescape_key,
)
from apiserver.database.model.auth import Company, User
from apiserver.database.model.base import new_id, utcnow
from apiserver.database.model.model import Model
from apiserver.database.model.project import Project
from apiserver.database.model.queue import Queue
from apiserver.database.model.task import Task
from apiserver.database.model.worker import Worker
from apiserver.database.store import store_of

CREATE_FIELDS = ("name", "tags", "system_tags", "type", "comment", "parent", "project", "execution", "script",
                 "hyperparams", "configuration", "runtime", "container", "models")
EDIT_FIELDS = CREATE_FIELDS
UPDATE_FIELDS = ("name", "tags", "system_tags", "comment", "project", "created")
# What `reset` clears; `clear_all` also empties the execution and script sections.
RESET_UNSET = ("last_iteration", "last_metrics", "output.model", "output.result", "output.error",
               "started", "completed", "published", "last_worker", "last_worker_report", "execution.queue",
               "enqueue_status")


def _with_model_lists(models: dict[str, Any] | None) -> dict[str, Any]:
    """ClearML clients expect ``models.input`` and ``models.output`` lists on every task."""
    models = dict(models or {})
    return {**models, "input": models.get("input") or [], "output": models.get("output") or []}
# Sections every task has, empty when nothing set them: ClearML clients read into them unchecked
# (a dataset's runtime.version, a script's diff).
EMPTY_SECTIONS = {"execution": {}, "script": {}, "runtime": {}}
DEVELOPMENT_TAG = "development"
USER_PROPERTIES = "properties"
PUBLISHABLE = (st.COMPLETED, st.STOPPED, st.FAILED, st.CLOSED, st.PUBLISHING)
LIST_FILTERS = ("user", "project", "type", "status", "parent", "tags", "system_tags", "execution.queue")
# Filters by how few tasks they usually leave, for choosing the index a listing is served by.
SELECTIVITY = ("_id", "parent", "execution.queue", "project", "name", "user", "tags", "system_tags", "status",
               "type", "status_changed", "started", "completed", "last_update", "created")

@dataclasses.dataclass
class TaskMetrics:
    """What a batch of events says about one task: its highest iteration, and per (metric, variant)
    of its scalars the last, lowest and highest value."""
    last_iteration: int | None = None
    scalars: dict[tuple[str, str], tuple[float, float, float]] = dataclasses.field(default_factory=dict)

    def add_iteration(self, iteration: int) -> None:
        self.last_iteration = iteration if self.last_iteration is None else max(self.last_iteration, iteration)

    def add_scalar(self, metric: str, variant: str, value: float) -> None:
        _, low, high = self.scalars.get((metric, variant), (value, value, value))
        self.scalars[(metric, variant)] = (value, min(low, value), max(high, value))


# Other domains (events) register what they must do when a task is reset or deleted; each hook
# gets (company, task_id) and returns a small dict for the answer.
TaskHook = Callable[[str, str], dict]


def _storage_paths(keys: list[str] | str | None) -> list[str]:
    """API paths (with an optional '-' prefix) as stored paths, for order_by and only_fields."""
    if isinstance(keys, str):
        keys = [keys]
    return [("-" if k.startswith("-") else "") + storage_path(k.removeprefix("-")) for k in keys or [] if k]


def _config_key(name: str, field: str) -> str:
    """A configuration item's name as its stored key; a name no key can hold is a 400 naming ``field``."""
    return q.field_path(escape_key(name), field)


def references() -> dict[str, Any]:
    """The task fields that hold ids of other objects, and where those objects are (for
    ``only_fields`` such as ``project.name``)."""
    tasks, models = store_of(Task), store_of(Model)
    return {"project": store_of(Project), "user": store_of(User), "parent": tasks,
            "execution.queue": store_of(Queue), "models.input.model": models,
            "models.output.model": models, "company": store_of(Company)}


def _status_update(new_status: str, reason: str | None, message: str | None, sets: dict[str, Any] | None = None,
                   unsets: tuple[str, ...] = (), pull: dict[str, Any] | None = None) -> dict[str, Any]:
    """The write of a status change: the status, why, when, and what goes with it."""
    now = utcnow()
    update: dict[str, Any] = {"$set": {"status": new_status, "status_reason": reason or "",
                                       "status_message": message or "", "status_changed": now,
                                       "last_update": now, **(sets or {})}}
    if unsets:
        update["$unset"] = {k: "" for k in q.prune_nested(list(unsets))}
    if pull:
        update["$pull"] = pull
    return update


class TaskBLL:
    def __init__(self, queues: QueueEntries, projects: ProjectBLL, worker_timeout_sec: int = 600):
        self.queues = queues
        self.projects = projects
        self.worker_timeout_sec = worker_timeout_sec
        self.on_reset: list[TaskHook] = []
        self.on_delete: list[TaskHook] = []

    @property
    def store(self):
        return store_of(Task)

    # -- reads --------------------------------------------------------------------------------

    def readable(self, company: str, task_id: str, proj: dict | None = None) -> dict[str, Any]:
        """A task of the company or a public one; 400/101 otherwise (other companies' ids look missing)."""
        return access.readable(self.store, company, task_id, errors.bad_request.InvalidTaskId, proj)

    def writable_ids(self, company: str, task_ids: list[str]) -> set[str]:
        return access.writable_ids(self.store, company, task_ids)

    def writable(self, company: str, task_id: str) -> dict[str, Any]:
        return access.writable(self.store, company, task_id, errors.bad_request.InvalidTaskId, "tasks")

    def get_by_id(self, company: str, task_id: str) -> dict[str, Any]:
        return to_api(self.readable(company, task_id))

    # -- access for other domains (events, workers, projects): they never touch the tasks collection

    def count_in_projects(self, company: str, project_ids: list[str]) -> int:
        return placement.count(self.store, company, project_ids)

    def own(self, company: str, task_id: str, proj: dict | None = None) -> dict[str, Any] | None:
        """The company's own task (not a public one), or None."""
        return self.store.find_one({"_id": task_id, "company": company}, proj)

    def set_queue(self, company: str, task: dict[str, Any], queue_id: str) -> None:
        """The queue a queued task is in (it moved to another)."""
        self._set_fields(company, task, {"execution.queue": queue_id})

    def child_ids(self, company: str, parent: str) -> list[str]:
        """The ids of the tasks whose parent is this one."""
        return [d["_id"] for d in self.store.find({"parent": parent, "company": company}, {"_id": 1})]

    def ids_in_projects(self, company: str, project_ids: list[str]) -> list[str]:
        return [d["_id"] for d in placement.find(self.store, company, project_ids, {"_id": 1})]

    def move_between_projects(self, company: str, source: str, target: str) -> int:
        """Every task of ``source`` goes into ``target`` (a project merge); how many moved."""
        return placement.move_all(self.store, company, source, target)

    def detach_from_projects(self, company: str, project_ids: list[str]) -> int:
        """The tasks of these (deleted) projects stay, in no project; how many."""
        return placement.detach(self.store, company, project_ids)

    def delete_in_projects(self, company: str, project_ids: list[str]) -> int:
        """Delete the task records left in these projects as they are (no reset or delete hooks)."""
        return placement.delete(self.store, company, project_ids)

    def readable_many(self, company: str, task_ids: list[str], proj: dict[str, int]) -> dict[str, dict[str, Any]]:
        """The readable ones among ``task_ids`` (the ``readable`` rule, in one read), by id."""
        return access.readable_many(self.store, company, task_ids, proj)

    def record_worker_report(self, company: str, task_id: str, worker: str, when: Any) -> str | None:
        """A worker reports it runs this task: the task notes the worker; answers the task's project
        (None when the company has no such task)."""
        doc = self.store.update_and_read({"_id": task_id, "company": company},
                              {"$set": {"last_worker": worker, "last_worker_report": when}}, {"project": 1})
        return (doc or {}).get("project")

    def record_metrics(self, company: str, reports: dict[str, TaskMetrics]) -> None:
        """Fold a batch of events into the tasks' ``last_metrics`` (last, min and max value per metric
        and variant), ``last_iteration`` (the highest) and ``last_update``; one write per task."""
        ops = []
        for task_id, report in reports.items():
            sets: dict[str, Any] = {"last_update": utcnow()}
            mins: dict[str, float] = {}
            maxes: dict[str, Any] = {}
            if report.last_iteration is not None:
                maxes["last_iteration"] = report.last_iteration
            for (metric, variant), (last, low, high) in report.scalars.items():
                path = f"last_metrics.{metric_hash(metric)}.{metric_hash(variant)}"
                sets.update({f"{path}.metric": metric, f"{path}.variant": variant, f"{path}.value": last})
                mins[f"{path}.min_value"] = low
                maxes[f"{path}.max_value"] = high
            update: dict[str, Any] = {"$set": sets}
            if mins:
                update["$min"] = mins
            if maxes:
                update["$max"] = maxes
            ops.append(({"_id": task_id, "company": company}, update))
        self.store.update_each(ops)

    def get_all(self, company: str, data: dict[str, Any], ex: bool = False) -> list[dict[str, Any]]:
        """``ex``: answer as the ``*_ex`` endpoints do (see ``query.EX_OBJECTS``)."""
        query = self.build_query(company, data)
        skip, limit = q.page_window(data)
        sort = q.order_by(_storage_paths(data.get("order_by")), default=(("created", -1),))
        only_fields, wanted = q.split_references(data.get("only_fields"), references(),
                                                 q.EX_OBJECTS if ex else ())
        proj = q.projection(_storage_paths(only_fields))
        hint = self.index_hint(data, sort)
        docs = [to_api(d) for d in self.store.find_page(query, sort, skip, limit, proj, hint)]
        return q.dereference(docs, wanted, references(), company)

    @staticmethod
    def index_hint(data: dict[str, Any], sort: list[tuple[str, int]]) -> list[tuple[str, int]] | None:
        """The index for the most selective filter the request gives, else for the sort key.

        Hinted because SecantusDB's planner scans the collection for any filter document holding
        a predicate it cannot index (the hidden-tag ``$ne``, a regex, two ``$in``s); MongoDB's own
        choice for these shapes is the same index.
        """
        given = {storage_path(k) for k, v in data.items() if v not in (None, "", [])}
        present = [f for f in SELECTIVITY if f in given] + [k for k, _ in sort]
        return store_of(Task).index_hint(present)

    def build_query(self, company: str, data: dict[str, Any]) -> dict[str, Any]:
        if data.get("project") and data.get("include_subprojects"):
            projects = data["project"] if isinstance(data["project"], list) else [data["project"]]
            data = {**data, "project": self.projects.with_children(company, [p for p in projects if p])
                    + [p for p in projects if p is None]}
        return q.listing_filter(data, {"company": {"$in": [company, ""]}}, store=self.store, lists=LIST_FILTERS,
                                dates=DATE_FIELDS, text=("name", "comment", "id"), path=storage_path)

    def get_types(self, company: str, projects: list[str] | None) -> list[str]:
        return q.distinct_values(self.store, company, projects, "type")

    # -- create, clone, edit ------------------------------------------------------------------

    def _check_references(self, company: str, fields: dict[str, Any]) -> None:
        if fields.get("project"):
            self.projects.readable(company, fields["project"], {"_id": 1})
        if fields.get("parent"):
            try:
                self.readable(company, fields["parent"], {"_id": 1})
            except errors.bad_request.InvalidTaskId:
                raise errors.bad_request.InvalidTaskId("parent task not found", parent=fields["parent"]) from None

    def _section_fields(self, data: dict[str, Any], allowed: tuple[str, ...],
                        previous: dict[str, Any] | None = None) -> dict[str, Any]:
        fields = legacy_to_sections({k: copy.deepcopy(data[k]) for k in allowed if k in data},
                                    to_api(previous) if previous else None)
        if "output_dest" in data:
            fields["output.destination"] = data["output_dest"]
        return fields

    def validate(self, identity: Identity, data: dict[str, Any]) -> None:
        self._check_references(identity.company, data)

    def create(self, identity: Identity, data: dict[str, Any], stored: dict[str, Any] | None = None) -> str:
        """A new task; ``stored`` adds fields that other domains own (a report's text) in the same
        insert, so that no half-made record is ever seen."""
        fields = self._section_fields(data, CREATE_FIELDS)
        self._check_references(identity.company, fields)
        output = {"destination": fields.pop("output.destination")} if "output.destination" in fields else {}
        return self._insert_new(identity, {**fields, "output": output}, stored)

    def _insert_new(self, identity: Identity, fields: dict[str, Any], stored: dict[str, Any] | None = None) -> str:
        """Insert a new ``created`` task of the caller with these API fields (every new task, made
        or cloned, gets the same defaults here) plus ``stored`` as they are; answer its id."""
        now = utcnow()
        doc = {"_id": new_id(), "company": identity.company, "user": identity.user, "status": st.CREATED,
               "status_reason": "", "status_message": "", "status_changed": now, "created": now,
               "last_update": now, "output": {}, **EMPTY_SECTIONS, **to_storage(fields)}
        doc.update({k: [] for k in ("tags", "system_tags") if doc.get(k) is None})
        doc.update({k: {} for k in EMPTY_SECTIONS if doc[k] is None})
        doc["models"] = _with_model_lists(doc.get("models"))
        doc.update(stored or {})
        self.store.insert_one(doc)
        return doc["_id"]

    def clone(self, identity: Identity, data: dict[str, Any]) -> str:
        source = to_api(self.readable(identity.company, data["task"]))
        fields = {k: source[k] for k in ("name", "comment", "tags", "type", "parent", "project", "execution",
                                         "script", "hyperparams", "configuration", "container") if k in source}
        fields["models"] = _with_model_lists({"input": (source.get("models") or {}).get("input", [])})
        if isinstance(fields.get("execution"), dict):
            fields["execution"] = {k: v for k, v in fields["execution"].items() if k != "queue"}
        renames = {"new_task_name": "name", "new_task_comment": "comment", "new_task_tags": "tags",
                   "new_task_system_tags": "system_tags", "new_task_parent": "parent",
                   "new_task_project": "project", "new_task_hyperparams": "hyperparams",
                   "new_task_configuration": "configuration", "new_task_container": "container"}
        for key, field in renames.items():
            if key in data:
                fields[field] = data[key]
        if data.get("new_project_name") and not data.get("new_task_project"):
            fields["project"] = self.projects.ensure(identity, data["new_project_name"])
        if data.get("execution_overrides"):
            fields["execution"] = {**(fields.get("execution") or {}), **copy.deepcopy(data["execution_overrides"])}
            legacy_to_sections(fields, source)
        # A project or parent the caller names is always checked: unchecked, a clone could point at
        # another company's project or task. validate_references adds those copied from the source.
        named = {field: data[key] for key, field in (("new_task_project", "project"), ("new_task_parent", "parent"))
                 if data.get(key)}
        self._check_references(identity.company, fields if data.get("validate_references") else named)
        return self._insert_new(identity, fields)

    def _set_fields(self, company: str, task: dict[str, Any], sets: dict[str, Any],
                    expect_status: str | None = None) -> dict[str, Any]:
        if not sets:
            return {"updated": 0, "fields": {}}
        sets = {**sets, "last_update": utcnow()}
        flt: dict[str, Any] = {"_id": task["_id"], "company": company}
        if expect_status:
            flt["status"] = expect_status
        result = self.store.update_one(flt, {"$set": to_storage(sets)})
        if result.matched_count == 0:
            raise errors.bad_request.TaskStatusChanged(expected_status=expect_status)
        changes: dict[str, Any] = {}
        for key, value in sets.items():
            changes.update(dotted_changes(key, value) if key in ("execution", "script") else {key: value})
        return {"updated": 1, "fields": changes}

    def update(self, identity: Identity, data: dict[str, Any]) -> dict[str, Any]:
        task = self.writable(identity.company, data["task"])
        sets = {k: data[k] for k in UPDATE_FIELDS if k in data}
        if "output__error" in data:
            sets["output.error"] = data["output__error"]
        if "created" in sets:
            sets["created"] = q.parse_date(sets["created"], "created")
        self._check_references(identity.company, sets)
        return self._set_fields(identity.company, task, sets)

    def edit(self, identity: Identity, data: dict[str, Any]) -> dict[str, Any]:
        task = self.writable(identity.company, data["task"])
        force = bool(data.get("force"))
        if task["status"] != st.CREATED and not force:
            raise errors.bad_request.InvalidTaskStatus(
                "only created tasks can be edited (use force)", status=task["status"])
        if task["status"] == st.PUBLISHED and not force:
            raise errors.bad_request.TaskPublished(id=task["_id"])
        sets = self._section_fields(data, EDIT_FIELDS, previous=task)
        if "models" in sets:
            sets["models"] = _with_model_lists(sets["models"])
        self._check_references(identity.company, sets)
        return self._set_fields(identity.company, task, sets, expect_status=task["status"])

    def set_requirements(self, identity: Identity, task_id: str, requirements: dict[str, Any]) -> dict[str, Any]:
        task = self.writable(identity.company, task_id)
        if task["status"] == st.PUBLISHED:
            raise errors.bad_request.InvalidTaskStatus("published tasks cannot change", status=task["status"])
        return self._set_fields(identity.company, task, {"script.requirements": requirements})

    def ping(self, identity: Identity, task_id: str) -> None:
        task = self.writable(identity.company, task_id)
        self.store.update_one({"_id": task["_id"], "company": identity.company}, {"$set": {"last_update": utcnow()}})

    def add_or_update_artifacts(self, identity: Identity, task_id: str,
                                artifacts: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
        task = self.writable(identity.company, task_id)
        existing = ((task.get("execution") or {}).get("artifacts") or {})
        added, updated = [], []
        sets = {}
        for artifact in artifacts:
            art = {"mode": "output", **artifact}
            key = artifact_id(art)
            (updated if key in existing else added).append(art["key"])
            sets[f"execution.artifacts.{key}"] = art
        if sets:
            sets["last_update"] = utcnow()
            self.store.update_one({"_id": task["_id"], "company": identity.company}, {"$set": sets})
        return added, updated

    # -- hyper-parameters ---------------------------------------------------------------------

    def _check_params_editable(self, task: dict[str, Any], sections: set[str], force: bool) -> None:
        """Created tasks, or any with force; the 'properties' section (user properties, which the
        SDK sets on its own running task) in any status but published."""
        if force or task["status"] == st.CREATED:
            return
        if sections and sections <= {USER_PROPERTIES} and task["status"] != st.PUBLISHED:
            return
        raise errors.bad_request.InvalidTaskStatus("hyper-parameters of a task that is not created change only "
                                                   "with force", status=task["status"])

    def edit_hyper_params(self, identity: Identity, task_id: str, items: list[dict[str, Any]],
                          replace: str = "none", force: bool = False) -> int:
        task = self.writable(identity.company, task_id)
        self._check_params_editable(task, {i.get("section") or "" for i in items}, force)
        given: dict[str, dict[str, Any]] = {}
        for item in items:
            given.setdefault(escape_key(item["section"]), {})[escape_key(item["name"])] = item
        if replace == "all":
            update = {"$set": {"hyperparams": given}}
        elif replace == "section":
            update = {"$set": {f"hyperparams.{sec}": params for sec, params in given.items()}}
        else:
            update = {"$set": {f"hyperparams.{sec}.{name}": item for sec, params in given.items()
                               for name, item in params.items()}}
        if not update["$set"] and replace != "all":
            return 0
        if not isinstance(task.get("hyperparams"), dict):  # null: no nested $set below it
            self.store.update_one({"_id": task["_id"], "company": identity.company, "hyperparams": None},
                                 {"$set": {"hyperparams": {}}})
        update["$set"]["last_update"] = utcnow()
        return self.store.update_one({"_id": task["_id"], "company": identity.company}, update).modified_count

    def delete_hyper_params(self, identity: Identity, task_id: str, keys: list[dict[str, Any]],
                            force: bool = False) -> int:
        """Delete parameters by section and name; an empty name deletes the whole section."""
        task = self.writable(identity.company, task_id)
        self._check_params_editable(task, {k.get("section") or "" for k in keys}, force)
        unset = {}
        for key in keys:
            path = f"hyperparams.{escape_key(key['section'])}"
            unset[path + (f".{escape_key(key['name'])}" if key.get("name") else "")] = ""
        if not unset:
            return 0
        update = {"$unset": {k: "" for k in q.prune_nested(list(unset))}, "$set": {"last_update": utcnow()}}
        return self.store.update_one({"_id": task["_id"], "company": identity.company}, update).modified_count

    def get_hyper_params(self, company: str, task_ids: list[str]) -> list[dict[str, Any]]:
        docs = self.store.find({"_id": {"$in": task_ids}, "company": {"$in": [company, ""]}}, {"hyperparams": 1})
        return [{"task": d["_id"], "hyperparams": [
            {**item, "section": unescape_key(sec), "name": unescape_key(name)}
            for sec, params in (d.get("hyperparams") or {}).items() for name, item in params.items()]}
            for d in docs]

    # -- configuration ------------------------------------------------------------------------

    def get_configurations(self, company: str, task_ids: list[str], names: list[str] | None = None
                           ) -> list[dict[str, Any]]:
        proj = {f"configuration.{_config_key(n, 'names')}": 1 for n in names} if names else {"configuration": 1}
        docs = self.store.find({"_id": {"$in": task_ids}, "company": {"$in": [company, ""]}}, proj)
        return [{"task": d["_id"], "configuration": [{**item, "name": unescape_key(name)} for name, item in
                                                     sorted((d.get("configuration") or {}).items())]}
                for d in docs]

    def get_configuration_names(self, company: str, task_ids: list[str], skip_empty: bool = True
                                ) -> list[dict[str, Any]]:
        return [{"task": c["task"], "names": [i["name"] for i in c["configuration"]
                                              if not skip_empty or i.get("value")]}
                for c in self.get_configurations(company, task_ids)]

    def edit_configuration(self, identity: Identity, task_id: str, items: list[dict[str, Any]],
                           replace: bool = False, force: bool = False) -> int:
        task = self.writable(identity.company, task_id)
        self._check_params_editable(task, set(), force)
        given = {_config_key(i["name"], "configuration.name"): i for i in items}
        if replace:
            sets: dict[str, Any] = {"configuration": given}
        else:
            if not isinstance(task.get("configuration"), dict):  # null: no nested $set below it
                self.store.update_one({"_id": task["_id"], "company": identity.company, "configuration": None},
                                     {"$set": {"configuration": {}}})
            sets = {f"configuration.{name}": item for name, item in given.items()}
        if not sets:
            return 0
        return self.store.update_one({"_id": task["_id"], "company": identity.company},
                                    {"$set": {**sets, "last_update": utcnow()}}).modified_count

    def delete_configuration(self, identity: Identity, task_id: str, names: list[str], force: bool = False) -> int:
        task = self.writable(identity.company, task_id)
        self._check_params_editable(task, set(), force)
        present = [n for n in names if _config_key(n, "configuration") in (task.get("configuration") or {})]
        if not present:
            return 0
        self.store.update_one({"_id": task["_id"], "company": identity.company},
                             {"$unset": {f"configuration.{escape_key(n)}": "" for n in present},
                              "$set": {"last_update": utcnow()}})
        return len(present)

    # -- archive, tags, projects --------------------------------------------------------------

    def set_archived(self, identity: Identity, task_id: str, archived: bool) -> bool:
        """Archive (a queued task is dequeued first) or unarchive; whether the tag changed."""
        task = self.writable(identity.company, task_id)
        if archived and task["status"] == st.QUEUED:
            self.dequeue(identity, {"task": task_id})
        return tags.set_archived(self.store, task["_id"], archived)

    def update_tags(self, identity: Identity, ids: list[str], add: list[str] | None, remove: list[str] | None) -> int:
        return tags.update_tags(self.store, identity.company, ids, add, remove)

    def move(self, identity: Identity, ids: list[str], project: str | None, project_name: str | None) -> str | None:
        target = self.projects.destination(identity, project, project_name)
        return placement.move(self.store, identity.company, ids, target,
                              lambda task_id: self.writable(identity.company, task_id))

    # -- models of a task ---------------------------------------------------------------------

    def link_model(self, identity: Identity, task_id: str, kind: str, name: str, model_id: str,
                   iteration: int | None = None) -> dict[str, Any]:
        """Make ``model_id`` the task's ``kind`` (input/output) model called ``name`` (replacing one
        of that name). The first output model is also the legacy ``output.model``."""
        task = self.writable(identity.company, task_id)
        entries = [e for e in ((task.get("models") or {}).get(kind) or []) if e.get("name") != name]
        entries.append({"name": name, "model": model_id, "updated": utcnow()})
        sets: dict[str, Any] = {f"models.{kind}": entries}
        if kind == "output":
            sets["output.model"] = model_id
        else:
            sets["execution.model"] = model_id
        result = self._set_fields(identity.company, task, sets)
        if iteration is not None:
            self.raise_iteration(identity.company, task["_id"], iteration)
        return result

    def delete_models(self, identity: Identity, task_id: str, models: list[dict[str, str]]) -> dict[str, Any]:
        task = self.writable(identity.company, task_id)
        sets: dict[str, Any] = {}
        for kind in ("input", "output"):
            names = {m["name"] for m in models if m["type"] == kind}
            if names:
                current = (task.get("models") or {}).get(kind) or []
                sets[f"models.{kind}"] = [e for e in current if e.get("name") not in names]
        return self._set_fields(identity.company, task, sets)

    def tasks_using_model(self, company: str, model_id: str, kind: str, exclude: str | None = None) -> list[str]:
        # equality on indexed keys only (an `_id: {$ne}` beside them costs SecantusDB its index)
        flt = {"company": company, f"models.{kind}.model": model_id}
        return [d["_id"] for d in self.store.find(flt, {"_id": 1}).limit(101) if d["_id"] != exclude][:100]

    def unlink_model(self, company: str, model_id: str) -> int:
        """A deleted model leaves every task's model lists, and on those tasks the legacy single-model
        fields: one indexed equality per list (a top-level ``$or`` scans the company's tasks on
        SecantusDB). A legacy field naming the model on a task whose lists do not (written by an old
        client straight into ``output.model``) is left: indexing those fields too would slow every
        task write for a case no current client makes."""
        now = utcnow()
        touched: dict[str, None] = {}  # the tasks changed, in order, once each
        for kind in ("input", "output"):
            flt = {"company": company, f"models.{kind}.model": model_id}
            ids = [d["_id"] for d in self.store.find(flt, {"_id": 1})]
            if ids:
                self.store.update_many(flt, {"$pull": {f"models.{kind}": {"model": model_id}},
                                            "$set": {"last_update": now}})
                touched.update(dict.fromkeys(ids))
        ids = list(touched)
        for start in range(0, len(ids), 200):  # short $in lists: SecantusDB matches them in quadratic time
            for field in ("output.model", "execution.model"):
                self.store.update_many({"_id": {"$in": ids[start:start + 200]}, "company": company, field: model_id},
                                      {"$unset": {field: ""}})
        return len(touched)

    def status_of(self, company: str, task_id: str) -> str | None:
        doc = access.by_id(self.store, task_id, (company,), {"status": 1})
        return doc["status"] if doc else None

    def raise_iteration(self, company: str, task_id: str, iteration: int) -> None:
        self.store.update_one({"_id": task_id, "company": company}, {"$max": {"last_iteration": iteration}})

    def publish_if_possible(self, identity: Identity, task_id: str, force: bool = False) -> dict[str, Any] | None:
        """Publish the task when its status allows it (any status but published with force); else None."""
        status = self.status_of(identity.company, task_id)
        if status is None or status == st.PUBLISHED:
            return None
        if not force and status not in PUBLISHABLE:
            return None
        return self.publish(identity, {"task": task_id, "force": force})

    def make_public(self, company: str, ids: list[str]) -> int:
        result = self.store.update_many({"_id": {"$in": ids}, "company": company},
                                       {"$set": {"company": "", "company_origin": company}})
        return result.modified_count

    def make_private(self, company: str, ids: list[str]) -> int:
        result = self.store.update_many({"_id": {"$in": ids}, "company": "", "company_origin": company},
                                       {"$set": {"company": company}, "$unset": {"company_origin": ""}})
        return result.modified_count

    # -- status changes -----------------------------------------------------------------------

    def change_status(self, company: str, task: dict[str, Any], new_status: str, *, force: bool = False,
                      reason: str | None = None, message: str | None = None, allow_same: bool = True,
                      sets: dict[str, Any] | None = None, unsets: tuple[str, ...] = (),
                      pull: dict[str, Any] | None = None, check: bool = True) -> dict[str, Any]:
        """One conditional update from the task's current status to ``new_status``."""
        current = task["status"]
        if check:
            st.check_transition(current, new_status, force, allow_same)
        update = _status_update(new_status, reason, message, sets, unsets, pull)
        result = self.store.update_one({"_id": task["_id"], "company": company, "status": current}, update)
        if result.matched_count == 0:
            raise errors.bad_request.TaskStatusChanged(
                f"expected {current}; someone changed it first", id=task["_id"])
        return {"updated": 1, "fields": {**update["$set"], **{k: None for k in unsets}}}

    def started(self, identity: Identity, data: dict[str, Any]) -> dict[str, Any]:
        task = self.writable(identity.company, data["task"])
        force = bool(data.get("force"))
        running = task["status"] == st.IN_PROGRESS
        sets = {} if running and task.get("started") else {"started": utcnow()}
        result = self.change_status(identity.company, task, st.IN_PROGRESS, force=force, allow_same=False,
                                    reason=data.get("status_reason"), message=data.get("status_message"),
                                    sets=sets, unsets=() if running else ("completed",))
        return {"started": 1, **result}

    def _finish(self, identity: Identity, data: dict[str, Any], new_status: str) -> dict[str, Any]:
        task = self.writable(identity.company, data["task"])
        return self.change_status(identity.company, task, new_status, force=bool(data.get("force")),
                                  reason=data.get("status_reason"), message=data.get("status_message"),
                                  sets={"completed": utcnow()})

    def stopped(self, identity: Identity, data: dict[str, Any]) -> dict[str, Any]:
        return self._finish(identity, data, st.STOPPED)

    def failed(self, identity: Identity, data: dict[str, Any]) -> dict[str, Any]:
        return self._finish(identity, data, st.FAILED)

    def completed(self, identity: Identity, data: dict[str, Any]) -> dict[str, Any]:
        result = self._finish(identity, data, st.COMPLETED)
        if data.get("publish"):
            published = self.publish(identity, {"task": data["task"], "force": data.get("force")})
            result["fields"].update(published["fields"])
        return result

    def close(self, identity: Identity, data: dict[str, Any]) -> dict[str, Any]:
        task = self.writable(identity.company, data["task"])
        return self.change_status(identity.company, task, st.CLOSED, force=bool(data.get("force")),
                                  reason=data.get("status_reason"), message=data.get("status_message"))

    def publish(self, identity: Identity, data: dict[str, Any]) -> dict[str, Any]:
        task = self.writable(identity.company, data["task"])
        if not data.get("force") and task["status"] not in PUBLISHABLE:
            raise errors.bad_request.InvalidTaskStatus(
                f"cannot change status from {task['status']} to published", current_status=task["status"],
                new_status=st.PUBLISHED)
        return self.change_status(identity.company, task, st.PUBLISHED, force=bool(data.get("force")),
                                  reason=data.get("status_reason"), message=data.get("status_message"),
                                  sets={"published": utcnow()})

    def _has_live_worker(self, company: str, task_id: str) -> bool:
        since = utcnow() - timedelta(seconds=self.worker_timeout_sec)
        return store_of(Worker).count_documents(
            {"company": company, "task": task_id, "last_activity_time": {"$gte": since}}, limit=1) > 0

    def stop(self, identity: Identity, data: dict[str, Any]) -> dict[str, Any]:
        """Stop a task: a queued one leaves its queue; one no live worker runs (or forced, or a
        development run) stops at once; one a live worker runs is asked to stop, and the worker (or
        the SDK) reports ``stopped`` itself."""
        task = self.writable(identity.company, data["task"])
        force = bool(data.get("force"))
        reason = data.get("status_reason") or "stopped"
        message = f"Stopped by {identity.user_name or identity.user}"
        if task["status"] == st.QUEUED:
            return self._stop_queued(identity.company, task, force, reason, message)
        if not force and task["status"] != st.IN_PROGRESS:
            st.check_transition(task["status"], st.STOPPED)
        if force or DEVELOPMENT_TAG in (task.get("system_tags") or []) or \
                not self._has_live_worker(identity.company, task["_id"]):
            return self.change_status(identity.company, task, st.STOPPED, force=True, reason=reason,
                                      message=message, sets={"completed": utcnow()})
        return self.change_status(identity.company, task, task["status"], check=False, reason=reason,
                                  message="stopping")

    def _stop_queued(self, company: str, task: dict[str, Any], force: bool, reason: str, message: str
                     ) -> dict[str, Any]:
        queue = (task.get("execution") or {}).get("queue")
        result = self.change_status(company, task, st.STOPPED, force=force, reason=reason, message=message,
                                    unsets=("execution.queue",))
        if queue:
            self.queues.remove_entry(company, queue, task["_id"])
        else:
            self.queues.remove_task_everywhere(company, task["_id"])
        return result

    def reset(self, identity: Identity, data: dict[str, Any]) -> dict[str, Any]:
        task = self.writable(identity.company, data["task"])
        force = bool(data.get("force"))
        if task["status"] == st.PUBLISHED and not force:
            raise errors.bad_request.InvalidTaskStatus("published tasks can be reset only with force",
                                                       current_status=task["status"], new_status=st.CREATED)
        dequeued = self.queues.remove_task_everywhere(identity.company, task["_id"])
        cleared = ("execution", "script") if data.get("clear_all") else ()
        unsets = tuple(k for k in RESET_UNSET if k.split(".", 1)[0] not in cleared)
        result = self.change_status(identity.company, task, st.CREATED, check=False,
                                    reason=data.get("status_reason") or "reset",
                                    message=data.get("status_message") or "reset", unsets=unsets,
                                    sets={"models.output": [], "runtime": {},
                                          **{k: {} for k in cleared}})
        events: dict[str, Any] = {}
        for hook in self.on_reset:
            events.update(hook(identity.company, task["_id"]))
        return {**result, "dequeued": {"removed": dequeued}, "events": events, "deleted_models": 0}

    def delete_record(self, identity: Identity, data: dict[str, Any]) -> dict[str, Any]:
        """The task's own record, its queue entries and its events (the ``on_delete`` hooks); its
        children lose their parent. Only ``bll/tasks/deletion.OwnedDeletion.delete_task`` calls this:
        it also deletes what the task owns (output models, files), so that is the one way to delete a
        task, whichever domain asks (tasks, reports, pipeline runs, projects)."""
        task = self.writable(identity.company, data["task"])
        archived = ARCHIVED_TAG in (task.get("system_tags") or [])
        if task["status"] != st.CREATED and not archived and not data.get("force"):
            raise errors.bad_request.TaskCannotBeDeleted(
                f"status is {task['status']}; only created or archived tasks are deleted without force",
                id=task["_id"])
        self.queues.remove_task_everywhere(identity.company, task["_id"])
        children = self.store.update_many({"company": identity.company, "parent": task["_id"]},
                                         {"$unset": {"parent": ""}, "$set": {"last_update": utcnow()}})
        events: dict[str, Any] = {}
        for hook in self.on_delete:
            events.update(hook(identity.company, task["_id"]))
        deleted = self.store.delete_one({"_id": task["_id"], "company": identity.company}).deleted_count
        return {"deleted": bool(deleted), "updated_children": children.modified_count, "updated_models": 0,
                "events": events}

    # -- queues -------------------------------------------------------------------------------

    def _resolve_queue(self, identity: Identity, data: dict[str, Any]) -> str:
        """The queue ``data`` names (by id: ``add_entry`` finds it, or answers 701), else by name (made on
        first use), else the company's default queue."""
        if data.get("queue"):
            return data["queue"]
        if data.get("queue_name"):
            found = self.queues.find_by_name(identity.company, data["queue_name"])
            if found:
                return found["_id"]
            try:
                return self.queues.create(identity.company, identity.user, data["queue_name"])
            except errors.bad_request.ExpectedUniqueData:
                return self.queues.find_by_name(identity.company, data["queue_name"])["_id"]
        return self.queues.default_queue(identity.company)["_id"]

    def enqueue(self, identity: Identity, data: dict[str, Any]) -> dict[str, Any]:
        task = self.writable(identity.company, data["task"])
        force = bool(data.get("force"))
        st.check_transition(task["status"], st.QUEUED, force, allow_same=False)  # before the entry is made
        queue_id = self._resolve_queue(identity, data)
        self.queues.add_entry(identity.company, queue_id, task["_id"])
        try:
            result = self.change_status(
                identity.company, task, st.QUEUED, check=False,
                reason=data.get("status_reason"), message=data.get("status_message"),
                sets={"execution.queue": queue_id, "enqueue_status": task["status"]},
                pull={"system_tags": DEVELOPMENT_TAG})
        except Exception:
            self.queues.remove_entry(identity.company, queue_id, task["_id"])  # no queue entry without the task
            raise
        return {"queued": 1, **result}

    def dequeue(self, identity: Identity, data: dict[str, Any]) -> dict[str, Any]:
        try:
            task = self.writable(identity.company, data["task"])
        except errors.bad_request.InvalidTaskId:
            removed = self.queues.remove_task_everywhere(identity.company, data["task"])
            return {"dequeued": removed, "updated": 0, "fields": {}}
        if task["status"] not in (st.QUEUED, st.IN_PROGRESS) and not data.get("force"):
            raise errors.bad_request.InvalidTaskStatus("only queued or running tasks can be dequeued",
                                                       current_status=task["status"])
        queue = (task.get("execution") or {}).get("queue")
        removed = self.queues.remove_entry(identity.company, queue, task["_id"]) if queue else \
            self.queues.remove_task_everywhere(identity.company, task["_id"])
        new_status = data.get("new_status") or task.get("enqueue_status") or st.CREATED
        if new_status == st.QUEUED:
            new_status = st.CREATED
        result = self.change_status(identity.company, task, new_status, check=False,
                                    reason=data.get("status_reason") or "dequeued",
                                    message=data.get("status_message"),
                                    unsets=("execution.queue", "enqueue_status"))
        return {"dequeued": max(removed, 1 if task["status"] == st.QUEUED else 0), **result}

    # -- background ---------------------------------------------------------------------------

    def stop_non_responsive(self, max_idle_sec: int) -> int:
        """Stop in_progress tasks with no update for ``max_idle_sec`` (ClearML: 2 hours)."""
        st.check_transition(st.IN_PROGRESS, st.STOPPED)
        cutoff = utcnow() - timedelta(seconds=max_idle_sec)
        why = "Forced stop (non-responsive)"
        result = self.store.update_many(  # all companies: the sweep is server-wide, as in ClearML
            {"status": st.IN_PROGRESS, "last_update": {"$lt": cutoff}},
            _status_update(st.STOPPED, why, why, {"completed": utcnow()}))
        return result.modified_count
