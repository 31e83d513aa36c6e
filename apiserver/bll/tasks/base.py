"""Owns what every part of TaskBLL stands on: the tasks store, reading a task the caller may read or
write, and the narrow access other domains (events, workers, projects, queues, models, reports,
pipeline runs) have to tasks: they never write the tasks collection themselves. Read-only
aggregations over many tasks are the one exception: a project's statistics and filter menus
(``bll/projects/contents.py``) and the organization's counts read the tasks store directly."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime
from typing import Any

from apiserver.apierrors import errors
from apiserver.bll import access, placement
from apiserver.bll import query as q
from apiserver.bll.projects.projects import ProjectBLL
from apiserver.bll.queues.entries import QueueEntries
from apiserver.bll.tags import ARCHIVED_TAG
from apiserver.bll.tasks import status as st
from apiserver.bll.tasks.fields import (
    dotted_changes,
    metric_hash,
    to_api,
    to_storage,
)
from apiserver.database.model.base import utcnow
from apiserver.database.model.task import Task
from apiserver.database.store import store_of

EVENTS_EXPIRED = "events_expired"  # when retention deleted the task's events (OwnedDeletion.expire_events)


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



class TaskBase:
    """The tasks store and what every part of TaskBLL reads through."""

    def __init__(self, queues: QueueEntries, projects: ProjectBLL, worker_timeout_sec: int = 600):
        self.queues = queues
        self.projects = projects
        self.worker_timeout_sec = worker_timeout_sec
        self.on_reset: list[TaskHook] = []
        self.on_delete: list[TaskHook] = []
        # models set the published task's last output model ready (ClearML's publish_model)
        self.on_publish: list[TaskHook] = []

    @property
    def store(self):
        return store_of(Task)

    def readable(self, company: str, task_id: str, proj: dict | None = None) -> dict[str, Any]:
        """A task of the company or a public one; 400/101 otherwise (other companies' ids look missing)."""
        return access.readable(self.store, company, task_id, errors.bad_request.InvalidTaskId, proj)

    def writable_ids(self, company: str, task_ids: list[str]) -> set[str]:
        return access.writable_ids(self.store, company, task_ids)

    def writable(self, company: str, task_id: str) -> dict[str, Any]:
        return access.writable(self.store, company, task_id, errors.bad_request.InvalidTaskId, "tasks")

    def get_by_id(self, company: str, task_id: str) -> dict[str, Any]:
        return to_api(self.readable(company, task_id))

    def count_in_projects(self, company: str, project_ids: list[str]) -> int:
        return placement.count(self.store, company, project_ids)

    def own(self, company: str, task_id: str, proj: dict | None = None) -> dict[str, Any] | None:
        """The company's own task (not a public one), or None."""
        return self.store.find_one({"_id": task_id, "company": company}, proj)

    def ids_of_type(self, company: str, project: str, task_type: str) -> list[str]:
        """The ids of the company's tasks of one type in one project (a pipeline's runs)."""
        return [d["_id"] for d in self.store.find({"project": project, "company": company, "type": task_type},
                                                  {"_id": 1})]

    def distinct_values(self, company: str, projects: list[str] | None, field: str, unwind: bool = False,
                        match: dict[str, Any] | None = None) -> list[Any]:
        """The distinct values of a field among the company's and public tasks (``query.distinct_values``)."""
        return q.distinct_values(self.store, company, projects, field, unwind=unwind, match=match)

    def set_queue(self, company: str, task: dict[str, Any], queue_id: str) -> None:
        """The queue a queued task is in (it moved to another)."""
        self.set_fields(company, task, {"execution.queue": queue_id})

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

    def record_metrics(self, company: str, reports: dict[str, TaskMetrics]) -> set[str]:
        """Fold a batch of events into the caller's tasks' ``last_metrics`` (last, min and max value per
        metric and variant), ``last_iteration`` (the highest) and ``last_update``; one write per task.
        Returns the tasks written: those the caller may change (``writable_ids``), the others are left
        alone.

        The check is a read by ids and each write filters on ``_id`` alone: SecantusDB serves a filter of
        ``_id`` alone as a point lookup, but plans ``_id`` with ``company`` by walking its catalog of the
        collection's indexes (16 on tasks): about a third of this write's cost."""
        known = self.writable_ids(company, list(reports))
        self.store.update_each(({"_id": task_id}, self._metrics_update(reports[task_id])) for task_id in known)
        return known

    @staticmethod
    def _metrics_update(report: TaskMetrics) -> dict[str, Any]:
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
        update: dict[str, Any] = {"$set": sets, "$unset": {EVENTS_EXPIRED: ""}}  # new events expire anew
        if mins:
            update["$min"] = mins
        if maxes:
            update["$max"] = maxes
        return update

    def events_expiring(self, cutoff: datetime, projects: list[str], in_projects: bool, limit: int
                        ) -> list[dict[str, Any]]:
        """Up to ``limit`` tasks (all companies) that ended or are archived, unchanged since ``cutoff``, in
        (``in_projects``) or outside these projects, whose events did not expire yet: {_id, company,
        company_origin (a public task's owner, whose events they are)}."""
        where: dict[str, Any] = {"last_update": {"$lt": cutoff}, EVENTS_EXPIRED: {"$exists": False},
                                 "project": {"$in" if in_projects else "$nin": projects}}
        found: dict[str, dict[str, Any]] = {}
        for which in ({"status": {"$in": list(st.ENDED)}}, {"system_tags": ARCHIVED_TAG}):  # no top-level $or
            # all companies: the retention job is server-wide; each task's events are deleted in its own company
            for doc in self.store.find({**which, **where}, {"company": 1, "company_origin": 1}).limit(limit):
                found.setdefault(doc["_id"], doc)
        return list(found.values())[:limit]

    def mark_events_expired(self, company: str, task_id: str, when: datetime) -> None:
        """The task's events were deleted by retention (until it gets new ones: ``record_metrics``)."""
        self.store.update_one({"_id": task_id, "company": company}, {"$set": {EVENTS_EXPIRED: when}})

    def set_fields(self, company: str, task: dict[str, Any], sets: dict[str, Any],
                   expect_status: str | None = None) -> dict[str, Any]:
        """Set API fields of a task (with ``expect_status``, only while it has that status: else
        400/121); ``fields`` in the answer as the API shows the changes."""
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

    def status_of(self, company: str, task_id: str) -> str | None:
        doc = access.by_id(self.store, task_id, (company,), {"status": 1})
        return doc["status"] if doc else None

    def raise_iteration(self, company: str, task_id: str, iteration: int) -> None:
        self.store.update_one({"_id": task_id, "company": company}, {"$max": {"last_iteration": iteration}})
