"""Handlers of the server service: liveness, readiness, Prometheus metrics, info and the OpenAPI document."""

from __future__ import annotations

import os
import time

from apiserver import MAX_API_VERSION, __version__, metrics
from apiserver.apierrors import errors
from apiserver.bll.gauges import company_gauges
from apiserver.database.connection import database_kind
from apiserver.database.model.base import utcnow
from apiserver.readiness import database_problem, not_ready_because
from apiserver.service_repo import Call, endpoint
from apiserver.service_repo.openapi import build_openapi
from apiserver.state import get_state


@endpoint("server.health")
def health(call: Call) -> dict:
    problem = database_problem()
    if problem is not None:
        raise errors.service_unavailable.UpstreamUnavailable(problem)
    return {"status": "ok", "database": "ok"}


@endpoint("server.ready")
def ready(call: Call) -> dict:
    problem = not_ready_because()
    if problem is not None:
        raise errors.service_unavailable.NotReady(problem)
    return {"status": "ready"}


@endpoint("server.metrics")
def prometheus_metrics(call: Call) -> str:
    state = get_state()
    return metrics.exposition(company_gauges(call.company, state.workers.count(call.company, {})))


@endpoint("server.info")
def info(call: Call) -> dict:
    state = get_state()
    return {"version": __version__, "api_version": MAX_API_VERSION,
            "uptime_sec": round(time.time() - state.started_at, 3),
            "database": database_kind(state.db), "server_time": utcnow(), "process_id": os.getpid()}


@endpoint("server.openapi")
def openapi(call: Call) -> dict:
    return build_openapi(get_state().specs, __version__, MAX_API_VERSION)


@endpoint("server.report_stats_option")
def report_stats_option(call: Call) -> dict:
    return {"supported": False, "enabled": False, "enabled_time": None, "enabled_version": None,
            "enabled_user": None, "current_version": __version__}
