"""Owns storing what an import brings: users as owners, projects, tasks, events, models, queues and files,
each keyed by its id on the source, so that running an import again changes nothing and an interrupted
one is finished by running it again.

- Records (projects, tasks, models, queues) are compared with what this server holds under the same id
  and written whole only when they differ (``new`` / ``updated`` / ``unchanged`` in the summary). A
  project or queue whose name another record here already has is merged into that one (names are
  unique per company): its tasks, models and entries point at the one here. An id held by another
  company is never touched (``conflicts``).
- A task's events are keyed by (task, event type): when this server's count of a type differs from the
  source's, the task's events are replaced by the source's (written through the events add path, as a
  client's batches are), so a second run adds nothing and a run after new work brings it whole.
- A file under one of the source's file-server prefixes is copied to the same path of this server's
  store and its URL rewritten to ``files_url``; a file that is there already is not fetched again.
  Other links (S3, another server) stay as they are.
- Users are created as owners only (their id and name; no password, no credentials).
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from apiserver.apierrors import errors
from apiserver.bll import metadata
from apiserver.bll.auth.identity import Identity
from apiserver.bll.auth.users import AuthBLL
from apiserver.bll.events.events import EVENT_TYPES, EventBLL
from apiserver.bll.files import paths
from apiserver.bll.files.files import FileBLL
from apiserver.bll.models.models import ModelBLL
from apiserver.bll.projects.projects import ProjectBLL
from apiserver.bll.queues.queues import QueueBLL
from apiserver.bll.tasks.fields import last_metrics_to_storage, to_storage
from apiserver.bll.tasks.tasks import TaskBLL
from apiserver.database.model.base import date_fields
from apiserver.database.model.model import Model
from apiserver.database.model.project import Project
from apiserver.database.model.queue import Queue
from apiserver.database.model.task import Task

KINDS = ("users", "projects", "tasks", "events", "models", "queues", "files")
EVENT_BATCH = 5000
# What a source answers that is its own bookkeeping, not the record's.
_NOT_STORED = ("company", "company_origin", "id")
_DATES = {"projects": date_fields(Project), "tasks": date_fields(Task), "models": date_fields(Model),
          "queues": date_fields(Queue)}

Fetch = Callable[[str], Iterator[bytes]]


@dataclass
class Tally:
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    merged: int = 0
    conflicts: int = 0
    failed: int = 0
    bytes: int = 0
    seconds: float = 0.0  # spent reading and writing them (events: their batches; files: the copies)


def as_datetime(value: Any) -> datetime | None:
    """A source's time (ISO text, epoch milliseconds or a datetime) as the naive UTC datetime stored here,
    to the millisecond (what MongoDB keeps, so a second run compares equal)."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        when = datetime.fromtimestamp(value / 1000, UTC)
    elif isinstance(value, datetime):
        when = value
    else:
        when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if when.tzinfo is not None:
        when = when.astimezone(UTC).replace(tzinfo=None)
    return when.replace(microsecond=when.microsecond // 1000 * 1000)


def ref_id(value: Any) -> Any:
    """An id a source may answer as ``{id, name}`` (ClearML's get_all_ex dereferences some)."""
    return value.get("id") if isinstance(value, dict) else value


class Progress:
    """One kind's progress: a bar redrawn in place on a terminal, else a plain line every tenth."""

    def __init__(self, kind: str, total: int, out: Any = None):
        self.kind, self.total, self.done = kind, total, 0
        self.out = out or sys.stderr
        self.tty = self.out.isatty()
        self._shown = -1
        self._draw()

    def step(self, n: int = 1) -> None:
        self.done += n
        self._draw()

    def _draw(self) -> None:
        share = self.done / self.total if self.total else 1.0
        if self.tty:
            bar = "#" * int(share * 30)
            end = "\n" if self.done >= self.total else ""
            self.out.write(f"\r{self.kind:<9}[{bar:<30}] {self.done}/{self.total}{end}")
        elif int(share * 10) != self._shown:
            self._shown = int(share * 10)
            self.out.write(f"{self.kind}: {self.done}/{self.total}\n")
        self.out.flush()


class TransferWriter:
    """Writes one import's records into ``company`` as ``user`` (the target's admin), through the
    stores and rules of each domain."""

    def __init__(self, auth: AuthBLL, projects: ProjectBLL, tasks: TaskBLL, events: EventBLL, models: ModelBLL,
                 queues: QueueBLL, files: FileBLL, company: str, user: str, files_url: str,
                 source_files: list[str], fetch: Fetch, files_folder: str = ""):
        self.auth, self.projects, self.tasks, self.events = auth, projects, tasks, events
        self.models, self.queues, self.files = models, queues, files
        self.company = company
        self.identity = Identity(user=user, company=company, role="admin")
        self.files_url = files_url.rstrip("/")
        self.source_files = [p.rstrip("/") for p in source_files if p]
        self.fetch = fetch
        self.files_folder = files_folder.strip("/")  # copied files' folder here ("" keeps the source's paths)
        self.tally: dict[str, Tally] = defaultdict(Tally)
        self.project_ids: dict[str, str | None] = {}  # source id -> id here (merged by name; None: conflicted)
        self.queue_ids: dict[str, str] = {}
        self.problems: list[str] = []

    # -- records ---------------------------------------------------------------------------------

    def _stored(self, kind: str, record: dict[str, Any]) -> dict[str, Any]:
        doc = {k: v for k, v in record.items() if k not in _NOT_STORED}
        for name in _DATES[kind]:
            if name in doc:
                doc[name] = as_datetime(doc[name])
        return {"_id": record["id"], "company": self.company, **doc}

    def _put(self, kind: str, store: Any, doc: dict[str, Any], kept: tuple[str, ...] = ()) -> bool:
        """Write ``doc`` under its id unless the same is stored; False when the id is another company's.
        ``kept``: fields this server owns once the record is here, written only when it is new (one atomic
        update, so what changes them meanwhile, e.g. an agent's dequeue, is not undone)."""
        current = store.find_one({"_id": doc["_id"]})
        tally = self.tally[kind]
        if current is not None and current.get("company") != self.company:
            tally.conflicts += 1
            self.problems.append(f"{kind[:-1]} {doc['_id']}: the id belongs to another company here; skipped")
            return False
        if kept:
            theirs = {k: v for k, v in doc.items() if k not in kept}
            if current is not None and {k: v for k, v in current.items() if k not in kept} == theirs:
                tally.unchanged += 1
                return True
            gone = {k: "" for k in current or {} if k not in doc and k not in kept}
            store.update_one({"_id": doc["_id"], "company": self.company},
                             {"$set": {k: v for k, v in theirs.items() if k not in ("_id", "company")},
                              "$setOnInsert": {k: doc[k] for k in kept if k in doc},
                              **({"$unset": gone} if gone else {})}, upsert=True)
        elif current == doc:
            tally.unchanged += 1
            return True
        else:
            store.replace_one({"_id": doc["_id"], "company": self.company}, doc, upsert=True)
        if current is None:
            tally.new += 1
        else:
            tally.updated += 1
        return True

    def put_user(self, user_id: str, name: str) -> None:
        tally = self.tally["users"]
        try:
            self.auth.create_user(self.company, name or user_id, "user", user_id=user_id)
            tally.new += 1
        except errors.bad_request.UserIdExists:
            tally.unchanged += 1

    def put_projects(self, projects: list[dict[str, Any]]) -> None:
        """Projects parents first, with ``parent`` and ``path`` as ids here."""
        by_name = {p["name"]: p for p in projects}
        progress = Progress("projects", len(projects))
        for project in sorted(projects, key=lambda p: p["name"].count("/")):
            name = project["name"]
            same_name = self.projects.store.find_one({"company": self.company, "name": name}, {"_id": 1})
            if same_name is not None and same_name["_id"] != project["id"]:
                self.project_ids[project["id"]] = same_name["_id"]
                self.tally["projects"].merged += 1
                progress.step()
                continue
            parent_name = name.rsplit("/", 1)[0] if "/" in name else None
            parent = by_name.get(parent_name) if parent_name else None
            parent_id = self.project_ids.get(parent["id"]) if parent else None  # its parent came first
            path = []
            if parent_id:
                above = self.projects.store.find_one({"_id": parent_id, "company": self.company}, {"path": 1}) or {}
                path = [*above.get("path", []), parent_id]
            doc = self._stored("projects", {**project, "parent": parent_id, "path": path,
                                            "basename": name.rsplit("/", 1)[-1]})
            for key in ("stats", "sub_projects", "own_tasks", "own_models", "dataset_stats", "hidden"):
                doc.pop(key, None)
            # an id another company holds here is named by nothing imported (no parent, task or model)
            self.project_ids[project["id"]] = project["id"] if self._put("projects", self.projects.store, doc) else None
            progress.step()

    def project_of(self, source_id: Any) -> Any:
        source_id = ref_id(source_id)
        return self.project_ids.get(source_id, source_id) if source_id else source_id

    def put_task(self, task: dict[str, Any]) -> dict[str, Any] | None:
        """The task as the source has it; answers the stored document (None: the id is another company's)."""
        record = {**task, "project": self.project_of(task.get("project")), "parent": ref_id(task.get("parent")),
                  "user": ref_id(task.get("user")) or self.identity.user}
        execution = dict(record.get("execution") or {})
        if execution.get("queue"):
            execution["queue"] = self.queue_ids.get(ref_id(execution["queue"]), ref_id(execution["queue"]))
        if execution.get("model"):
            execution["model"] = ref_id(execution["model"])
        models = record.get("models")
        if isinstance(models, dict):  # links to models, their ids as ids (a *_ex listing answers {id})
            record["models"] = {kind: [{**m, "model": ref_id(m.get("model"))} if isinstance(m, dict) else m
                                       for m in links] if isinstance(links, list) else links
                                for kind, links in models.items()}
        artifacts = execution.get("artifacts")
        if isinstance(artifacts, list):
            execution["artifacts"] = [{**a, "uri": self.put_file(a["uri"])} if a.get("uri") else a
                                      for a in artifacts]
        record["execution"] = execution
        doc = to_storage(self._stored("tasks", record))
        return doc if self._put("tasks", self.tasks.store, doc) else None

    def restore_task(self, doc: dict[str, Any]) -> None:
        """The task's record as the source has it again, after its events were written (the events add
        path records their last iteration and metrics on the task, and its time of update)."""
        self.tasks.store.replace_one({"_id": doc["_id"], "company": self.company}, doc)

    def put_model(self, model: dict[str, Any]) -> None:
        record = {**model, "project": self.project_of(model.get("project")), "task": ref_id(model.get("task")),
                  "user": ref_id(model.get("user")) or self.identity.user, "parent": ref_id(model.get("parent"))}
        if record.get("uri"):
            record["uri"] = self.put_file(record["uri"])
        record["metadata"] = metadata.stored(record.get("metadata"))
        if isinstance(record.get("last_metrics"), dict):
            record["last_metrics"] = last_metrics_to_storage(record["last_metrics"])
        for key in ("stats",):
            record.pop(key, None)
        self._put("models", self.models.store, self._stored("models", record))

    def put_queue(self, queue: dict[str, Any]) -> None:
        """A queue's record (merged by name into the one here that has its name); entries come later."""
        same_name = self.queues.store.find_one({"company": self.company, "name": queue["name"]}, {"_id": 1})
        if same_name is not None and same_name["_id"] != queue["id"]:
            self.queue_ids[queue["id"]] = same_name["_id"]
            self.tally["queues"].merged += 1
            return
        # its entries are this server's (put_entries adds the source's), and so is the time they last changed
        record = {**queue, "entries": [], "user": ref_id(queue.get("user")),
                  "metadata": metadata.stored(queue.get("metadata"))}
        for key in ("workers", "entries_count"):
            record.pop(key, None)
        if self._put("queues", self.queues.store, self._stored("queues", record), kept=("entries", "last_update")):
            self.queue_ids[queue["id"]] = queue["id"]

    def put_entries(self, queue: dict[str, Any], imported_tasks: set[str]) -> None:
        """The queue's entries of imported tasks that the queue here lacks, in the source's order."""
        queue_id = self.queue_ids.get(queue["id"])
        if queue_id is None:
            return
        for entry in queue.get("entries") or []:
            task = ref_id(entry.get("task"))
            if task in imported_tasks:
                with contextlib.suppress(errors.bad_request.TaskAlreadyQueued):
                    self.queues.entries.add_entry(self.company, queue_id, task)

    # -- events ----------------------------------------------------------------------------------

    def events_current(self, task_id: str, source_totals: dict[str, int]) -> bool:
        """True when this server holds as many events of every type of the task as the source."""
        return all(self.event_total(task_id, kind) == total for kind, total in source_totals.items())

    def event_total(self, task_id: str, event_type: str) -> int:
        return self.events.get_task_events(self.company, {"task": task_id, "event_type": event_type,
                                                          "batch_size": 1})["total"]

    def replace_events(self, task_id: str, batches: Iterable[list[dict[str, Any]]]) -> int:
        """The task's events as the source has them: what is here goes, the source's come in batches."""
        started = time.monotonic()
        self.events.delete_for_task(self.company, task_id)
        added = 0
        pending: list[dict[str, Any]] = []
        for batch in batches:
            for event in batch:
                if event.get("type") not in EVENT_TYPES:
                    continue
                event = {**event, "task": task_id}
                if event.get("url"):
                    event["url"] = self.put_file(event["url"])
                pending.append(event)
            if len(pending) >= EVENT_BATCH:
                added += self._add_events(pending)
                pending = []
        if pending:
            added += self._add_events(pending)
        self.tally["events"].new += added
        self.tally["events"].seconds += time.monotonic() - started
        return added

    def _add_events(self, events: list[dict[str, Any]]) -> int:
        try:
            result = self.events.add_events(self.identity, events)
        except errors.bad_request.EventsNotAdded as exc:  # none of them could be stored
            self.problems.append(f"events of task {events[0]['task']}: {exc.error_data.get('errors_info')}")
            return 0
        if result["errors"]:
            self.problems.append(f"events of task {events[0]['task']}: {result['errors_info']}")
        return result["added"]

    def skip_events(self, count: int) -> None:
        self.tally["events"].unchanged += count

    # -- files -----------------------------------------------------------------------------------

    def put_file(self, url: str) -> str:
        """The URL here of a file on the source's file server (copied unless it is here); any other URL as is."""
        for prefix in self.source_files:
            path = paths.url_path(url, [prefix])
            if path is None:
                continue
            tally = self.tally["files"]
            rest = url[len(prefix) + 1:]
            if self.files_folder:
                path, rest = f"{self.files_folder}/{path}", f"{self.files_folder}/{rest}"
            key = paths.key_of(self.company, path)
            new_url = f"{self.files_url}/{rest}"
            if self.files.store.stat(key) is not None:
                tally.unchanged += 1
                return new_url
            started = time.monotonic()
            try:
                counted = _Counted(self.fetch(url))
                self.files.upload(self.identity, iter([(path, counted)]), None)
            except Exception as exc:  # noqa: BLE001 - one file the source cannot give stays linked there
                tally.failed += 1
                self.problems.append(f"file {url}: {exc}")
                return url
            finally:
                tally.seconds += time.monotonic() - started
            tally.new += 1
            tally.bytes += counted.size
            return new_url
        return url

    # -- summary ---------------------------------------------------------------------------------

    def summary(self) -> str:
        lines = [f"{'kind':<9}{'new':>8}{'updated':>9}{'unchanged':>11}{'merged':>8}{'conflicts':>11}{'failed':>8}"]
        for kind in KINDS:
            t = self.tally[kind]
            extra = f"  ({t.bytes / 1e6:.1f} MB copied in {t.seconds:.1f} s)" if kind == "files" and t.bytes else \
                f"  (copied in {t.seconds:.1f} s)" if kind == "events" and t.new else ""
            lines.append(f"{kind:<9}{t.new:>8}{t.updated:>9}{t.unchanged:>11}{t.merged:>8}{t.conflicts:>11}"
                         f"{t.failed:>8}{extra}")
        lines += [f"problem: {p}" for p in self.problems[:50]]
        if len(self.problems) > 50:
            lines.append(f"... and {len(self.problems) - 50} more problems")
        return "\n".join(lines)


class _Counted:
    """The chunks of a download, counting its bytes."""

    def __init__(self, chunks: Iterator[bytes]):
        self.chunks, self.size = chunks, 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.chunks:
            self.size += len(chunk)
            yield chunk
