"""Handlers of ClearML's organization service."""

from __future__ import annotations

from apiserver.bll import query as q
from apiserver.bll.projects import contents
from apiserver.database.model.model import Model
from apiserver.database.model.project import Project
from apiserver.database.model.task import Task
from apiserver.service_repo import Call, endpoint


@endpoint("organization.get_tags")
def get_tags(call: Call) -> dict:
    system = (call.data.get("filter") or {}).get("system_tags")
    match = q.list_filter("system_tags", system) if system else None
    found: dict[str, set[str]] = {"tags": set(), "system_tags": set()}
    for coll in (Task._get_collection(), Model._get_collection(), Project._get_collection()):
        for key, values in contents.tags_of(coll, call.company, match).items():
            found[key].update(values)
    answer = {"tags": sorted(found["tags"])}
    if call.data.get("include_system"):
        answer["system_tags"] = sorted(found["system_tags"])
    return answer

