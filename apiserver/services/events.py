"""Handlers of the events service."""

from __future__ import annotations

from apiserver.service_repo import Call, endpoint
from apiserver.state import get_state


@endpoint("events.add")
def add(call: Call) -> dict:
    return get_state().events.add_events(call.identity, [call.data])


@endpoint("events.add_batch")
def add_batch(call: Call) -> dict:
    return get_state().events.add_events(call.identity, call.batched_data)


@endpoint("events.get_task_log")
def get_task_log(call: Call) -> dict:
    return get_state().events.get_task_log(call.company, call.data)


@endpoint("events.get_task_events")
def get_task_events(call: Call) -> dict:
    return get_state().events.get_task_events(call.company, call.data)


@endpoint("events.get_scalar_metrics_and_variants")
def get_scalar_metrics_and_variants(call: Call) -> dict:
    return {"metrics": get_state().events.metrics_and_variants(call.company, call.data["task"])}


@endpoint("events.scalar_metrics_iter_histogram")
def scalar_metrics_iter_histogram(call: Call) -> dict:
    return get_state().events.scalar_histogram(call.company, call.data)


@endpoint("events.get_task_latest_scalar_values")
def get_task_latest_scalar_values(call: Call) -> dict:
    return {"metrics": get_state().events.latest_scalar_values(call.company, call.data["task"])}


@endpoint("events.debug_images")
def debug_images(call: Call) -> dict:
    return get_state().events.debug_images(call.company, call.data)


@endpoint("events.delete_for_task")
def delete_for_task(call: Call) -> dict:
    state = get_state()
    state.tasks.writable(call.company, call.data["task"])
    return state.events.delete_for_task(call.company, call.data["task"])
