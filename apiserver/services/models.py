"""Handlers of ClearML's models service: each reads the validated call and hands it to ModelBLL."""

from __future__ import annotations

from apiserver.bll import query as q
from apiserver.service_repo import Call, endpoint
from apiserver.services._tags import legacy_tags
from apiserver.state import get_state


def _models():
    return get_state().models


@endpoint("models.get_by_id")
@legacy_tags("model")
def get_by_id(call: Call) -> dict:
    return {"model": _models().get_by_id(call.company, call.data["model"])}


@endpoint("models.get_by_task_id")
def get_by_task_id(call: Call) -> dict:
    return {"model": _models().get_by_task_id(call.company, call.data["task"])}


@endpoint("models.get_all")
@endpoint("models.get_all_ex")
@endpoint("models.get_by_id_ex")
@legacy_tags("model")
def get_all(call: Call) -> dict:
    models = _models().get_all(call.company, call.data, ex=call.endpoint.endswith("_ex"))
    return {"models": models, **q.scroll_answer(call.data, len(models))}


@endpoint("models.get_frameworks")
def get_frameworks(call: Call) -> dict:
    return {"frameworks": _models().get_frameworks(call.company, call.data.get("projects"))}


@endpoint("models.create")
@legacy_tags("model")
def create(call: Call) -> dict:
    return {"id": _models().create(call.identity, call.data), "created": True}


@endpoint("models.update_for_task")
def update_for_task(call: Call) -> dict:
    return _models().update_for_task(call.identity, call.data)


@endpoint("models.edit")
@legacy_tags("model")
def edit(call: Call) -> dict:
    return _models().edit(call.identity, call.data)


@endpoint("models.update")
@legacy_tags("model")
def update(call: Call) -> dict:
    return _models().update(call.identity, call.data)


@endpoint("models.set_ready")
def set_ready(call: Call) -> dict:
    data = call.data
    return _models().set_ready(call.identity, data["model"], data.get("publish_task", True),
                               bool(data.get("force_publish_task")))


@endpoint("models.publish_many")
def publish_many(call: Call) -> dict:
    return _models().publish_many(call.identity, call.data)


@endpoint("models.archive_many")
def archive_many(call: Call) -> dict:
    return _models().archive_many(call.identity, call.data["ids"])


@endpoint("models.unarchive_many")
def unarchive_many(call: Call) -> dict:
    return _models().unarchive_many(call.identity, call.data["ids"])


@endpoint("models.delete")
def delete(call: Call) -> dict:
    data = call.data
    return _models().delete(call.identity, data["model"], bool(data.get("force")), call.host,
                            data.get("delete_external_artifacts", True))


@endpoint("models.delete_many")
def delete_many(call: Call) -> dict:
    return _models().delete_many(call.identity, call.data["ids"], bool(call.data.get("force")), call.host)


@endpoint("models.move")
def move(call: Call) -> dict:
    data = call.data
    return {"project_id": _models().move(call.identity, data["ids"], data.get("project"), data.get("project_name"))}


@endpoint("models.update_tags")
def update_tags(call: Call) -> dict:
    data = call.data
    return {"updated": _models().update_tags(call.identity, data["ids"], data.get("add_tags"),
                                             data.get("remove_tags"))}


@endpoint("models.add_or_update_metadata")
def add_or_update_metadata(call: Call) -> dict:
    data = call.data
    return {"updated": _models().add_or_update_metadata(call.identity, data["model"], data["metadata"],
                                                        bool(data.get("replace_metadata")))}


@endpoint("models.delete_metadata")
def delete_metadata(call: Call) -> dict:
    return {"updated": _models().delete_metadata(call.identity, call.data["model"], call.data["keys"])}


@endpoint("models.make_public")
@endpoint("models.make_private")
def set_public(call: Call) -> dict:
    return {"updated": _models().set_public(call.company, call.data.get("ids") or [],
                                           call.endpoint.endswith("public"))}
