"""Handlers of the members service: pipeline member containers registered for the leader."""

from __future__ import annotations

from apiserver.service_repo import Call, endpoint
from apiserver.state import get_state


def _members():
    return get_state().pipelines.registry


@endpoint("members.register")
def register(call: Call) -> dict:
    _members().register(call.company, call.data["container_id"], call.data["url"], call.user)
    return {}


@endpoint("members.remove")
def remove(call: Call) -> dict:
    get_state().pipelines.remove_member(call.company, call.data["container_id"])
    return {}


@endpoint("members.get_all")
def get_all(call: Call) -> dict:
    return {"members": _members().all(call.company)}
