"""Owns queue records and their entries; every change to entries is one atomic update."""

from __future__ import annotations

from typing import Any

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from apiserver.apierrors import errors
from apiserver.database.model.base import new_id, utcnow
from apiserver.database.model.queue import Queue

DEFAULT_TAG = "default"


class QueueBLL:
    @property
    def coll(self):
        return Queue._get_collection()

    def get(self, company: str, queue_id: str, proj: dict | None = None) -> dict[str, Any]:
        doc = self.coll.find_one({"_id": queue_id, "company": company}, proj)
        if doc is None:
            raise errors.bad_request.InvalidQueueId(queue=queue_id)
        return doc

    def find_by_name(self, company: str, name: str) -> dict[str, Any] | None:
        return self.coll.find_one({"company": company, "name": name})

    def create(self, company: str, user: str, name: str, tags: list[str] | None = None,
               system_tags: list[str] | None = None, metadata: dict | None = None) -> str:
        now = utcnow()
        doc = {"_id": new_id(), "company": company, "user": user, "name": name, "tags": tags or [],
               "system_tags": system_tags or [], "entries": [], "metadata": metadata or {}, "created": now,
               "last_update": now}
        try:
            self.coll.insert_one(doc)
        except DuplicateKeyError:
            raise errors.bad_request.ExpectedUniqueData("a queue with this name exists", name=name) from None
        return doc["_id"]

    def default_queue(self, company: str) -> dict[str, Any]:
        found = list(self.coll.find({"company": company, "system_tags": DEFAULT_TAG}).limit(2))
        if not found:
            raise errors.bad_request.NoDefaultQueue()
        if len(found) > 1:
            raise errors.bad_request.MultipleDefaultQueues()
        return found[0]

    def ensure_default(self, company: str, user: str = "") -> str:
        """The company's default queue, created (named 'default') on first need."""
        existing = self.coll.find_one({"company": company, "system_tags": DEFAULT_TAG}, {"_id": 1})
        if existing:
            return existing["_id"]
        try:
            return self.create(company, user, "default", system_tags=[DEFAULT_TAG])
        except errors.bad_request.ExpectedUniqueData:
            return self.find_by_name(company, "default")["_id"]  # created concurrently

    def add_entry(self, company: str, queue_id: str, task_id: str) -> None:
        """Append a task to the back of a queue; 400/706 when it is there already."""
        now = utcnow()
        result = self.coll.update_one(
            {"_id": queue_id, "company": company, "entries.task": {"$ne": task_id}},
            {"$push": {"entries": {"task": task_id, "added": now}}, "$set": {"last_update": now}})
        if result.matched_count == 0:
            self.get(company, queue_id, {"_id": 1})  # 701 when the queue does not exist
            raise errors.bad_request.TaskAlreadyQueued(task=task_id, queue=queue_id)

    def remove_entry(self, company: str, queue_id: str, task_id: str) -> int:
        result = self.coll.update_one({"_id": queue_id, "company": company, "entries.task": task_id},
                                      {"$pull": {"entries": {"task": task_id}}, "$set": {"last_update": utcnow()}})
        return result.modified_count

    def remove_task_everywhere(self, company: str, task_id: str) -> int:
        result = self.coll.update_many({"company": company, "entries.task": task_id},
                                       {"$pull": {"entries": {"task": task_id}}, "$set": {"last_update": utcnow()}})
        return result.modified_count

    def pop_front(self, company: str, queue_id: str) -> dict[str, Any] | None:
        """Atomically take the first entry of a queue: two callers never get the same one."""
        doc = self.coll.find_one_and_update(
            {"_id": queue_id, "company": company, "entries.0": {"$exists": True}},
            {"$pop": {"entries": -1}, "$set": {"last_update": utcnow()}},
            projection={"entries": {"$slice": 1}}, return_document=ReturnDocument.BEFORE)
        if doc is None:
            return None
        return doc["entries"][0]
