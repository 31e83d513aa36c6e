"""Owns scalar series storage: raw points in blocks of iterations, and a fixed-size chart overview per series.

Every shape is keyed by task or by series (task + metric + variant), so a read touches O(page)
documents, and an add touches one document however long the series are:

- pending points (``database/events/pending.py``): each add call's points of a task in one inserted
  document, folded into the shapes below every few calls (``_fold``); readers of raw points fold first.
- ``event_scalar_tasks``: one document per task: its folded series (metric, variant, point count,
  iteration range, single value); also the fold lease.
- ``event_scalar_blocks``: one document per series and block of ``block_iterations`` iterations with
  that block's points (``i`` iteration, ``t`` timestamp, ``v`` value), read by block ranges for raw
  paging.
- ``event_series_groups``: the chart overview of a series: its iterations cut into groups of
  ``width`` iterations (``width`` doubles whenever there would be more than ``overview_groups``
  groups), each keeping its minimum and its maximum point (packed arrays).
- ``event_series_coarse``: one document per task with a coarser overview (``coarse_groups``) of each
  of its series, which serves a chart of few points per series in one read.

A chart (``bll/events/scalars.py``) reads the task's document, its overviews (or its coarse overview)
and its pending points (three queries whatever the length of the series) and folds the pending points
in memory. Folding keeps only minima and maxima, so folding a point into an overview twice changes
nothing. The single value of a metric
(ClearML reports it at iteration -2**31) is kept in the task's document and stays out of the chart.
The documents' shapes are declared in ``database/model/event.py``; their indexes are made here.
"""

from __future__ import annotations

import hashlib
import logging
from array import array
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import numpy as np
from bson import Binary
from pymongo import UpdateOne

from apiserver.database.events.pending import PendingEvents
from apiserver.database.events.selection import Selection, selected
from apiserver.database.model.event import (
    SINGLE_VALUE_ITER,
    ScalarBlock,
    ScalarSeriesList,
    SeriesCoarseOverviews,
    SeriesOverview,
)

log = logging.getLogger(__name__)

_MAX_BLOCK_RANGE = 10_000
# An overview's columns (each with its array type code): each group's lowest point (iteration,
# timestamp, value), then its highest.
_GROUP_FIELDS = (("lo_i", "q"), ("lo_t", "q"), ("lo_v", "d"), ("hi_i", "q"), ("hi_t", "q"), ("hi_v", "d"))
OVERVIEW_COLUMNS = tuple(name for name, _ in _GROUP_FIELDS)


def series_key(metric: str, variant: str) -> str:
    return hashlib.md5(f"{metric}\0{variant}".encode()).hexdigest()  # noqa: S324 - a key, not a secret


_NUMPY_TYPES = {"q": np.int64, "d": np.float64}  # the array codes' native 8-byte types


def _group_columns(doc: dict[str, Any] | None) -> tuple[list[np.ndarray], int]:
    """An overview document's groups as the columns lo_i, lo_t, lo_v, hi_i, hi_t, hi_v (numpy views
    of the stored bytes, in group order) and its width."""
    if not doc:
        return [np.empty(0, _NUMPY_TYPES[code]) for _, code in _GROUP_FIELDS], 1
    return [np.frombuffer(doc[name], _NUMPY_TYPES[code]) for name, code in _GROUP_FIELDS], int(doc["width"])


