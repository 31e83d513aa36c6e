"""Owns the plot and debug image viewers' navigation: one sample at a time, from an iteration to the
next or to the neighbouring metric (plots) or variant (debug images); the scroll_id holds where the
viewer is."""

from __future__ import annotations

from typing import Any

from apiserver.apierrors import errors
from apiserver.bll import scroll
from apiserver.bll.events.scrolls import decode_scroll
from apiserver.bll.query import api_id
from apiserver.database.events.events import EventStore
from apiserver.database.model.event import DEBUG_IMAGE


def first_sample(store: EventStore, data: dict[str, Any], event_type: str) -> dict[str, Any]:
    """The plot (all variants) or debug image (one variant) of a metric at an iteration (the latest
    when none is given), with the metric's iteration range and a scroll_id to navigate from there."""
    task = data["task"]
    if data.get("scroll_id") and not data.get("refresh"):
        state = decode_scroll(data["scroll_id"], "sample")
        if state.get("task") != task:
            raise errors.bad_request.InvalidScrollId(scroll_id=data["scroll_id"])
    state = {"task": task, "type": event_type, "metric": data["metric"], "variant": data.get("variant"),
             "current_metric": data.get("navigate_current_metric", True)}
    flt = _sample_filter(state)
    if data.get("iteration") is not None:
        flt["iter"] = {"$lte": int(data["iteration"])}
    found = _one_iteration(store, flt, earlier=True)
    return _sample_answer(store, state, found)


def next_sample(store: EventStore, data: dict[str, Any], event_type: str) -> dict[str, Any]:
    """From the sample a scroll_id points at: the sample of the next (or, navigate_earlier, the previous)
    iteration, or the neighbouring metric (plots) or variant (images) at the same iteration."""
    task = data["task"]
    state = decode_scroll(data["scroll_id"], "sample")
    if state.get("task") != task or state.get("type") != event_type or state.get("iter") is None:
        raise errors.bad_request.InvalidScrollId(scroll_id=data["scroll_id"])
    earlier = data.get("navigate_earlier", True)
    if data.get("next_iteration"):
        flt = _sample_filter(state)
        flt["iter"] = {"$lt" if earlier else "$gt": state["iter"]}
        return _sample_answer(store, state, _one_iteration(store, flt, earlier))
    # The neighbouring metric (plots) or variant (images) at the same iteration.
    pairs = _pairs_at(store, state)
    here = (state["metric"], state.get("variant") or "") if event_type == DEBUG_IMAGE else state["metric"]
    ordered = sorted(pairs)
    after = [p for p in ordered if (p < here if earlier else p > here)]
    if not after:
        return {"scroll_id": scroll.encode(state), "event": None, "events": [],
                "min_iteration": state.get("min"), "max_iteration": state.get("max")}
    target = after[-1] if earlier else after[0]
    nstate = dict(state, metric=target[0] if event_type == DEBUG_IMAGE else target,
                  variant=target[1] if event_type == DEBUG_IMAGE else None)
    flt = _sample_filter(nstate)
    flt["iter"] = state["iter"]
    return _sample_answer(store, nstate, _one_iteration(store, flt, True))


def _sample_filter(state: dict[str, Any]) -> dict[str, Any]:
    flt: dict[str, Any] = {"task": state["task"], "type": state["type"], "metric": state["metric"]}
    if state["type"] == DEBUG_IMAGE and state.get("variant") is not None:
        flt["variant"] = state["variant"]
    return flt


def _one_iteration(store: EventStore, flt: dict[str, Any], earlier: bool) -> list[dict[str, Any]]:
    """The events (latest per variant) of the nearest iteration matching ``flt``."""
    return [api_id(d) for d in store.nearest_iteration(flt, earlier)]


def _pairs_at(store: EventStore, state: dict[str, Any]) -> set:
    flt: dict[str, Any] = {"task": state["task"], "type": state["type"], "iter": state["iter"]}
    if state.get("current_metric"):
        flt["metric"] = state["metric"]
    docs = store.series_of(flt)
    if state["type"] == DEBUG_IMAGE:
        return {(d.get("metric", ""), d.get("variant", "")) for d in docs}
    return {d.get("metric", "") for d in docs}


def _sample_answer(store: EventStore, state: dict[str, Any], found: list[dict[str, Any]]) -> dict[str, Any]:
    first, last = store.iteration_range(_sample_filter(state))
    state = dict(state, min=first, max=last)
    if found:
        state["iter"] = found[0].get("iter") or 0
    return {"scroll_id": scroll.encode(state), "events": found, "event": found[0] if found else None,
            "min_iteration": state["min"], "max_iteration": state["max"]}
