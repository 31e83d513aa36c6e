"""Owns manager tasks and workers: compile, claim by priority, progress, release on timeout.

Task statuses: waiting, rendering, completed, failed, canceled. Worker statuses: enabled,
available, rendering, disabled, error. Every claim is a compare-and-set ``update_one`` on the
task's status, so two workers (in any process) never get the same task.

A compiled command is a list of arguments (``args``), each setting's value inside its own
argument: a worker runs it without a shell. ``command`` is the same list joined with shell
quoting (``shlex.join``) for people and for workers that insist on a shell line.
"""

from __future__ import annotations

import json
import shlex
import string
from datetime import timedelta
from typing import Any

from apiserver.apierrors import errors
from apiserver.bll import access
from apiserver.bll.auth.identity import Identity
from apiserver.config.settings import ManagerSettings
from apiserver.database.errors import DuplicateKeyError
from apiserver.database.model.base import new_id, utcnow
from apiserver.database.model.render import Counter, RenderTask
from apiserver.database.model.worker import Worker
from apiserver.database.store import store_of

TASK_STATUSES = ("waiting", "rendering", "completed", "failed", "canceled")
WORKER_STATUSES = ("enabled", "available", "rendering", "disabled", "error")
# Waiting tasks one claim reads and tries in order; about the number of workers that ask at once.
CLAIM_CANDIDATES = 16
TASK_FIELDS = ("id", "worker_id", "priority", "frame_start", "frame_end", "frame_current", "status", "format",
               "type", "parser", "settings", "command", "args", "created", "updated")


def next_id(name: str) -> int:
    """The next integer of a sequence, by compare-and-set (safe across processes)."""
    coll = store_of(Counter)
    for _ in range(1000):
        doc = coll.find_one({"_id": name})
        if doc is None:
            try:
                coll.insert_one({"_id": name, "seq": 1})
                return 1
            except DuplicateKeyError:
                continue
        if coll.update_one({"_id": name, "seq": doc["seq"]}, {"$set": {"seq": doc["seq"] + 1}}).modified_count:
            return doc["seq"] + 1
    raise errors.server_error.DataError("id sequence is too busy; try again", sequence=name)


def _check_argument_value(name: str, value: Any, starts_argument: bool) -> None:
    """A value put into an argument: a scalar, no NUL, and not an option where it starts the argument."""
    field = f"settings.{name}"
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise errors.bad_request.ValidationError(f"{field} must be a string or a number",
                                                 error_data={"field": field, "rule": "type"})
    if isinstance(value, str) and "\x00" in value:
        raise errors.bad_request.ValidationError(f"{field} must not hold a NUL character",
                                                 error_data={"field": field, "rule": "format"})
    if starts_argument and isinstance(value, str) and value.startswith("-"):
        raise errors.bad_request.ValidationError(
            f"{field} must not start with '-': the program would read it as an option",
            error_data={"field": field, "rule": "option"})


