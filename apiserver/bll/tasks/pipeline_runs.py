"""Owns ClearML's pipeline runs (the `pipelines` service the web app calls): a run is a pipeline
controller task; starting one clones a controller and enqueues the copy; deleting runs keeps at least
one run of the pipeline.

ClearML's SDK keeps a pipeline in the project '<project>/.pipelines/<pipeline name>' (the '.pipelines'
level is hidden, the pipeline's project has the 'pipeline' system tag).
"""

from __future__ import annotations

from typing import Any

from apiserver.apierrors import errors
from apiserver.bll.auth.identity import Identity
from apiserver.bll.batch import run_batch
from apiserver.bll.projects.projects import ProjectBLL
from apiserver.bll.tags import CONTROLLER_TYPE, PIPELINE_TAG, PIPELINES_FOLDER
from apiserver.bll.tasks.deletion import OwnedDeletion
from apiserver.bll.tasks.tasks import TaskBLL
from apiserver.bll.workers.workers import WorkerBLL

ARGS_SECTION = "Args"


def pipeline_project_name(project: str, pipeline: str) -> str:
    return f"{project.strip('/')}/{PIPELINES_FOLDER}/{pipeline.strip('/')}"


class PipelineRunBLL:
    def __init__(self, tasks: TaskBLL, projects: ProjectBLL, workers: WorkerBLL, deletion: OwnedDeletion):
        self.tasks = tasks
        self.deletion = deletion
        self.projects = projects
        self.workers = workers

    def _existing_project(self, company: str, data: dict[str, Any]) -> dict[str, Any] | None:
        if not (data.get("new_project_name") and data.get("new_pipeline_name")):
            return None
        name = pipeline_project_name(data["new_project_name"], data["new_pipeline_name"])
        found = self.projects.store.find_one({"company": company, "name": name}, {"name": 1})
        return {"id": found["_id"], "name": found["name"]} if found else None

    def check_new_run(self, company: str, data: dict[str, Any]) -> dict[str, Any]:
        """Whether starting ``task`` as a new pipeline would land in a pipeline that exists."""
        self.tasks.readable(company, data["task"], {"_id": 1})
        existing = self._existing_project(company, data)
        return {"existing_project": existing} if existing else {}

    def start(self, identity: Identity, data: dict[str, Any]) -> dict[str, Any]:
        controller = self.tasks.readable(identity.company, data["task"])
        hyperparams = dict(controller.get("hyperparams") or {})
        if data.get("args"):
            section = dict(hyperparams.get(ARGS_SECTION) or {})
            for arg in data["args"]:
                old = section.get(arg["name"]) or {}
                section[arg["name"]] = {**old, "section": ARGS_SECTION, "name": arg["name"],
                                        "value": arg.get("value") or ""}
            hyperparams[ARGS_SECTION] = section
        clone: dict[str, Any] = {"task": controller["_id"], "new_task_hyperparams": hyperparams,
                                 "new_task_system_tags": [t for t in controller.get("system_tags") or []
                                                          if t != "archived"]}
        answer: dict[str, Any] = {}
        if data.get("new_project_name") and data.get("new_pipeline_name"):
            existing = self._existing_project(identity.company, data)
            name = pipeline_project_name(data["new_project_name"], data["new_pipeline_name"])
            project = existing["id"] if existing else \
                self.projects.ensure(identity, name, system_tags=[PIPELINE_TAG])
            clone["new_task_project"] = project
            answer["new_project"] = {"id": project, "name": name}
        run = self.tasks.clone(identity, clone)
        queued = self.tasks.enqueue(identity, {"task": run, "queue": data.get("queue")} if data.get("queue")
                                    else {"task": run})
        answer.update({"pipeline": run, "enqueued": bool(queued.get("queued"))})
        if data.get("verify_watched_queue"):
            queue = self.tasks.own(identity.company, run, {"execution.queue": 1})["execution"]["queue"]
            answer["queue_watched"] = self.workers.queue_watched(identity.company, queue)
        return answer

    def delete_runs(self, identity: Identity, data: dict[str, Any], host: str | None) -> dict[str, Any]:
        """Each run (a controller task) with what it owns, and with its steps when asked."""
        project = data["project"]
        self.projects.readable(identity.company, project, {"_id": 1})
        ids = list(dict.fromkeys(data["ids"]))
        runs = set(self.tasks.ids_of_type(identity.company, project, CONTROLLER_TYPE))
        if runs and runs <= set(ids):
            raise errors.bad_request.CannotRemoveAllRuns("keep at least one run of the pipeline", field="ids")

        def delete(run_id: str) -> dict[str, Any]:
            task = self.tasks.writable(identity.company, run_id)
            if task.get("project") != project:
                raise errors.bad_request.InvalidTaskId("the run is not in this pipeline's project", id=run_id)
            steps = deleted_models = 0
            if data.get("include_pipeline_steps"):
                for step in self.tasks.child_ids(identity.company, run_id):
                    deleted_models += self.deletion.delete_task(identity, {"task": step, "force": True},
                                                                host)["deleted_models"]
                    steps += 1
            result = self.deletion.delete_task(identity, {"task": run_id, "force": True}, host)
            return {"deleted": bool(result["deleted"]), "updated_children": result["updated_children"],
                    "updated_models": result.get("updated_models", 0),
                    "deleted_models": deleted_models + result["deleted_models"], "deleted_steps": steps}

        return run_batch(ids, delete)
