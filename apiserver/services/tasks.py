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


@endpoint("tasks.add_or_update_artifacts", min_version="2.10")
def add_or_update_artifacts_count(call: Call) -> dict:
    _tasks().add_or_update_artifacts(call.identity, call.data["task"], call.data["artifacts"])
    return {"updated": 1}


@endpoint("tasks.edit_hyper_params")
def edit_hyper_params(call: Call) -> dict:
    data = call.data
    return {"updated": _tasks().edit_hyper_params(call.identity, data["task"], data["hyperparams"],
                                                  data.get("replace_hyperparams") or "none", bool(data.get("force")))}


@endpoint("tasks.delete_hyper_params")
def delete_hyper_params(call: Call) -> dict:
    data = call.data
    return {"deleted": _tasks().delete_hyper_params(call.identity, data["task"], data["hyperparams"],
                                                    bool(data.get("force")))}


@endpoint("tasks.get_hyper_params")
def get_hyper_params(call: Call) -> dict:
    return {"params": _tasks().get_hyper_params(call.company, call.data["tasks"])}


@endpoint("tasks.add_or_update_model")
def add_or_update_model(call: Call) -> dict:
    return get_state().models.link_to_task(call.identity, call.data)


@endpoint("tasks.delete_models")
def delete_models(call: Call) -> dict:
    return _tasks().delete_models(call.identity, call.data["task"], call.data["models"])


@endpoint("tasks.delete")
def delete(call: Call) -> dict:
    return get_state().deletion.delete_task(call.identity, call.data, call.host)


@endpoint("tasks.reset")
def reset(call: Call) -> dict:
    return get_state().deletion.reset_task(call.identity, call.data, call.host)


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


for _action in ("started", "stop", "stopped", "failed", "close", "completed", "publish", "enqueue", "dequeue"):
    _status_endpoint(f"tasks.{_action}", _action)