class ManagerBLL:
    def __init__(self, settings: ManagerSettings):
        self.compilers: dict[str, dict[str, Any]] = settings.compilers
        self.parsers: list[str] = list(settings.parsers)
        self.worker_timeout = timedelta(seconds=settings.worker_timeout_sec)

    @property
    def render_tasks(self):
        return store_of(RenderTask)

    @property
    def workers(self):
        return store_of(Worker)

    # -- tasks --------------------------------------------------------------------------------

    @staticmethod
    def task_to_api(doc: dict[str, Any]) -> dict[str, Any]:
        out = {k: doc.get(k) for k in TASK_FIELDS if k != "id"}
        out["id"] = doc["_id"]
        return out

    def _settings_dict(self, settings: Any) -> dict[str, Any]:
        if settings is None or settings == "":
            return {}
        if isinstance(settings, dict):
            return settings
        try:
            parsed = json.loads(settings)
        except (TypeError, ValueError):
            raise errors.bad_request.ValidationError("settings must be a JSON object (as text or object)",
                                                     error_data={"field": "settings", "rule": "format"}) from None
        if not isinstance(parsed, dict):
            raise errors.bad_request.ValidationError("settings must be a JSON object",
                                                     error_data={"field": "settings", "rule": "type"})
        return parsed

    def _compile(self, kind: str, settings: dict[str, Any], frame_start: int, frame_end: int) -> list[str]:
        """The command as a list of arguments: each template element formatted on its own."""
        compiler = self.compilers[kind]
        template = compiler.get("command")
        if not isinstance(template, list) or not all(isinstance(e, str) for e in template):
            raise errors.server_error.ConfigError(f"manager.compilers.{kind}.command must be a list of arguments")
        missing = [k for k in compiler.get("settings_required") or [] if k not in settings]
        if missing:
            raise errors.bad_request.ValidationError(
                f"the {kind} compiler needs settings {missing}", error_data={"field": f"settings.{missing[0]}",
                                                                            "rule": "required"})
        values = {**(compiler.get("defaults") or {}), **settings, "frame_start": frame_start, "frame_end": frame_end}
        args = []
        for element in template:
            names = [name for _, name, _, _ in string.Formatter().parse(element) if name]
            for name in names:
                _check_argument_value(name, values.get(name, ""), starts_argument=element.startswith("{" + name))
            args.append(element.format(**{k: values.get(k, "") for k in names}))
        return args

    def create_task(self, identity: Identity, data: dict[str, Any]) -> dict[str, Any]:
        kind, parser = data["type"], data["parser"]
        if kind not in self.compilers:
            raise errors.bad_request.ValidationError(
                f"unknown compiler {kind!r}; known: {sorted(self.compilers)}", error_data={"field": "type",
                                                                                          "rule": "enum"})
        if parser not in self.parsers:
            raise errors.bad_request.ValidationError(
                f"unknown parser {parser!r}; known: {self.parsers}", error_data={"field": "parser", "rule": "enum"})
        settings = self._settings_dict(data.get("settings"))
        start = data.get("frame_start", settings.get("frame_start", 1))
        end = data.get("frame_end", settings.get("frame_end", start if "frame_start" in data else 1))
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end)):
            raise errors.bad_request.ValidationError("frame_start and frame_end must be integers",
                                                     error_data={"field": "frame_start", "rule": "type"})
        if start > end:
            raise errors.bad_request.ValidationError(f"frame_start {start} is after frame_end {end}",
                                                     error_data={"field": "frame_start", "rule": "maximum"})
        args = self._compile(kind, settings, start, end)
        now = utcnow()
        doc = {"_id": next_id("render_tasks"), "company": identity.company, "user": identity.user, "type": kind,
               "parser": parser, "settings": data.get("settings"), "args": args, "command": shlex.join(args),
               "priority": int(data.get("priority", 0)), "frame_start": start, "frame_end": end,
               "frame_current": start, "status": "waiting", "worker_id": None,
               "format": settings.get("format", data.get("format", "")), "created": now, "updated": now}
        if data.get("task_id") is not None:
            doc["external_id"] = data["task_id"]
        self.render_tasks.insert_one(doc)
        return self.task_to_api(doc)

    def get_task(self, company: str, task_id: int) -> dict[str, Any]:
        doc = access.by_id(self.render_tasks, task_id, (company,))
        if doc is None:
            raise errors.not_found.ObjectNotFound("no such task", task_id=task_id)
        return doc

    def list_tasks(self, company: str, status: str | None, limit: int) -> list[dict[str, Any]]:
        flt: dict[str, Any] = {"company": company}
        if status:
            flt["status"] = status
        docs = self.render_tasks.find(flt).sort([("priority", -1), ("_id", 1)]).limit(limit)
        return [self.task_to_api(d) for d in docs]

    def update_task(self, company: str, task_id: int, data: dict[str, Any]) -> None:
        doc = self.get_task(company, task_id)
        sets: dict[str, Any] = {k: data[k] for k in ("priority", "format") if k in data}
        if "status" in data:
            sets["status"] = data["status"]
            if data["status"] in ("waiting", "canceled", "failed", "completed") and doc.get("worker_id"):
                self._free_worker(doc["worker_id"], task_id)
                sets["worker_id"] = None
        if "frame_current" in data:
            self._check_frame(doc, data["frame_current"])
            sets["frame_current"] = data["frame_current"]
            if data["frame_current"] >= doc["frame_end"]:
                sets["status"] = "completed"
                if doc.get("worker_id"):
                    self._free_worker(doc["worker_id"], task_id)
        if sets:
            sets["updated"] = utcnow()
            self.render_tasks.update_one({"_id": task_id, "company": company}, {"$set": sets})

    @staticmethod
    def _check_frame(doc: dict[str, Any], frame: int) -> None:
        if not doc["frame_start"] <= frame <= doc["frame_end"]:
            raise errors.bad_request.ValidationError(
                f"frame_current must be within {doc['frame_start']}..{doc['frame_end']}",
                error_data={"field": "frame_current", "rule": "range"})

    def delete_task(self, company: str, task_id: int) -> None:
        doc = self.get_task(company, task_id)
        self.render_tasks.delete_one({"_id": task_id, "company": company})
        if doc.get("worker_id"):
            self._free_worker(doc["worker_id"], task_id)

    def _free_worker(self, worker_id: int, task_id: int) -> None:
        self.workers.update_one({"manager_id": worker_id, "render_task": task_id},
                                {"$set": {"render_task": None, "status": "available"}})

    # -- workers ------------------------------------------------------------------------------

    def register_worker(self, identity: Identity, data: dict[str, Any], ip: str | None) -> dict[str, Any]:
        """Register (or refresh) a worker by hostname; returns ``{hostname: worker}``."""
        now = utcnow()
        flt = {"company": identity.company, "worker": data["hostname"]}
        existing = self.workers.find_one(flt, {"manager_id": 1})
        sets = {"hostname": data["hostname"], "system": data.get("system"), "ip": ip, "last_activity_time": now,
                "expires_at": now + self.worker_timeout, "expired": False, "user": identity.user}
        for key in ("mac_address", "port"):
            if key in data:
                sets[key] = data[key]
        if existing and existing.get("manager_id"):
            self.workers.update_one(flt, {"$set": sets})
        else:
            sets.update({"manager_id": next_id("manager_workers"), "status": "enabled", "register_time": now})
            self.workers.update_one(flt, {"$set": sets, "$setOnInsert": {"_id": new_id(), "queues": []}},
                                    upsert=True)
        doc = self.workers.find_one(flt)
        return {doc["hostname"]: self.worker_summary(doc)}

    def worker_summary(self, doc: dict[str, Any]) -> dict[str, Any]:
        online = doc.get("last_activity_time") and doc["last_activity_time"] > utcnow() - self.worker_timeout
        return {"id": doc["manager_id"], "hostname": doc["hostname"], "system": doc.get("system"),
                "ip_address": doc.get("ip"), "port": doc.get("port"), "status": doc.get("status"),
                "connection": "online" if online else "offline", "current_task": doc.get("render_task"),
                "last_seen": doc.get("last_activity_time"),
                "activity": None, "log": None, "time_cost": None}

    def list_workers(self, company: str) -> dict[str, Any]:
        docs = self.workers.find({"company": company, "manager_id": {"$ne": None}}).sort("manager_id", 1)
        return {d["hostname"]: self.worker_summary(d) for d in docs}

    def get_worker(self, company: str, worker_id: int) -> dict[str, Any]:
        doc = self.workers.find_one({"company": company, "manager_id": worker_id})
        if doc is None:
            raise errors.not_found.ObjectNotFound("no such worker", worker_id=worker_id)
        return doc

    def worker_info(self, company: str, worker_id: int) -> dict[str, Any]:
        doc = self.get_worker(company, worker_id)
        return {"id": worker_id, "hostname": doc["hostname"], "mac_address": doc.get("mac_address"),
                "system": doc.get("system"), "status": doc.get("status"),
                "connection": self.worker_summary(doc)["connection"],
                "update_frequent": doc.get("update_frequent") or {},
                "update_less_frequent": doc.get("update_less_frequent") or {}, "task_id": doc.get("render_task")}

    def report(self, company: str, worker_id: int, data: dict[str, Any]) -> dict[str, Any]:
        """A worker reports status, stats and progress; the answer names the task it should render.

        The worker's record is written only if its status is still the one the report was decided
        from, so an operator's enable or disable at the same moment is never overwritten; the report
        is then decided again (and a task it claimed meanwhile goes back to waiting)."""
        for _ in range(100):
            doc = self.get_worker(company, worker_id)
            now = utcnow()
            sets: dict[str, Any] = {"last_activity_time": now, "expires_at": now + self.worker_timeout,
                                    "expired": False}
            for key in ("update_frequent", "update_less_frequent", "system", "mac_address"):
                if key in data:
                    sets[key] = data[key]
            status = data.get("status", doc.get("status"))
            if doc.get("status") == "disabled" and status not in ("enabled", "disabled"):
                status = "disabled"  # disabled until someone enables it; it gets no work meanwhile
            if status == "enabled":
                status = "available"
            held = doc.get("render_task")
            if held is not None and "frame_current" in data:
                self.update_task(company, held, {"frame_current": data["frame_current"]})
                held = self.workers.find_one({"_id": doc["_id"]}, {"render_task": 1}).get("render_task")
            if status in ("available", "error", "disabled") and held is not None:
                self._release(company, held, worker_id)  # it gave the task up (or broke): someone else takes it
                held = None
            claimed = None
            if status == "available":
                held = claimed = self._claim(company, worker_id)
                status = "rendering" if held is not None else "available"
            sets.update({"status": status, "render_task": held})
            if self.workers.update_one({"_id": doc["_id"], "status": doc.get("status")},
                                       {"$set": sets}).matched_count:
                return {"task_id": held}
            if claimed is not None:
                self._release(company, claimed, worker_id)
        raise errors.conflict.ConcurrentChange("the worker kept changing; try again", worker_id=worker_id)

    def set_worker_status(self, company: str, worker_id: int, status: str) -> dict[str, Any]:
        """An operator enables or disables a worker. A disabled worker gets no work (its reports keep it
        disabled) and the task it held goes back to waiting; enabled, it takes work at its next report."""
        for _ in range(100):
            doc = self.get_worker(company, worker_id)
            held = doc.get("render_task") if status == "disabled" else None
            sets = {"status": status, **({"render_task": None} if held is not None else {})}
            moved = self.workers.update_one({"_id": doc["_id"], "status": doc.get("status"),
                                             "render_task": doc.get("render_task")}, {"$set": sets})
            if moved.matched_count:
                if held is not None:
                    self._release(company, held, worker_id)
                return self.worker_summary(self.get_worker(company, worker_id))
        raise errors.conflict.ConcurrentChange("the worker kept changing; try again", worker_id=worker_id)

    def _release(self, company: str, task_id: int, worker_id: int) -> None:
        self.render_tasks.update_one(
            {"_id": task_id, "company": company, "worker_id": worker_id, "status": "rendering"},
            {"$set": {"status": "waiting", "worker_id": None, "updated": utcnow()}})

    def _claim(self, company: str, worker_id: int) -> int | None:
        """The waiting task of highest priority (oldest first), taken by compare-and-set.

        One sorted read gives the first ``CLAIM_CANDIDATES`` waiting tasks and the worker tries them
        in order: a worker that loses the front task to another takes the next one without reading
        the list again (on SecantusDB every sorted read collects and sorts every waiting task).
        """
        for _ in range(1000):
            candidates = list(self.render_tasks.find({"company": company, "status": "waiting"}, {"_id": 1},
                                              sort=[("priority", -1), ("_id", 1)], limit=CLAIM_CANDIDATES))
            if not candidates:
                return None
            for candidate in candidates:
                taken = self.render_tasks.update_one({"_id": candidate["_id"], "status": "waiting"},
                                              {"$set": {"status": "rendering", "worker_id": worker_id,
                                                        "updated": utcnow()}})
                if taken.modified_count:
                    return candidate["_id"]
        return None

    def release_silent_workers(self) -> int:
        """Workers silent past the timeout go offline; their tasks go back to waiting."""
        cutoff = utcnow() - self.worker_timeout
        released = 0
        for doc in self.workers.find({"manager_id": {"$ne": None}, "last_activity_time": {"$lt": cutoff},
                                      "render_task": {"$ne": None}}):
            self._release(doc["company"], doc["render_task"], doc["manager_id"])
            # only if it stayed silent meanwhile (a report would have changed last_activity_time)
            self.workers.update_one({"_id": doc["_id"], "last_activity_time": doc["last_activity_time"]},
                                    {"$set": {"render_task": None, "status": "available"}})
            released += 1
        return released
