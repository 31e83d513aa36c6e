"""Handlers of the tasks service: each reads the validated call and hands it to TaskBLL."""

from __future__ import annotations

from apiserver.service_repo import Call, endpoint
from apiserver.state import get_state


def _tasks():
    return get_state().tasks


@endpoint("tasks.get_by_id")
def get_by_id(call: Call) -> dict:
    return {"task": _tasks().get_by_id(call.company, call.data["task"])}


@endpoint("tasks.get_all")
@endpoint("tasks.get_all_ex")
def get_all(call: Call) -> dict:
    return {"tasks": _tasks().get_all(call.company, call.data)}


@endpoint("tasks.get_types")
def get_types(call: Call) -> dict:
    return {"types": _tasks().get_types(call.company, call.data.get("projects"))}


@endpoint("tasks.create")
def create(call: Call) -> dict:
    return {"id": _tasks().create(call.identity, call.data)}


@endpoint("tasks.validate")
def validate(call: Call) -> dict:
    _tasks().validate(call.identity, call.data)
    return {}


@endpoint("tasks.clone")
def clone(call: Call) -> dict:
    return {"id": _tasks().clone(call.identity, call.data)}


@endpoint("tasks.update")
def update(call: Call) -> dict:
    return _tasks().update(call.identity, call.data)


@endpoint("tasks.update_batch")
def update_batch(call: Call) -> dict:
    return {"updated": sum(_tasks().update(call.identity, item)["updated"] for item in call.batched_data)}


@endpoint("tasks.edit")
def edit(call: Call) -> dict:
    return _tasks().edit(call.identity, call.data)


@endpoint("tasks.set_requirements")
def set_requirements(call: Call) -> dict:
    return _tasks().set_requirements(call.identity, call.data["task"], call.data["requirements"])


@endpoint("tasks.ping")
def ping(call: Call) -> dict:
    _tasks().ping(call.identity, call.data["task"])
    return {}


@endpoint("tasks.add_or_update_artifacts")
def add_or_update_artifacts(call: Call) -> dict:
    added, updated = _tasks().add_or_update_artifacts(call.identity, call.data["task"], call.data["artifacts"])
    return {"added": added, "updated": updated}


@endpoint("tasks.make_public")
def make_public(call: Call) -> dict:
    return {"updated": _tasks().make_public(call.company, call.data.get("ids") or [])}


@endpoint("tasks.make_private")
def make_private(call: Call) -> dict:
    return {"updated": _tasks().make_private(call.company, call.data.get("ids") or [])}


def _status_endpoint(name: str, method: str) -> None:
    """Status-change endpoints are one call each into TaskBLL with the identity and the data."""
    def handler(call: Call) -> dict:
        return getattr(_tasks(), method)(call.identity, call.data)

    handler.__name__ = handler.__qualname__ = method
    endpoint(name)(handler)


for _action in ("started", "stop", "stopped", "failed", "close", "completed", "publish", "reset", "delete",
                "enqueue", "dequeue"):
    _status_endpoint(f"tasks.{_action}", _action)
