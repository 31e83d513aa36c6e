"""Handlers of the pipeline leader: workflows.* and the members' /status_report (members.* is in members.py)."""

from __future__ import annotations

from apiserver.service_repo import Call, endpoint
from apiserver.state import get_state


def _pipelines():
    return get_state().pipelines


@endpoint("workflows.status_report")
def status_report(call: Call) -> str:
    return _pipelines().handle_report(call.data, call.remote_addr)


@endpoint("workflows.create")
def create(call: Call) -> dict:
    return {"id": _pipelines().create(call.identity, call.data["project_id"], call.data.get("workflow"))}


@endpoint("workflows.get_all")
def get_all(call: Call) -> dict:
    return {"pipelines": _pipelines().get_all(call.company, call.data)}


@endpoint("workflows.get_by_id")
def get_by_id(call: Call) -> dict:
    p = _pipelines()
    return {"pipeline": p.to_api(p.get(call.company, call.data["pipeline"]))}


@endpoint("workflows.start")
def start(call: Call) -> dict:
    return {"pipeline": _pipelines().start(call.identity, call.data["pipeline"])}


@endpoint("workflows.stop")
def stop(call: Call) -> dict:
    return {"pipeline": _pipelines().stop(call.identity, call.data["pipeline"])}


@endpoint("workflows.delete")
def delete(call: Call) -> dict:
    return {"deleted": _pipelines().delete(call.identity, call.data["pipeline"], bool(call.data.get("force")))}


@endpoint("workflows.get_log")
def get_log(call: Call) -> dict:
    return {"events": _pipelines().get_log(call.company, call.data["pipeline"])}


@endpoint("workflows.check_members")
def check_members(call: Call) -> dict:
    members = _pipelines().check_members_of(call.company, call.data.get("pipeline"), call.data.get("container_ids"))
    return {"members": members}


@endpoint("workflows.get_heartbeat_stats")
def get_heartbeat_stats(call: Call) -> dict:
    return _pipelines().heartbeat_stats()
