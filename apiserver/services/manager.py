"""Handlers of the render/batch manager (REST: /tasks, /workers)."""

from __future__ import annotations

from apiserver.service_repo import Call, endpoint
from apiserver.state import get_state


def _manager():
    return get_state().manager


@endpoint("manager.create_task")
def create_task(call: Call) -> dict:
    return _manager().create_task(call.identity, call.data)


@endpoint("manager.list_tasks")
def list_tasks(call: Call) -> list:
    return _manager().list_tasks(call.company, call.data.get("status"), call.data.get("limit", 500))


@endpoint("manager.get_task")
def get_task(call: Call) -> dict:
    m = _manager()
    return m.task_to_api(m.get_task(call.company, call.data["task_id"]))


@endpoint("manager.update_task")
def update_task(call: Call) -> None:
    _manager().update_task(call.company, call.data["task_id"], call.data)


@endpoint("manager.delete_task")
def delete_task(call: Call) -> dict:
    _manager().delete_task(call.company, call.data["task_id"])
    return {"message": f"task {call.data['task_id']} deleted"}


@endpoint("manager.list_workers")
def list_workers(call: Call) -> dict:
    return _manager().list_workers(call.company)


@endpoint("manager.register_worker")
def register_worker(call: Call) -> dict:
    return _manager().register_worker(call.identity, call.data, call.remote_addr)


@endpoint("manager.get_worker")
def get_worker(call: Call) -> dict:
    return _manager().worker_info(call.company, call.data["worker_id"])


@endpoint("manager.report_worker")
def report_worker(call: Call) -> dict:
    return _manager().report(call.company, call.data["worker_id"], call.data)


@endpoint("manager.set_worker_status")
def set_worker_status(call: Call) -> dict:
    return _manager().set_worker_status(call.company, call.data["worker_id"], call.data["status"])
