"""Owns the plot and debug image viewers' navigation: one sample at a time (a metric's plots at an
iteration, or one debug image), from there to the neighbouring metric (plots) or variant (images) at
the same iteration, or to the next or previous iteration.

The scroll_id holds where the viewer is and the iteration range of every metric (plots) or variant
(images) it may move through (of the viewed metric only with ``navigate_current_metric``), found
when the viewer opens or refreshes. A debug image variant's range starts where its images stop being
overwritten: a client that reuses file names (keeping the last N images) has, before that, events
whose file now holds a later picture.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from apiserver.apierrors import errors
from apiserver.bll import scroll
from apiserver.bll.events.iterations import event_filter
from apiserver.bll.events.scrolls import decode_scroll
from apiserver.bll.query import api_id
from apiserver.database.events.events import EventStore
from apiserver.database.model.event import DEBUG_IMAGE


def first_sample(store: EventStore, data: dict[str, Any], event_type: str) -> dict[str, Any]:
    """The plots (every variant) of a metric, or the debug image of a metric and variant, at an iteration
    (the latest one up to it; the latest when none is given), the iteration range, and a scroll_id."""
    task, metric, nav = data["task"], data["metric"], data.get("navigate_current_metric", True)
    variant = data.get("variant") if event_type == DEBUG_IMAGE else None
    flt = event_filter(task, event_type, bool(data.get("model_events")))
    ranges = None
    if data.get("scroll_id"):
        held = decode_scroll(data["scroll_id"], "sample")
        if (held["task"], held["type"], held["nav"]) != (task, event_type, nav) or (nav and held["metric"] != metric):
            raise errors.bad_request.InvalidScrollId("the scroll is of another task or metric",
                                                     scroll_id=data["scroll_id"])
        ranges = None if data.get("refresh") else held["ranges"]
    if ranges is None:
        ranges = _ranges(store, {**flt, "metric": metric} if nav else flt, event_type)
    state = {"task": task, "type": event_type, "metric": metric, "variant": variant, "iter": None, "nav": nav,
             "ranges": ranges}
    span = _range_of(state, metric, variant)
    if span is None:
        return _answer(state, [])
    keys = store.keys_of({**flt, "metric": metric, **({"variant": variant} if event_type == DEBUG_IMAGE else {})})
    upto = data.get("iteration")
    lowest = span[0] if event_type == DEBUG_IMAGE else None  # plots: any iteration
    keys = [k for k in keys if (upto is None or _iter(k) <= upto) and (lowest is None or _iter(k) >= lowest)]
    if not keys:
        return {**_answer(state, []), "min_iteration": span[0], "max_iteration": span[1]}
    last = max(_iter(k) for k in keys)
    return _found(store, state, [k for k in keys if _iter(k) == last])


def next_sample(store: EventStore, data: dict[str, Any], event_type: str) -> dict[str, Any]:
    """From where a scroll_id is: the neighbouring metric's plots (variant's image) at the same iteration,
    else those of the previous (``navigate_earlier``, the default) or next iteration; only another
    iteration with ``next_iteration``. Nothing there: no events, and the scroll_id stays where it was."""
    state = decode_scroll(data["scroll_id"], "sample")
    if state["task"] != data["task"] or state["type"] != event_type:
        raise errors.bad_request.InvalidScrollId("the scroll is of another task or viewer", scroll_id=data["scroll_id"])
    if state["iter"] is None:  # the viewer found nothing yet
        return _answer(state, [], data["scroll_id"])
    flt = event_filter(state["task"], event_type, bool(data.get("model_events")))
    if state["nav"]:
        flt["metric"] = state["metric"]
    keys = store.keys_of(flt)
    earlier, another = data.get("navigate_earlier", True), data.get("next_iteration", False)
    pick = _next_image if event_type == DEBUG_IMAGE else _next_plot
    chosen = pick(state, keys, earlier, another)
    if not chosen:
        return _answer(state, [], data["scroll_id"])
    return _found(store, state, chosen)


def _next_plot(state: dict[str, Any], keys: list[dict[str, Any]], earlier: bool, another: bool
               ) -> list[dict[str, Any]]:
    """The events of the nearest (iteration, metric) before (after) the viewer's: within its metric
    (``nav``) or with ``another``, only another iteration."""
    here = (state["iter"], state["metric"])
    if state["nav"] or another:
        found = [k for k in keys if (_iter(k) < here[0] if earlier else _iter(k) > here[0])]
    else:
        found = [k for k in keys if ((_iter(k), _metric(k)) < here if earlier else (_iter(k), _metric(k)) > here)]
    if not found:
        return []
    target = (max if earlier else min)((_iter(k), _metric(k)) for k in found)
    return [k for k in found if (_iter(k), _metric(k)) == target]


def _next_image(state: dict[str, Any], keys: list[dict[str, Any]], earlier: bool, another: bool
                ) -> list[dict[str, Any]]:
    """The image of the neighbouring variant (by metric, then variant) at the viewer's iteration, else
    (or with ``another`` only) of the nearest other iteration; a variant counts where its range says its
    images are valid."""
    spans = {(r[0], r[1]): (r[2], r[3]) for r in state["ranges"] if not state["nav"] or r[0] == state["metric"]}
    it, here = state["iter"], (state["metric"], state["variant"] or "")

    def valid(k: dict[str, Any]) -> bool:
        span = spans.get((_metric(k), _variant(k)))
        return span is not None and _iter(k) >= span[0]

    if not another:
        found = [k for k in keys if _iter(k) == it and valid(k)
                 and ((_metric(k), _variant(k)) < here if earlier else (_metric(k), _variant(k)) > here)]
        if found:
            target = (max if earlier else min)((_metric(k), _variant(k)) for k in found)
            return [k for k in found if (_metric(k), _variant(k)) == target]
    found = [k for k in keys if valid(k) and (_iter(k) < it if earlier else _iter(k) > it)]
    if not found:
        return []
    target3 = (max if earlier else min)((_iter(k), _metric(k), _variant(k)) for k in found)
    return [k for k in found if (_iter(k), _metric(k), _variant(k)) == target3]


def _ranges(store: EventStore, flt: dict[str, Any], event_type: str) -> list[list[Any]]:
    """[metric, variant (None for plots), first iteration, last iteration] of every metric (plots) or
    variant (images) matching ``flt``. An image variant's first iteration is the earliest at which one
    of its files was last written: before it, some event's file holds a later image."""
    iters: dict[tuple[str, str | None], dict[str, set[int]]] = defaultdict(lambda: defaultdict(set))
    for k in store.keys_of(flt):
        where = (_metric(k), _variant(k)) if event_type == DEBUG_IMAGE else (_metric(k), None)
        url = (k.get("url") or "") if event_type == DEBUG_IMAGE else ""
        iters[where][url].add(_iter(k))
    out = []
    for (metric, variant), by_url in sorted(iters.items(), key=lambda item: (item[0][0], item[0][1] or "")):
        first = min(max(i) for i in by_url.values()) if event_type == DEBUG_IMAGE \
            else min(min(i) for i in by_url.values())
        out.append([metric, variant, first, max(max(i) for i in by_url.values())])
    return out


