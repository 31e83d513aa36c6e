"""Owns queue documents and their entries: creating a queue, finding one, and each change to its
entries as one atomic update. The task lifecycle (``bll/tasks/lifecycle.py``) puts tasks in and
takes them out through it; ``bll/queues/queues.py`` is what the queues service calls."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from apiserver.apierrors import errors
from apiserver.bll import access
from apiserver.database.errors import DuplicateKeyError
from apiserver.database.model.base import new_id, utcnow
from apiserver.database.model.queue import Queue, QueueMetric
from apiserver.database.store import store_of

DEFAULT_TAG = "default"


class QueueEntries:
    """Queue documents and their entries, as the task lifecycle needs them (enqueue, dequeue, stop,
    reset, delete): each change to a queue's entries is one atomic update."""

    @property
    def store(self):
        return store_of(Queue)

    def get(self, company: str, queue_id: str, proj: dict | None = None) -> dict[str, Any]:
        doc = access.by_id(self.store, queue_id, (company,), proj)
        if doc is None:
            raise errors.bad_request.InvalidQueueId(queue=queue_id)
        return doc

    def find_by_name(self, company: str, name: str) -> dict[str, Any] | None:
        return self.store.find_one({"company": company, "name": name})

    def create(self, company: str, user: str, name: str, tags: list[str] | None = None,
               system_tags: list[str] | None = None, metadata: dict | None = None,
               display_name: str | None = None) -> str:
        now = utcnow()
        doc = {"_id": new_id(), "company": company, "user": user, "name": name, "tags": tags or [],
               "system_tags": system_tags or [], "entries": [], "metadata": metadata or {}, "created": now,
               "last_update": now}
        if display_name:
            doc["display_name"] = display_name
        try:
            self.store.insert_one(doc)
        except DuplicateKeyError:
            raise errors.bad_request.ExpectedUniqueData("a queue with this name exists", name=name) from None
        return doc["_id"]

    def default_queue(self, company: str) -> dict[str, Any]:
        found = list(self.store.find({"company": company, "system_tags": DEFAULT_TAG}).limit(2))
        if not found:
            raise errors.bad_request.NoDefaultQueue()
        if len(found) > 1:
            raise errors.bad_request.MultipleDefaultQueues()
        return found[0]

    def ensure_default(self, company: str, user: str = "") -> str:
        """The company's default queue, created (named 'default') on first need."""
        existing = self.store.find_one({"company": company, "system_tags": DEFAULT_TAG}, {"_id": 1})
        if existing:
            return existing["_id"]
        try:
            return self.create(company, user, "default", system_tags=[DEFAULT_TAG])
        except errors.bad_request.ExpectedUniqueData:
            return self.find_by_name(company, "default")["_id"]  # created concurrently

    def add_entry(self, company: str, queue_id: str, task_id: str) -> None:
        """Append a task to the back of a queue; 400/706 when it is there already."""
        now = utcnow()
        result = self.store.update_one(
            {"_id": queue_id, "company": company, "entries.task": {"$ne": task_id}},
            {"$push": {"entries": {"task": task_id, "added": now}}, "$set": {"last_update": now}})
        if result.matched_count == 0:
            self.get(company, queue_id, {"_id": 1})  # 701 when the queue does not exist
            raise errors.bad_request.TaskAlreadyQueued(task=task_id, queue=queue_id)
        self._changed(company, queue_id)

    def remove_entry(self, company: str, queue_id: str, task_id: str) -> int:
        result = self.store.update_one({"_id": queue_id, "company": company, "entries.task": task_id},
                                      {"$pull": {"entries": {"task": task_id}}, "$set": {"last_update": utcnow()}})
        if result.modified_count:
            self._changed(company, queue_id)
        return result.modified_count

    def record_metrics(self, queues: Iterable[dict[str, Any]]) -> int:
        """Store each queue's length and mean waiting time now, for queues.get_queue_metrics: after
        each change of a queue's entries, as ClearML records them, and periodically (the
        ``sample_queue_metrics`` job) so that a quiet queue's chart goes on."""
        now = utcnow()
        samples = []
        for queue in queues:
            entries = queue.get("entries") or []
            waits = [(now - e["added"]).total_seconds() for e in entries if e.get("added")]
            samples.append({"_id": new_id(), "company": queue["company"], "queue": queue["_id"], "timestamp": now,
                            "queue_length": len(entries), "avg_waiting_time": sum(waits) / len(waits) if waits else 0})
        if samples:
            store_of(QueueMetric).insert_many(samples)
        return len(samples)

    def _changed(self, company: str, queue_id: str) -> None:
        doc = self.store.find_one({"_id": queue_id, "company": company}, {"company": 1, "entries": 1})
        if doc is not None:
            self.record_metrics([doc])

    def remove_task_everywhere(self, company: str, task_id: str) -> int:
        result = self.store.update_many({"company": company, "entries.task": task_id},
                                       {"$pull": {"entries": {"task": task_id}}, "$set": {"last_update": utcnow()}})
        return result.modified_count

    def pop_front(self, company: str, queue_id: str, attempts: int = 1000) -> dict[str, Any] | None:
        """Atomically take the first entry of a queue: two callers never get the same one.

        Read the front entry, then remove it with an update whose filter requires that same entry
        to still be first; only one caller's update matches. (Not ``find_one_and_update`` with
        ``$pop``: on SecantusDB its returned pre-image can be stale under concurrency, see
        tests/test_database_conformance.py.)
        """
        for _ in range(attempts):
            doc = self.store.find_one({"_id": queue_id, "company": company}, {"entries": {"$slice": 1}})
            if not doc or not doc.get("entries"):
                return None
            entry = doc["entries"][0]
            result = self.store.update_one(
                {"_id": queue_id, "company": company, "entries.0.task": entry["task"]},
                {"$pop": {"entries": -1}, "$set": {"last_update": utcnow()}})
            if result.modified_count:
                self._changed(company, queue_id)
                return entry
        raise errors.server_error.DataError("could not take a task from a busy queue; try again", queue=queue_id)
