"""Owns a task's life: the status machine (``bll/tasks/status.py``) applied to a stored task, enqueue
and dequeue, stop, reset, archive, the delete of its record, and the sweep of non-responsive tasks.

Every status change is one ``update_one`` whose filter holds the status the check was made
against, so of two concurrent changes at most one succeeds; the loser gets 400/121.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from apiserver.apierrors import errors
from apiserver.bll import query as q
from apiserver.bll import tags
from apiserver.bll.auth.identity import Identity
from apiserver.bll.tags import ARCHIVED_TAG
from apiserver.bll.tasks import status as st
from apiserver.bll.tasks.base import TaskBase
from apiserver.database.model.base import utcnow
from apiserver.database.model.worker import Worker
from apiserver.database.store import store_of

# What `reset` clears; `clear_all` also empties the execution and script sections.
RESET_UNSET = ("last_iteration", "last_metrics", "output.model", "output.result", "output.error",
               "started", "completed", "published", "last_worker", "last_worker_report", "execution.queue",
               "enqueue_status")


DEVELOPMENT_TAG = "development"


PUBLISHABLE = (st.COMPLETED, st.STOPPED, st.FAILED, st.CLOSED, st.PUBLISHING)


def _status_update(new_status: str, reason: str | None, message: str | None, sets: dict[str, Any] | None = None,
                   unsets: tuple[str, ...] = (), pull: dict[str, Any] | None = None) -> dict[str, Any]:
    """The write of a status change: the status, why, when, and what goes with it."""
    now = utcnow()
    update: dict[str, Any] = {"$set": {"status": new_status, "status_reason": reason or "",
                                       "status_message": message or "", "status_changed": now,
                                       "last_update": now, **(sets or {})}}
    if unsets:
        update["$unset"] = {k: "" for k in q.prune_nested(list(unsets))}
    if pull:
        update["$pull"] = pull
    return update


class TaskLifecycle(TaskBase):
    """Status changes, queues, stop, reset and the record's delete."""

    def publish_if_possible(self, identity: Identity, task_id: str, force: bool = False) -> dict[str, Any] | None:
        """Publish the task (not its output model: the caller, publishing a model, readies the one it
        names) unless it is published or gone (then None); a status publishing does not allow
        (without ``force``) is 400/110, as ``publish`` answers it."""
        status = self.status_of(identity.company, task_id)
        if status is None or status == st.PUBLISHED:
            return None
        return self.publish(identity, {"task": task_id, "force": force, "publish_model": False})

    def change_status(self, company: str, task: dict[str, Any], new_status: str, *, force: bool = False,
                      reason: str | None = None, message: str | None = None, allow_same: bool = True,
                      sets: dict[str, Any] | None = None, unsets: tuple[str, ...] = (),
                      pull: dict[str, Any] | None = None, check: bool = True) -> dict[str, Any]:
        """One conditional update from the task's current status to ``new_status``."""
        current = task["status"]
        if check:
            st.check_transition(current, new_status, force, allow_same)
        update = _status_update(new_status, reason, message, sets, unsets, pull)
        result = self.store.update_one({"_id": task["_id"], "company": company, "status": current}, update)
        if result.matched_count == 0:
            raise errors.bad_request.TaskStatusChanged(
                f"expected {current}; someone changed it first", id=task["_id"])
        return {"updated": 1, "fields": {**update["$set"], **{k: None for k in unsets}}}

    def started(self, identity: Identity, data: dict[str, Any]) -> dict[str, Any]:
        task = self.writable(identity.company, data["task"])
        force = bool(data.get("force"))
        running = task["status"] == st.IN_PROGRESS
        sets = {} if running and task.get("started") else {"started": utcnow()}
        result = self.change_status(identity.company, task, st.IN_PROGRESS, force=force, allow_same=False,
                                    reason=data.get("status_reason"), message=data.get("status_message"),
                                    sets=sets, unsets=() if running else ("completed",))
        return {"started": 1, **result}

    def _finish(self, identity: Identity, data: dict[str, Any], new_status: str) -> dict[str, Any]:
        task = self.writable(identity.company, data["task"])
        return self.change_status(identity.company, task, new_status, force=bool(data.get("force")),
                                  reason=data.get("status_reason"), message=data.get("status_message"),
                                  sets={"completed": utcnow()})

    def stopped(self, identity: Identity, data: dict[str, Any]) -> dict[str, Any]:
        return self._finish(identity, data, st.STOPPED)

    def failed(self, identity: Identity, data: dict[str, Any]) -> dict[str, Any]:
        return self._finish(identity, data, st.FAILED)

    def completed(self, identity: Identity, data: dict[str, Any]) -> dict[str, Any]:
        """With ``publish``, published too; ``published`` says whether it was (ClearML's answer)."""
        result = self._finish(identity, data, st.COMPLETED)
        result["published"] = 0
        if data.get("publish"):
            published = self.publish(identity, {"task": data["task"], "force": data.get("force")})
            result["fields"].update(published["fields"])
            result["published"] = published["updated"]
        return result

    def close(self, identity: Identity, data: dict[str, Any]) -> dict[str, Any]:
        task = self.writable(identity.company, data["task"])
        return self.change_status(identity.company, task, st.CLOSED, force=bool(data.get("force")),
                                  reason=data.get("status_reason"), message=data.get("status_message"))

    def publish(self, identity: Identity, data: dict[str, Any]) -> dict[str, Any]:
        task = self.writable(identity.company, data["task"])
        if not data.get("force") and task["status"] not in PUBLISHABLE:
            raise errors.bad_request.InvalidTaskStatus(
                f"cannot change status from {task['status']} to published", current_status=task["status"],
                new_status=st.PUBLISHED)
        result = self.change_status(identity.company, task, st.PUBLISHED, force=bool(data.get("force")),
                                    reason=data.get("status_reason"), message=data.get("status_message"),
                                    sets={"published": utcnow()})
        if data.get("publish_model", True):  # after the status: a refused publish changes no model
            for hook in self.on_publish:
                hook(identity.company, task["_id"])
        return result

    def _has_live_worker(self, company: str, task_id: str) -> bool:
        since = utcnow() - timedelta(seconds=self.worker_timeout_sec)
        return store_of(Worker).count_documents(
            {"company": company, "task": task_id, "last_activity_time": {"$gte": since}}, limit=1) > 0

    def stop(self, identity: Identity, data: dict[str, Any]) -> dict[str, Any]:
        """Stop a task: a queued one leaves its queue; one no live worker runs (or forced, or a
        development run) stops at once; one a live worker runs is asked to stop, and the worker (or
        the SDK) reports ``stopped`` itself."""
        task = self.writable(identity.company, data["task"])
        force = bool(data.get("force"))
        reason = data.get("status_reason") or "stopped"
        message = f"Stopped by {identity.user_name or identity.user}"
        if task["status"] == st.QUEUED:
            return self._stop_queued(identity.company, task, force, reason, message)
        if not force and task["status"] != st.IN_PROGRESS:
            st.check_transition(task["status"], st.STOPPED)
        if force or DEVELOPMENT_TAG in (task.get("system_tags") or []) or \
                not self._has_live_worker(identity.company, task["_id"]):
            return self.change_status(identity.company, task, st.STOPPED, force=True, reason=reason,
                                      message=message, sets={"completed": utcnow()})
        return self.change_status(identity.company, task, task["status"], check=False, reason=reason,
                                  message="stopping")

    def _stop_queued(self, company: str, task: dict[str, Any], force: bool, reason: str, message: str
                     ) -> dict[str, Any]:
        queue = (task.get("execution") or {}).get("queue")
        result = self.change_status(company, task, st.STOPPED, force=force, reason=reason, message=message,
                                    unsets=("execution.queue",))
        if queue:
            self.queues.remove_entry(company, queue, task["_id"])
        else:
            self.queues.remove_task_everywhere(company, task["_id"])
        return result

    def reset(self, identity: Identity, data: dict[str, Any]) -> dict[str, Any]:
        task = self.writable(identity.company, data["task"])
        force = bool(data.get("force"))
        if task["status"] == st.PUBLISHED and not force:
            raise errors.bad_request.InvalidTaskStatus("published tasks can be reset only with force",
                                                       current_status=task["status"], new_status=st.CREATED)
        dequeued = self.queues.remove_task_everywhere(identity.company, task["_id"])
        self.progress.drop(task["_id"])  # before last_metrics go: readers would apply it again
        cleared = ("execution", "script") if data.get("clear_all") else ()
        unsets = tuple(k for k in RESET_UNSET if k.split(".", 1)[0] not in cleared)
        kept: dict[str, Any] = {}
        artifacts = (task.get("execution") or {}).get("artifacts")
        if "execution" not in cleared and isinstance(artifacts, dict):  # what the run produced goes with it
            kept["execution.artifacts"] = {k: a for k, a in artifacts.items() if a.get("mode", "output") != "output"}
        result = self.change_status(identity.company, task, st.CREATED, check=False,
                                    reason=data.get("status_reason") or "reset",
                                    message=data.get("status_message") or "reset", unsets=unsets,
                                    sets={"models.output": [], "runtime": {},
                                          **{k: {} for k in cleared}, **kept})
        events: dict[str, Any] = {}
        for hook in self.on_reset:
            events.update(hook(identity.company, task["_id"]))
        return {**result, "dequeued": {"removed": dequeued}, "events": events, "deleted_models": 0}

    @staticmethod
    def check_deletable(task: dict[str, Any], force: bool) -> None:
        """Only created or archived tasks are deleted without ``force`` (400/110 otherwise)."""
        archived = ARCHIVED_TAG in (task.get("system_tags") or [])
        if task["status"] != st.CREATED and not archived and not force:
            raise errors.bad_request.TaskCannotBeDeleted(
                f"status is {task['status']}; only created or archived tasks are deleted without force",
                id=task["_id"])

    def delete_record(self, identity: Identity, data: dict[str, Any]) -> dict[str, Any]:
        """The task's own record, its queue entries and its events (the ``on_delete`` hooks); its
        children lose their parent. Only ``bll/tasks/deletion.OwnedDeletion.delete_task`` calls this:
        it also deletes what the task owns (output models, files), so that is the one way to delete a
        task, whichever domain asks (tasks, reports, pipeline runs, projects)."""
        task = self.writable(identity.company, data["task"])
        self.check_deletable(task, bool(data.get("force")))
        published_children = self.store.count_documents({"company": identity.company, "parent": task["_id"],
                                                         "status": st.PUBLISHED})
        if published_children and not data.get("force"):  # as ClearML
            raise errors.bad_request.TaskCannotBeDeleted("it has published children; use force", id=task["_id"],
                                                         children=published_children)
        self.queues.remove_task_everywhere(identity.company, task["_id"])
        children = self.store.update_many({"company": identity.company, "parent": task["_id"]},
                                         {"$unset": {"parent": ""}, "$set": {"last_update": utcnow()}})
        events: dict[str, Any] = {}
        for hook in self.on_delete:
            events.update(hook(identity.company, task["_id"]))
        deleted = self.store.delete_one({"_id": task["_id"], "company": identity.company}).deleted_count
        return {"deleted": bool(deleted), "updated_children": children.modified_count, "updated_models": 0,
                "events": events}

    def _resolve_queue(self, identity: Identity, data: dict[str, Any]) -> str:
        """The queue ``data`` names (by id: ``add_entry`` finds it, or answers 701), else by name (made on
        first use), else the company's default queue."""
        if data.get("queue"):
            return data["queue"]
        if data.get("queue_name"):
            found = self.queues.find_by_name(identity.company, data["queue_name"])
            if found:
                return found["_id"]
            try:
                return self.queues.create(identity.company, identity.user, data["queue_name"])
            except errors.bad_request.ExpectedUniqueData:
                return self.queues.find_by_name(identity.company, data["queue_name"])["_id"]
        return self.queues.default_queue(identity.company)["_id"]

    def enqueue(self, identity: Identity, data: dict[str, Any]) -> dict[str, Any]:
        task = self.writable(identity.company, data["task"])
        force = bool(data.get("force"))
        st.check_transition(task["status"], st.QUEUED, force, allow_same=False)  # before the entry is made
        queue_id = self._resolve_queue(identity, data)
        self.queues.add_entry(identity.company, queue_id, task["_id"])
        try:
            result = self.change_status(
                identity.company, task, st.QUEUED, check=False,
                reason=data.get("status_reason"), message=data.get("status_message"),
                sets={"execution.queue": queue_id, "enqueue_status": task["status"]},
                pull={"system_tags": DEVELOPMENT_TAG})
        except Exception:
            self.queues.remove_entry(identity.company, queue_id, task["_id"])  # no queue entry without the task
            raise
        return {"queued": 1, **result}

    def dequeue(self, identity: Identity, data: dict[str, Any]) -> dict[str, Any]:
        try:
            task = self.writable(identity.company, data["task"])
        except errors.bad_request.InvalidTaskId:
            removed = self.queues.remove_task_everywhere(identity.company, data["task"])
            return {"dequeued": removed, "updated": 0, "fields": {}}
        if task["status"] not in (st.QUEUED, st.IN_PROGRESS) and not data.get("force"):
            raise errors.bad_request.InvalidTaskStatus("only queued or running tasks can be dequeued",
                                                       current_status=task["status"])
        queue = (task.get("execution") or {}).get("queue")
        removed = self.queues.remove_entry(identity.company, queue, task["_id"]) if queue else \
            self.queues.remove_task_everywhere(identity.company, task["_id"])
        new_status = data.get("new_status") or task.get("enqueue_status") or st.CREATED
        if new_status == st.QUEUED:
            new_status = st.CREATED
        result = self.change_status(identity.company, task, new_status, check=False,
                                    reason=data.get("status_reason") or "dequeued",
                                    message=data.get("status_message"),
                                    unsets=("execution.queue", "enqueue_status"))
        return {"dequeued": max(removed, 1 if task["status"] == st.QUEUED else 0), **result}

    def stop_non_responsive(self, max_idle_sec: int) -> int:
        """Stop in_progress tasks with no update for ``max_idle_sec`` (ClearML: 2 hours)."""
        st.check_transition(st.IN_PROGRESS, st.STOPPED)
        cutoff = utcnow() - timedelta(seconds=max_idle_sec)
        why = "Forced stop (non-responsive)"
        result = self.store.update_many(  # all companies: the sweep is server-wide, as in ClearML
            {"status": st.IN_PROGRESS, "last_update": {"$lt": cutoff}},
            _status_update(st.STOPPED, why, why, {"completed": utcnow()}))
        return result.modified_count

    def set_archived(self, identity: Identity, task_id: str, archived: bool, data: dict[str, Any] | None = None
                     ) -> bool:
        """Archive (a queued task is dequeued first) or unarchive; whether the tag changed. Archiving
        sets the ``status_message`` and ``status_reason`` ``data`` gives, as ClearML does; with
        ``include_pipeline_steps`` a pipeline controller's steps (its child tasks) go with it."""
        task = self.writable(identity.company, task_id)
        if (data or {}).get("include_pipeline_steps") and task.get("type") == tags.CONTROLLER_TYPE:
            for step in self.child_ids(identity.company, task["_id"]):
                self.set_archived(identity, step, archived, {**data, "include_pipeline_steps": False})
        if archived and task["status"] == st.QUEUED:
            self.dequeue(identity, {"task": task_id})
        notes = {k: (data or {})[k] for k in ("status_message", "status_reason") if (data or {}).get(k) is not None}
        if archived and notes:
            self.store.update_one({"_id": task["_id"], "company": identity.company}, {"$set": notes})
        return tags.set_archived(self.store, task["_id"], archived)
