"""Owns scalar series storage: raw points in blocks of iterations, and one overview per series for charts.

Two shapes, both keyed by series (task + metric + variant), so every read touches O(page) documents:

- ``event_scalar_blocks``: one document per series and block of ``block_iterations`` iterations,
  holding that block's points (``i`` iteration, ``v`` value, ``t`` timestamp) in arrival order.
  Written with upserts and ``$push`` (no read), read by block ranges for raw paging.
- ``event_series``: one document per series with a fixed-size summary for charts: the series'
  iterations are cut into groups of ``width`` iterations (``width`` doubles whenever there would be
  more than ``overview_groups`` groups) and each group keeps its minimum and maximum point. While
  groups hold at most two points the overview is the series itself; a chart reads only these
  documents, one per series, whatever the length of the series. Written read-modify-write with a
  version number (optimistic: a concurrent writer makes the other one re-read and retry).

The single value of a metric (ClearML reports it at iteration -2**31) is kept on the overview as
``single`` and stays out of the chart groups.
"""

from __future__ import annotations

import hashlib
import logging
import time
from array import array
from collections import defaultdict
from collections.abc import Iterator
from typing import Any
from uuid import uuid4

from bson import Binary
from pymongo import InsertOne, UpdateOne
from pymongo.errors import BulkWriteError

log = logging.getLogger(__name__)

SCALAR = "training_stats_scalar"
SINGLE_VALUE_ITER = -(2**31)
_MAX_BLOCK_RANGE = 10_000
_GROUP_VALUES = ("lo_i", "lo_t", "lo_v", "hi_i", "hi_t", "hi_v", "cnt")
_GROUP_FIELDS = (("g", "q"), ("lo_i", "q"), ("lo_t", "q"), ("lo_v", "d"), ("hi_i", "q"), ("hi_t", "q"),
                 ("hi_v", "d"), ("cnt", "q"))


def series_id(task: str, metric: str, variant: str) -> str:
    digest = hashlib.md5(f"{metric}\0{variant}".encode()).hexdigest()  # noqa: S324 - a key, not a secret
    return f"{task}.{digest}"


def _unpack(doc: dict[str, Any]) -> dict[str, list]:
    return {name: array(code, bytes(doc[name])).tolist() if doc.get(name) else [] for name, code in _GROUP_FIELDS}


def _pack(groups: dict[str, list]) -> dict[str, Binary]:
    return {name: Binary(array(code, groups[name]).tobytes()) for name, code in _GROUP_FIELDS}


def _merge_groups(groups: dict[int, list], width: int, points: list[tuple[int, int, float]]) -> None:
    """Fold points (iteration, timestamp, value) into groups {g: [lo_i, lo_t, lo_v, hi_i, hi_t, hi_v, cnt]}."""
    for it, ts, value in points:
        g = it // width
        cur = groups.get(g)
        if cur is None:
            groups[g] = [it, ts, value, it, ts, value, 1]
            continue
        if value < cur[2]:
            cur[0], cur[1], cur[2] = it, ts, value
        if value > cur[5]:
            cur[3], cur[4], cur[5] = it, ts, value
        cur[6] += 1


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
            into[6] += cur[6]
        groups, width = merged, width * 2
    return groups, width


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{int(ms) % 1000:03d}Z"