def _groups_of(columns: list[np.ndarray], width: int) -> dict[int, list]:
    """{group: [lo_i, lo_t, lo_v, hi_i, hi_t, hi_v]} of overview columns."""
    return {row[0] // width: list(row) for row in zip(*(c.tolist() for c in columns), strict=True)}


def _columns_of(groups: dict[int, list]) -> list[np.ndarray]:
    rows = [groups[g] for g in sorted(groups)]
    return [np.array([row[k] for row in rows], _NUMPY_TYPES[code]) for k, (_, code) in enumerate(_GROUP_FIELDS)]


def _packed(groups: dict[int, list]) -> dict[str, Binary]:
    ordered = [groups[g] for g in sorted(groups)]
    return {name: Binary(array(code, [row[k] for row in ordered]).tobytes())
            for k, (name, code) in enumerate(_GROUP_FIELDS)}


def _block_points(doc: dict[str, Any] | None) -> list[tuple[int, int, float]]:
    if not doc:
        return []
    cols = [array(code, bytes(doc[name])).tolist() for name, code in (("i", "q"), ("t", "q"), ("v", "d"))]
    return list(zip(*cols, strict=True))


def _merge_groups(groups: dict[int, list], width: int, points: list[tuple[int, int, float]]) -> None:
    """Fold points (iteration, timestamp, value) into the groups, keeping each group's min and max."""
    for it, ts, value in points:
        g = it // width
        cur = groups.get(g)
        if cur is None:
            groups[g] = [it, ts, value, it, ts, value]
            continue
        if value < cur[2]:
            cur[0], cur[1], cur[2] = it, ts, value
        if value > cur[5]:
            cur[3], cur[4], cur[5] = it, ts, value


def _collapse(groups: dict[int, list], width: int, cap: int) -> tuple[dict[int, list], int]:
    """Double the width until at most ``cap`` groups remain, merging groups pairwise."""
    while len(groups) > cap:
        merged: dict[int, list] = {}
        for g in sorted(groups):
            cur, target = groups[g], g // 2
            into = merged.get(target)
            if into is None:
                merged[target] = list(cur)
                continue
            if cur[2] < into[2]:
                into[0], into[1], into[2] = cur[0], cur[1], cur[2]
            if cur[5] > into[5]:
                into[3], into[4], into[5] = cur[3], cur[4], cur[5]
        groups, width = merged, width * 2
    return groups, width


class ScalarStore:
    """A task's scalar series: adding points, folding them, and reading overviews and raw points."""

    def __init__(self, block_iterations: int, overview_groups: int, coarse_groups: int, pending: PendingEvents):
        self.coarse_groups = coarse_groups
        self.block_iterations = block_iterations
        self.overview_groups = overview_groups
        self.pending = pending
        pending.folders.append(self._fold)

    @property
    def tasks(self):
        return ScalarSeriesList._get_collection()

    @property
    def blocks(self):
        return ScalarBlock._get_collection()

    @property
    def groups(self):
        return SeriesOverview._get_collection()

    @property
    def coarse(self):
        return SeriesCoarseOverviews._get_collection()

    def ensure_indexes(self) -> None:
        self.tasks.create_index([("company", 1)])
        self.blocks.create_index([("series", 1), ("block", 1)])
        self.blocks.create_index([("company", 1), ("task", 1)])
        self.groups.create_index([("task", 1)])
        self.groups.create_index([("company", 1), ("task", 1)])

    # -- writes -------------------------------------------------------------------------------

    @staticmethod
    def pending_parts(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
        """Scalar events (task, metric, variant, iter, value, timestamp) as the pending documents' series
        parts, per task: {k, m, r, i, t, v, and single, the call's latest single value, and x, the latest
        ``x_axis_label`` given}."""
        per_task: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        for ev in events:
            metric, variant = ev.get("metric") or "", ev.get("variant") or ""
            entry = per_task[ev["task"]].setdefault(series_key(metric, variant),
                                                    {"m": metric, "r": variant, "i": [], "t": [], "v": []})
            it, ts, value = int(ev.get("iter") or 0), int(ev["timestamp"]), float(ev["value"])
            if ev.get("x_axis_label") is not None:
                entry["x"] = str(ev["x_axis_label"])
            if it == SINGLE_VALUE_ITER:
                if "single" not in entry or ts >= entry["single"]["t"]:
                    entry["single"] = {"t": ts, "v": value}
                continue
            entry["i"].append(it)
            entry["t"].append(ts)
            entry["v"].append(value)
        return {task: [{"k": k, **e} for k, e in series.items()] for task, series in per_task.items()}

    def _fold(self, company: str, task: str, docs: list[dict[str, Any]], state: dict[str, Any]
              ) -> dict[str, dict[str, Any]]:
        """The folder of pending documents (``PendingEvents``): their points into blocks and overviews;
        returns their series' registration on the task's document."""
        parts = [part for doc in docs for part in doc.get("series") or ()]
        if not parts:
            return {}
        self._fold_points(company, task, docs)
        update: dict[str, dict[str, Any]] = {"$set": {}, "$inc": {}, "$min": {}, "$max": {}}
        stored = state.get("s") or {}
        for part in parts:
            k = part["k"]
            if "m" not in part:  # the shape before names: registered when it was added
                continue
            update["$set"].update({f"s.{k}.m": part["m"], f"s.{k}.r": part["r"]})
            if part.get("x") is not None:
                update["$set"][f"s.{k}.x"] = part["x"]
            update["$inc"][f"s.{k}.n"] = update["$inc"].get(f"s.{k}.n", 0) + len(part["i"])
            if part["i"]:
                low, high = min(part["i"]), max(part["i"])
                update["$min"][f"s.{k}.x0"] = min(low, update["$min"].get(f"s.{k}.x0", low))
                update["$max"][f"s.{k}.x1"] = max(high, update["$max"].get(f"s.{k}.x1", high))
            single = part.get("single")
            if single:
                known = update["$set"].get(f"s.{k}.single") or (stored.get(k) or {}).get("single")
                if known is None or single["t"] >= known["t"]:
                    update["$set"][f"s.{k}.single"] = single
        return {op: fields for op, fields in update.items() if fields}

    def _fold_points(self, company: str, task: str, docs: list[dict[str, Any]]) -> None:
        points: dict[str, list[tuple[int, int, float]]] = defaultdict(list)
        for doc in docs:
            for part in doc.get("series") or ():
                if part["i"]:
                    points[part["k"]].extend(zip(part["i"], part["t"], part["v"], strict=True))
        if not points:
            return
        # Blocks hold packed, sorted points; only the fold (under the task's lease) writes them.
        per_block: dict[str, list] = defaultdict(list)
        for k, pts in points.items():
            for point in pts:
                per_block[f"{task}.{k}:{point[0] // self.block_iterations}"].append(point)
        existing = {d["_id"]: d for d in self.blocks.find({"_id": {"$in": list(per_block)}})}
        ops = []
        for block_id, pts in per_block.items():
            merged = sorted(_block_points(existing.get(block_id)) + pts, key=lambda p: (p[0], p[1]))
            sid, block = block_id.rsplit(":", 1)
            ops.append(UpdateOne({"_id": block_id}, {
                "$set": {"i": Binary(array("q", [p[0] for p in merged]).tobytes()),
                         "t": Binary(array("q", [p[1] for p in merged]).tobytes()),
                         "v": Binary(array("d", [p[2] for p in merged]).tobytes()), "n": len(merged)},
                "$setOnInsert": {"company": company, "task": task, "series": sid, "block": int(block)}},
                upsert=True))
        self.blocks.bulk_write(ops, ordered=False)
        stored = {d["_id"]: d for d in self.groups.find({"task": task})}
        group_ops, coarse_set = [], {}
        for k, pts in points.items():
            sid = f"{task}.{k}"
            groups = _groups_of(*_group_columns(stored.get(sid)))
            width = int((stored.get(sid) or {}).get("width", 1))
            _merge_groups(groups, width, pts)
            groups, width = _collapse(groups, width, self.overview_groups)
            group_ops.append(UpdateOne({"_id": sid}, {"$set": {**_packed(groups), "width": width},
                                                      "$setOnInsert": {"company": company, "task": task}},
                                       upsert=True))
            coarse, coarse_width = _collapse(groups, width, self.coarse_groups)
            coarse_set[f"s.{k}"] = {**_packed(coarse), "width": coarse_width}
        self.groups.bulk_write(group_ops, ordered=False)
        self.coarse.update_one({"_id": task}, {"$set": coarse_set, "$setOnInsert": {"company": company,
                                                                                     "task": task}}, upsert=True)

    # -- reads --------------------------------------------------------------------------------

    def overviews(self, task: str, selection: Selection | None = None,
                  with_groups: bool = False, coarse: bool = False) -> list[dict[str, Any]]:
        """The series of a task (optionally only the selected ones), sorted by metric and variant, their
        pending points counted in (``pending``: how many); with_groups: each with ``groups`` (the columns
        ``OVERVIEW_COLUMNS``) and ``width``, its overview (the coarse one of the task's document with
        ``coarse``) with the pending points folded in."""
        doc = self.tasks.find_one({"_id": task}) or {}
        known = {k: {"_id": f"{task}.{k}", "k": k, "metric": e.get("m", ""), "variant": e.get("r", ""),
                     "n": e.get("n", 0), "x0": e.get("x0"), "x1": e.get("x1"), "single": e.get("single"),
                     "label": e.get("x"), "pending": 0}
                 for k, e in (doc.get("s") or {}).items()}
        pending: dict[str, list] = defaultdict(list)
        for pdoc in self.pending.of_task(task, {"series": 1}):
            for part in pdoc.get("series") or ():
                k = part["k"]
                s = known.get(k)
                if s is None:
                    if "m" not in part:  # the shape before names, of a series folded away meanwhile
                        continue
                    s = known[k] = {"_id": f"{task}.{k}", "k": k, "metric": part["m"], "variant": part["r"],
                                    "n": 0, "x0": None, "x1": None, "single": None, "label": None, "pending": 0}
                if part.get("x") is not None:
                    s["label"] = part["x"]
                if part["i"]:
                    pending[k].extend(zip(part["i"], part["t"], part["v"], strict=True))
                    if "m" in part:  # the shape before names counted its points when it was added
                        s["n"] += len(part["i"])
                        s["x0"] = min(part["i"]) if s["x0"] is None else min(s["x0"], *part["i"])
                        s["x1"] = max(part["i"]) if s["x1"] is None else max(s["x1"], *part["i"])
                    s["pending"] += len(part["i"])
                if part.get("single") and (s["single"] is None or part["single"]["t"] >= s["single"]["t"]):
                    s["single"] = part["single"]
        series = [s for s in known.values() if selection is None or selected(selection, s["metric"], s["variant"])]
        series.sort(key=lambda s: (s["metric"], s["variant"]))
        if with_groups and series:
            if coarse:
                per_task = (self.coarse.find_one({"_id": task}) or {}).get("s") or {}
                stored = {f"{task}.{k}": d for k, d in per_task.items()}
            else:
                stored = {d["_id"]: d for d in self.groups.find({"task": task})}
            cap = self.coarse_groups if coarse else self.overview_groups
            for s in series:
                columns, width = _group_columns(stored.get(s["_id"]))
                points = pending.get(s["k"], ())
                if points or len(columns[0]) > cap:  # the stored groups as they are, when nothing changes them
                    groups = _groups_of(columns, width)
                    _merge_groups(groups, width, points)
                    groups, width = _collapse(groups, width, cap)
                    columns = _columns_of(groups)
                s["groups"], s["width"] = columns, width
        return series

    def chart_overviews(self, task: str, selection: Selection | None, samples: int) -> list[dict[str, Any]]:
        """``overviews`` with the groups of the overview that serves a chart of ``samples`` points per
        series: the coarse one (one document for the whole task) when it has enough groups for it."""
        return self.overviews(task, selection, with_groups=True, coarse=samples <= 2 * self.coarse_groups)

    def all_points(self, task: str, series: list[dict[str, Any]]
                   ) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Every point of these series (overviews of the task) as columns (iterations, timestamps,
        values) in iteration order, their pending points folded into the blocks first."""
        if any(s["pending"] for s in series):
            self.pending.fold(task, wait=True)
        return self._columns([s["_id"] for s in series])

    def _columns(self, sids: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Every stored point of these series as columns (iterations, timestamps, values) in iteration order."""
        packed = {sid: (array("q"), array("q"), array("d")) for sid in sids}
        found = self.blocks.find({"series": {"$in": sids}}, {"series": 1, "block": 1, "i": 1, "t": 1, "v": 1})
        for doc in sorted(found, key=lambda d: (d["series"], d["block"])):
            cols = packed[doc["series"]]
            for col, name in zip(cols, ("i", "t", "v"), strict=True):
                col.frombytes(bytes(doc[name]))
        return {sid: tuple(np.frombuffer(col, col.typecode) for col in cols) for sid, cols in packed.items()}

    def single_values(self, task: str) -> list[dict[str, Any]]:
        return [{"metric": d["metric"], "variant": d["variant"], "value": d["single"]["v"],
                 "timestamp": d["single"]["t"]}
                for d in self.overviews(task) if d.get("single")]

    def metric_variants(self, task: str) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for doc in self.overviews(task):
            out.setdefault(doc["metric"], []).append(doc["variant"])
        return out

    def count(self, task: str, selection: Selection | None = None) -> int:
        return sum(d["n"] + (1 if d.get("single") else 0) for d in self.overviews(task, selection))

    def raw_series(self, task: str, selection: Selection | None = None) -> list[dict[str, Any]]:
        """The series for reading raw points: pending points are folded into blocks first."""
        self.pending.fold(task, wait=True)
        return self.overviews(task, selection)

    def points(self, series: list[dict[str, Any]], position: list | None, limit: int
               ) -> tuple[list[tuple[dict[str, Any], tuple[int, int, float]]], list | None]:
        """Up to ``limit`` raw points of these series (overviews), each series in iteration order, from
        ``position`` ([series index, block, offset in block]; None: the start). Returns the points with
        their series and the next position (None when every point was read): over the pages, every
        point is returned exactly once.
        """
        s, b, o = position or (0, None, 0)
        out: list[tuple[dict[str, Any], tuple[int, int, float]]] = []
        while s < len(series) and len(out) < limit:
            doc = series[s]
            blocks = [x for x in self._block_numbers(doc) if b is None or x >= b]
            full = False
            for block, pts in self._read_blocks(doc, blocks, limit - len(out)):
                if block != b:
                    b, o = block, 0
                take = pts[o:o + limit - len(out)]
                out.extend((doc, p) for p in take)
                o += len(take)
                if o < len(pts):
                    full = True
                    break
                b, o = block + 1, 0
                if len(out) >= limit:
                    full = True
                    break
            if not full:
                s, b, o = s + 1, None, 0
        return out, (None if s >= len(series) else [s, b, o])

    def _block_numbers(self, doc: dict[str, Any]) -> list[int]:
        """Block numbers that may hold points of the series, ascending (the single value's block first)."""
        blocks = []
        if doc.get("single"):
            blocks.append(SINGLE_VALUE_ITER // self.block_iterations)
        if doc.get("n") and doc.get("x0") is not None:
            span = range(doc["x0"] // self.block_iterations, doc["x1"] // self.block_iterations + 1)
            if len(span) > _MAX_BLOCK_RANGE:  # very sparse iterations: ask which blocks exist
                stored = self.blocks.find({"series": doc["_id"], "block": {"$gte": span[0], "$lte": span[-1]}},
                                          {"block": 1})
                span = sorted(d["block"] for d in stored)
            blocks.extend(span)
        return blocks

    def _read_blocks(self, doc: dict[str, Any], blocks: list[int], wanted: int
                     ) -> Iterator[tuple[int, list[tuple[int, int, float]]]]:
        """The series' stored blocks among ``blocks``, in order, each block's points sorted by iteration;
        read in ranges of blocks sized to the points still wanted (a range query on the series' key)."""
        remaining = list(blocks)
        span = max(1, wanted // self.block_iterations + 1)
        single_block = SINGLE_VALUE_ITER // self.block_iterations
        while remaining:
            chunk, remaining = remaining[:span], remaining[span:]
            found = {d["block"]: d for d in self.blocks.find(
                {"series": doc["_id"], "block": {"$gte": chunk[0], "$lte": chunk[-1]}},
                {"block": 1, "i": 1, "t": 1, "v": 1})}
            for block in chunk:
                if block == single_block and doc.get("single"):  # kept with the series, not in a block
                    yield block, [(SINGLE_VALUE_ITER, doc["single"]["t"], doc["single"]["v"])]
                elif block in found:
                    yield block, _block_points(found[block])
            span *= 2

    # -- deletes ------------------------------------------------------------------------------

    def delete_task(self, company: str, task: str) -> int:
        """Delete the task's folded points (its pending ones are ``PendingEvents.delete_task``'s); returns
        how many points it had, pending ones included."""
        deleted = self.count(task)
        for coll in (self.blocks, self.groups):
            coll.delete_many({"company": company, "task": task})
        self.tasks.delete_many({"_id": task, "company": company})
        self.coarse.delete_many({"_id": task, "company": company})
        return deleted

