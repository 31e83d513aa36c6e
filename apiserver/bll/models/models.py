"""Owns ClearML's model records: creating and editing them, the ready (published) and archived
states, their links to tasks and projects, listing, metadata and deletion (files included).

A model is readable by its company (and by everyone when public, company ""), writable only by
its company. Other companies' model ids look missing (400/201), as for tasks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from apiserver.apierrors import errors
from apiserver.bll import access, metadata, placement, tags
from apiserver.bll import query as q
from apiserver.bll.auth.identity import Identity
from apiserver.bll.batch import run_batch
from apiserver.bll.files.files import FileBLL
from apiserver.bll.projects.projects import ProjectBLL
from apiserver.bll.references import dereference, split_references
from apiserver.bll.tasks import status as st
from apiserver.bll.tasks.base import record_metrics
from apiserver.bll.tasks.fields import last_metrics_to_api, unescape_key
from apiserver.bll.tasks.tasks import TaskBLL, TaskMetrics
from apiserver.database.model.auth import Company, User
from apiserver.database.model.base import date_fields, new_id, utcnow
from apiserver.database.model.model import Model
from apiserver.database.model.project import Project
from apiserver.database.model.task import Task
from apiserver.database.store import store_of

# Fields create/edit/update take as they are.
CREATE_FIELDS = ("name", "uri", "comment", "tags", "system_tags", "framework", "design", "labels", "ready",
                 "project", "parent", "task")
EDIT_FIELDS = CREATE_FIELDS
UPDATE_FIELDS = ("name", "comment", "tags", "system_tags", "ready", "ui_cache", "project", "task")
LIST_FILTERS = ("user", "project", "task", "framework", "uri", "tags", "system_tags")
DATE_FIELDS = date_fields(Model)  # the model document declares them
SELECTIVITY = ("_id", "task", "uri", "project", "name", "user", "tags", "system_tags", "framework", "ready",
               "created", "last_update")


def to_api(doc: dict[str, Any]) -> dict[str, Any]:
    out = q.api_id(doc)
    out.pop("company_origin", None)
    if isinstance(out.get("last_metrics"), dict):
        out["last_metrics"] = last_metrics_to_api(out["last_metrics"])
    return metadata.shown(out)


def references() -> dict[str, Any]:
    """The model fields that hold ids of other objects, and where those are (``only_fields``)."""
    return {"project": store_of(Project), "user": store_of(User), "task": store_of(Task),
            "parent": store_of(Model), "company": store_of(Company)}


def _reading_labels(only_fields: list[str] | None) -> tuple[list[str] | None, bool]:
    """``only_fields`` made to read ``labels`` too (``include_stats`` counts them), and whether labels
    were added, so that only an added copy is dropped from the answer: an inclusion lacking them gets
    them, an exclusion of them loses it; every field, an exclusion of others, or labels named stay."""
    fields = [f[:-2] if f.endswith(".*") else f for f in only_fields or []]
    if not fields or "*" in fields or "labels" in fields:
        return only_fields, False
    if "-labels" in fields:
        return [f for f, plain in zip(only_fields, fields, strict=True) if plain != "-labels"], True
    if all(f.startswith("-") for f in fields):
        return only_fields, False
    return [*only_fields, "labels"], True


class ModelBLL:
    def __init__(self, tasks: TaskBLL, projects: ProjectBLL, files: FileBLL):
        self.tasks = tasks
        self.projects = projects
        self.files = files
        # Other domains (events) register what they keep of a model: each hook gets (company, model id)
        # when the model is deleted, deletes that, and returns the file URLs it pointed at.
        self.on_delete: list[Callable[[str, str], list[str]]] = []

    @property
    def store(self):
        return store_of(Model)

    # -- reads --------------------------------------------------------------------------------

    def readable(self, company: str, model_id: str, proj: dict | None = None) -> dict[str, Any]:
        return access.readable(self.store, company, model_id, errors.bad_request.InvalidModelId, proj)

    def writable(self, company: str, model_id: str) -> dict[str, Any]:
        """As ClearML, a public model is answered as one the caller cannot find (400/201)."""
        return access.writable(self.store, company, model_id, errors.bad_request.InvalidModelId, "models",
                               public_missing=True)

    def record_metrics(self, company: str, reports: dict[str, TaskMetrics]) -> set[str]:
        """Events reported for models (model_event) recorded on them as a task's are on it
        (``TaskBLL.record_metrics``: last_metrics, last_iteration, last_update); returns the models written,
        those of the caller's company (a public model is not the caller's to report on)."""
        return record_metrics(self.store, company, reports)

    def set_public(self, company: str, ids: list[str], public: bool) -> int:
        return access.set_public(self.store, company, ids, public, errors.bad_request.InvalidModelId)

    def get_by_id(self, company: str, model_id: str) -> dict[str, Any]:
        return to_api(self.readable(company, model_id))

    def get_by_task_id(self, company: str, task_id: str) -> dict[str, Any]:
        """The task's output model: the last one it lists, else its legacy output.model."""
        task = self.tasks.readable(company, task_id, {"models": 1, "output": 1})
        outputs = (task.get("models") or {}).get("output") or []
        model_id = outputs[-1]["model"] if outputs else (task.get("output") or {}).get("model")
        if not model_id:
            raise errors.bad_request.InvalidModelId("the task has no output model", task=task_id)
        return self.get_by_id(company, model_id)

    def build_query(self, company: str, data: dict[str, Any]) -> dict[str, Any]:
        scope = {"company": {"$in": [company, ""]} if data.get("allow_public", True) else company}
        if data.get("project") and data.get("include_subprojects"):
            data = {**data, "project": self.projects.with_children(company, data["project"])}
        query = q.listing_filter(data, scope, store=self.store, lists=LIST_FILTERS, dates=DATE_FIELDS,
                                 text=("name", "comment", "id"))
        if data.get("ready") is not None:
            query = q.combine(query, {"ready": True} if data["ready"] else {"ready": {"$ne": True}})
        return query

    def get_all(self, company: str, data: dict[str, Any], ex: bool = False) -> list[dict[str, Any]]:
        """ClearML's listing language and paging, as for tasks (see bll.query); ``ex`` as there."""
        query = self.build_query(company, data)
        skip, limit = q.page_window(data)
        sort = q.order_by(data.get("order_by"), q.FIELD_IDS, default=(("created", -1),))
        refs = references()
        only_fields, wanted = split_references(data.get("only_fields"), refs, ex)
        stats = ex and bool(data.get("include_stats"))
        read_fields, added_labels = _reading_labels(only_fields) if stats else (only_fields, False)
        proj = q.projection(read_fields, q.FIELD_IDS)
        given = [q.FIELD_IDS.get(k, k) for k, v in data.items() if v not in (None, "", [])]
        hint = store_of(Model).index_hint([f for f in SELECTIVITY if f in given] + [k for k, _ in sort])
        docs = [to_api(d) for d in self.store.find_page(query, sort, skip, limit, proj, hint)]
        if stats:  # ClearML's model statistics: how many labels it has
            for doc in docs:
                labels = doc.pop("labels", None) if added_labels else doc.get("labels")
                doc["stats"] = {"labels_count": len(labels or {})}
        return dereference(docs, wanted, refs, company)

    def get_frameworks(self, company: str, projects: list[str] | None) -> list[str]:
        return q.distinct_values(self.store, company, projects, "framework")

    # -- create and change --------------------------------------------------------------------

    def _check_references(self, company: str, fields: dict[str, Any]) -> None:
        if fields.get("project"):
            self.projects.readable(company, fields["project"], {"_id": 1})
        if fields.get("task"):
            self.tasks.readable(company, fields["task"], {"_id": 1})
        if fields.get("parent"):
            try:
                self.readable(company, fields["parent"], {"_id": 1})
            except errors.bad_request.InvalidModelId:
                raise errors.bad_request.InvalidModelId("parent model not found", parent=fields["parent"]) from None

    def _insert(self, identity: Identity, fields: dict[str, Any], public: bool = False) -> str:
        now = utcnow()
        doc = {"_id": new_id(), "company": "" if public else identity.company, "user": identity.user,
               "created": now, "last_update": now, "tags": [], "system_tags": [], "ready": False, **fields}
        if public:
            doc["company_origin"] = identity.company
        self.store.insert_one(doc)
        return doc["_id"]

    def create(self, identity: Identity, data: dict[str, Any]) -> str:
        # ready unless told otherwise, as ClearML's server creates models (the SDK always says)
        fields = {"ready": True, **{k: data[k] for k in CREATE_FIELDS if k in data}}
        self._check_references(identity.company, fields)
        if "metadata" in data:
            fields["metadata"] = metadata.stored(data["metadata"])
        return self._insert(identity, fields, public=bool(data.get("public")))

    def update_for_task(self, identity: Identity, data: dict[str, Any]) -> dict[str, Any]:
        """Create the task's output model from a URI, or make an existing one its output model."""
        if bool(data.get("uri")) == bool(data.get("override_model_id")):
            raise errors.bad_request.MissingRequiredFields("exactly one of uri and override_model_id",
                                                          error_data={"field": "uri", "rule": "oneOf"})
        task = self.tasks.writable(identity.company, data["task"])
        if data.get("override_model_id"):
            model = self.writable(identity.company, data["override_model_id"])
            model_id, created, name = model["_id"], False, model.get("name") or task["name"]
        else:
            execution = task.get("execution") or {}
            fields = {"name": data.get("name") or task["name"], "uri": data["uri"], "task": task["_id"],
                      "project": task.get("project"), "framework": execution.get("framework"),
                      "design": execution.get("model_desc"), "labels": execution.get("model_labels")}
            fields.update({k: data[k] for k in ("comment", "tags", "system_tags") if k in data})
            if data.get("iteration") is not None:
                fields["last_iteration"] = data["iteration"]
            model_id, created, name = self._insert(identity, {k: v for k, v in fields.items() if v is not None}), \
                True, fields["name"]
        result = self.tasks.link_model(identity, task["_id"], "output", name, model_id, data.get("iteration"))
        return {"id": model_id, "created": created, **result}

    def link_to_task(self, identity: Identity, data: dict[str, Any]) -> dict[str, Any]:
        """tasks.add_or_update_model: a model becomes one of the task's input/output models. As in
        ClearML (and as tasks.create and tasks.edit take them) the id is not looked up: an id of no
        model and another company's id are answered alike (telling them apart would show that the
        other company's model exists), and a link reveals nothing of the model it names, since every
        read of a linked model is scoped to the reader's company."""
        return self.tasks.link_model(identity, data["task"], data["type"], data["name"], data["model"],
                                     data.get("iteration"))

    def _change(self, company: str, model: dict[str, Any], sets: dict[str, Any]) -> dict[str, Any]:
        if not sets:
            return {"updated": 0, "fields": {}}
        sets = {**sets, "last_update": utcnow()}
        self.store.update_one({"_id": model["_id"], "company": company}, {"$set": sets})
        fields = dict(sets)
        if "metadata" in fields:
            fields["metadata"] = {unescape_key(k): v for k, v in fields["metadata"].items()}
        return {"updated": 1, "fields": fields}

    def _task_iteration(self, identity: Identity, model: dict[str, Any], data: dict[str, Any]) -> None:
        """``iteration`` moves the model's last_iteration and its task's (the one the call names, else
        the model's), never back."""
        if data.get("iteration") is None:
            return
        self.store.update_one({"_id": model["_id"]}, {"$max": {"last_iteration": data["iteration"]}})
        task = data.get("task") or model.get("task")
        if task:
            self.tasks.raise_iteration(identity.company, task, data["iteration"])

    def edit(self, identity: Identity, data: dict[str, Any]) -> dict[str, Any]:
        model = self.writable(identity.company, data["model"])
        sets = {k: data[k] for k in EDIT_FIELDS if k in data}
        if "metadata" in data:
            sets["metadata"] = metadata.stored(data["metadata"])
        self._check_references(identity.company, sets)  # a ready model is edited too, as in ClearML
        result = self._change(identity.company, model, sets)
        self._task_iteration(identity, model, data)
        return result

    def update(self, identity: Identity, data: dict[str, Any]) -> dict[str, Any]:
        model = self.writable(identity.company, data["model"])
        sets = {k: data[k] for k in UPDATE_FIELDS if k in data}
        if "created" in data:
            sets["created"] = q.parse_date(data["created"], "created")
        if "metadata" in data:
            sets["metadata"] = metadata.stored(data["metadata"])
        self._check_references(identity.company, sets)
        result = self._change(identity.company, model, sets)
        self._task_iteration(identity, model, data)
        return result

    def set_ready(self, identity: Identity, model_id: str, publish_task: bool = True,
                  force_publish_task: bool = False) -> dict[str, Any]:
        """Mark the model ready (published), as ClearML does: a model already ready is 400/203; with
        ``publish_task`` its creating task is published first (unless it is), and a task whose status
        does not allow it (without ``force_publish_task``) fails the call and leaves the model as it was."""
        model = self.writable(identity.company, model_id)
        if model.get("ready"):
            raise errors.bad_request.ModelIsReady(model=model_id)
        answer: dict[str, Any] = {}
        if publish_task and model.get("task"):
            published = self.tasks.publish_if_possible(identity, model["task"], force_publish_task)
            if published is not None:
                answer["published_task"] = {"id": model["task"], "data": published}
        if not self._mark_ready(identity.company, model["_id"]):
            # one conditional update: of two concurrent publishes, one is told it was ready
            raise errors.bad_request.ModelIsReady(model=model_id)
        return {"updated": 1, **answer}

    def _mark_ready(self, company: str, model_id: str) -> int:
        return self.store.update_one({"_id": model_id, "company": company, "ready": {"$ne": True}},
                                     {"$set": {"ready": True, "last_update": utcnow()}}).modified_count

    def ready_last_output(self, company: str, task_id: str) -> dict[str, Any]:
        """A task was published (with ``publish_model``, its default): its last output model is set
        ready too, as in ClearML (a ``TaskBLL.on_publish`` hook, wired in ``create_app``)."""
        task = self.tasks.readable(company, task_id, {"models": 1})
        outputs = (task.get("models") or {}).get("output") or []
        if outputs and isinstance(outputs[-1].get("model"), str):
            self._mark_ready(company, outputs[-1]["model"])
        return {}

    def publish_many(self, identity: Identity, data: dict[str, Any]) -> dict[str, Any]:
        def publish(model_id: str) -> dict[str, Any]:
            result = self.set_ready(identity, model_id, data.get("publish_tasks", True),
                                    bool(data.get("force_publish_task")))
            return {"updated": bool(result.pop("updated")), **result}

        return run_batch(data["ids"], publish)

    def _set_archived(self, identity: Identity, ids: list[str], archived: bool) -> dict[str, Any]:
        key = "archived" if archived else "unarchived"

        def change(model_id: str) -> dict[str, Any]:
            model = self.writable(identity.company, model_id)
            return {key: tags.set_archived(self.store, model["_id"], archived)}

        return run_batch(ids, change)

    def archive_many(self, identity: Identity, ids: list[str]) -> dict[str, Any]:
        return self._set_archived(identity, ids, True)

    def unarchive_many(self, identity: Identity, ids: list[str]) -> dict[str, Any]:
        return self._set_archived(identity, ids, False)

    def move(self, identity: Identity, ids: list[str], project: str | None, project_name: str | None) -> str | None:
        target = self.projects.destination(identity, project, project_name)
        return placement.move(self.store, identity.company, ids, target,
                              lambda model_id: self.writable(identity.company, model_id))

    def update_tags(self, identity: Identity, ids: list[str], add: list[str] | None, remove: list[str] | None) -> int:
        return tags.update_tags(self.store, identity.company, ids, add, remove)

    def add_or_update_metadata(self, identity: Identity, model_id: str, items: list[dict[str, Any]],
                               replace: bool) -> int:
        return metadata.add_or_update(self.store, self.writable(identity.company, model_id)["_id"], items, replace)

    def delete_metadata(self, identity: Identity, model_id: str, keys: list[str]) -> int:
        return metadata.delete(self.store, self.writable(identity.company, model_id)["_id"], keys)

    # -- delete -------------------------------------------------------------------------------

    def delete(self, identity: Identity, model_id: str, force: bool = False, host: str | None = None,
               delete_files: bool = True) -> dict[str, Any]:
        """Delete a model record, unlink it from tasks, then queue its weights file for deletion.

        Refused without force while another task uses it as an input model, or when the task that
        created it is published. The file goes only when no other model of the company points at it.
        """
        model = self.writable(identity.company, model_id)
        if not force:
            users = self.tasks.tasks_using_model(identity.company, model["_id"], "input", exclude=model.get("task"))
            if users:
                raise errors.bad_request.ModelInUse("use force to delete it anyway", id=model["_id"],
                                                    tasks=",".join(users[:10]))
            if model.get("task") and self.tasks.status_of(identity.company, model["task"]) == st.PUBLISHED:
                raise errors.bad_request.ModelCreatingTaskExists("the task that created it is published",
                                                                 task=model["task"])
        deleted = self.store.delete_one({"_id": model["_id"], "company": identity.company}).deleted_count
        self.tasks.unlink_model(identity.company, model["_id"])
        urls = self._delete_kept(identity.company, model["_id"]) if deleted else []
        if deleted and delete_files:
            self.delete_files(identity.company, [model], host)
            self.files.schedule_deletion(identity.company, urls, host, f"model {model['_id']}")
        return {"deleted": bool(deleted), "url": model.get("uri")}

    def _delete_kept(self, company: str, model_id: str) -> list[str]:
        """What other domains keep of a deleted model (``on_delete``); the file URLs it pointed at."""
        return [url for hook in self.on_delete for url in hook(company, model_id)]

    def delete_many(self, identity: Identity, ids: list[str], force: bool, host: str | None) -> dict[str, Any]:
        return run_batch(ids, lambda model_id: self.delete(identity, model_id, force, host))

    def delete_files(self, company: str, models: list[dict[str, Any]], host: str | None) -> int:
        """Queue the weights files of deleted models that no remaining model of the company uses."""
        uris = {m.get("uri") for m in models if m.get("uri")}
        still_used = {d["uri"] for d in self.store.find({"company": company, "uri": {"$in": list(uris)}}, {"uri": 1})}
        owners = ", ".join(m["_id"] for m in models)[:200]
        return self.files.schedule_deletion(company, uris - still_used, host, f"models {owners}")

    def output_models_of(self, company: str, task_id: str) -> list[dict[str, Any]]:
        """Draft models the task created (their ``task`` is it) that no other task uses as input: what
        deleting or resetting the task deletes (a ready one stays, as in ClearML, without its task)."""
        docs = list(self.store.find({"company": company, "task": task_id, "ready": {"$ne": True}},
                                    {"uri": 1, "name": 1}))
        return [d for d in docs if not self.tasks.tasks_using_model(company, d["_id"], "input", exclude=task_id)]

    def count_ready_of_task(self, company: str, task_id: str) -> int:
        """How many ready (published) models the task created."""
        return self.store.count_documents({"company": company, "task": task_id, "ready": True})

    def delete_records(self, company: str, ids: list[str]) -> int:
        if not ids:
            return 0
        urls = []
        for model_id in ids:
            self.tasks.unlink_model(company, model_id)
            urls += self._delete_kept(company, model_id)
        self.files.schedule_deletion(company, urls, None, f"models {', '.join(ids)[:200]}")
        return self.store.delete_many({"_id": {"$in": ids}, "company": company}).deleted_count

    # -- models in projects, for project deletion and merging -------------------------------------

    def count_in_projects(self, company: str, project_ids: list[str]) -> int:
        return placement.count(self.store, company, project_ids)

    def in_projects(self, company: str, project_ids: list[str]) -> list[dict[str, Any]]:
        """The company's models in these projects: id and uri."""
        return placement.find(self.store, company, project_ids, {"_id": 1, "uri": 1})

    def move_between_projects(self, company: str, source: str, target: str) -> int:
        """Every model of ``source`` goes into ``target`` (a project merge); how many moved."""
        return placement.move_all(self.store, company, source, target)

    def detach_from_projects(self, company: str, project_ids: list[str]) -> int:
        """The models of these (deleted) projects stay, in no project; their ``last_update`` is kept
        as it was."""
        return placement.detach(self.store, company, project_ids, touch=False)

    def orphan_from_task(self, company: str, task_id: str) -> int:
        """Models a deleted task created but that stay: they no longer name a task."""
        return self.store.update_many({"company": company, "task": task_id},
                                     {"$unset": {"task": ""}, "$set": {"last_update": utcnow()}}).modified_count

