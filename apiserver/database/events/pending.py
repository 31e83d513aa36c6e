"""Owns the write path of scalars and console lines: one inserted document per add call and task, folded later.

An ``events.add_batch`` of a task costs the database one insert (``event_scalar_pending``: the call's
scalar points per series with their names, and its console lines), whatever the mix of events; an
insert is what the database does cheapest. Updating the read shapes (series blocks and overviews, log
blocks and their head) costs several updates of larger documents, so it is done for many calls at
once: once this process has added ``fold_every`` to twice as many calls (drawn per task, so that tasks
started together fold apart) or ``fold_points`` events of a task since its last fold, its folder
thread folds every pending document of the task (``fold``), under the task's fold lease (the
``fold_until`` of its ``event_scalar_tasks`` document), and deletes them. The add call that made the
fold due does not wait for it.

Readers see pending events too: a chart and a log page fold them in memory (``of_task``), readers of
raw points and whole logs fold first (``fold(task, wait=True)``). Stores that keep a read shape
register a folder (``folders``): it gets the task's pending documents and writes its shape, and returns
the update it wants on the task's ``event_scalar_tasks`` document, applied with the lease's release.

A document's ``series`` are ``[{k: series key, m: metric, r: variant, i: [iterations], t: [timestamps],
v: [values], single: {t, v} or absent}]``; its ``lines`` are console lines as stored in log blocks, and
``nl`` their count. Documents of the shape before this one carry only ``series`` without names: their
series were registered when they were added.
"""

from __future__ import annotations

import logging
import os
import queue
import random
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from pymongo.errors import DuplicateKeyError

from apiserver.database.model.base import new_id, utcnow
from apiserver.database.model.event import ScalarPending, ScalarSeriesList
from apiserver.database.writes import update_and_read

log = logging.getLogger(__name__)
LEASE_SEC = 60
DOC_BYTES = 4_000_000  # a pending document's lines at most (estimated), well under the 16 MB limit
LINE_OVERHEAD = 200  # bytes a line's fields besides its message may take
# A folder: (company, task, pending documents, the task's event_scalar_tasks document) -> the update to
# apply to that document with the release (operators -> fields), or {}.
Folder = Callable[[str, str, list[dict[str, Any]], dict[str, Any]], dict[str, dict[str, Any]]]


