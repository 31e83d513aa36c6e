"""Owns what a scalar chart shows: per series at most ``samples`` points, every run's lowest and highest.

The series are stored in blocks with chart overviews (``database/events/scalars.py``): a chart reads
the overviews whatever the length of its series, and only a series short enough to be shown whole is
read point by point.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from apiserver.database.events.scalars import OVERVIEW_COLUMNS, ScalarStore
from apiserver.database.events.selection import Selection


def histogram(store: ScalarStore, task: str, samples: int, key: str, selection: Selection | None = None
              ) -> dict[str, dict[str, Any]]:
    """Per metric and variant the series as {name, x, y}, at most ``samples`` points each.

    A series of at most ``samples`` points is shown whole (from its overview when that holds every
    point, else from its blocks). A longer one is cut into samples/2 runs of iterations and each
    run shows its minimum and its maximum point, so no peak or dip disappears from the chart.
    """
    out: dict[str, dict[str, Any]] = {}
    series = store.chart_overviews(task, selection, samples)
    whole = [s for s in series if s["n"] and s["n"] <= samples and s["width"] > 1]
    columns = store.all_points(task, whole) if whole else {}
    overviews = [s for s in series if s["n"] and s["_id"] not in columns]
    columns.update(zip([s["_id"] for s in overviews], downsample([s["groups"] for s in overviews], samples),
                       strict=True))
    for doc in series:
        if not doc["n"]:
            continue
        its, tss, values = columns[doc["_id"]]
        if key == "iter":
            x, y = its.tolist(), values.tolist()
        else:
            order = np.argsort(tss, kind="stable")
            x, y = tss[order].tolist(), values[order].tolist()
        if key == "iso_time":
            x = [iso_time(ts) for ts in x]
        shown = out.setdefault(doc["metric"], {})[doc["variant"]] = {"name": doc["variant"], "x": x, "y": y}
        if doc.get("label"):
            shown["x_axis_label"] = doc["label"]
    return out


def downsample(overviews: list[list[np.ndarray]], samples: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per overview (its columns ``OVERVIEW_COLUMNS``), every group's minimum and maximum point, or, when that is
    more than ``samples`` points, those of ``samples // 2`` runs of consecutive groups: the
    iterations, timestamps and values of the points, in iteration order.

    In each run the first smallest low and the first largest high are kept (one point when they are
    the same point). All the overviews go through the same few whole-column operations (numpy), so
    a chart costs no Python loop per point or per run; a NaN never hides a run's real extremes."""
    if not overviews:
        return []
    starts, base = [], 0
    for columns in overviews:
        count = len(columns[2])
        if not samples or 2 * count <= samples:
            starts.append(np.arange(base, base + count))
        else:
            runs = max(1, samples // 2)
            starts.append(base + np.arange(runs) * count // runs)  # strictly rising: count > runs here
        base += count
    lo_i, lo_t, lows, hi_i, hi_t, highs = (np.concatenate([c[k] for c in overviews])
                                           for k in range(len(OVERVIEW_COLUMNS)))
    first = np.concatenate(starts)
    if not len(first):  # every overview empty
        return [(lo_i[:0], lo_t[:0], lows[:0]) for _ in overviews]
    sizes = np.diff(np.append(first, base))
    run_of = np.repeat(np.arange(len(first)), sizes)
    offset = np.arange(base) - first[run_of]
    low = first + _first_at(lows == np.fmin.reduceat(lows, first)[run_of], offset, first, sizes)
    high = first + _first_at(highs == np.fmax.reduceat(highs, first)[run_of], offset, first, sizes)
    li, lt, lv = lo_i[low], lo_t[low], lows[low]
    hi, ht, hv = hi_i[high], hi_t[high], highs[high]
    same = (li == hi) & (lt == ht) & ((lv == hv) | (np.isnan(lv) & np.isnan(hv)))
    low_first = ~((hi < li) | ((hi == li) & ((ht < lt) | ((ht == lt) & (hv < lv)))))  # as sorted() orders them
    keep = np.stack([np.ones(len(first), bool), ~same], axis=1).ravel()

    def pairs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.stack([np.where(low_first, a, b), np.where(low_first, b, a)], axis=1).ravel()[keep]

    points = pairs(li, hi), pairs(lt, ht), pairs(lv, hv)
    kept_before = np.concatenate([[0], np.cumsum(keep)])  # points before each half-run
    cuts = kept_before[2 * np.cumsum([len(x) for x in starts])][:-1]
    return list(zip(*(np.split(col, cuts) for col in points), strict=True))


def _first_at(hit: np.ndarray, offset: np.ndarray, starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Per run, the offset of its first ``hit`` (0 when none: a run of NaN only)."""
    found = np.minimum.reduceat(np.where(hit, offset, sizes.max()), starts)
    return np.where(found < sizes, found, 0)


def iso_time(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{int(ms) % 1000:03d}Z"
