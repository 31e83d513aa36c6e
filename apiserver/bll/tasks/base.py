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
from apiserver.bll.tasks.progress import SERIES_OPS, Progress, combine
from apiserver.database.model.base import utcnow
from apiserver.database.model.event import SCALAR
from apiserver.database.model.task import Task
from apiserver.database.store import store_of

EVENTS_EXPIRED = "events_expired"  # when retention deleted the task's events (OwnedDeletion.expire_events)


@dataclasses.dataclass
class ScalarSummary:
    """What one add call's points of one series say, as ClearML keeps it in ``last_metrics``: the latest
    point's value (by iteration, then timestamp), the lowest and highest value with their first
    iteration, the value at the lowest iteration, and the count and sum of the values."""
    value: float
    last: tuple[int, int]
    low: tuple[float, int]
    high: tuple[float, int]
    first: tuple[int, float]
    count: int = 1
    total: float = 0.0
    x_axis_label: str | None = None

    @classmethod
    def of(cls, value: float, iteration: int, timestamp: int, x_axis_label: str | None) -> ScalarSummary:
        return cls(value, (iteration, timestamp), (value, iteration), (value, iteration), (iteration, value),
                   1, value, x_axis_label)

    def add(self, value: float, iteration: int, timestamp: int, x_axis_label: str | None) -> None:
        if (iteration, timestamp) >= self.last:
            self.value, self.last = value, (iteration, timestamp)
            self.x_axis_label = x_axis_label if x_axis_label is not None else self.x_axis_label
        if value < self.low[0]:
            self.low = (value, iteration)
        if value > self.high[0]:
            self.high = (value, iteration)
        if iteration < self.first[0]:
            self.first = (iteration, value)
        self.count += 1
        self.total += value


@dataclasses.dataclass
class TaskMetrics:
    """What a batch of events says about one task: its highest iteration, and per (metric, variant)
    of its scalars a ``ScalarSummary``."""
    last_iteration: int | None = None
    scalars: dict[tuple[str, str], ScalarSummary] = dataclasses.field(default_factory=dict)

    @classmethod
    def of_events(cls, docs: list[dict[str, Any]]) -> TaskMetrics:
        """What a task's events of one add call say about it, for the task rules to record."""
        report = cls()
        for doc in docs:
            if doc.get("iter") is not None and doc["iter"] > -(2**31):
                report.add_iteration(doc["iter"])
            if doc["type"] == SCALAR:
                report.add_scalar(doc.get("metric", ""), doc.get("variant", ""), float(doc["value"]),
                                  doc.get("iter") or 0, doc["timestamp"], doc.get("x_axis_label"))
        return report

    def add_iteration(self, iteration: int) -> None:
        self.last_iteration = iteration if self.last_iteration is None else max(self.last_iteration, iteration)

    def add_scalar(self, metric: str, variant: str, value: float, iteration: int = 0, timestamp: int = 0,
                   x_axis_label: str | None = None) -> None:
        summary = self.scalars.get((metric, variant))
        if summary is None:
            self.scalars[(metric, variant)] = ScalarSummary.of(value, iteration, timestamp, x_axis_label)
        else:
            summary.add(value, iteration, timestamp, x_axis_label)


def _series_path(metric: str, variant: str) -> str:
    return f"last_metrics.{metric_hash(metric)}.{metric_hash(variant)}"


def metrics_update(report: TaskMetrics, named: set[str] | frozenset[str] = frozenset()) -> dict[str, Any]:
    """The update that records a report, with operators only (no read first), so that two reports of
    the same task written at once both count. A series' lowest and highest value and its first value are
    also kept with their iteration as pairs (``min_at``, ``max_at``, ``first_at``) that ``$min``/``$max``
    compare value first (iteration first for ``first_at``); ``fields.last_metrics_to_api`` shows them as
    ClearML's fields. ``named``: the series paths whose metric and variant names the record already
    holds (each path costs the database's update, so names are written once)."""
    ops: dict[str, dict[str, Any]] = {"$set": {"last_update": utcnow()}, "$min": {}, "$max": {}, "$inc": {}}
    if report.last_iteration is not None:
        ops["$max"]["last_iteration"] = report.last_iteration
    for (metric, variant), summary in report.scalars.items():
        path = _series_path(metric, variant)
        fields: dict[str, Any] = {
            "value": summary.value, "min_value": summary.low[0], "max_value": summary.high[0],
            "min_at": list(summary.low),  # ties: the earlier iteration
            "max_at": [summary.high[0], -summary.high[1]],  # ties: the earlier iteration
            "first_at": list(summary.first), "count": summary.count, "total": summary.total}
        if path not in named:
            fields.update({"metric": metric, "variant": variant})
        if summary.x_axis_label is not None:
            fields["x_axis_label"] = summary.x_axis_label
        for key, value in fields.items():
            ops[SERIES_OPS.get(key, "$set")][f"{path}.{key}"] = value
    # paths in name order, as MongoDB (5.0 on) applies them: new metrics appear in that order on any engine
    update: dict[str, Any] = {"$set": dict(sorted(ops["$set"].items())), "$unset": {EVENTS_EXPIRED: ""}}  # expire anew
    for op in ("$min", "$max", "$inc"):
        if ops[op]:
            update[op] = dict(sorted(ops[op].items()))
    return update


