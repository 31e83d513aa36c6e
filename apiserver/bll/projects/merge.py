"""Owns merging a project into another: its tasks and models move into the destination (through
TaskBLL and ModelBLL, which own those records), its subprojects move below it, then it is deleted.

It sits above ProjectBLL, TaskBLL and ModelBLL because the tasks and models BLLs build on ProjectBLL.
"""

from __future__ import annotations

from apiserver.bll.auth.identity import Identity
from apiserver.bll.models.models import ModelBLL
from apiserver.bll.projects.projects import ProjectBLL
from apiserver.bll.tasks.tasks import TaskBLL


class ProjectMerge:
    def __init__(self, projects: ProjectBLL, tasks: TaskBLL, models: ModelBLL):
        self.projects = projects
        self.tasks = tasks
        self.models = models

    def merge(self, identity: Identity, project_id: str, destination: str) -> dict[str, int]:
        """Move a project's tasks, models and subprojects into ``destination``, then delete it."""
        source, target = self.projects.merge_pair(identity, project_id, destination)
        moved_entities = sum(owner.move_between_projects(identity.company, source["_id"], target["_id"])
                             for owner in (self.tasks, self.models))
        moved_projects = self.projects.merge_records(identity, source, target)
        return {"moved_entities": moved_entities, "moved_projects": moved_projects}
