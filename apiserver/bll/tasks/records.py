"""Owns task records: listing (ClearML's filter language over the tasks store), creating, cloning and
editing a task, its tags, project and models, and public/private marks (archiving, which dequeues,
is the lifecycle's)."""

from __future__ import annotations

import copy
from typing import Any

from apiserver.apierrors import errors
from apiserver.bll import access, placement, tags
from apiserver.bll import query as q
from apiserver.bll.auth.identity import Identity
from apiserver.bll.references import dereference, split_references
from apiserver.bll.tasks import status as st
from apiserver.bll.tasks.base import TaskBase
from apiserver.bll.tasks.fields import (
    DATE_FIELDS,
    legacy_input_models,
    legacy_to_sections,
    storage_path,
    to_api,
    to_storage,
)
from apiserver.bll.tasks.lifecycle import DEVELOPMENT_TAG
from apiserver.database.model.auth import Company, User
from apiserver.database.model.base import new_id, utcnow
from apiserver.database.model.model import Model
from apiserver.database.model.project import Project
from apiserver.database.model.queue import Queue
from apiserver.database.model.task import Task
from apiserver.database.store import store_of

CREATE_FIELDS = ("name", "tags", "system_tags", "type", "comment", "parent", "project", "execution", "script",
                 "hyperparams", "configuration", "runtime", "container", "models")


EDIT_FIELDS = (*CREATE_FIELDS, "status")  # as ClearML: an edit of a created task (or forced) may set its status


UPDATE_FIELDS = ("name", "tags", "system_tags", "comment", "project", "created")


def _with_model_lists(models: dict[str, Any] | None) -> dict[str, Any]:
    """ClearML clients expect ``models.input`` and ``models.output`` lists on every task."""
    models = dict(models or {})
    return {**models, "input": models.get("input") or [], "output": models.get("output") or []}


# How hyper-parameter values are ordered (ClearML's collation for them): numbers in the strings as numbers.
NUMERIC_COLLATION = {"locale": "en_US", "numericOrdering": True}
# What a task's link to a deleted model reads (ClearML's mark): the link stays, the id says it is gone.
DELETED_MODEL_PREFIX = "__DELETED__"
# What a clone does not copy of its source's system tags.
CLONE_DROPS_SYSTEM_TAGS = (DEVELOPMENT_TAG, tags.ARCHIVED_TAG)
# Sections every task has, empty when nothing set them: ClearML clients read into them unchecked
# (a dataset's runtime.version, a script's diff).
EMPTY_SECTIONS = {"execution": {}, "script": {}, "runtime": {}}


LIST_FILTERS = ("user", "project", "type", "status", "parent", "tags", "system_tags", "execution.queue")


# Filters by how few tasks they usually leave, for choosing the index a listing is served by.
SELECTIVITY = ("_id", "parent", "execution.queue", "project", "name", "user", "tags", "system_tags", "status",
               "type", "status_changed", "started", "completed", "last_update", "created")


def _storage_paths(keys: list[str] | str | None) -> list[str]:
    """API paths (with an optional '-' prefix) as stored paths, for order_by and only_fields."""
    if isinstance(keys, str):
        keys = [keys]
    return [("-" if k.startswith("-") else "") + storage_path(k.removeprefix("-")) for k in keys or [] if k]


def references() -> dict[str, Any]:
    """The task fields that hold ids of other objects, and where those objects are (for
    ``only_fields`` such as ``project.name``)."""
    tasks, models = store_of(Task), store_of(Model)
    return {"project": store_of(Project), "user": store_of(User), "parent": tasks,
            "execution.queue": store_of(Queue), "models.input.model": models,
            "models.output.model": models, "company": store_of(Company)}


