"""Handlers of ClearML's reports service: each reads the validated call and hands it to ReportBLL."""

from __future__ import annotations

from apiserver.bll import query as q
from apiserver.service_repo import Call, endpoint
from apiserver.state import get_state


def _reports():
    return get_state().reports


@endpoint("reports.create")
def create(call: Call) -> dict:
    return _reports().create(call.identity, call.data)


@endpoint("reports.update")
def update(call: Call) -> dict:
    return _reports().update(call.identity, call.data)


@endpoint("reports.move")
def move(call: Call) -> dict:
    return _reports().move(call.identity, call.data)


@endpoint("reports.publish")
def publish(call: Call) -> dict:
    return _reports().publish(call.identity, call.data)


@endpoint("reports.archive")
def archive(call: Call) -> dict:
    return {"archived": _reports().set_archived(call.identity, call.data["task"], True)}


@endpoint("reports.unarchive")
def unarchive(call: Call) -> dict:
    return {"unarchived": _reports().set_archived(call.identity, call.data["task"], False)}


@endpoint("reports.delete")
def delete(call: Call) -> dict:
    return {"deleted": _reports().delete(call.identity, call.data, call.host)}


@endpoint("reports.get_all_ex")
def get_all_ex(call: Call) -> dict:
    reports = _reports().get_all(call.company, call.data)
    return {"tasks": reports, **q.scroll_answer(call.data, len(reports))}


@endpoint("reports.get_task_data")
def get_task_data(call: Call) -> dict:
    return get_state().events.report_data(call.company, call.data)


@endpoint("reports.get_tags")
def get_tags(call: Call) -> dict:
    return {"tags": _reports().get_tags(call.company)}
