"""Owns start-up: config -> database -> spec registry -> routes -> scheduler, in one ``create_app``."""

from __future__ import annotations

import atexit
import dataclasses
import logging
import os
import threading
import time
from functools import partial
from typing import Any

from flask import Flask

from apiserver import MAX_API_VERSION, __version__, metrics
from apiserver.bll.auth.identity import ROLES
from apiserver.bll.auth.throttle import ThrottleLimits
from apiserver.bll.auth.tokens import TokenService
from apiserver.bll.auth.users import AuthBLL
from apiserver.bll.events.events import EventBLL
from apiserver.bll.files.files import FileBLL
from apiserver.bll.manager.manager import TASK_STATUSES as RENDER_TASK_STATUSES
from apiserver.bll.manager.manager import WORKER_STATUSES as RENDER_WORKER_STATUSES
from apiserver.bll.manager.manager import ManagerBLL
from apiserver.bll.migrations import EXIT_BOOT_ERROR, migrate, refuse_newer_data
from apiserver.bll.models.models import ModelBLL
from apiserver.bll.organization.counts import EntityCounts
from apiserver.bll.organization.export import ExportBLL
from apiserver.bll.outbound import OutboundClient
from apiserver.bll.pipelines import status as pipeline_status
from apiserver.bll.pipelines.members import MemberClient, MemberRegistry
from apiserver.bll.pipelines.pipelines import PipelineBLL
from apiserver.bll.projects.merge import ProjectMerge
from apiserver.bll.projects.projects import ProjectBLL
from apiserver.bll.queues.entries import QueueEntries
from apiserver.bll.queues.queues import QueueBLL
from apiserver.bll.registry.registry import DeploymentBLL, ModelRegistryBLL
from apiserver.bll.registry.secrets import SecretBox
from apiserver.bll.reports.reports import ReportBLL
from apiserver.bll.server_settings import configured_or_generated
from apiserver.bll.serving.serving import METRIC_TYPES as SERVING_METRIC_TYPES
from apiserver.bll.serving.serving import ServingBLL
from apiserver.bll.tasks import status as task_status
from apiserver.bll.tasks.deletion import OwnedDeletion
from apiserver.bll.tasks.pipeline_runs import PipelineRunBLL
from apiserver.bll.tasks.tasks import TaskBLL
from apiserver.bll.workers.workers import WorkerBLL
from apiserver.config import Config, ConfigError, load_config
from apiserver.config.settings import Settings
from apiserver.console import Console
from apiserver.database.connection import connect
from apiserver.database.errors import ConnectionFailure
from apiserver.database.filestore import build_store
from apiserver.database.model.auth import Company
from apiserver.jsonlog import JsonLinesFormatter
from apiserver.readiness import still_starting
from apiserver.schema.loader import SpecError, check_enums, format_version, load_specs, parse_version
from apiserver.service_repo.auth import Authenticator, SessionCookie
from apiserver.service_repo.dispatcher import Dispatcher
from apiserver.service_repo.endpoint import bind_handlers, import_handlers
from apiserver.service_repo.observe import RequestObserver
from apiserver.service_repo.webapp import WebApp, configured_build
from apiserver.state import ServerState, get_state, set_state

log = logging.getLogger("apiserver")


LOG_FORMATS = ("text", "json")


def configure_logging(level: str = "INFO", log_format: str = "text") -> None:
    """Plain text lines, or JSON lines (``apiserver.log_format: json``, apiserver/jsonlog.py) on every
    handler of the root logger (a gunicorn worker inherits the master's)."""
    if log_format not in LOG_FORMATS:
        raise ConfigError(f"apiserver.log_format: {log_format!r} is not one of {list(LOG_FORMATS)}")
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s")
    if log_format == "json":
        for handler in root.handlers:
            handler.setFormatter(JsonLinesFormatter())
    logging.getLogger("apscheduler").setLevel(logging.WARNING)


def session_cookie(config: Config) -> SessionCookie:
    cookie = config.get("auth.session_cookie")
    return SessionCookie(name=cookie["name"], secure=bool(config.get("apiserver.https")),
                         max_age_sec=int(config.get("auth.token_expiration_sec")))


# The facts the code owns that the specs repeat as enums: checked at start-up (check_enums).
SPEC_FACTS = {("*", "role_enum"): ROLES, ("tasks", "task_status_enum"): task_status.STATUSES,
              ("manager", "task_status_enum"): RENDER_TASK_STATUSES,
              ("manager", "worker_status_enum"): RENDER_WORKER_STATUSES,
              ("serving", "metric_type_enum"): SERVING_METRIC_TYPES,
              ("workflows", "pipeline_status_enum"): pipeline_status.PIPELINE_STATUSES,
              ("workflows", "step_status_enum"): pipeline_status.STEP_STATUSES}