class TaskRecords(TaskBase):
    """Listing, creating, cloning and editing tasks."""

    def get_all(self, company: str, data: dict[str, Any], ex: bool = False) -> list[dict[str, Any]]:
        """``ex``: answer as the ``*_ex`` endpoints do (see ``references.split_references``)."""
        query = self.build_query(company, data)
        skip, limit = q.page_window(data)
        sort = q.order_by(_storage_paths(data.get("order_by")), default=(("created", -1),))
        only_fields, wanted = split_references(data.get("only_fields"), references(), ex)
        proj = q.projection(_storage_paths(only_fields))
        hint = self.index_hint(data, sort)
        # a parameter orders by its value, numbers in it as numbers ('2' before '11'), as ClearML orders them
        sort = [(f"{key}.value" if key.startswith("hyperparams.") and key.count(".") == 2 else key, way)
                for key, way in sort]
        numeric = any(key.startswith("hyperparams.") for key, _ in sort)
        page = self.store.find_page(query, sort, skip, limit, proj, hint, NUMERIC_COLLATION if numeric else None)
        docs = [to_api(d) for d in self.progress.merge(list(page), proj)]
        return dereference(docs, wanted, references(), company)

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
                                patterns=("name", "comment"),
                                dates=DATE_FIELDS, text=("name", "comment", "id"), path=storage_path)

    def get_types(self, company: str, projects: list[str] | None) -> list[str]:
        return self.distinct_values(company, projects, "type")

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
        links = legacy_input_models(fields)
        if links is not None:
            fields["models"] = {**(fields.get("models") or {}), "input": links}
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
            if isinstance(fields["execution"].get("artifacts"), list):  # a clone has not produced anything yet
                fields["execution"]["artifacts"] = [a for a in fields["execution"]["artifacts"]
                                                    if a.get("mode", "output") != "output"]
        renames = {"new_task_name": "name", "new_task_comment": "comment", "new_task_tags": "tags",
                   "new_task_system_tags": "system_tags", "new_task_parent": "parent",
                   "new_task_project": "project", "new_task_hyperparams": "hyperparams",
                   "new_task_configuration": "configuration", "new_task_container": "container"}
        for key, field in renames.items():
            if key in data:
                fields[field] = data[key]
        if data.get("new_project_name") and not data.get("new_task_project"):
            fields["project"] = self.projects.ensure(identity, data["new_project_name"])
        if "system_tags" not in fields:  # a clone is no development run and not archived
            fields["system_tags"] = [t for t in source.get("system_tags") or [] if t not in CLONE_DROPS_SYSTEM_TAGS]
        overrides = copy.deepcopy(data.get("execution_overrides") or {})
        if overrides:
            fields["execution"] = {**(fields.get("execution") or {}), **overrides}
            legacy_to_sections(fields, source)
            links = legacy_input_models({"execution": overrides})
            if links is not None:
                fields["models"]["input"] = links
        # A project, parent or input model the caller names is always checked: unchecked, a clone could
        # point at another company's objects. validate_references adds those copied from the source.
        named = {field: data[key] for key, field in (("new_task_project", "project"), ("new_task_parent", "parent"))
                 if data.get(key)}
        self._check_references(identity.company, fields if data.get("validate_references") else named)
        if data.get("validate_references") or overrides.get("model"):  # as ClearML (create takes any id)
            for link in fields["models"]["input"]:
                access.readable(store_of(Model), identity.company, link.get("model"),
                                errors.bad_request.InvalidModelId, {"_id": 1})
        return self._insert_new(identity, fields)

    def update(self, identity: Identity, data: dict[str, Any]) -> dict[str, Any]:
        task = self.writable(identity.company, data["task"])
        sets = {k: data[k] for k in UPDATE_FIELDS if k in data}
        if "output__error" in data:
            sets["output.error"] = data["output__error"]
        if "created" in sets:
            sets["created"] = q.parse_date(sets["created"], "created")
        self._check_references(identity.company, sets)
        return self.set_fields(identity.company, task, sets)

    def edit(self, identity: Identity, data: dict[str, Any]) -> dict[str, Any]:
        task = self.writable(identity.company, data["task"])
        force = bool(data.get("force"))
        if task["status"] != st.CREATED and not force:
            raise errors.bad_request.InvalidTaskStatus(
                "only created tasks can be edited (use force)", status=task["status"])
        if task["status"] == st.PUBLISHED and not force:
            raise errors.bad_request.TaskPublished(id=task["_id"])
        sets = self._section_fields(data, EDIT_FIELDS, previous=task)
        links = legacy_input_models(sets)
        if "models" in sets:
            sets["models"] = _with_model_lists({**sets["models"], **({} if links is None else {"input": links})})
        elif links is not None:
            sets["models.input"] = links
        self._check_references(identity.company, sets)
        return self.set_fields(identity.company, task, sets, expect_status=task["status"])

    def set_requirements(self, identity: Identity, task_id: str, requirements: dict[str, Any]) -> dict[str, Any]:
        task = self.writable(identity.company, task_id)
        if task["status"] == st.PUBLISHED:
            raise errors.bad_request.InvalidTaskStatus("published tasks cannot change", status=task["status"])
        return self.set_fields(identity.company, task, {"script.requirements": requirements})

    def ping(self, identity: Identity, task_id: str) -> None:
        task = self.writable(identity.company, task_id)
        self.store.update_one({"_id": task["_id"], "company": identity.company}, {"$set": {"last_update": utcnow()}})

    def update_tags(self, identity: Identity, ids: list[str], add: list[str] | None, remove: list[str] | None) -> int:
        return tags.update_tags(self.store, identity.company, ids, add, remove)

    def move(self, identity: Identity, ids: list[str], project: str | None, project_name: str | None) -> str | None:
        target = self.projects.destination(identity, project, project_name)
        return placement.move(self.store, identity.company, ids, target,
                              lambda task_id: self.writable(identity.company, task_id))

    def link_model(self, identity: Identity, task_id: str, kind: str, name: str, model_id: str,
                   iteration: int | None = None) -> dict[str, Any]:
        """Make ``model_id`` the task's ``kind`` (input/output) model called ``name`` (replacing one
        of that name). The first output model is also the legacy ``output.model``."""
        task = self.writable(identity.company, task_id)
        entry = {"name": name, "model": model_id, "updated": utcnow()}
        current = (task.get("models") or {}).get(kind) or []
        entries = [entry if e.get("name") == name else e for e in current]  # replaced where it stood
        if entry not in entries:
            entries.append(entry)
        sets: dict[str, Any] = {f"models.{kind}": entries}
        if kind == "output":
            sets["output.model"] = model_id
        else:
            sets["execution.model"] = model_id
        result = self.set_fields(identity.company, task, sets)
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
        return self.set_fields(identity.company, task, sets)

    def tasks_using_model(self, company: str, model_id: str, kind: str, exclude: str | None = None) -> list[str]:
        # equality on indexed keys only (an `_id: {$ne}` beside them costs SecantusDB its index)
        flt = {"company": company, f"models.{kind}.model": model_id}
        return [d["_id"] for d in self.store.find(flt, {"_id": 1}).limit(101) if d["_id"] != exclude][:100]

    def unlink_model(self, company: str, model_id: str) -> int:
        """A deleted model leaves the tasks that link it, as in ClearML: a task using it as input, and
        a published task that created it (published tasks never change otherwise), keep the link with
        the id marked ``__DELETED__<id>`` (the published one also an ``output.error``); other tasks
        drop it. The legacy single-model fields naming it are unset. One indexed equality per list (a
        top-level ``$or`` scans the company's tasks on SecantusDB); a legacy field naming the model on
        a task whose lists do not (written by an old client straight into ``output.model``) is left:
        indexing those fields too would slow every task write for a case no current client makes."""
        now = utcnow()
        marked = {"$set": {"last_update": now}}
        touched: dict[str, None] = {}  # the tasks changed, in order, once each
        for kind in ("input", "output"):
            flt = {"company": company, f"models.{kind}.model": model_id}
            ids = [d["_id"] for d in self.store.find(flt, {"_id": 1})]
            if not ids:
                continue
            mark = {"$set": {f"models.{kind}.$[link].model": DELETED_MODEL_PREFIX + model_id, "last_update": now}}
            if kind == "input":
                self.store.update_many(flt, mark, array_filters=[{"link.model": model_id}])
            else:
                mark["$set"]["output.error"] = f"model deleted on {now.isoformat()}"
                self.store.update_many({**flt, "status": st.PUBLISHED}, mark, array_filters=[{"link.model": model_id}])
                self.store.update_many({**flt, "status": {"$ne": st.PUBLISHED}},
                                       {"$pull": {"models.output": {"model": model_id}}, **marked})
            touched.update(dict.fromkeys(ids))
        ids = list(touched)
        for start in range(0, len(ids), 200):  # short $in lists: SecantusDB matches them in quadratic time
            for field in ("output.model", "execution.model"):
                self.store.update_many({"_id": {"$in": ids[start:start + 200]}, "company": company, field: model_id},
                                      {"$unset": {field: ""}})
        return len(touched)

    def set_public(self, company: str, ids: list[str], public: bool) -> int:
        return access.set_public(self.store, company, ids, public, errors.bad_request.InvalidTaskId)
