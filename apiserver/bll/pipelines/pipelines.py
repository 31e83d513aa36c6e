"""Owns pipeline records and their stepping through the member state machine.

A step moves pending -> starting -> started -> running -> completed (or failed / stopped). Every
move is one ``update_one`` whose filter holds the pipeline's current step and that step's status
as read, so a heartbeat in another process, or a status report handled at the same moment, can
never apply a move twice: ``/start`` is sent at most once per step.

A member's ``/status_report`` is a hint: the leader answers it, then asks the member itself with
``/status_request`` and moves the workflow only on that answer.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from apiserver.apierrors import errors
from apiserver.bll import access
from apiserver.bll.auth.identity import Identity
from apiserver.bll.pipelines import status as st
from apiserver.bll.pipelines.members import (
    CALL_LOG,
    MEMBER_WORDS,
    CallResult,
    MemberClient,
    MemberRegistry,
    log_call,
    note_ignored_report,
)
from apiserver.bll.query import page_bounds
from apiserver.config.settings import PipelineSettings
from apiserver.database.errors import DuplicateKeyError
from apiserver.database.model.base import new_id, utcnow
from apiserver.database.model.pipeline import Pipeline, PipelineHeartbeat, PipelineLog
from apiserver.database.store import store_of

log = logging.getLogger(__name__)

REPORT_STATUSES = ("success", "failed", "completed")
STOPPED_BEFORE_START = "stopped by user before the member answered /start"


class PipelineBLL:
    def __init__(self, registry: MemberRegistry, client: MemberClient, settings: PipelineSettings):
        self.registry = registry
        self.client = client
        self.max_missed = settings.max_missed_beats
        self.default_workflow = list(settings.default_workflow)
        self.host_only = settings.reports_from_member_host_only
        self._pool = ThreadPoolExecutor(max_workers=settings.max_concurrent_calls,
                                        thread_name_prefix="pipeline")
        self._in_flight: set[str] = set()
        self._lock = threading.Lock()

    @property
    def store(self):
        return store_of(Pipeline)

    def ensure_indexes(self) -> None:
        """One running pipeline per user and project (``start`` relies on it), which is also the one
        a member's report names (``/status_report`` carries only the user and the project). A database
        made by an earlier version has it already, declared by the model with mongoengine's options; it
        is kept (asking for it again with other options is refused as a conflicting index)."""
        self.store.ensure_index([("user_id", 1), ("project_id", 1)], "one_running_per_user_project", unique=True,
                               partialFilterExpression={"status": st.RUNNING})

    # -- records ------------------------------------------------------------------------------

    @staticmethod
    def to_api(doc: dict[str, Any]) -> dict[str, Any]:
        steps = [{k: s.get(k) for k in ("container_id", "status", "start_calls", "started", "finished", "reason")}
                 for s in doc.get("steps") or []]
        return {"id": doc["_id"], "project_id": doc["project_id"], "user_id": doc["user_id"],
                "status": doc["status"], "current_step": doc.get("current_step", 0), "steps": steps,
                "reason": doc.get("reason"), "created": doc.get("created"), "started": doc.get("started"),
                "finished": doc.get("finished")}

    def get(self, company: str, pipeline_id: str) -> dict[str, Any]:
        doc = access.by_id(self.store, pipeline_id, (company,))
        if doc is None:
            raise errors.bad_request.InvalidPipelineId(id=pipeline_id)
        return doc

    def create(self, identity: Identity, project_id: str, workflow: list[str] | None) -> str:
        workflow = workflow or self.default_workflow
        if not workflow:
            raise errors.bad_request.ValidationError("the workflow is empty and no default is configured",
                                                     error_data={"field": "workflow", "rule": "minItems"})
        for i, cid in enumerate(workflow):
            self.registry.check_id(cid, identity.company, f"workflow.{i}")
        now = utcnow()
        doc = {"_id": new_id(), "company": identity.company, "user_id": identity.user, "project_id": project_id,
               "status": st.CREATED, "current_step": 0, "created": now,
               "steps": [{"container_id": cid, "status": st.PENDING, "start_calls": 0, "misses": 0}
                         for cid in workflow]}
        self.store.insert_one(doc)
        return doc["_id"]

    def get_all(self, company: str, data: dict[str, Any]) -> list[dict[str, Any]]:
        flt: dict[str, Any] = {"company": company}
        for key in ("status", "project_id"):
            if data.get(key):
                flt[key] = {"$in": data[key]} if isinstance(data[key], list) else data[key]
        skip, limit = page_bounds(data.get("page"), data.get("page_size"))
        return [self.to_api(d) for d in self.store.find(flt).sort([("created", -1), ("_id", 1)]).skip(skip)
                .limit(limit)]

    def get_log(self, company: str, pipeline_id: str) -> list[dict[str, Any]]:
        self.get(company, pipeline_id)
        rows = store_of(PipelineLog).find({"pipeline": pipeline_id}, {"company": 0, "pipeline": 0}) \
            .sort([("time", 1), ("_id", 1)])
        return [{k: v for k, v in r.items() if k != "_id"} for r in rows]

    def check_members_of(self, company: str, pipeline_id: str | None, container_ids: list[str] | None
                         ) -> list[dict[str, Any]]:
        """Readiness of a pipeline's members, of the given ids, or of every known member."""
        if pipeline_id:
            ids = sorted({s["container_id"] for s in self.get(company, pipeline_id)["steps"]})
        else:
            ids = container_ids or sorted(self.registry.known_ids(company))
        for i, cid in enumerate(ids):
            self.registry.check_id(cid, company, f"container_ids.{i}")
        return self.check_members(ids, company)

    def check_members(self, workflow: list[str], company: str) -> list[dict[str, Any]]:
        """Ask each of the company's members with empty ids whether it is ready, and record the answers."""
        calls = CALL_LOG.new_batch()
        try:
            futures = {cid: self._pool.submit(CALL_LOG.batched(self.client.call, calls), cid, "status_request",
                                              "", "", None, company) for cid in workflow}
            out = []
            for cid, future in futures.items():
                result = future.result()
                ready = self.registry.record_readiness(cid, company, result)
                out.append({"container_id": cid, "ready": ready, "answer": result.answer, "error": result.error})
            return out
        finally:
            calls.write()

    def remove_member(self, company: str, container_id: str) -> None:
        """Forget the company's registered URL of a member, unless a running pipeline of the company
        still has a step on it to start or finish: its next call would go elsewhere or nowhere.
        (A pipeline that starts while this runs checks its members first, and a member it cannot
        reach fails its step with the reason in the log.)"""
        busy = sorted(d["_id"] for d in self.store.find(
            {"company": company, "status": st.RUNNING, "steps.container_id": container_id}, {"steps": 1})
            if any(s["container_id"] == container_id and s["status"] in st.UNFINISHED_STEP for s in d["steps"]))
        if busy:
            raise errors.bad_request.MemberInUse(f"{container_id!r} has steps to run in pipelines {busy}",
                                                 error_data={"field": "container_id", "rule": "not_in_use",
                                                             "pipelines": busy})
        self.registry.unregister(company, container_id)

    # -- commands -----------------------------------------------------------------------------

    @CALL_LOG.batched
    def start(self, identity: Identity, pipeline_id: str) -> dict[str, Any]:
        doc = self.get(identity.company, pipeline_id)
        if doc["status"] != st.CREATED:
            raise errors.bad_request.InvalidPipelineStatus(f"only created pipelines start (this one is "
                                                           f"{doc['status']})", id=pipeline_id)
        members = self.check_members(sorted({s["container_id"] for s in doc["steps"]}), identity.company)
        not_ready = [m["container_id"] for m in members if not m["ready"]]
        if not_ready:
            raise errors.bad_request.MembersNotReady(f"not ready: {not_ready}", error_data={"members": members})
        try:  # one running pipeline per user and project: the unique index on running ones decides
            moved = self.store.update_one({"_id": pipeline_id, "status": st.CREATED},
                                         {"$set": {"status": st.RUNNING, "started": utcnow()}})
        except DuplicateKeyError:
            busy = self.store.find_one({"status": st.RUNNING, "project_id": doc["project_id"],
                                       "user_id": doc["user_id"]}, {"_id": 1}) or {}
            raise errors.bad_request.InvalidPipelineStatus(
                "another pipeline of this user and project is running", running=busy.get("_id")) from None
        if not moved.modified_count:
            raise errors.bad_request.InvalidPipelineStatus("the pipeline changed meanwhile", id=pipeline_id)
        self.advance(pipeline_id)  # send the first /start now rather than at the next beat
        return self.to_api(self.get(identity.company, pipeline_id))

    @CALL_LOG.batched
    def stop(self, identity: Identity, pipeline_id: str) -> dict[str, Any]:
        doc = self.get(identity.company, pipeline_id)
        if doc["status"] not in (st.RUNNING, st.CREATED):
            raise errors.bad_request.InvalidPipelineStatus(f"the pipeline is {doc['status']}", id=pipeline_id)
        moved = self.store.update_one({"_id": pipeline_id, "status": doc["status"]}, {
            "$set": {"status": st.STOPPED, "finished": utcnow(), "reason": "stopped by user"}})
        if not moved.modified_count:
            raise errors.bad_request.InvalidPipelineStatus("the pipeline changed meanwhile", id=pipeline_id)
        if doc["status"] == st.RUNNING:
            self._stop_current_step(pipeline_id)
        return self.to_api(self.get(identity.company, pipeline_id))

    def _stop_current_step(self, pipeline_id: str) -> None:
        """Stop the step of a pipeline just marked stopped, as it stands after that write.

        Nothing moves a stopped pipeline's steps but this and a ``/start`` already in flight, which
        still records its answer (``_start_step``). A step caught in ``starting`` is waited for, so
        ``/stop`` follows the member's answer to ``/start`` instead of racing it."""
        deadline = time.monotonic() + self.client.longest_call_sec + 1
        while True:
            doc = self.store.find_one({"_id": pipeline_id})
            i = doc.get("current_step", 0)
            step = doc["steps"][i]
            if step["status"] != st.STARTING or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        if step["status"] == st.STARTING:  # the /start is still out: when it comes back, /stop follows
            self.store.update_one(self._settle_filter(doc, i, st.STARTING), {"$set": {
                f"steps.{i}.status": st.STOPPED, f"steps.{i}.finished": utcnow(),
                f"steps.{i}.reason": STOPPED_BEFORE_START}})
            return
        if step["status"] not in st.ACTIVE_STEP:
            return
        result = self.client.call(step["container_id"], "stop", doc["user_id"], doc["project_id"], doc)
        reason = "stopped by user" + ("" if result.answer == "finished" else
                                      f" (member answered {result.answer or result.error})")
        self.store.update_one(self._settle_filter(doc, i, step["status"]), {"$set": {
            f"steps.{i}.status": st.STOPPED, f"steps.{i}.finished": utcnow(), f"steps.{i}.reason": reason}})

    def delete(self, identity: Identity, pipeline_id: str, force: bool) -> int:
        doc = self.get(identity.company, pipeline_id)
        if doc["status"] == st.RUNNING:
            if not force:
                raise errors.bad_request.InvalidPipelineStatus("stop the pipeline first (or use force)",
                                                               id=pipeline_id)
            self.stop(identity, pipeline_id)
        store_of(PipelineLog).delete_many({"pipeline": pipeline_id})
        return self.store.delete_one({"_id": pipeline_id, "company": identity.company}).deleted_count

    # -- stepping -----------------------------------------------------------------------------

    def beat(self) -> int:
        """One heartbeat: every running pipeline not already being stepped is stepped concurrently.

        When the last of them is done, the cycle's duration is recorded (``heartbeat_stats``)."""
        began = time.monotonic()
        docs = []
        for doc in self.store.find({"status": st.RUNNING}):
            with self._lock:
                if doc["_id"] in self._in_flight:
                    continue  # a slow member keeps only its own pipeline waiting
                self._in_flight.add(doc["_id"])
            docs.append(doc)
        if not docs:
            return 0
        remaining = [len(docs)]
        calls = CALL_LOG.new_batch()  # the cycle's member calls: one insert when its last pipeline is done

        def done(_future) -> None:
            with self._lock:
                remaining[0] -= 1
                last = remaining[0] == 0
            if last:
                calls.write()
                self._record_cycle(len(docs), time.monotonic() - began)

        step = CALL_LOG.batched(self._advance_and_release, calls)
        for doc in docs:
            self._pool.submit(step, doc["_id"], doc).add_done_callback(done)
        return len(docs)

    @staticmethod
    def _record_cycle(pipelines: int, seconds: float) -> None:
        store_of(PipelineHeartbeat).update_one(
            {"_id": "last_cycle"}, {"$set": {"pipelines": pipelines, "seconds": round(seconds, 4),
                                             "at": utcnow(), "pid": os.getpid()}}, upsert=True)

    @staticmethod
    def heartbeat_stats() -> dict[str, Any]:
        doc = store_of(PipelineHeartbeat).find_one({"_id": "last_cycle"}) or {}
        return {k: doc.get(k) for k in ("pipelines", "seconds", "at", "pid")}

    def _advance_and_release(self, pipeline_id: str, doc: dict[str, Any] | None = None) -> None:
        try:
            self.advance(pipeline_id, doc)
        except Exception:  # noqa: BLE001 - one pipeline's fault must not stop the heartbeat
            log.exception("stepping pipeline %s failed", pipeline_id)
        finally:
            with self._lock:
                self._in_flight.discard(pipeline_id)

    def advance(self, pipeline_id: str, doc: dict[str, Any] | None = None) -> None:
        """Move the pipeline as far as its members' answers allow right now.

        ``doc`` (as the heartbeat just read it) saves a read; it may be stale, which is safe: every
        move is conditional on the state it was decided from.
        """
        for _ in range(1000):  # bounded: one loop per completed step
            doc = doc or self.store.find_one({"_id": pipeline_id})
            if doc is None or doc["status"] != st.RUNNING:
                return
            i = doc.get("current_step", 0)
            step = doc["steps"][i]
            if step["status"] == st.PENDING:
                self._start_step(doc, i)
                return
            if step["status"] not in st.ACTIVE_STEP or self._start_in_flight(step):
                return
            result = self.client.call(step["container_id"], "status_request", doc["user_id"], doc["project_id"], doc)
            if not self._apply_answer(doc, i, step, result):
                return
            doc = None  # moved on: read the new state

    def _step_filter(self, doc: dict[str, Any], i: int, status: str) -> dict[str, Any]:
        return {"_id": doc["_id"], "status": st.RUNNING, "current_step": i, f"steps.{i}.status": status}

    @staticmethod
    def _settle_filter(doc: dict[str, Any], i: int, status: str) -> dict[str, Any]:
        """A step of a pipeline that is no longer running, still in ``status``."""
        return {"_id": doc["_id"], "status": {"$ne": st.RUNNING}, "current_step": i, f"steps.{i}.status": status}

    def _start_in_flight(self, step: dict[str, Any]) -> bool:
        """A step in ``starting`` whose ``/start`` may still be out: its answer moves the step. Until
        then the member honestly answers ``ready``, which must not count as a missed beat. Past the
        call's timeouts the ``/start`` has been answered or has timed out, so a step still ``starting``
        means the process that sent it died: the member is asked as for any step."""
        if step["status"] != st.STARTING or not step.get("claimed"):
            return False
        return utcnow() - step["claimed"] < timedelta(seconds=self.client.longest_call_sec + 1)

    def _start_step(self, doc: dict[str, Any], i: int) -> None:
        step = doc["steps"][i]
        claimed = self.store.update_one(self._step_filter(doc, i, st.PENDING),
                                       {"$set": {f"steps.{i}.status": st.STARTING, f"steps.{i}.claimed": utcnow()},
                                        "$inc": {f"steps.{i}.start_calls": 1}})
        if not claimed.modified_count:
            return  # another process (or thread) started it
        result = self.client.call(step["container_id"], "start", doc["user_id"], doc["project_id"], doc)
        if result.answer == "started":
            started = {f"steps.{i}.status": st.STARTED, f"steps.{i}.started": utcnow(), f"steps.{i}.misses": 0}
            if self.store.update_one(self._step_filter(doc, i, st.STARTING), {"$set": started}).modified_count:
                return
            # Stopped meanwhile: record the start for stop() to act on; or, when stop() stopped waiting
            # for this answer, send the /stop it left to us (once: the reason changes as it goes).
            if self.store.update_one(self._settle_filter(doc, i, st.STARTING), {"$set": started}).modified_count:
                return
            left = {**self._settle_filter(doc, i, st.STOPPED), f"steps.{i}.reason": STOPPED_BEFORE_START}
            if self.store.update_one(left, {"$set": {f"steps.{i}.reason": STOPPED_BEFORE_START + "; /stop sent "
                                                    "when it did"}}).modified_count:
                self.client.call(step["container_id"], "stop", doc["user_id"], doc["project_id"], doc)
            return
        # Not re-sent: a /start that may have arrived is never repeated.
        why = f"start answered {result.answer!r}" if result.answer is not None else f"start failed: {result.error}"
        self._fail(doc, i, st.STARTING, why)
        self.store.update_one(self._settle_filter(doc, i, st.STARTING), {"$set": {
            f"steps.{i}.status": st.FAILED, f"steps.{i}.finished": utcnow(), f"steps.{i}.reason": why}})

    def _fail(self, doc: dict[str, Any], i: int, from_status: str, reason: str, step_status: str = st.FAILED) -> None:
        now = utcnow()
        self.store.update_one(self._step_filter(doc, i, from_status),
                             {"$set": {f"steps.{i}.status": step_status, f"steps.{i}.finished": now,
                                       f"steps.{i}.reason": reason, "status": st.FAILED, "finished": now,
                                       "reason": f"{doc['steps'][i]['container_id']}: {reason}"}})

    def _apply_answer(self, doc: dict[str, Any], i: int, step: dict[str, Any], result: CallResult) -> bool:
        """Act on a member's status word; True when the pipeline moved to its next step."""
        answer, status = result.answer, step["status"]
        if answer in ("started", "running"):
            if answer != status or step.get("misses"):  # record a change (running included); skip a no-op
                self.store.update_one(self._step_filter(doc, i, status),
                                     {"$set": {f"steps.{i}.status": answer, f"steps.{i}.misses": 0,
                                               f"steps.{i}.last_answer": answer}})
            return False
        if answer == "completed":
            now = utcnow()
            last = i + 1 == len(doc["steps"])
            sets = {f"steps.{i}.status": st.COMPLETED, f"steps.{i}.finished": now}
            if last:
                sets.update({"status": st.COMPLETED, "finished": now})
            else:
                sets["current_step"] = i + 1
            moved = self.store.update_one(self._step_filter(doc, i, status), {"$set": sets})
            return bool(moved.modified_count) and not last
        if answer == "failed":
            self._fail(doc, i, status, "the member reported failed")
            return False
        if answer == "stopped":
            self._fail(doc, i, status, "the member stopped on its own", step_status=st.STOPPED)
            return False
        # No answer, "ready" (it lost our job) or a word outside the protocol: a missed beat.
        if answer is not None:
            what = "is ready, not running this job" if answer == "ready" else \
                f"answered {answer!r}, not one of {list(MEMBER_WORDS)}"
            log_call(doc, "note", step["container_id"], "status_request", {}, None, note=f"member {what}")
        misses = int(step.get("misses", 0)) + 1
        if misses >= self.max_missed:
            self._fail(doc, i, status, f"no usable answer for {misses} beats ({answer or result.error})")
        else:
            self.store.update_one(self._step_filter(doc, i, status), {"$set": {f"steps.{i}.misses": misses}})
        return False

    # -- the member's report ------------------------------------------------------------------

    @CALL_LOG.batched
    def handle_report(self, data: dict[str, Any], remote_addr: str | None) -> str:
        container_id, status = data["container_id"], data["status"]
        doc = self.store.find_one({"status": st.RUNNING, "project_id": data.get("project_id", ""),
                                  "user_id": data.get("user_id", "")})
        company = doc["company"] if doc else None  # the report itself names no company
        self.registry.check_id(container_id, company, list_known=False)  # the caller is anonymous
        if status not in REPORT_STATUSES:
            raise errors.bad_request.ValidationError(
                f"status must be one of {list(REPORT_STATUSES)}", error_data={"field": "status", "rule": "enum"})
        params = {k: data.get(k) for k in ("container_id", "user_id", "project_id", "status")}
        if self.host_only and remote_addr and remote_addr not in self.registry.addresses_of(container_id,
                                                                                           company or ""):
            note_ignored_report(doc, container_id, params, f"ignored: sent from {remote_addr}")
            return "OK"
        current = doc["steps"][doc.get("current_step", 0)] if doc else None
        if current is None or current["container_id"] != container_id:
            note_ignored_report(doc, container_id, params, "no running step of this project is this member's")
            return "OK"
        log_call(doc, "from_member", container_id, "status_report", params, CallResult("OK"))
        self.advance(doc["_id"])  # confirmed by the member's own /status_request answer
        return "OK"
