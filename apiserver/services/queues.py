"""Handlers of the queues service."""

from __future__ import annotations

from apiserver.bll import query as q
from apiserver.service_repo import Call, endpoint
from apiserver.state import get_state


@endpoint("queues.create")
def create(call: Call) -> dict:
    d = call.data
    return {"id": get_state().queues.create(call.company, call.user, d["name"], d.get("tags"), d.get("system_tags"),
                                            d.get("metadata"))}


@endpoint("queues.get_by_id")
def get_by_id(call: Call) -> dict:
    state = get_state()
    doc = state.queues.get(call.company, call.data["queue"])
    return {"queue": state.queue_listing.to_api(doc, call.data.get("max_task_entries"))}


@endpoint("queues.get_all")
@endpoint("queues.get_all_ex")
def get_all(call: Call) -> dict:
    queues = get_state().queue_listing.get_all(call.company, call.data)
    return {"queues": queues, **q.scroll_answer(call.data, len(queues))}


@endpoint("queues.get_default")
def get_default(call: Call) -> dict:
    doc = get_state().queues.default_queue(call.company)
    return {"id": doc["_id"], "name": doc["name"]}


@endpoint("queues.update")
def update(call: Call) -> dict:
    fields = get_state().queue_listing.update(call.company, call.data["queue"], call.data)
    return {"updated": 1 if fields else 0, "fields": fields}


@endpoint("queues.delete")
def delete(call: Call) -> dict:
    return {"deleted": get_state().queue_listing.delete(call.company, call.data["queue"],
                                                        bool(call.data.get("force")))}


@endpoint("queues.add_task")
def add_task(call: Call) -> dict:
    get_state().tasks.add_to_queue(call.company, call.data["queue"], call.data["task"])
    return {"added": 1}


@endpoint("queues.remove_task")
def remove_task(call: Call) -> dict:
    state = get_state()
    state.queues.get(call.company, call.data["queue"], {"_id": 1})
    return {"removed": state.queues.remove_entry(call.company, call.data["queue"], call.data["task"])}


def _mover(how: str):
    def move(call: Call) -> dict:
        d = call.data
        return {"position": get_state().queue_listing.move(call.company, d["queue"], d["task"], how,
                                                           d.get("count", 1))}
    move.__name__ = move.__qualname__ = f"move_task_{how}"
    return move


for _how, _name in (("forward", "forward"), ("backward", "backward"), ("front", "to_front"), ("back", "to_back")):
    endpoint(f"queues.move_task_{_name}")(_mover(_how))


@endpoint("queues.get_next_task")
def get_next_task(call: Call) -> dict:
    return get_state().tasks.next_from_queue(call.identity, call.data["queue"], bool(call.data.get("get_task_info")))


@endpoint("queues.get_queue_metrics")
def get_queue_metrics(call: Call) -> dict:
    return {"queues": get_state().queue_listing.metrics(call.company, call.data)}
