"""Owns where the scroll_id of each events read may point: a token of another kind of read, or one not
made by this server, is InvalidScrollId (400), never a 500 (the token itself: ``bll/scroll.py``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from apiserver.apierrors import errors
from apiserver.bll import scroll
from apiserver.database.model.event import DEBUG_IMAGE, PLOT


def _small_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**62


def _position_ok(pos: Any) -> bool:
    """None, or a list of ints and nulls (a block/offset position), or [timestamp, id]."""
    return pos is None or (isinstance(pos, list) and len(pos) <= 3 and all(
        p is None or isinstance(p, str) or _small_int(p) for p in pos))


def _points_ok(v: dict[str, Any]) -> bool:
    """A raw points position: None or [series index, block or None, offset], and the page size it keeps."""
    pos = v.get("pos", False)
    size_ok = v.get("size") is None or _small_int(v["size"]) and 0 < v["size"] <= 200_000
    return size_ok and (pos is None or isinstance(pos, list) and len(pos) == 3 and _small_int(pos[0]) and pos[0] >= 0
                        and (pos[1] is None or _small_int(pos[1])) and _small_int(pos[2]) and pos[2] >= 0)


def _int_or_none(value: Any) -> bool:
    return value is None or _small_int(value)


def _iterations_ok(v: dict[str, Any]) -> bool:
    """{tasks: {task: {m: {metric: {variant: iteration or null}}, lo, hi}}} (``iterations.py``)."""
    tasks = v.get("tasks")
    return isinstance(tasks, dict) and all(
        isinstance(t, dict) and _int_or_none(t.get("lo")) and _int_or_none(t.get("hi")) and isinstance(t.get("m"), dict)
        and all(isinstance(vs, dict) and all(isinstance(var, str) and _int_or_none(i) for var, i in vs.items())
                for vs in t["m"].values())
        for t in tasks.values())


def _sample_ok(v: dict[str, Any]) -> bool:
    """Where a viewer is and the iteration ranges it knows (``samples.py``)."""
    ranges = v.get("ranges")
    return (isinstance(v.get("task"), str) and isinstance(v.get("metric"), str) and v.get("type") in (PLOT, DEBUG_IMAGE)
            and _int_or_none(v.get("iter")) and (v.get("variant") is None or isinstance(v["variant"], str))
            and isinstance(v.get("nav"), bool) and isinstance(ranges, list)
            and all(isinstance(r, list) and len(r) == 4 and isinstance(r[0], str)
                    and (r[1] is None or isinstance(r[1], str)) and _small_int(r[2]) and _small_int(r[3])
                    for r in ranges))


_SCROLL_SHAPES: dict[str, Callable[[Any], bool]] = {
    # where a scroll position may point, per kind of scroll; anything else is not one of ours
    "events": lambda v: _small_int(v.get("p")) and v["p"] >= 0 and "pos" in v and _position_ok(v["pos"]),
    "points": lambda v: v.get("done") is True or _points_ok(v),
    "pages": lambda v: True,
    "sample": _sample_ok,
    "iterations": _iterations_ok,
}


def decode_scroll(scroll_id: str, kind: str) -> dict[str, Any]:
    """The position of a ``kind`` read (events, points, pages, sample, iterations) a token holds."""
    value = scroll.decode(scroll_id)
    try:
        ok = isinstance(value, dict) and _SCROLL_SHAPES[kind](value)
    except (ValueError, TypeError):
        ok = False
    if not ok:
        raise errors.bad_request.InvalidScrollId(scroll_id=scroll_id)
    return value
