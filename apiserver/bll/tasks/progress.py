"""Owns the tasks' progress documents (``task_progress``): what add calls said about a task since the
task itself was last written.

Every add call of events records its metrics on its task (``last_metrics``, ``last_iteration``,
``last_update``: ``base.record_metrics``). A task document carries 16 indexes and SecantusDB rewrites
every index entry of a document on each update, so under many reporting runs that update was most of
the database's work. So a call on a task written less than ``write_sec`` ago, whose series the task
already names, records the same update (the same ``$set``/``$min``/``$max``/``$inc``) on the task's
progress document instead (its only index is ``_id``). The next call after ``write_sec`` takes the
progress document and writes it into the task together with its own update; the ``fold_task_progress``
job writes what is older than that for tasks that stopped reporting; a reset drops it.

Readers of those fields (``merge``) show a task with its progress applied, so an answer never shows
the split: the API's listings, a task by id, the latest scalar values and the workers' current tasks.
Filters and sorts on those fields see the task as last written (at most ``write_sec`` behind while it
reports, until the job runs once it stops). A process killed between taking a progress document and
writing its task loses that document's counts (the events themselves are stored before).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from apiserver.database.model.base import utcnow
from apiserver.database.model.task import TaskProgress
from apiserver.database.store import store_of

# the operator that records each field of a last_metrics series (every other field is $set): what
# metrics_update writes and what a progress document is written into its task with
SERIES_OPS = {"min_value": "$min", "min_at": "$min", "first_at": "$min", "max_value": "$max", "max_at": "$max",
              "count": "$inc", "total": "$inc"}
FIELDS = ("last_metrics", "last_iteration", "last_update")  # what progress holds (top-level task fields)


def as_update(doc: dict[str, Any]) -> dict[str, Any]:
    """A progress document as the update that writes it into its task."""
    ops: dict[str, dict[str, Any]] = {"$set": {}, "$min": {}, "$max": {}, "$inc": {}}
    if doc.get("last_update") is not None:
        ops["$max"]["last_update"] = doc["last_update"]
    if doc.get("last_iteration") is not None:
        ops["$max"]["last_iteration"] = doc["last_iteration"]
    for metric, variants in (doc.get("last_metrics") or {}).items():
        for variant, series in (variants or {}).items():
            for key, value in (series or {}).items():
                ops[SERIES_OPS.get(key, "$set")][f"last_metrics.{metric}.{variant}.{key}"] = value
    return {op: dict(sorted(fields.items())) for op, fields in ops.items() if fields}


def combine(first: dict[str, Any], then: dict[str, Any]) -> dict[str, Any]:
    """One update that does ``first`` then ``then`` (updates of ``as_update``/``metrics_update`` shape)."""
    out = {op: dict(fields) for op, fields in first.items()}
    for op, fields in then.items():
        into = out.setdefault(op, {})
        for path, value in fields.items():
            if op == "$set":  # a path is under one operator: a later $set replaces any other
                for other in out.values():
                    other.pop(path, None)
            if path not in into or op in ("$set", "$unset"):
                into[path] = value
            elif op == "$inc":
                into[path] += value
            elif op == "$min":
                into[path] = min(into[path], value)
            elif op == "$max":
                into[path] = max(into[path], value)
    return {op: dict(sorted(fields.items())) for op, fields in out.items() if fields}


def apply(doc: dict[str, Any], update: dict[str, Any], wanted: dict[str, Any] | None) -> None:
    """Apply ``update`` to a task as read, in memory, as the database would; only the paths the read's
    projection ``wanted`` holds (all with none)."""
    for op, fields in update.items():
        for path, value in fields.items():
            if not _projected(path, wanted):
                continue
            *parents, leaf = path.split(".")
            node = doc
            for key in parents:
                if not isinstance(node.get(key), dict):
                    node[key] = {}
                node = node[key]
            old = node.get(leaf)
            if op == "$set" or old is None:
                node[leaf] = value
            elif op == "$inc":
                node[leaf] = old + value
            elif op == "$min":
                node[leaf] = min(old, value)
            elif op == "$max":
                node[leaf] = max(old, value)


def _projected(path: str, wanted: dict[str, Any] | None) -> bool:
    if not wanted:
        return True
    inclusive = any(bool(v) for k, v in wanted.items() if k != "_id") or set(wanted) <= {"_id"}
    hit = any(path == k or path.startswith(k + ".") for k, v in wanted.items() if bool(v) == inclusive)
    return hit if inclusive else not hit


class Progress:
    """The progress documents' store and rules (``TaskBase.progress``)."""

    def __init__(self, write_sec: float):
        self.write_sec = write_sec

    @property
    def documents(self):
        """The progress collection (keyed by task id: callers checked the task's company first)."""
        return store_of(TaskProgress)

    def defers(self, task: dict[str, Any], names_all: bool) -> bool:
        """Whether an add call on ``task`` (as read with ``last_update``) goes to its progress document:
        the task was written less than ``write_sec`` ago and names every series the call reports."""
        last = task.get("last_update")
        return bool(self.write_sec > 0 and names_all and last is not None
                    and last > utcnow() - timedelta(seconds=self.write_sec))

    def record(self, updates: Iterable[tuple[str, dict[str, Any]]]) -> None:
        """Record ``(task id, update)`` pairs on the tasks' progress documents."""
        self.documents.update_each((({"_id": task_id}, update) for task_id, update in updates), upsert=True)

    def take(self, task_id: str) -> dict[str, Any] | None:
        """Remove a task's progress document; the update that writes it into the task, if it had one."""
        doc = self.documents.find_one_and_delete({"_id": task_id})  # small collection: one per reporting task
        return as_update(doc) if doc else None

    def drop(self, task_id: str) -> None:
        self.documents.delete_one({"_id": task_id})

    def due(self, limit: int = 1000) -> list[str]:
        """Tasks whose progress is older than ``write_sec`` (their runs stopped reporting)."""
        cutoff = utcnow() - timedelta(seconds=self.write_sec)
        return [d["_id"] for d in self.documents.find({"last_update": {"$lt": cutoff}}, {"_id": 1}).limit(limit)]

    def merge(self, docs: list[dict[str, Any]], wanted: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Tasks as read (with projection ``wanted``), each with its progress applied in place."""
        if not docs or (wanted and not any(_projected(f, wanted) or any(k.startswith(f + ".") for k in wanted)
                                           for f in FIELDS)):
            return docs
        found = {d["_id"]: d for d in self.documents.find({"_id": {"$in": [doc["_id"] for doc in docs]}})}
        for doc in docs:
            if doc["_id"] in found:
                apply(doc, as_update(found[doc["_id"]]), wanted)
        return docs
