"""Owns what the metrics of a ClearML events request select: series by metric and variant, per task."""

from __future__ import annotations

from typing import Any

from apiserver.database.events.selection import Selection


def metric_selection(metrics: list[dict[str, Any]] | None) -> Selection | None:
    """The series ClearML's [{metric, variants}] (or plain metric names) ask for; None: every series."""
    if not metrics:
        return None
    wanted: Selection = {}
    for item in metrics:
        if isinstance(item, str):
            wanted[item] = None
            continue
        name = item.get("metric") or ""
        variants = item.get("variants")
        if not variants or wanted.get(name, set()) is None:
            wanted[name] = None
        else:
            wanted[name] = set(wanted.get(name) or ()) | set(variants)
    return wanted


def requested_tasks(items: list[dict[str, Any]]) -> dict[str, Selection | None]:
    """[{task, metric, variants}] as {task: its selected series}; an item without a metric selects all of
    its task's."""
    per_task: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        per_task.setdefault(item["task"], []).append(item)
    return {task: None if any(i.get("metric") is None for i in its) else metric_selection(its)
            for task, its in per_task.items()}