class PendingEvents:
    """Pending scalar points and console lines of tasks, and their folding into the read shapes."""

    def __init__(self, fold_every: int, fold_points: int):
        self.fold_every = fold_every
        self.fold_points = fold_points
        self.folders: list[Folder] = []
        # task -> [add calls, events] this process added since the task's last fold, and the calls it folds at
        self._since_fold: dict[str, list[int]] = {}
        self._lock = threading.Lock()
        self._due: queue.Queue[str] = queue.Queue()  # tasks this process's folder thread will fold
        self._queued: set[str] = set()
        self._folder: threading.Thread | None = None
        self._folder_pid = 0

    @property
    def coll(self):
        return ScalarPending._get_collection()

    @property
    def tasks(self):
        return ScalarSeriesList._get_collection()

    def ensure_indexes(self) -> None:
        self.coll.create_index([("task", 1)])
        self.coll.create_index([("company", 1), ("task", 1)])

    # -- writes -------------------------------------------------------------------------------

    def add(self, company: str, per_task: dict[str, dict[str, list]]) -> None:
        """Store each task's {series: [...], lines: [...]} as one document; fold the tasks this process
        has added enough to since it last folded them."""
        docs = []
        for task, parts in per_task.items():
            for series, lines in _chunks(parts.get("series") or [], parts.get("lines") or []):
                docs.append({"_id": f"{time.time_ns():016x}{new_id()[:8]}", "company": company, "task": task,
                             "series": series, "lines": lines, "nl": len(lines)})
        if not docs:
            return
        self.coll.insert_many(docs, ordered=False)
        due = []
        with self._lock:
            if len(self._since_fold) > 100_000:  # tasks that stopped reporting: forget their counts
                self._since_fold.clear()
            for doc in docs:
                # [calls, events, the calls this fold waits for]: between fold_every and twice that, drawn
                # per task, so that runs started together do not all fold at once (a burst of folds holds
                # the database while their add calls wait)
                count = self._since_fold.setdefault(doc["task"], [0, 0, random.randint(self.fold_every,
                                                                                          2 * self.fold_every)])
                count[0] += 1
                count[1] += doc["nl"] + sum(len(s["i"]) for s in doc["series"])
                if count[0] >= count[2] or count[1] >= self.fold_points:
                    due.append(doc["task"])
                    del self._since_fold[doc["task"]]
        if due:
            self._fold_later(due)

    def _fold_later(self, tasks: list[str]) -> None:
        """Hand the tasks to this process's folder thread: a fold (a few reads and writes of the task's
        blocks and overviews) is not paid by the add call that made it due."""
        with self._lock:
            fresh = [t for t in tasks if t not in self._queued]
            self._queued.update(fresh)
            if self._folder is None or not self._folder.is_alive() or self._folder_pid != os.getpid():
                self._folder_pid = os.getpid()
                self._folder = threading.Thread(target=self._fold_queued, name="events-folder", daemon=True)
                self._folder.start()
        for task in fresh:
            self._due.put(task)

    def _fold_queued(self) -> None:
        while True:
            task = self._due.get()
            with self._lock:
                self._queued.discard(task)
            try:
                self.fold(task)
            except Exception:  # the events stay pending: the task's next due fold or a reader folds them
                log.exception("folding the pending events of task %s failed", task)

    def fold(self, task: str, wait: bool = False) -> None:
        """Fold the task's pending documents into the read shapes, under its fold lease. ``wait``: when
        another process is folding the task, wait until it is done (readers of raw points)."""
        deadline = time.monotonic() + 30
        while True:
            first = self.coll.find_one({"task": task}, {"company": 1})
            if first is None:
                return
            now = utcnow()
            try:  # unset, null or past ($not, as a top-level $or is a full scan); a task's first fold makes it
                claimed = update_and_read(
                    self.tasks, {"_id": task, "fold_until": {"$not": {"$gte": now}}},
                    {"$set": {"fold_until": now + timedelta(seconds=LEASE_SEC)},
                     "$setOnInsert": {"company": first.get("company", "")}}, upsert=True)
            except DuplicateKeyError:  # another process holds the lease
                claimed = None
            if claimed is not None:
                break
            if not wait or time.monotonic() > deadline:
                return
            time.sleep(0.05)
        registered: dict[str, dict[str, Any]] = {}  # what the folders record, applied only if the fold completes
        try:
            docs = self.of_task(task)
            for folder in self.folders if docs else ():
                for op, fields in folder(claimed.get("company", ""), task, docs, claimed).items():
                    registered.setdefault(op, {}).update(fields)
            if docs:
                self.coll.delete_many({"_id": {"$in": [d["_id"] for d in docs]}})
        except BaseException:
            registered = {}
            raise
        finally:
            self.tasks.update_one({"_id": task}, {**registered,
                                                  "$set": {**registered.get("$set", {}), "fold_until": None}})

    # -- reads --------------------------------------------------------------------------------

    def of_task(self, task: str, projection: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """The task's pending documents, oldest first (their ids begin with the time they were added)."""
        return sorted(self.coll.find({"task": task}, projection), key=lambda d: d["_id"])

    # -- deletes ------------------------------------------------------------------------------

    def delete_task(self, company: str, task: str) -> None:
        self.coll.delete_many({"company": company, "task": task})
        with self._lock:
            self._since_fold.pop(task, None)


def _chunks(series: list[dict[str, Any]], lines: list[dict[str, Any]]) -> list[tuple[list, list]]:
    """One add call's parts of a task as pending documents: one, unless its lines are too long together
    for one document (the database's limit is 16 MB): then the lines go in as many as they need."""
    out: list[tuple[list, list]] = [(series, [])]
    size = 0
    for line in lines:
        line_size = len(line.get("msg") or "") * 4 + LINE_OVERHEAD  # at most 4 bytes a character in UTF-8
        if out[-1][1] and size + line_size > DOC_BYTES:
            out.append(([], []))
            size = 0
        out[-1][1].append(line)
        size += line_size
    return [(s, ls) for s, ls in out if s or ls]
