"""Owns what deleting or resetting a task, or deleting a project with its contents, does to what
they own: output models, events, and the files behind artifacts, models and debug images; and the
events retention (``expire_events``), which deletes the events of long-ended tasks with their files.

``delete_task`` is the one way to delete a task: ClearML's tasks, reports (``bll/reports``) and
pipeline runs (``bll/tasks/pipeline_runs``) all come through it, so none of them leaves models or
files behind.

The order is the rule: first note every URL the owner points at, then delete the records (each
an atomic database write), then queue the files of this server's store for deletion (FileBLL
deletes them from a queue, with retries). A storage failure can therefore delay a file's
deletion but never leaves a record half deleted, and only the caller's company's files are named.
ClearML's options: ``delete_output_models`` (default true), ``delete_external_artifacts``
(default true: delete the files in this server's store) and ``return_file_urls``.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from typing import Any

from apiserver.apierrors import errors
from apiserver.bll.auth.identity import Identity
from apiserver.bll.events.events import EventBLL
from apiserver.bll.files.files import FileBLL
from apiserver.bll.models.models import ModelBLL
from apiserver.bll.projects.projects import ProjectBLL
from apiserver.bll.tags import CONTROLLER_TYPE
from apiserver.bll.tasks.tasks import TaskBLL
from apiserver.database.model.base import utcnow


def _artifact_urls(task: dict[str, Any]) -> list[str]:
    artifacts = (task.get("execution") or {}).get("artifacts") or {}
    items = artifacts.values() if isinstance(artifacts, dict) else artifacts
    return [a["uri"] for a in items if a.get("uri") and a.get("mode", "output") == "output"]


class OwnedDeletion:
    def __init__(self, tasks: TaskBLL, models: ModelBLL, events: EventBLL, files: FileBLL, projects: ProjectBLL):
        self.tasks = tasks
        self.models = models
        self.events = events
        self.files = files
        self.projects = projects

    def _finish(self, identity: Identity, owner: str, data: dict[str, Any], host: str | None,
                urls: dict[str, list[str]], models: list[dict[str, Any]]) -> dict[str, Any]:
        """After the records are gone: their files to the deletion queue; the answer's extras."""
        extra: dict[str, Any] = {}
        if data.get("delete_external_artifacts", True):
            self.files.schedule_deletion(identity.company, urls["artifact_urls"] + urls["event_urls"], host, owner)
            self.models.delete_files(identity.company, models, host)
        if data.get("return_file_urls"):  # events' files are deleted here, not named (as ClearML now)
            extra["urls"] = {**urls, "event_urls": []}
        return extra

    def delete_task(self, identity: Identity, data: dict[str, Any], host: str | None) -> dict[str, Any]:
        task = self.tasks.writable(identity.company, data["task"])
        # the task's own checks before anything is deleted, its pipeline steps included
        self.tasks.check_deletable(task, bool(data.get("force")))
        published = self.models.count_ready_of_task(identity.company, task["_id"])
        if published and not data.get("force"):  # as ClearML: its ready models would lose their task
            raise errors.bad_request.TaskCannotBeDeleted("it has published output models; use force",
                                                         id=task["_id"], models=published)
        if data.get("include_pipeline_steps") and task.get("type") == CONTROLLER_TYPE:  # its steps first
            for step in self.tasks.child_ids(identity.company, task["_id"]):
                self.delete_task(identity, {**data, "task": step, "include_pipeline_steps": False}, host)
        models = self.models.output_models_of(identity.company, task["_id"]) \
            if data.get("delete_output_models", True) else []
        urls = {"artifact_urls": _artifact_urls(task), "event_urls": self.events.urls_of_task(identity.company,
                                                                                             task["_id"]),
                "model_urls": [m["uri"] for m in models if m.get("uri")]}
        result = self.tasks.delete_record(identity, data)
        deleted_models = self.models.delete_records(identity.company, [m["_id"] for m in models])
        result["updated_models"] = self.models.orphan_from_task(identity.company, task["_id"])
        result["deleted_models"] = deleted_models
        return {**result, **self._finish(identity, f"task {task['_id']}", data, host, urls, models)}

    def reset_task(self, identity: Identity, data: dict[str, Any], host: str | None) -> dict[str, Any]:
        """Reset drops the events (so their images), the output artifacts and, by default, the output models."""
        task = self.tasks.writable(identity.company, data["task"])
        models = self.models.output_models_of(identity.company, task["_id"]) \
            if data.get("delete_output_models", True) else []
        # reset keeps only the input artifacts: the output artifacts' files go with them
        urls = {"artifact_urls": _artifact_urls(task), "event_urls": self.events.urls_of_task(identity.company,
                                                                                             task["_id"]),
                "model_urls": [m["uri"] for m in models if m.get("uri")]}
        result = self.tasks.reset(identity, data)
        result["deleted_models"] = self.models.delete_records(identity.company, [m["_id"] for m in models])
        return {**result, **self._finish(identity, f"task {task['_id']} (reset)", data, host, urls, models)}

    def delete_project(self, identity: Identity, data: dict[str, Any], host: str | None) -> dict[str, Any]:
        """A project with its subprojects; refused, as ClearML, while any of them holds a task, model,
        pipeline run or dataset version that is not archived, unless forced. With delete_contents
        their tasks and models go too, each as if deleted alone; without, they stay in no project."""
        company = identity.company
        project = self.projects.writable(company, data["project"])
        family = self.projects.family(company, project["_id"])
        force, contents = bool(data.get("force")), bool(data.get("delete_contents"))
        if not force:
            counts = self.projects.validate_delete(company, project["_id"])
            counts["non_archived_tasks"] += counts["non_archived_reports"]
            for kind, refusal in (("pipelines", errors.bad_request.ProjectHasPipelines),
                                  ("datasets", errors.bad_request.ProjectHasDatasets),
                                  ("tasks", errors.bad_request.ProjectHasTasks),
                                  ("models", errors.bad_request.ProjectHasModels)):
                if counts[f"non_archived_{kind}"]:
                    raise refusal(f"{counts[f'non_archived_{kind}']} {kind} not archived; archive them or use force",
                                  project=project["_id"])
        models = self.models.count_in_projects(company, family)
        deleted_tasks = deleted_models = 0
        urls: dict[str, list[str]] = {"artifact_urls": [], "event_urls": [], "model_urls": []}
        if contents:
            options = {k: data[k] for k in ("delete_external_artifacts", "delete_output_models") if k in data}
            for task_id in self.tasks.ids_in_projects(company, family):
                done = self.delete_task(identity, {**options, "task": task_id, "force": True,
                                                   "return_file_urls": True}, host)
                deleted_tasks += int(bool(done.get("deleted")))
                deleted_models += done.get("deleted_models", 0)
                for key, values in done["urls"].items():
                    urls[key] += values
            for doc in self.models.in_projects(company, family):
                if self.models.delete(identity, doc["_id"], force=True, host=host,
                                      delete_files=data.get("delete_external_artifacts", True))["deleted"]:
                    deleted_models += 1
                    urls["model_urls"] += [doc["uri"]] if doc.get("uri") else []
        elif models:
            self.models.detach_from_projects(company, family)
        in_use = self.tasks.count_in_projects(company, family)
        disassociated = 0
        if in_use and contents:
            deleted_tasks += self.tasks.delete_in_projects(company, family)
        elif in_use:
            disassociated = self.tasks.detach_from_projects(company, family)
        deleted = self.projects.delete_records(company, project["_id"], family)
        result = {"deleted": deleted["deleted"], "disassociated_tasks": disassociated, "deleted_tasks": deleted_tasks,
                  "deleted_projects": deleted["deleted_projects"], "deleted_models": deleted_models,
                  "urls": {**urls, "event_urls": []}}  # always, as ClearML answers it
        return result

    def expire_events(self, default_days: int, batch: int) -> dict[str, int]:
        """Events retention: delete the events, and their files in this server's store, of up to ``batch``
        tasks that ended or are archived and did not change for their project's ``events_retention_days``
        (else ``default_days``; 0 keeps them forever). The tasks stay; each is marked until new events
        come. Returns how many tasks, events and files."""
        now = utcnow()
        own = self.projects.events_retention()
        by_days: dict[int, list[str]] = defaultdict(list)
        for project, days in own.items():
            by_days[days].append(project)
        plans = [(days, projects, True) for days, projects in by_days.items() if days]
        if default_days:
            plans.append((default_days, list(own), False))  # every task in a project without its own setting
        done = {"tasks": 0, "events": 0, "files": 0}
        for days, projects, in_projects in plans:
            for task in self.tasks.events_expiring(now - timedelta(days=days), projects, in_projects,
                                                   batch - done["tasks"]):
                # a public task's events were written by, and belong to, the company that owned it then
                owner, task_id = task.get("company_origin") or task["company"], task["_id"]
                urls = self.events.urls_of_task(owner, task_id)
                done["events"] += self.events.delete_for_task(owner, task_id)["deleted"]
                self.tasks.mark_events_expired(task["company"], task_id, now)
                done["files"] += self.files.schedule_deletion(owner, urls, None, f"task {task_id} (events retention)")
                done["tasks"] += 1
            if done["tasks"] >= batch:
                break
        return done