def _range_of(state: dict[str, Any], metric: str, variant: str | None) -> tuple[int, int] | None:
    for r in state["ranges"]:
        if r[0] == metric and (state["type"] != DEBUG_IMAGE or r[1] == (variant or "")):
            return r[2], r[3]
    return None


def _found(store: EventStore, state: dict[str, Any], keys: list[dict[str, Any]]) -> dict[str, Any]:
    """The answer with the latest event of each variant among ``keys`` (all at one iteration and metric),
    the viewer moved there."""
    latest: dict[str, dict[str, Any]] = {}
    for k in sorted(keys, key=lambda k: (k.get("timestamp") or 0, k["_id"])):
        latest[_variant(k)] = k
    events = [api_id(d) for d in store.by_ids([latest[v]["_id"] for v in sorted(latest)])]
    first = events[0]
    state = {**state, "metric": _metric(first), "iter": _iter(first),
             "variant": _variant(first) if state["type"] == DEBUG_IMAGE else None}
    return _answer(state, events)


def _answer(state: dict[str, Any], events: list[dict[str, Any]], scroll_id: str | None = None) -> dict[str, Any]:
    span = _range_of(state, state["metric"], state.get("variant")) if events else None
    return {"scroll_id": scroll_id or scroll.encode(state), "events": events, "event": events[0] if events else None,
            "min_iteration": span[0] if span else None, "max_iteration": span[1] if span else None}


def _iter(key: dict[str, Any]) -> int:
    return key.get("iter") or 0


def _metric(key: dict[str, Any]) -> str:
    return key.get("metric") or ""


def _variant(key: dict[str, Any]) -> str:
    return key.get("variant") or ""
