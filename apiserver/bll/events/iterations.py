"""Owns the plots and debug images pages by iteration (``events.plots``, ``events.debug_images``): per
task, ``iters`` iterations at a time from the latest back (or forward again), each with the latest
event of every metric and variant.

The scroll_id holds, per task, the metrics and variants the first call found and the range of
iterations handed out so far, so the next call continues after it; a refresh finds the metrics again
and starts from the latest iteration. Events of a variant that appeared after the scroll began are
left out until a refresh, as ClearML does. A debug image variant whose file names are reused (a
client keeping the last N images) shows only the iterations after the one where the latest image's
file was used before: the older events now point at another picture.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from apiserver.bll import scroll
from apiserver.bll.events.scrolls import decode_scroll
from apiserver.bll.query import api_id
from apiserver.database.events.events import EventStore
from apiserver.database.events.selection import Selection, selected
from apiserver.database.model.event import DEBUG_IMAGE

# {metric: {variant: the last iteration whose image is no longer the one reported (None: all are)}}
MetricStates = dict[str, dict[str, int | None]]


def event_filter(task: str, event_type: str, model_events: bool) -> dict[str, Any]:
    """The events of one type of a task (or of a model, with ``model_events``); debug images only with a
    file (url)."""
    flt: dict[str, Any] = {"task": task, "type": event_type, "model_event": True if model_events else {"$ne": True}}
    if event_type == DEBUG_IMAGE:
        flt["url"] = {"$nin": [None, ""]}
    return flt


def metric_events(store: EventStore, tasks: dict[str, Selection | None], event_type: str, iters: int,
                  earlier: bool, refresh: bool, scroll_id: str | None, model_events: bool) -> dict[str, Any]:
    """Per task (readable: the caller checked), the next ``iters`` iterations of its events of this type,
    newest first, with the scroll_id to go on from there."""
    held = decode_scroll(scroll_id, "iterations")["tasks"] if scroll_id else {}
    answer, states = [], {}
    for task, selection in tasks.items():
        state = held.get(task)
        if state is None or refresh:
            state = {"m": _metric_states(store, event_filter(task, event_type, model_events), selection),
                     "lo": None, "hi": None}
        iterations = _next_iterations(store, event_filter(task, event_type, model_events), state, iters, earlier)
        if iterations:
            state = {**state, "hi": iterations[0]["iter"], "lo": iterations[-1]["iter"]}
        states[task] = state
        answer.append({"task": task, "iterations": iterations})
    return {"metrics": answer, "scroll_id": scroll.encode({"tasks": states})}


def _metric_states(store: EventStore, flt: dict[str, Any], selection: Selection | None) -> MetricStates:
    if selection:
        flt = {**flt, "metric": {"$in": list(selection)}}
    # per (metric, variant): {url: the distinct iterations it was reported at}
    urls: dict[tuple[str, str], dict[str, set[int]]] = defaultdict(lambda: defaultdict(set))
    for key in store.keys_of(flt):
        metric, variant = key.get("metric") or "", key.get("variant") or ""
        if selection is None or selected(selection, metric, variant):
            urls[(metric, variant)][key.get("url") or ""].add(key.get("iter") or 0)
    states: MetricStates = defaultdict(dict)
    for (metric, variant), by_url in sorted(urls.items()):
        states[metric][variant] = _last_reused(by_url) if flt["type"] == DEBUG_IMAGE else None
    return dict(states)


def _last_reused(by_url: dict[str, set[int]]) -> int | None:
    """The iteration before the latest at which the latest image's file was reported (None: only once)."""
    url = min(by_url, key=lambda u: (-max(by_url[u]), u))  # the file of the latest iteration
    iters = sorted(by_url[url], reverse=True)
    return iters[1] if len(iters) > 1 else None


def _next_iterations(store: EventStore, flt: dict[str, Any], state: dict[str, Any], iters: int, earlier: bool
                     ) -> list[dict[str, Any]]:
    """The iterations after the state's range (before it with ``earlier``; the latest ones when none was
    handed out yet), newest first, each with the latest event of every known metric and variant."""
    metrics: MetricStates = state["m"]
    if not metrics:
        return []
    if state["hi"] is None:
        earlier = True  # the first page is always the latest iterations
    flt = {**flt, "metric": {"$in": list(metrics)}}
    if earlier and state["lo"] is not None:
        flt["iter"] = {"$lt": state["lo"]}
    elif not earlier and state["hi"] is not None:
        flt["iter"] = {"$gt": state["hi"]}
    chosen = [i for i in store.iterations(flt, newest_first=earlier, limit=iters) if i is not None]
    latest: dict[int, dict[tuple[str, str], dict[str, Any]]] = defaultdict(dict)
    for doc in store.at_iterations(flt, chosen) if chosen else ():  # oldest first: the latest one stays
        metric, variant = doc.get("metric") or "", doc.get("variant") or ""
        if variant not in metrics.get(metric, {}):
            continue  # a variant that appeared after the scroll began
        reused = metrics[metric][variant]
        if reused is None or doc["iter"] > reused:
            latest[doc["iter"]][(metric, variant)] = api_id(doc)
    return [{"iter": it, "events": [latest[it][k] for k in sorted(latest[it])]}
            for it in sorted(latest, reverse=True)]