def build_dispatcher(config: Config, authenticator: Authenticator | None) -> tuple[Dispatcher, Any]:
    """Load and check every spec and handler; raises SpecError naming what is broken."""
    specs = load_specs()
    max_version = parse_version(MAX_API_VERSION)
    too_new = [s for s in specs.all() if s.version > max_version]
    if too_new:
        s = too_new[0]
        raise SpecError(f"{s.source}: endpoint {s.name} declares version {s.version_str}, above the "
                        f"server's maximum {MAX_API_VERSION} (apiserver.MAX_API_VERSION)")
    check_enums(specs, SPEC_FACTS)
    import_handlers()
    handlers = bind_handlers(specs)
    dispatcher = Dispatcher(specs, handlers, authenticator, max_version,
                            check_max_version=bool(config["apiserver.check_max_version"]),
                            debug=bool(config["apiserver.debug"]), session_cookie=session_cookie(config),
                            https=bool(config.get("apiserver.https")),
                            trusted_proxies=tuple(config.get("apiserver.trusted_proxies") or ()))
    return dispatcher, specs


def create_app(config: Config | None = None, overrides: dict[str, Any] | None = None,
               start_scheduler: bool | None = None, wait_for_database: bool = False, routes: bool = True) -> Flask:
    """The app. ``wait_for_database`` (gunicorn workers): when the database does not answer, an app that
    answers only the probes (503) is returned at once and the start-up finishes once it does. ``routes=False``
    (a command run beside the server: import): the state with its domains, without the API's routes, so
    without loading the specs."""
    config = config or load_config(overrides=overrides)
    configure_logging(config["apiserver.log_level"], config["apiserver.log_format"])
    try:
        db, embedded = connect(config, on_command=metrics.observe_database_command
                               if config["apiserver.metrics.enabled"] else None)
    except ConnectionFailure:
        if not wait_for_database:
            raise
        return _starting_app(config, start_scheduler)
    if embedded is not None:
        atexit.register(embedded.stop)
    refuse_newer_data(__version__)  # before anything is written to data this code does not know
    settings = Settings.from_config(config)
    data_dir = config["database.embedded.data_dir"]
    auth = settings.auth
    auth = dataclasses.replace(auth, generated_credentials_file=auth.credentials_path(data_dir))
    throttle = auth.sign_in_throttle
    users = AuthBLL(bcrypt_rounds=auth.bcrypt_rounds,
                    throttle=ThrottleLimits(int(throttle["window_sec"]), int(throttle["max_failures_per_account"]),
                                            int(throttle["max_failures_per_address"])))
    _ensure_indexes()
    users.bootstrap(auth)
    tokens = TokenService(users.token_secret(auth.token_secret), auth.token_expiration_sec,
                          auth.max_token_expiration_sec, MAX_API_VERSION, __version__,
                          still_valid=users.token_problem, recheck_sec=auth.token_recheck_sec)
    users.on_tokens_revoked.append(tokens.forget_checks)
    app = _flask_app(config)
    dispatcher, specs = None, None
    if routes:  # without: the domains alone, for a command beside the server (import); no specs to load
        dispatcher, specs = build_dispatcher(config, Authenticator(tokens, users))
        dispatcher.register(app)
        webapp_build = configured_build(config)
        if webapp_build is not None:
            webapp = WebApp(webapp_build)
            webapp.register(app)
            dispatcher.static_fallback = webapp.answer
        if config.get("console.enabled"):
            Console().register(app)
    queue_entries, projects = QueueEntries(), ProjectBLL()
    deployments = build_deployments(settings)
    worker_timeout = int(config["workers.timeout_sec"])
    tasks = TaskBLL(queue_entries, projects, worker_timeout_sec=worker_timeout,
                    progress_write_sec=float(config["tasks.progress_write_sec"]))
    files = FileBLL(build_store(settings.files, db, data_dir), settings.files)
    models = ModelBLL(tasks, projects, files)
    workers = WorkerBLL(tasks, worker_timeout)
    events = EventBLL(settings.events, tasks, models)
    tasks.on_reset.append(events.delete_for_task)
    tasks.on_delete.append(events.delete_for_task)
    models.on_delete.append(events.delete_for_model)
    tasks.on_publish.append(models.ready_last_output)
    events.ensure_indexes()
    deletion = OwnedDeletion(tasks, models, events, files, projects)
    pipelines = build_pipelines(settings)
    pipelines.ensure_indexes()
    state = ServerState(config=config, settings=settings, db=db, specs=specs, auth=users, tokens=tokens,
                        queues=QueueBLL(queue_entries, tasks, workers.listening),
                        projects=projects, tasks=tasks,
                        workers=workers, events=events,
                        pipeline_runs=PipelineRunBLL(tasks, projects, workers, deletion),
                        manager=ManagerBLL(settings.manager), pipelines=pipelines,
                        deployments=deployments,
                        registry=ModelRegistryBLL(deployments, settings.registry.max_explainers,
                                                  settings.registry.max_schema_bytes),
                        files=files, models=models, reports=ReportBLL(tasks, projects, deletion),
                        serving=ServingBLL(settings.serving),
                        counts=EntityCounts({"tasks": (tasks.store, tasks.build_query),
                                             "models": (models.store, models.build_query),
                                             "projects": (projects.store, projects.build_query)}),
                        export=ExportBLL({"task": partial(tasks.get_all, ex=True),
                                              "model": partial(models.get_all, ex=True)},
                                         int(config.get("webapp.export.ttl_sec")),
                                         int(config.get("webapp.export.max_rows"))),
                        deletion=deletion,
                        project_merge=ProjectMerge(projects, tasks, models),
                        embedded=embedded, session_cookie=dispatcher and dispatcher.session_cookie)
    migrate(state, __version__, float(config["scheduler.lease_ttl_sec"]), alive=still_starting)
    set_state(state)
    for company in Company.objects.only("id"):
        queue_entries.ensure_default(company.id)
    if start_scheduler if start_scheduler is not None else config["scheduler.enabled"]:
        import apiserver.jobs  # noqa: F401 - registers the periodic jobs
        from apiserver.scheduler import start_scheduler as start

        state.scheduler = start(state)
    if dispatcher is not None:
        log.info("API server %s ready: %d endpoints, API versions up to %s", __version__, len(specs.names()),
                 format_version(dispatcher.max_version))
    return app


