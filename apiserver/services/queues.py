"""Handlers of the queues service."""

from __future__ import annotations

from apiserver.bll import query as q
from apiserver.service_repo import Call, endpoint
from apiserver.state import get_state


@endpoint("queues.create")
def create(call: Call) -> dict:
    d = call.data
    return {"id": get_state().queues.create(call.company, call.user, d["name"], d.get("tags"), d.get("system_tags"),
                                            d.get("metadata"), d.get("display_name"))}


@endpoint("queues.get_by_id")
def get_by_id(call: Call) -> dict:
    state = get_state()
    doc = state.queues.get(call.company, call.data["queue"])
    return {"queue": state.queues.to_api(doc, call.data.get("max_task_entries"))}


@endpoint("queues.get_all")
@endpoint("queues.get_all_ex")
def get_all(call: Call) -> dict:
    queues = get_state().queues.get_all(call.company, call.data, ex=call.endpoint.endswith("_ex"))
    return {"queues": queues, **q.scroll_answer(call.data, len(queues))}


@endpoint("queues.get_default")
def get_default(call: Call) -> dict:
    doc = get_state().queues.default_queue(call.company)
    return {"id": doc["_id"], "name": doc["name"]}


@endpoint("queues.update")
def update(call: Call) -> dict:
    fields = get_state().queues.update(call.company, call.data["queue"], call.data)
    return {"updated": 1 if fields else 0, "fields": fields}


@endpoint("queues.delete")
def delete(call: Call) -> dict:
    return {"deleted": get_state().queues.delete(call.identity, call.data["queue"],
                                                        bool(call.data.get("force")))}


@endpoint("queues.add_task")
def add_task(call: Call) -> dict:
    get_state().queues.add_task(call.company, call.data["queue"], call.data["task"],
                                call.data.get("update_execution_queue", True))
    return {"added": 1}


@endpoint("queues.remove_task")
def remove_task(call: Call) -> dict:
    return {"removed": get_state().queues.remove_task(call.identity, call.data["queue"], call.data["task"],
                                                           bool(call.data.get("update_task_status")))}


def _mover(how: str):
    def move(call: Call) -> dict:
        d = call.data
        return {"position": get_state().queues.move(call.company, d["queue"], d["task"], how,
                                                           d.get("count", 1))}
    move.__name__ = move.__qualname__ = f"move_task_{how}"
    return move


for _how, _name in (("forward", "forward"), ("backward", "backward"), ("front", "to_front"), ("back", "to_back")):
    endpoint(f"queues.move_task_{_name}")(_mover(_how))


@endpoint("queues.get_next_task")
def get_next_task(call: Call) -> dict:
    return get_state().queues.next_task(call.identity, call.data["queue"], bool(call.data.get("get_task_info")))


@endpoint("queues.get_queue_metrics")
def get_queue_metrics(call: Call) -> dict:
    return {"queues": get_state().queues.metrics(call.company, call.data)}


@endpoint("queues.clear_queue")
def clear_queue(call: Call) -> dict:
    return {"removed_tasks": get_state().queues.clear(call.identity, call.data["queue"])}


@endpoint("queues.get_num_entries")
def get_num_entries(call: Call) -> dict:
    return {"num": get_state().queues.num_entries(call.company, call.data["queue"])}


@endpoint("queues.peek_task")
def peek_task(call: Call) -> dict:
    return {"task": get_state().queues.peek(call.company, call.data["queue"])}


@endpoint("queues.get_by_task_id")
def get_by_task_id(call: Call) -> dict:
    return {"queue": get_state().queues.by_task(call.company, call.data["task"])}


@endpoint("queues.move_task_to_queue")
def move_task_to_queue(call: Call) -> dict:
    d = call.data
    return {"position": get_state().queues.move_task_to_queue(call.identity, d["task"], d["queue"], d["target_queue"])}


@endpoint("queues.add_or_update_metadata")
def add_or_update_metadata(call: Call) -> dict:
    d = call.data
    return {"updated": get_state().queues.add_or_update_metadata(call.company, d["queue"], d["metadata"],
                                                                        bool(d.get("replace_metadata")))}


@endpoint("queues.delete_metadata")
def delete_metadata(call: Call) -> dict:
    return {"updated": get_state().queues.delete_metadata(call.company, call.data["queue"], call.data["keys"])}
