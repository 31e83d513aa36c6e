"""Owns the ``events`` collection: plots, debug images and vectors, one document per event (few per
task), and the scalar and log events older versions stored there one per document.

Reads are by task (the ``events`` indexes lead with it); the bll says which events a read means and
gets them here in the order it needs. On SecantusDB a filter with a top-level ``$or`` is read by
scanning every task's events, so no read here uses one.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from apiserver.database.events.selection import Selection, selected
from apiserver.database.model.base import new_id
from apiserver.database.model.event import LOG, SCALAR, Event
from apiserver.database.store import Store

# Scalar and log events stored one per document: the shape before their blocks.
_LEGACY = {"type": {"$in": [SCALAR, LOG]}}


def _of_types(types: list[str]) -> str | dict[str, list[str]]:
    return types[0] if len(types) == 1 else {"$in": types}


class EventStore(Store):
    """The ``events`` collection, read by task."""

    def __init__(self) -> None:
        super().__init__(Event)

    def add(self, company: str, events: list[dict[str, Any]]) -> None:
        """Store the company's events (plain dicts of the event fields), each with a new id."""
        self.coll.insert_many([{**e, "_id": new_id(), "company": company} for e in events], ordered=False)

    def page(self, task: str, types: list[str], selection: Selection | None, position: list | None, limit: int,
             descending: bool) -> tuple[list[dict[str, Any]], list | None]:
        """Up to ``limit`` of the task's events of these types (and selected series) in time order (or
        its reverse), after ``position`` ([timestamp, _id] of the last one read; None: from the
        start). Returns them and the next position, None when the read is done."""
        flt: dict[str, Any] = {"task": task, "type": _of_types(types)}
        if selection:
            flt["metric"] = {"$in": list(selection)}
        direction = -1 if descending else 1
        order = [("timestamp", direction), ("_id", direction)]
        docs: list[dict[str, Any]] = []
        if position:  # after (timestamp, _id): the rest of its timestamp, then the later ones (no top-level $or)
            op = "$lt" if descending else "$gt"
            docs = list(self.coll.find({**flt, "timestamp": position[0], "_id": {op: position[1]}}, {"company": 0})
                        .sort(order).limit(limit))
            flt["timestamp"] = {op: position[0]}
        if len(docs) < limit:
            docs += self.coll.find(flt, {"company": 0}).sort(order).limit(limit - len(docs))
        docs = [d for d in docs if selection is None or selected(selection, d.get("metric", ""), d.get("variant", ""))]
        if len(docs) < limit:
            return docs, None
        return docs, [docs[-1]["timestamp"], docs[-1]["_id"]]

    def count_of(self, task: str, types: list[str]) -> int:
        """How many events of these types the task has."""
        return self.coll.count_documents({"task": task, "type": _of_types(types)})

    def series(self, task: str, types: list[str]) -> set[tuple[str, str]]:
        """The (metric, variant) pairs of the task's events of these types."""
        rows = self.coll.aggregate([{"$match": {"task": task, "type": {"$in": types}}},
                                    {"$group": {"_id": {"m": "$metric", "v": "$variant"}}}])
        return {(row["_id"].get("m") or "", row["_id"].get("v") or "") for row in rows}

    def latest_per_iteration(self, task: str, event_type: str, selection: Selection | None
                             ) -> dict[tuple[str, str], dict[Any, dict[str, Any]]]:
        """{(metric, variant): {iteration: its latest event}} of the task's events of this type."""
        flt: dict[str, Any] = {"task": task, "type": event_type}
        if selection:
            flt["metric"] = {"$in": list(selection)}
        latest: dict[tuple[str, str], dict[Any, dict[str, Any]]] = defaultdict(dict)
        for doc in self.coll.find(flt, {"company": 0}):
            metric, variant = doc.get("metric", ""), doc.get("variant", "")
            if selection and not selected(selection, metric, variant):
                continue
            slot = latest[(metric, variant)]
            prev = slot.get(doc.get("iter"))
            if prev is None or (doc["timestamp"], doc["_id"]) > (prev["timestamp"], prev["_id"]):
                slot[doc.get("iter")] = doc
        return latest

    def keys_of(self, flt: dict[str, Any]) -> list[dict[str, Any]]:
        """Where each event matching ``flt`` sits: its _id, metric, variant, iter, timestamp and url (what
        the viewers navigate by), without the rest of the event."""
        return list(self.coll.find(flt, {"metric": 1, "variant": 1, "iter": 1, "timestamp": 1, "url": 1}))

    def by_ids(self, ids: list[str]) -> list[dict[str, Any]]:
        """These events, in the order of ``ids``."""
        found = {d["_id"]: d for d in self.coll.find({"_id": {"$in": ids}}, {"company": 0})}
        return [found[i] for i in ids if i in found]

    def iterations(self, flt: dict[str, Any], newest_first: bool, limit: int) -> list[Any]:
        """The first ``limit`` distinct iterations of the events matching ``flt``, newest first or oldest first."""
        rows = self.coll.aggregate([{"$match": flt}, {"$group": {"_id": "$iter"}},
                                    {"$sort": {"_id": -1 if newest_first else 1}}, {"$limit": limit}])
        return [r["_id"] for r in rows]

    def at_iterations(self, flt: dict[str, Any], iterations: list[Any]) -> list[dict[str, Any]]:
        """The events matching ``flt`` at these iterations, oldest first."""
        return list(self.coll.find({**flt, "iter": {"$in": iterations}}, {"company": 0}).sort("timestamp", 1))

    def urls(self, company: str, task: str) -> list[str]:
        """The file URLs the task's events point at, each once."""
        docs = self.coll.find({"company": company, "task": task, "url": {"$nin": [None, ""]}}, {"url": 1, "_id": 0})
        return list(dict.fromkeys(d["url"] for d in docs if d.get("url")))

    def delete_task(self, company: str, task: str) -> int:
        return self.coll.delete_many({"company": company, "task": task}).deleted_count

    # -- scalar and log events of the shape before blocks ----------------------------------------

    def has_legacy(self) -> bool:
        return self.coll.find_one(_LEGACY, {"_id": 1}) is not None

    def legacy_batch(self, limit: int) -> tuple[str, str, list[dict[str, Any]]] | None:
        """Up to ``limit`` old-shape scalar and log events of one task: (task, company, events); None
        when there are none left."""
        first = self.coll.find_one(_LEGACY, {"task": 1, "company": 1})
        if first is None:
            return None
        task = first["task"]
        return task, first.get("company", ""), list(self.coll.find({"task": task, **_LEGACY}).limit(limit))

    def delete_ids(self, ids: list[str]) -> None:
        self.coll.delete_many({"_id": {"$in": ids}})