def _flask_app(config: Config) -> Flask:
    app = Flask("apiserver")
    app.config["MAX_CONTENT_LENGTH"] = int(config["apiserver.max_content_length"])
    RequestObserver(metrics_enabled=bool(config["apiserver.metrics.enabled"]),
                    log_requests=config["apiserver.log_format"] == "json").register(app)
    return app


def _starting_app(config: Config, start_scheduler: bool | None) -> Flask:
    """An app that answers 503 to every call but /health while the database does not answer
    (``_probes_only_app``); a thread retries the start-up and, once it succeeds, the app serves the
    started one. A start-up that fails otherwise (e.g. data too new) ends the worker with gunicorn's
    boot-error code, which stops the server."""
    app = _probes_only_app(config)
    log.warning("the database does not answer: /health/ready answers 503 until it does")

    def start_when_database_answers() -> None:
        while True:
            time.sleep(1.0)
            try:
                started = create_app(config, start_scheduler=start_scheduler)
            except ConnectionFailure:
                continue
            except BaseException:  # noqa: BLE001 - said in the log, then the server stops
                log.exception("start-up failed")
                logging.shutdown()
                os._exit(EXIT_BOOT_ERROR)
            app.wsgi_app = started.wsgi_app  # Flask's own hook for wrapping: every request goes there now
            log.info("the database answers: start-up done")
            return

    threading.Thread(target=start_when_database_answers, daemon=True, name="start-up").start()
    return app


def _probes_only_app(config: Config) -> Flask:
    """The app of a start-up waiting for the database: /health says whether the database answers,
    every other call (/health/ready too) answers 503 "starting"."""
    dispatcher, _ = build_dispatcher(config, None)
    dispatcher.starting = True
    app = _flask_app(config)
    dispatcher.register(app)
    return app


def build_deployments(settings: Settings) -> DeploymentBLL:
    """Deployments with the guarded outbound client and the box that seals their secrets."""
    key = configured_or_generated("registry_secrets_key", settings.registry.secrets_key, SecretBox.generate_key)
    return DeploymentBLL(settings.registry, outbound_client(settings), SecretBox(key))


def outbound_client(settings: Settings, **kwargs: Any) -> OutboundClient:
    try:
        return OutboundClient.from_settings(settings.outbound, **kwargs)
    except ValueError as exc:  # a bad allow_hosts entry: stop start-up and say which
        raise ConfigError(str(exc)) from None


def build_pipelines(settings: Settings) -> PipelineBLL:
    cfg = settings.pipeline
    max_calls, timeout = cfg.max_concurrent_calls, cfg.timeout
    strict = outbound_client(settings, timeout=timeout, hosts=64, per_host=max_calls)
    registry = MemberRegistry(cfg, strict.policy)
    # The operator's own members (pipeline.conf) may be on hosts the allowlist does not name.
    trusted = OutboundClient(strict.policy.also_allowing(registry.config_hosts()), strict.max_response_bytes,
                             timeout=timeout, hosts=64, per_host=max_calls)
    return PipelineBLL(registry, MemberClient(registry, strict, trusted), cfg)


def _ensure_indexes() -> None:
    """Create every model's declared indexes now, not lazily on a first request."""
    from mongoengine import Document

    def walk(cls: type) -> list[type]:
        return [cls] + [c for sub in cls.__subclasses__() for c in walk(sub)]

    _import_models()
    for model in walk(Document):
        if model.__module__.startswith("apiserver.") and not model._meta.get("abstract"):
            model.ensure_indexes()


def _import_models() -> None:
    import importlib
    import pkgutil

    import apiserver.database.model as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        importlib.import_module(f"{pkg.__name__}.{info.name}")



__all__ = ["create_app", "get_state"]
