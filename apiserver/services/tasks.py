"""Handlers of the tasks service: each reads the validated call and hands it to TaskBLL."""

from __future__ import annotations

from collections.abc import Callable

from apiserver.bll import query as q
from apiserver.bll.batch import run_batch
from apiserver.bll.tasks.fields import LEGACY_PARAMS_BEFORE, legacy_view
from apiserver.service_repo import Call, endpoint
from apiserver.services._tags import legacy_tags
from apiserver.state import get_state


def _tasks():
    return get_state().tasks


def _as_requested(call: Call, task: dict) -> dict:
    """A task as the call's API version shows it (legacy parameters for clients before 2.9)."""
    return legacy_view(task) if call.requested_before(LEGACY_PARAMS_BEFORE) else task


@endpoint("tasks.get_by_id")
@legacy_tags("task")
def get_by_id(call: Call) -> dict:
    return {"task": _as_requested(call, _tasks().get_by_id(call.company, call.data["task"]))}


@endpoint("tasks.get_all")
@endpoint("tasks.get_all_ex")
@legacy_tags("task")
def get_all(call: Call) -> dict:
    tasks = [_as_requested(call, t) for t in _tasks().get_all(call.company, call.data,
                                                               ex=call.endpoint.endswith("_ex"))]
    return {"tasks": tasks, **q.scroll_answer(call.data, len(tasks))}


@endpoint("tasks.get_types")
def get_types(call: Call) -> dict:
    return {"types": _tasks().get_types(call.company, call.data.get("projects"))}


@endpoint("tasks.create")
@legacy_tags("task")
def create(call: Call) -> dict:
    return {"id": _tasks().create(call.identity, call.data)}


@endpoint("tasks.validate")
def validate(call: Call) -> dict:
    _tasks().validate(call.identity, call.data)
    return {}


@endpoint("tasks.clone")
def clone(call: Call) -> dict:
    task_id = _tasks().clone(call.identity, call.data)
    if not call.data.get("new_project_name") or call.data.get("new_task_project"):
        return {"id": task_id}
    project = _tasks().readable(call.company, task_id, {"project": 1})["project"]
    name = get_state().projects.readable(call.company, project, {"name": 1})["name"]
    return {"id": task_id, "new_project": {"id": project, "name": name}}


@endpoint("tasks.update")
@legacy_tags("task")
def update(call: Call) -> dict:
    return _tasks().update(call.identity, call.data)


@endpoint("tasks.update_batch")
def update_batch(call: Call) -> dict:
    return {"updated": sum(_tasks().update(call.identity, item)["updated"] for item in call.batched_data)}


@endpoint("tasks.edit")
@legacy_tags("task")
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


@endpoint("tasks.delete_artifacts")
def delete_artifacts(call: Call) -> dict:
    return {"deleted": _tasks().delete_artifacts(call.identity, call.data["task"], call.data["artifacts"],
                                                 bool(call.data.get("force")))}


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
@endpoint("tasks.make_private")
def set_public(call: Call) -> dict:
    return {"updated": _tasks().set_public(call.company, call.data.get("ids") or [],
                                           call.endpoint.endswith("public"))}


def _status_endpoint(name: str, method: str) -> None:
    """Status-change endpoints are one call each into TaskBLL with the identity and the data."""
    def handler(call: Call) -> dict:
        return getattr(_tasks(), method)(call.identity, call.data)

    handler.__name__ = handler.__qualname__ = method
    endpoint(name)(handler)


for _action in ("started", "stop", "stopped", "failed", "close", "completed", "publish", "enqueue", "dequeue"):
    _status_endpoint(f"tasks.{_action}", _action)


@endpoint("tasks.get_by_id_ex")
def get_by_id_ex(call: Call) -> dict:
    return get_all(call)


@endpoint("tasks.archive")
def archive(call: Call) -> dict:
    return {"archived": sum(_tasks().set_archived(call.identity, t, True, call.data) for t in call.data["tasks"])}


@endpoint("tasks.unarchive")
def unarchive(call: Call) -> dict:
    return {"unarchived": sum(_tasks().set_archived(call.identity, t, False, call.data) for t in call.data["tasks"])}


@endpoint("tasks.archive_many")
def archive_many(call: Call) -> dict:
    return run_batch(call.data["ids"], lambda t: {"archived": _tasks().set_archived(call.identity, t, True,
                                                                                    call.data)})


@endpoint("tasks.unarchive_many")
def unarchive_many(call: Call) -> dict:
    return run_batch(call.data["ids"], lambda t: {"unarchived": _tasks().set_archived(call.identity, t, False,
                                                                                      call.data)})


def _many_endpoint(name: str, action: Callable[[Call, dict], dict]) -> None:
    """A ``*_many`` endpoint: the single action for each id with the rest of the request."""
    def handler(call: Call) -> dict:
        rest = {k: v for k, v in call.data.items() if k != "ids"}
        return run_batch(call.data["ids"], lambda task: action(call, {**rest, "task": task}))

    handler.__name__ = handler.__qualname__ = name.split(".")[1]
    endpoint(name)(handler)


for _action in ("stop", "publish", "enqueue", "dequeue"):
    _many_endpoint(f"tasks.{_action}_many",
                   lambda call, data, method=_action: getattr(_tasks(), method)(call.identity, data))
_many_endpoint("tasks.reset_many", lambda call, data: get_state().deletion.reset_task(call.identity, data, call.host))
_many_endpoint("tasks.delete_many", lambda call, data: get_state().deletion.delete_task(call.identity, data,
                                                                                        call.host))


@endpoint("tasks.move")
def move(call: Call) -> dict:
    data = call.data
    return {"project_id": _tasks().move(call.identity, data["ids"], data.get("project"), data.get("project_name"))}


@endpoint("tasks.update_tags")
def update_tags(call: Call) -> dict:
    data = call.data
    return {"updated": _tasks().update_tags(call.identity, data["ids"], data.get("add_tags"), data.get("remove_tags"))}


@endpoint("tasks.get_configurations")
def get_configurations(call: Call) -> dict:
    return {"configurations": _tasks().get_configurations(call.company, call.data["tasks"], call.data.get("names"))}


@endpoint("tasks.get_configuration_names")
def get_configuration_names(call: Call) -> dict:
    skip_empty = call.data.get("skip_empty")
    return {"configurations": _tasks().get_configuration_names(call.company, call.data["tasks"],
                                                               skip_empty is not False)}


@endpoint("tasks.edit_configuration")
def edit_configuration(call: Call) -> dict:
    data = call.data
    return {"updated": _tasks().edit_configuration(call.identity, data["task"], data["configuration"],
                                                   bool(data.get("replace_configuration")), bool(data.get("force")))}


@endpoint("tasks.delete_configuration")
def delete_configuration(call: Call) -> dict:
    data = call.data
    return {"deleted": _tasks().delete_configuration(call.identity, data["task"], data["configuration"],
                                                     bool(data.get("force")))}