def record_metrics(store: Any, company: str, reports: dict[str, TaskMetrics], progress: Progress | None = None
                   ) -> set[str]:
    """Fold a batch of events into ``last_metrics`` (``metrics_update``), ``last_iteration`` (the highest)
    and ``last_update`` of the caller's records in ``store`` (tasks, or models for model events); one
    write per record. Returns the ids written: those the caller may change (``access.writable_ids``),
    the others are left alone. With ``progress`` (tasks), a record written a moment ago gets the write
    on its progress document instead, and a direct write takes the progress along (``progress.py``).

    The check is a read by ids, which also tells which series already have their names; each write
    filters on ``_id`` alone: SecantusDB serves a filter of ``_id`` alone as a point lookup, but plans
    ``_id`` with ``company`` by walking its catalog of the collection's indexes (16 on tasks), about a
    third of this write's cost. (A series whose names a concurrent reset removed gets them again with
    its next report.)"""
    paths = {_series_path(m, v) for report in reports.values() for m, v in report.scalars}
    proj = {f"{p}.metric": 1 for p in paths} | ({"last_update": 1} if progress else {}) or {"_id": 1}
    found = access.writable_many(store, company, list(reports), proj)
    direct, deferred = [], []
    for record_id, doc in found.items():
        report = reports[record_id]
        named = _named(doc, {_series_path(m, v) for m, v in report.scalars})
        update = metrics_update(report, named)
        if progress is None:
            direct.append(({"_id": record_id}, update))
        elif progress.defers(doc, len(named) == len(report.scalars)):
            deferred.append((record_id, update))
        else:
            taken = progress.take(record_id)
            direct.append(({"_id": record_id}, combine(taken, update) if taken else update))
    store.update_each(direct)
    if deferred:
        progress.record(deferred)
    return set(found)


def _named(doc: dict[str, Any], paths: set[str]) -> set[str]:
    """The series paths among ``paths`` whose metric name the record holds."""
    out = set()
    for path in paths:
        node: Any = doc
        for key in path.split(".")[:3]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and "metric" in node:
            out.add(path)
    return out


# Other domains (events) register what they must do when a task is reset or deleted; each hook
# gets (company, task_id) and returns a small dict for the answer.
TaskHook = Callable[[str, str], dict]



class TaskBase:
    """The tasks store and what every part of TaskBLL reads through."""

    def __init__(self, queues: QueueEntries, projects: ProjectBLL, worker_timeout_sec: int = 600, *,
                 progress_write_sec: float):
        self.queues = queues
        self.projects = projects
        self.worker_timeout_sec = worker_timeout_sec
        self.progress = Progress(progress_write_sec)
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

    def readable_current(self, company: str, task_id: str, proj: dict | None = None) -> dict[str, Any]:
        """``readable`` with the task's progress applied (``progress.py``): for answers that show
        ``last_metrics``, ``last_iteration`` or ``last_update``."""
        return self.progress.merge([self.readable(company, task_id, proj)], proj)[0]

    def get_by_id(self, company: str, task_id: str) -> dict[str, Any]:
        return to_api(self.readable_current(company, task_id))

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
        """The readable ones among ``task_ids`` (the ``readable`` rule, in one read), by id, with their
        progress applied."""
        found = access.readable_many(self.store, company, task_ids, proj)
        self.progress.merge(list(found.values()), proj)
        return found

    def record_worker_report(self, company: str, task_id: str, worker: str, when: Any) -> str | None:
        """A worker reports it runs this task: the task notes the worker; answers the task's project
        (None when the company has no such task)."""
        doc = self.store.update_and_read({"_id": task_id, "company": company},
                              {"$set": {"last_worker": worker, "last_worker_report": when}}, {"project": 1})
        return (doc or {}).get("project")

    def record_metrics(self, company: str, reports: dict[str, TaskMetrics]) -> set[str]:
        """Fold a batch of events into the caller's tasks' ``last_metrics``, ``last_iteration`` and
        ``last_update`` (``record_metrics``); returns the tasks written."""
        return record_metrics(self.store, company, reports, self.progress)

    def fold_progress(self) -> int:
        """Write the progress documents older than ``progress.write_sec`` into their tasks (runs that
        stopped reporting); returns how many."""
        folded = 0
        for task_id in self.progress.due():
            update = self.progress.take(task_id)
            if update:  # all companies: the job writes each task's own progress back into it
                self.store.update_one({"_id": task_id}, update)
                folded += 1
        return folded

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
