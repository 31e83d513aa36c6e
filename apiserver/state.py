"""Owns the per-process server state that handlers reach: config, database, specs and bll objects."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from apiserver.bll.auth.tokens import TokenService
from apiserver.bll.auth.users import AuthBLL
from apiserver.bll.events.events import EventBLL
from apiserver.bll.files.files import FileBLL
from apiserver.bll.manager.manager import ManagerBLL
from apiserver.bll.models.models import ModelBLL
from apiserver.bll.organization.counts import EntityCounts
from apiserver.bll.organization.export import ExportBLL
from apiserver.bll.pipelines.pipelines import PipelineBLL
from apiserver.bll.projects.merge import ProjectMerge
from apiserver.bll.projects.projects import ProjectBLL
from apiserver.bll.queues.queues import QueueBLL
from apiserver.bll.registry.registry import DeploymentBLL, ModelRegistryBLL
from apiserver.bll.reports.reports import ReportBLL
from apiserver.bll.serving.serving import ServingBLL
from apiserver.bll.tasks.deletion import OwnedDeletion
from apiserver.bll.tasks.pipeline_runs import PipelineRunBLL
from apiserver.bll.tasks.tasks import TaskBLL
from apiserver.bll.workers.workers import WorkerBLL
from apiserver.config import Config
from apiserver.config.settings import Settings
from apiserver.database.embedded import EmbeddedDatabase
from apiserver.schema.loader import SpecRegistry


@dataclass
class ServerState:
    config: Config
    settings: Settings
    db: Any  # the pymongo Database (database/connection.py): health checks and the GridFS file store
    specs: SpecRegistry
    auth: AuthBLL
    tokens: TokenService
    queues: QueueBLL
    projects: ProjectBLL
    tasks: TaskBLL
    workers: WorkerBLL
    events: EventBLL
    manager: ManagerBLL
    pipelines: PipelineBLL
    deployments: DeploymentBLL
    registry: ModelRegistryBLL
    files: FileBLL
    models: ModelBLL
    reports: ReportBLL
    serving: ServingBLL
    export: ExportBLL
    counts: EntityCounts
    pipeline_runs: PipelineRunBLL
    deletion: OwnedDeletion
    project_merge: ProjectMerge
    embedded: EmbeddedDatabase | None = None
    session_cookie: Any = None  # service_repo.auth.SessionCookie: the browser sign-in cookie
    scheduler: Any = None
    started_at: float = field(default_factory=time.time)


_STATE: ServerState | None = None


def set_state(state: ServerState | None) -> None:
    global _STATE
    _STATE = state


def peek_state() -> ServerState | None:
    """The state if this process built an app, else None."""
    return _STATE


def get_state() -> ServerState:
    if _STATE is None:
        raise RuntimeError("the server is not initialised: call apiserver.app.create_app() first")
    return _STATE
