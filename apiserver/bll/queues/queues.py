"""Owns the queues as the queues service sees them: records (listing, update, delete, metadata,
moves, metrics) and what it does with their entries (add, remove, take the next task, clear, move a
task to another queue). Entries change through ``QueueEntries`` (``bll/queues/entries.py``), one
atomic update each; a task's status changes through the task lifecycle."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from apiserver.apierrors import errors
from apiserver.bll import metadata
from apiserver.bll import query as q
from apiserver.bll.auth.identity import Identity
from apiserver.bll.intervals import bucket, bucket_dates
from apiserver.bll.queues.entries import QueueEntries
from apiserver.bll.references import dereference, split_references
from apiserver.bll.tasks import status as st
from apiserver.bll.tasks.tasks import TaskBLL
from apiserver.database.errors import DuplicateKeyError
from apiserver.database.model.auth import Company, User
from apiserver.database.model.base import utcnow
from apiserver.database.model.queue import QueueMetric
from apiserver.database.model.task import Task
from apiserver.database.store import store_of

DEFAULT_TAG = "default"
# Queues listed only when asked for (ClearML's services.queues.hidden_tags): a Kubernetes glue's own queues.
HIDDEN_QUEUE_TAGS = ("k8s-glue",)


class QueueBLL:
    def __init__(self, entries: QueueEntries, tasks: TaskBLL,
                 workers_of: Callable[[str, list[str]], dict[str, list[dict]]] | None = None):
        self.entries = entries
        self.tasks = tasks
        # The live workers listening on each queue (WorkerBLL.listening), for the *_ex listing.
        self.workers_of = workers_of

    @property
    def store(self):
        return self.entries.store

    def get(self, company: str, queue_id: str, proj: dict | None = None) -> dict[str, Any]:
        return self.entries.get(company, queue_id, proj)

    def create(self, company: str, user: str, name: str, tags: list[str] | None = None,
               system_tags: list[str] | None = None, metadata: dict | None = None,
               display_name: str | None = None) -> str:
        return self.entries.create(company, user, name, tags, system_tags, metadata, display_name)

    def default_queue(self, company: str) -> dict[str, Any]:
        return self.entries.default_queue(company)

    @staticmethod
    def to_api(doc: dict[str, Any], max_entries: int | None = None) -> dict[str, Any]:
        out = metadata.shown(q.api_id(doc))
        if max_entries is not None and "entries" in out:
            out["entries"] = out["entries"][:max_entries]
        return out

    def get_all(self, company: str, data: dict[str, Any], ex: bool = False) -> list[dict[str, Any]]:
        """Queues are never public; name is unanchored, as the agent expects; queues of the
        ``HIDDEN_QUEUE_TAGS`` are listed only with ``search_hidden``, ``id`` or ``name``. ``ex`` answers as
        ClearML's get_all_ex: entries name their tasks ({id, name}), ``count_task_entries`` adds
        ``entries_count`` (before ``max_task_entries`` cuts the entries), and ``workers`` lists the
        live workers listening on the queue."""
        query = q.listing_filter(data, {"company": company}, store=self.store)
        if not any(data.get(k) for k in ("search_hidden", "id", "name")):
            query = q.combine(query, {"system_tags": {"$nin": list(HIDDEN_QUEUE_TAGS)}})
        skip, limit = q.page_window(data)
        sort = q.order_by(data.get("order_by"), q.FIELD_IDS, default=(("name", 1),))
        refs = {"entries.task": store_of(Task), "user": store_of(User),
                "company": store_of(Company)}
        named = split_references(data.get("only_fields"), refs)[1]
        only_fields, wanted = split_references(data.get("only_fields"), refs, ex)
        asked = set(only_fields or [])
        show_entries = not only_fields or "*" in asked or "entries" in asked or "entries.task" in named
        count = bool(data.get("count_task_entries"))
        if only_fields and count and not show_entries:
            only_fields = [*only_fields, "entries"]
        if ex and show_entries:
            wanted.setdefault("entries.task", set()).add("name")
        proj = q.projection([f for f in only_fields if f != "workers"] if only_fields else only_fields,
                            q.FIELD_IDS)
        docs = []
        for doc in self.store.find_page(query, sort, skip, limit, proj):
            if count:
                doc["entries_count"] = len(doc.get("entries") or [])
                if not show_entries:
                    doc.pop("entries", None)
            docs.append(self.to_api(doc, data.get("max_task_entries")))
        if ex and self.workers_of is not None and (not only_fields or "workers" in asked or "*" in asked):
            listening = self.workers_of(company, [d["id"] for d in docs])
            for doc in docs:
                doc["workers"] = listening.get(doc["id"], [])
        return dereference(docs, wanted, refs, company)

    def update(self, company: str, queue_id: str, data: dict[str, Any]) -> dict[str, Any]:
        self.entries.get(company, queue_id, {"_id": 1})
        fields = {k: data[k] for k in ("name", "display_name", "tags", "system_tags", "metadata") if k in data}
        if not fields:
            return {}
        fields["last_update"] = utcnow()
        try:
            self.store.update_one({"_id": queue_id, "company": company}, {"$set": fields})
        except DuplicateKeyError:
            raise errors.bad_request.ExpectedUniqueData("a queue with this name exists", name=data["name"]) from None
        return fields

    def delete(self, identity: Identity, queue_id: str, force: bool) -> int:
        """A queue with tasks goes only with ``force``, and its queued tasks are dequeued first (each
        back to its status before enqueue), as ClearML does."""
        queue = self.entries.get(identity.company, queue_id, {"entries": 1})
        if queue.get("entries"):
            if not force:
                raise errors.bad_request.QueueNotEmpty(f"{len(queue['entries'])} tasks; use force", queue=queue_id)
            self.clear(identity, queue_id, reason=f"queue {queue_id} was deleted")
        return self.store.delete_one({"_id": queue_id, "company": identity.company}).deleted_count

    def move(self, company: str, queue_id: str, task_id: str, how: str, count: int = 1) -> int:
        """Move a task inside its queue; returns its new position (0 = front).

        Read, reorder, and write back only if the entries did not change meanwhile (the filter holds
        the entries read); a concurrent change makes this retry.
        """
        for _ in range(20):
            queue = self.entries.get(company, queue_id, {"entries": 1})
            entries = queue.get("entries") or []
            index = next((i for i, e in enumerate(entries) if e.get("task") == task_id), None)
            if index is None:
                raise errors.bad_request.InvalidQueueOrTaskNotQueued(task=task_id, queue=queue_id)
            target = {"front": 0, "back": len(entries) - 1, "forward": max(0, index - count),
                      "backward": min(len(entries) - 1, index + count)}[how]
            moved = entries[:index] + entries[index + 1:]
            moved.insert(target, entries[index])
            result = self.store.update_one({"_id": queue_id, "company": company, "entries": entries},
                                          {"$set": {"entries": moved, "last_update": utcnow()}})
            if result.modified_count or moved == entries:
                return target
        raise errors.bad_request.InvalidQueueOrTaskNotQueued("the queue kept changing; try again")

    def add_or_update_metadata(self, company: str, queue_id: str, items: list[dict[str, Any]], replace: bool) -> int:
        queue = self.entries.get(company, queue_id, {"_id": 1})["_id"]
        return metadata.add_or_update(self.store, queue, items, replace)

    def delete_metadata(self, company: str, queue_id: str, keys: list[str]) -> int:
        return metadata.delete(self.store, self.entries.get(company, queue_id, {"_id": 1})["_id"], keys)

    def num_entries(self, company: str, queue_id: str) -> int:
        return len(self.entries.get(company, queue_id, {"entries.task": 1}).get("entries") or [])

    def peek(self, company: str, queue_id: str) -> str | None:
        entries = self.entries.get(company, queue_id, {"entries": {"$slice": 1}}).get("entries") or []
        return entries[0]["task"] if entries else None

    def by_task(self, company: str, task_id: str) -> dict[str, Any] | None:
        doc = self.store.find_one({"company": company, "entries.task": task_id})
        return self.to_api(doc) if doc else None

    def sample_metrics(self) -> int:
        """Record every queue's length and average wait now (a scheduler job)."""
        return self.entries.record_metrics(self.store.find({}, {"company": 1, "entries": 1}))

    def metrics(self, company: str, data: dict[str, Any]) -> list[dict[str, Any]]:
        """Per interval with samples: each queue's mean length and waiting time, for the queues asked;
        without ``queue_ids``, one series ``total`` for all the company's queues (lengths summed,
        waiting times weighted by length; a queue without samples in an interval keeps its last
        values). Dates are epoch milliseconds, as ClearML answers them (the web app reads them so)."""
        start, end = q.parse_date(data["from_date"], "from_date"), q.parse_date(data["to_date"], "to_date")
        interval = int(data["interval"])
        if end <= start:
            raise errors.bad_request.ImpossibleTimeRange(from_date=data["from_date"], to_date=data["to_date"])
        flt: dict[str, Any] = {"company": company, "timestamp": {"$gte": start, "$lt": end}}
        asked = data.get("queue_ids")
        ids = asked or [d["_id"] for d in self.store.find({"company": company}, {"_id": 1})]
        flt["queue"] = {"$in": ids}
        buckets: dict[str, dict[int, list[tuple[float, float]]]] = {qid: {} for qid in ids}
        for s in store_of(QueueMetric).find(flt).sort("timestamp", 1):
            key = bucket(s["timestamp"], start, interval)
            buckets[s["queue"]].setdefault(key, []).append((s["queue_length"], s["avg_waiting_time"]))
        def mean(points: list[tuple[float, float]]) -> tuple[float, float]:
            return sum(p[0] for p in points) / len(points), sum(p[1] for p in points) / len(points)

        if not asked:
            keys = sorted({k for per_queue in buckets.values() for k in per_queue})
            last: dict[str, tuple[float, float]] = {}
            total = {"queue": "total", "dates": bucket_dates(start, interval, keys), "queue_lengths": [],
                     "avg_waiting_times": []}
            for key in keys:
                last.update({qid: mean(per_queue[key]) for qid, per_queue in buckets.items() if key in per_queue})
                length = sum(v[0] for v in last.values())
                total["queue_lengths"].append(length)
                total["avg_waiting_times"].append(sum(v[0] * v[1] for v in last.values()) / length if length else 0)
            return [total]
        out = []
        for qid in ids:
            keys = sorted(buckets[qid])
            means = [mean(buckets[qid][k]) for k in keys]
            out.append({"queue": qid, "dates": bucket_dates(start, interval, keys),
                        "queue_lengths": [m[0] for m in means], "avg_waiting_times": [m[1] for m in means]})
        return out

    # -- entries -------------------------------------------------------------------------------

    def clear(self, identity: Identity, queue_id: str, reason: str | None = None) -> list[str]:
        """Dequeue every task of a queue (each back to its status before enqueue); the ids removed."""
        entries = self.entries.get(identity.company, queue_id, {"entries.task": 1}).get("entries") or []
        removed = [e["task"] for e in entries]
        for task_id in removed:
            task = self.tasks.own(identity.company, task_id, {"status": 1})
            if task is not None and task["status"] == st.QUEUED:
                with contextlib.suppress(errors.bad_request.TaskStatusChanged):  # a worker took it meanwhile
                    self.tasks.dequeue(identity, {"task": task_id, "status_reason": reason})
            self.entries.remove_entry(identity.company, queue_id, task_id)
        return removed

    def move_task_to_queue(self, identity: Identity, task_id: str, queue_id: str, target_id: str) -> int:
        """Move a queued task from one queue to the back of another; its position there."""
        task = self.tasks.writable(identity.company, task_id)
        self.entries.get(identity.company, target_id, {"_id": 1})
        if not self.entries.remove_entry(identity.company, queue_id, task_id):
            self.entries.get(identity.company, queue_id, {"_id": 1})
            raise errors.bad_request.InvalidQueueOrTaskNotQueued(task=task_id, queue=queue_id)
        self.entries.add_entry(identity.company, target_id, task_id)
        self.tasks.set_queue(identity.company, task, target_id)
        entries = self.entries.get(identity.company, target_id, {"entries.task": 1}).get("entries") or []
        return len(entries) - 1

    def add_task(self, company: str, queue_id: str, task_id: str, update_execution_queue: bool = True) -> None:
        """queues.add_task: only a task of the company goes in; its status does not change, its
        ``execution.queue`` becomes this queue (unless ``update_execution_queue`` is false), as in ClearML."""
        task = self.tasks.writable(company, task_id)
        self.entries.add_entry(company, queue_id, task_id)
        if update_execution_queue:
            self.tasks.set_queue(company, task, queue_id)

    def remove_task(self, identity: Identity, queue_id: str, task_id: str, update_task_status: bool) -> int:
        """queues.remove_task: the queue must exist; with ``update_task_status`` a queued task also
        goes back to the status it had before it was enqueued (as tasks.dequeue)."""
        self.entries.get(identity.company, queue_id, {"_id": 1})
        if update_task_status:
            task = self.tasks.writable(identity.company, task_id)
            if task["status"] == st.QUEUED and (task.get("execution") or {}).get("queue") == queue_id:
                return self.tasks.dequeue(identity, {"task": task_id})["dequeued"]
        return self.entries.remove_entry(identity.company, queue_id, task_id)

    def next_task(self, identity: Identity, queue_id: str, task_info: bool = False) -> dict[str, Any]:
        """Pop the queue's first entry whose task is still queued; stale entries are dropped."""
        self.entries.get(identity.company, queue_id, {"_id": 1})
        while True:
            entry = self.entries.pop_front(identity.company, queue_id)
            if entry is None:
                return {}
            task = self.tasks.own(identity.company, entry["task"], {"status": 1, "company": 1, "user": 1})
            if task is None or task["status"] != st.QUEUED:
                continue
            answer: dict[str, Any] = {"entry": entry}
            if task_info:
                answer["task_info"] = {"company": task["company"], "user": task["user"]}
            return answer
