"""Owns ClearML reports: markdown documents kept as tasks of type ``report``.

As in ClearML, a report lives in a hidden ``.reports`` project under the project it belongs to
(``<project>/.reports``, or ``.reports`` at the top for a report of no project), and carries the
``reports`` and ``hidden`` system tags, so experiment tables and project counts never show it.
Its text is the task's ``report`` field. Only a report in status ``created`` is edited (a published one
changes only its name, tags and comment, as in ClearML); publishing
is always allowed; deleting follows the task rule (created or archived, else ``force``).
"""

from __future__ import annotations

import textwrap
from typing import Any

from apiserver.apierrors import errors
from apiserver.bll.auth.identity import Identity
from apiserver.bll.projects.projects import ProjectBLL
from apiserver.bll.query import HIDDEN_TAG
from apiserver.bll.tags import REPORT_TYPE, REPORTS_FOLDER, REPORTS_TAG
from apiserver.bll.tasks import status as st
from apiserver.bll.tasks.deletion import OwnedDeletion
from apiserver.bll.tasks.tasks import TaskBLL
from apiserver.database.model.base import utcnow

EDITABLE = ("name", "tags", "comment", "report", "report_assets")
EDITABLE_WHEN_PUBLISHED = {"name", "tags", "comment"}  # as ClearML


class ReportBLL:
    def __init__(self, tasks: TaskBLL, projects: ProjectBLL, deletion: OwnedDeletion):
        self.tasks = tasks
        self.deletion = deletion
        self.projects = projects

    def _report(self, company: str, report_id: str, write: bool = True) -> dict[str, Any]:
        task = self.tasks.writable(company, report_id) if write else self.tasks.readable(company, report_id)
        if task.get("type") != REPORT_TYPE:
            raise errors.bad_request.OperationSupportedOnReportsOnly(id=report_id)
        return task

    def _reports_project(self, identity: Identity, project_name: str) -> str:
        name = project_name.strip("/")
        if name.rsplit("/", 1)[-1] != REPORTS_FOLDER:
            name = f"{name}/{REPORTS_FOLDER}" if name else REPORTS_FOLDER
        return self.projects.ensure(identity, name, system_tags=[REPORTS_TAG, HIDDEN_TAG])

    def _target_name(self, identity: Identity, project: str | None, project_name: str | None = None) -> str:
        if project_name:
            return project_name
        if project:
            return self.projects.writable(identity.company, project)["name"]
        return ""

    def _drop_if_empty(self, company: str, project_id: str | None) -> None:
        """A ``.reports`` project goes when its last report does."""
        if not project_id:
            return
        project = self.projects.store.find_one({"_id": project_id, "company": company}, {"basename": 1})
        if project and project.get("basename") == REPORTS_FOLDER and \
                self.tasks.count_in_projects(company, [project_id]) == 0:
            self.projects.store.delete_one({"_id": project_id, "company": company})

    def create(self, identity: Identity, data: dict[str, Any]) -> dict[str, str]:
        project_id = self._reports_project(identity, self._target_name(identity, data.get("project")))
        fields = {"name": data["name"], "tags": data.get("tags") or [], "comment": data.get("comment", ""),
                  "type": REPORT_TYPE, "project": project_id, "system_tags": [REPORTS_TAG, HIDDEN_TAG]}
        task_id = self.tasks.create(identity, fields, stored={"report": data.get("report", "")})
        return {"id": task_id, "project_id": project_id}

    def update(self, identity: Identity, data: dict[str, Any]) -> dict[str, Any]:
        task = self._report(identity.company, data["task"])
        sets = {k: data[k] for k in EDITABLE if k in data}
        if task["status"] != st.CREATED and set(sets) - EDITABLE_WHEN_PUBLISHED:
            raise errors.bad_request.InvalidTaskStatus("a published report changes only its name, tags and comment",
                                                       expected=st.CREATED, status=task["status"])
        if not sets:
            return {"updated": 0}
        self.tasks.set_fields(identity.company, task, sets, expect_status=task["status"])
        shown = dict(sets)
        if "tags" in shown:
            shown["tags"] = sorted(shown["tags"])
        if "report" in shown:
            shown["report"] = textwrap.shorten(shown["report"], width=100)
        return {"updated": 1, "fields": shown}

    def move(self, identity: Identity, data: dict[str, Any]) -> dict[str, str]:
        if not (data.get("project") or data.get("project_name") or "project" in data):  # null: no project
            raise errors.bad_request.MissingRequiredFields("project or project_name is required",
                                                           field="project")
        task = self._report(identity.company, data["task"])
        target = self._target_name(identity, data.get("project"), data.get("project_name"))
        project_id = self._reports_project(identity, target)
        self.tasks.set_fields(identity.company, task, {"project": project_id})
        if task.get("project") != project_id:
            self._drop_if_empty(identity.company, task.get("project"))
        return {"project_id": project_id}

    def publish(self, identity: Identity, data: dict[str, Any]) -> dict[str, Any]:
        task = self._report(identity.company, data["task"])
        result = self.tasks.change_status(identity.company, task, st.PUBLISHED, force=True,
                                          message=data.get("comment"), sets={"published": utcnow()})
        return {"updated": 1, "fields": {k: v for k, v in result["fields"].items() if k != "status_reason"}}

    def set_archived(self, identity: Identity, report_id: str, archived: bool) -> int:
        task = self._report(identity.company, report_id)
        return int(self.tasks.set_archived(identity, task["_id"], archived))

    def delete(self, identity: Identity, data: dict[str, Any], host: str | None) -> int:
        """The report task with what it owns (models, files of its artifacts and images)."""
        task = self._report(identity.company, data["task"])
        deleted = self.deletion.delete_task(identity, {"task": task["_id"], "force": bool(data.get("force"))},
                                            host)["deleted"]
        self._drop_if_empty(identity.company, task.get("project"))
        return int(deleted)

    def get_all(self, company: str, data: dict[str, Any]) -> dict[str, Any]:
        query = {**data, "type": [REPORT_TYPE], "search_hidden": True}
        if query.get("project"):
            projects = query["project"] if isinstance(query["project"], list) else [query["project"]]
            if None in projects:  # as ClearML: the reports of no project, in the top-level .reports
                root = self.projects.store.find_one({"company": company, "name": REPORTS_FOLDER}, {"_id": 1})
                projects = [p for p in projects if p] + ([root["_id"]] if root else [])
                if not projects:
                    return []
            query["project"] = self.projects.with_children(company, projects)
        return self.tasks.get_all(company, query, ex=True)

    def get_tags(self, company: str) -> list[str]:
        return self.tasks.distinct_values(company, None, "tags", unwind=True,
                                 match={"type": REPORT_TYPE})