class ScalarStore:
    def __init__(self, db_getter, block_iterations: int, overview_groups: int):
        self._db = db_getter
        self.block_iterations = block_iterations
        self.overview_groups = overview_groups

    @property
    def blocks(self):
        return self._db()["event_scalar_blocks"]

    @property
    def series(self):
        return self._db()["event_series"]

    def ensure_indexes(self) -> None:
        self.blocks.create_index([("series", 1), ("block", 1)])
        self.blocks.create_index([("company", 1), ("task", 1)])
        self.series.create_index([("task", 1), ("metric", 1), ("variant", 1)])
        self.series.create_index([("company", 1), ("task", 1)])

    # -- writes -------------------------------------------------------------------------------

    def add(self, company: str, events: list[dict[str, Any]]) -> None:
        """Store scalar events (task, metric, variant, iter, value, timestamp) of the company's tasks."""
        per_series: dict[str, dict[str, Any]] = {}
        for ev in events:
            metric, variant = ev.get("metric") or "", ev.get("variant") or ""
            sid = series_id(ev["task"], metric, variant)
            entry = per_series.setdefault(sid, {"task": ev["task"], "metric": metric, "variant": variant,
                                                "points": []})
            entry["points"].append((int(ev.get("iter") or 0), int(ev["timestamp"]), float(ev["value"])))
        self._write_blocks(company, per_series)
        self._write_overviews(company, per_series)

    def _write_blocks(self, company: str, per_series: dict[str, dict[str, Any]]) -> None:
        ops = []
        for sid, entry in per_series.items():
            per_block: dict[int, list] = defaultdict(list)
            for point in entry["points"]:
                per_block[point[0] // self.block_iterations].append(point)
            for block, points in per_block.items():
                ops.append(UpdateOne(
                    {"_id": f"{sid}:{block}"},
                    {"$setOnInsert": {"company": company, "task": entry["task"], "series": sid,
                                      "metric": entry["metric"], "variant": entry["variant"], "block": block},
                     "$push": {"i": {"$each": [p[0] for p in points]}, "t": {"$each": [p[1] for p in points]},
                               "v": {"$each": [p[2] for p in points]}},
                     "$inc": {"n": len(points)}},
                    upsert=True))
        if not ops:
            return
        try:
            self.blocks.bulk_write(ops, ordered=False)
        except BulkWriteError as exc:  # two writers upserting the same new block: the loser repeats
            failed = {e["index"] for e in exc.details.get("writeErrors", []) if e.get("code") == 11000}
            if len(failed) != len(exc.details.get("writeErrors", [])):
                raise
            self.blocks.bulk_write([ops[i] for i in sorted(failed)], ordered=False)

    def _write_overviews(self, company: str, per_series: dict[str, dict[str, Any]]) -> None:
        pending = dict(per_series)
        for _attempt in range(20):
            current = {d["_id"]: d for d in self.series.find({"_id": {"$in": list(pending)}})}
            ops, tokens = [], {}
            for sid, entry in pending.items():
                tokens[sid] = uuid4().hex
                ops.append(self._overview_op(company, sid, entry, current.get(sid), tokens[sid]))
            try:
                self.series.bulk_write(ops, ordered=False)
            except BulkWriteError as exc:  # an insert raced another writer's: retried below
                if any(e.get("code") != 11000 for e in exc.details.get("writeErrors", [])):
                    raise
            # A series whose version is not ours was changed by another writer meanwhile: fold again.
            written = {d["_id"]: d.get("ver") for d in self.series.find({"_id": {"$in": list(pending)}}, {"ver": 1})}
            pending = {sid: entry for sid, entry in pending.items() if written.get(sid) != tokens[sid]}
            if not pending:
                return
        log.error("scalar overviews of %d series not updated after 20 attempts", len(pending))

    def _overview_op(self, company: str, sid: str, entry: dict[str, Any], doc: dict[str, Any] | None,
                     token: str) -> InsertOne | UpdateOne:
        width = int(doc["width"]) if doc else 1
        groups: dict[int, list] = {}
        if doc:
            packed = _unpack(doc)
            for k, g in enumerate(packed["g"]):
                groups[g] = [packed[f][k] for f in _GROUP_VALUES]
        chart_points = [p for p in entry["points"] if p[0] != SINGLE_VALUE_ITER]
        singles = [p for p in entry["points"] if p[0] == SINGLE_VALUE_ITER]
        _merge_groups(groups, width, chart_points)
        groups, width = _collapse(groups, width, self.overview_groups)
        ordered = sorted(groups)
        fields: dict[str, Any] = {**_pack({"g": ordered, **{f: [groups[g][k] for g in ordered]
                                                             for k, f in enumerate(_GROUP_VALUES)}}),
                                  "width": width, "n": (doc or {}).get("n", 0) + len(chart_points), "ver": token}
        if chart_points:
            last = max(chart_points, key=lambda p: (p[0], p[1]))
            prev = (doc or {}).get("last")
            if not prev or (last[0], last[1]) >= (prev["i"], prev["t"]):
                fields["last"] = {"i": last[0], "t": last[1], "v": last[2]}
        if singles:
            latest = max(singles, key=lambda p: p[1])
            fields["single"] = {"t": latest[1], "v": latest[2]}
        if doc is None:
            return InsertOne({"_id": sid, "company": company, "task": entry["task"], "metric": entry["metric"],
                              "variant": entry["variant"], **fields})
        return UpdateOne({"_id": sid, "ver": doc.get("ver")}, {"$set": fields})

    # -- reads --------------------------------------------------------------------------------

    def overviews(self, task: str, metrics: list[dict[str, Any]] | None = None,
                  with_groups: bool = True) -> list[dict[str, Any]]:
        """The series of a task (optionally only these metrics/variants), sorted by metric and variant."""
        flt: dict[str, Any] = {"task": task}
        wanted = _metric_filter(metrics)
        proj = None if with_groups else {name: 0 for name, _ in _GROUP_FIELDS}
        docs = [d for d in self.series.find(flt, proj) if wanted is None or _wanted(wanted, d)]
        return sorted(docs, key=lambda d: (d["metric"], d["variant"]))

    def histogram(self, task: str, samples: int, key: str, metrics: list[dict[str, Any]] | None = None
                  ) -> dict[str, dict[str, Any]]:
        """Per metric and variant the series as {name, x, y}, at most ``samples`` points each.

        A series with more points is cut into samples/2 runs of groups, and each run shows its
        minimum and its maximum point, so no peak or dip disappears from the chart.
        """
        out: dict[str, dict[str, Any]] = {}
        for doc in self.overviews(task, metrics):
            if not doc.get("n"):
                continue
            x, y = downsample(_unpack(doc), samples, key)
            out.setdefault(doc["metric"], {})[doc["variant"]] = {"name": doc["variant"], "x": x, "y": y}
        return out

    def single_values(self, task: str) -> list[dict[str, Any]]:
        return [{"metric": d["metric"], "variant": d["variant"], "value": d["single"]["v"],
                 "timestamp": d["single"]["t"]}
                for d in self.overviews(task, with_groups=False) if d.get("single")]

    def metric_variants(self, task: str) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for doc in self.overviews(task, with_groups=False):
            out.setdefault(doc["metric"], []).append(doc["variant"])
        return out

    def count(self, task: str, metrics: list[dict[str, Any]] | None = None) -> int:
        return sum(d.get("n", 0) + (1 if d.get("single") else 0) for d in self.overviews(task, metrics, False))

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
        if doc.get("n"):
            packed = _unpack(doc)
            first = min(packed["lo_i"] + packed["hi_i"])
            last = max(packed["lo_i"] + packed["hi_i"])
            width = int(doc["width"])
            # the groups bound the series: from the first group's start to the last group's end
            first = min(first, packed["g"][0] * width)
            last = max(last, packed["g"][-1] * width + width - 1)
            span = range(first // self.block_iterations, last // self.block_iterations + 1)
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
        while remaining:
            chunk, remaining = remaining[:span], remaining[span:]
            found = {d["block"]: d for d in self.blocks.find(
                {"series": doc["_id"], "block": {"$gte": chunk[0], "$lte": chunk[-1]}},
                {"block": 1, "i": 1, "t": 1, "v": 1})}
            for block in chunk:
                if block in found:
                    d = found[block]
                    yield block, sorted(zip(d["i"], d["t"], d["v"], strict=False), key=lambda p: (p[0], p[1]))
            span *= 2

    # -- deletes ------------------------------------------------------------------------------

    def delete_task(self, company: str, task: str) -> int:
        deleted = self.count(task)
        self.blocks.delete_many({"company": company, "task": task})
        self.series.delete_many({"company": company, "task": task})
        return deleted


def downsample(packed: dict[str, list], samples: int, key: str) -> tuple[list, list]:
    """The chart of one series from its overview groups: every group's minimum and maximum point, or,
    when that is more than ``samples`` points, those of runs of consecutive groups."""
    count = len(packed["g"])
    runs = count
    if samples and 2 * count > samples:
        runs = max(1, samples // 2)
    points: list[tuple[int, int, float]] = []
    for r in range(runs):
        lo_k = hi_k = None
        for k in range(r * count // runs, (r + 1) * count // runs):
            if lo_k is None or packed["lo_v"][k] < packed["lo_v"][lo_k]:
                lo_k = k
            if hi_k is None or packed["hi_v"][k] > packed["hi_v"][hi_k]:
                hi_k = k
        if lo_k is None:
            continue
        low = (packed["lo_i"][lo_k], packed["lo_t"][lo_k], packed["lo_v"][lo_k])
        high = (packed["hi_i"][hi_k], packed["hi_t"][hi_k], packed["hi_v"][hi_k])
        points.extend(sorted({low, high}, key=lambda p: (p[0], p[1])) if low != high else [low])
    if key == "iter":
        return [p[0] for p in points], [p[2] for p in points]
    points.sort(key=lambda p: p[1])
    xs = [p[1] for p in points] if key == "timestamp" else [_iso(p[1]) for p in points]
    return xs, [p[2] for p in points]


def _metric_filter(metrics: list[dict[str, Any]] | None) -> dict[str, set[str] | None] | None:
    """{metric: variants or None (all)} from ClearML's [{metric, variants}] (or plain names)."""
    if not metrics:
        return None
    wanted: dict[str, set[str] | None] = {}
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


def _wanted(wanted: dict[str, set[str] | None], doc: dict[str, Any]) -> bool:
    if doc["metric"] not in wanted:
        return False
    variants = wanted[doc["metric"]]
    return variants is None or doc["variant"] in variants
