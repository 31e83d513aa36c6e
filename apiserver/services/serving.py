"""Handlers of ClearML's serving service: serving containers report in, the web app reads endpoints."""

from __future__ import annotations

from apiserver.service_repo import Call, endpoint
from apiserver.state import get_state


def _serving():
    return get_state().serving


@endpoint("serving.register_container")
def register_container(call: Call) -> dict:
    _serving().register(call.identity, call.data, call.remote_addr)
    return {}


@endpoint("serving.unregister_container")
def unregister_container(call: Call) -> dict:
    _serving().unregister(call.identity, call.data["container_id"])
    return {}


@endpoint("serving.container_status_report")
def container_status_report(call: Call) -> dict:
    _serving().status_report(call.identity, call.data, call.remote_addr)
    return {}


@endpoint("serving.get_endpoints")
def get_endpoints(call: Call) -> dict:
    return {"endpoints": _serving().get_endpoints(call.company)}


@endpoint("serving.get_loading_instances")
def get_loading_instances(call: Call) -> dict:
    return {"instances": _serving().get_loading_instances(call.company)}


@endpoint("serving.get_endpoint_details")
def get_endpoint_details(call: Call) -> dict:
    return _serving().get_endpoint_details(call.company, call.data["endpoint_url"])


@endpoint("serving.get_endpoint_metrics_history")
def get_endpoint_metrics_history(call: Call) -> dict:
    return _serving().metrics_history(call.company, call.data)
