"""Handlers of the workers service."""

from __future__ import annotations

from apiserver.service_repo import Call, endpoint
from apiserver.state import get_state


@endpoint("workers.register")
def register(call: Call) -> dict:
    get_state().workers.register(call.identity, call.data, call.remote_addr)
    return {}


@endpoint("workers.unregister")
def unregister(call: Call) -> dict:
    get_state().workers.unregister(call.identity, call.data["worker"])
    return {}


@endpoint("workers.status_report")
def status_report(call: Call) -> dict:
    get_state().workers.status_report(call.identity, call.data, call.remote_addr)
    return {}


@endpoint("workers.get_all")
def get_all(call: Call) -> dict:
    return {"workers": get_state().workers.get_all(call.company, call.data)}


@endpoint("workers.get_runtime_properties")
def get_runtime_properties(call: Call) -> dict:
    return {"runtime_properties": get_state().workers.get_runtime_properties(call.company, call.data["worker"])}


@endpoint("workers.set_runtime_properties")
def set_runtime_properties(call: Call) -> dict:
    return get_state().workers.set_runtime_properties(call.company, call.data["worker"],
                                                      call.data["runtime_properties"])


@endpoint("workers.get_activity_report")
def get_activity_report(call: Call) -> dict:
    return get_state().workers.activity_report(call.company, call.data)


@endpoint("workers.get_stats")
def get_stats(call: Call) -> dict:
    return {"workers": get_state().workers.get_stats(call.company, call.data)}


@endpoint("workers.get_count")
def get_count(call: Call) -> dict:
    return {"count": get_state().workers.count(call.company, call.data)}


@endpoint("workers.get_metric_keys")
def get_metric_keys(call: Call) -> dict:
    return {"categories": get_state().workers.metric_keys(call.company, call.data.get("worker_ids"))}
