"""Handlers of the projects service."""

from __future__ import annotations

from apiserver.bll import query as q
from apiserver.bll.projects import contents, parents
from apiserver.service_repo import Call, endpoint
from apiserver.services._tags import legacy_tags
from apiserver.state import get_state


def _projects():
    return get_state().projects


@endpoint("projects.create")
@legacy_tags("project")
def create(call: Call) -> dict:
    return {"id": _projects().create(call.identity, call.data)}


@endpoint("projects.get_by_id")
@legacy_tags("project")
def get_by_id(call: Call) -> dict:
    return {"project": _projects().get_by_id(call.company, call.data["project"])}


@endpoint("projects.get_all")
@legacy_tags("project")
def get_all(call: Call) -> dict:
    projects = _projects().get_all(call.company, call.data)
    return {"projects": projects, **q.scroll_answer(call.data, len(projects))}


@endpoint("projects.update")
@legacy_tags("project")
def update(call: Call) -> dict:
    fields = _projects().update(call.identity, call.data["project"], call.data)
    return {"updated": 1 if fields else 0, "fields": fields}


@endpoint("projects.delete")
def delete(call: Call) -> dict:
    return get_state().deletion.delete_project(call.identity, call.data, call.host)


@endpoint("projects.get_task_tags")
def get_task_tags(call: Call) -> dict:
    return contents.task_tags(call.company, _scope(call))  # with their subprojects, as ClearML


@endpoint("projects.get_user_names")
def get_user_names(call: Call) -> dict:
    return {"users": contents.user_names(call.company, call.data.get("projects"), call.data.get("entity"))}


@endpoint("projects.get_all_ex")  # statistics and nesting at every version, as ClearML (its 2.1 had include_stats)
@legacy_tags("project")
def get_all_ex(call: Call) -> dict:
    projects = _projects().get_all_ex(call.company, call.data)
    return {"projects": projects, **q.scroll_answer(call.data, len(projects))}


@endpoint("projects.move")
def move(call: Call) -> dict:
    return {"moved": _projects().move(call.identity, call.data["project"], call.data.get("new_location"))}


@endpoint("projects.merge")
def merge(call: Call) -> dict:
    return get_state().project_merge.merge(call.identity, call.data["project"], call.data["destination_project"])


@endpoint("projects.validate_delete")
def validate_delete(call: Call) -> dict:
    return _projects().validate_delete(call.company, call.data["project"])


def _scope(call: Call) -> list[str | None] | None:
    """The request's projects (``projects``, else ``project``; None when neither is given) as
    ``contents.expand`` reads them, with subprojects unless include_subprojects is false."""
    data = call.data
    projects = data.get("projects") or ([data["project"]] if data.get("project") else data.get("projects"))
    return contents.expand(call.company, projects, data.get("include_subprojects") is not False)


@endpoint("projects.get_project_tags")
def get_project_tags(call: Call) -> dict:
    return contents.project_tags(call.company, call.data.get("projects"), call.data.get("filter"))


@endpoint("projects.get_model_tags")
def get_model_tags(call: Call) -> dict:
    return contents.model_tags(call.company, _scope(call))


@endpoint("projects.get_task_parents")
def get_task_parents(call: Call) -> dict:
    return {"parents": parents.task_parents(call.company, _scope(call), call.data.get("tasks_state"),
                                            call.data.get("task_name"))}


@endpoint("projects.get_hyper_parameters")
def get_hyper_parameters(call: Call) -> dict:
    items, total, remaining = contents.page_of(contents.hyper_parameters(call.company, _scope(call)),
                                               call.data.get("page"), call.data.get("page_size"))
    return {"parameters": items, "total": total, "remaining": remaining}


@endpoint("projects.get_hyperparam_values")
def get_hyperparam_values(call: Call) -> dict:
    values = contents.hyperparam_values(call.company, _scope(call), call.data["section"], call.data["name"],
                                        call.data.get("pattern"))
    items, total, _ = contents.page_of(values, call.data.get("page"), call.data.get("page_size"))
    return {"values": items, "total": total}


@endpoint("projects.get_unique_metric_variants")
def get_unique_metric_variants(call: Call) -> dict:
    return {"metrics": contents.metric_variants(call.company, _scope(call), bool(call.data.get("model_metrics")),
                                                call.data.get("ids"))}


@endpoint("projects.get_model_metadata_keys")
def get_model_metadata_keys(call: Call) -> dict:
    items, total, remaining = contents.page_of(contents.model_metadata_keys(call.company, _scope(call)),
                                               call.data.get("page"), call.data.get("page_size"))
    return {"keys": items, "total": total, "remaining": remaining}


@endpoint("projects.get_model_metadata_values")
def get_model_metadata_values(call: Call) -> dict:
    values = contents.model_metadata_values(call.company, _scope(call), call.data["key"])
    items, total, _ = contents.page_of(values, call.data.get("page"), call.data.get("page_size"))
    return {"values": items, "total": total}


@endpoint("projects.make_public")
@endpoint("projects.make_private")
def set_public(call: Call) -> dict:
    return {"updated": _projects().set_public(call.company, call.data.get("ids") or [],
                                           call.endpoint.endswith("public"))}
