"""Handlers of the projects service."""

from __future__ import annotations

from apiserver.service_repo import Call, endpoint
from apiserver.state import get_state


def _projects():
    return get_state().projects


@endpoint("projects.create")
def create(call: Call) -> dict:
    return {"id": _projects().create(call.identity, call.data)}


@endpoint("projects.get_by_id")
def get_by_id(call: Call) -> dict:
    return {"project": _projects().get_by_id(call.company, call.data["project"])}


@endpoint("projects.get_all")
@endpoint("projects.get_all_ex")
def get_all(call: Call) -> dict:
    return {"projects": _projects().get_all(call.company, call.data)}


@endpoint("projects.update")
def update(call: Call) -> dict:
    fields = _projects().update(call.identity, call.data["project"], call.data)
    return {"updated": 1 if fields else 0, "fields": fields}


@endpoint("projects.delete")
def delete(call: Call) -> dict:
    return get_state().deletion.delete_project(call.identity, call.data, call.host)


@endpoint("projects.get_task_tags")
def get_task_tags(call: Call) -> dict:
    return _projects().task_tags(call.company, call.data.get("projects"))


@endpoint("projects.get_user_names")
def get_user_names(call: Call) -> dict:
    return {"users": _projects().user_names(call.company, call.data.get("projects"), call.data.get("entity"))}
