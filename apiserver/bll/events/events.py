"""Owns task events: storing batches, reading logs, metrics, plots and debug images, keeping last_metrics current.

Scalars live in series blocks and overviews (``scalars.py``), console lines in log blocks
(``logs.py``); plots, debug images and vectors, which are few per task, stay one document per event
in ``events``. Every read first checks that the caller may read the task (the task rule's own
``readable``), so another company's events look like a missing task.
"""

from __future__ import annotations

import base64
import json
import string
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from apiserver.apierrors import errors
from apiserver.bll.auth.identity import Identity
from apiserver.bll.events.logs import LOG, LogStore
from apiserver.bll.events.scalars import SCALAR, ScalarStore, _metric_filter, _wanted, iso_time
from apiserver.bll.query import api_id
from apiserver.bll.tasks.tasks import TaskMetrics
from apiserver.database.model.base import new_id
from apiserver.database.model.event import Event

if TYPE_CHECKING:
    from apiserver.bll.models.models import ModelBLL
    from apiserver.bll.tasks.tasks import TaskBLL

VECTOR = "training_stats_vector"
DEBUG_IMAGE = "training_debug_image"
PLOT = "plot"
EVENT_TYPES = (SCALAR, VECTOR, DEBUG_IMAGE, PLOT, LOG)
# Fields an event may carry; anything else a client sends is dropped, not stored.
EVENT_FIELDS = ("task", "type", "timestamp", "iter", "metric", "variant", "value", "values", "msg", "level",
                "worker", "url", "key", "plot_str", "model_event", "skip_validation")


def _scroll_encode(position: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode()


_SCROLL_SHAPES: dict[str, Callable[[Any], bool]] = {
    # where a scroll position may point, per kind of scroll; anything else is not one of ours
    "events": lambda v: _small_int(v.get("p")) and v["p"] >= 0 and "pos" in v and _position_ok(v["pos"]),
    "points": lambda v: v.get("done") is True or "pos" in v and v["pos"] is None or "pos" in v and (
        isinstance(v["pos"], list) and len(v["pos"]) == 3 and _small_int(v["pos"][0]) and v["pos"][0] >= 0
        and (v["pos"][1] is None or _small_int(v["pos"][1])) and _small_int(v["pos"][2]) and v["pos"][2] >= 0),
    "pages": lambda v: True,
    "sample": lambda v: isinstance(v.get("task"), str) and isinstance(v.get("metric"), str)
    and v.get("type") in (PLOT, DEBUG_IMAGE) and (v.get("iter") is None or _small_int(v["iter"]))
    and (v.get("variant") is None or isinstance(v["variant"], str)),
    "images": lambda v: all(isinstance(k, str) and _small_int(i) for k, i in v.items()),
}
_LINE_FIELDS = {"asctime", "worker", "level", "msg", "timestamp", "iter"}


def _small_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**62


def _position_ok(pos: Any) -> bool:
    """None, or a list of ints and nulls (a block/offset position), or [timestamp, id]."""
    return pos is None or (isinstance(pos, list) and len(pos) <= 3 and all(
        p is None or isinstance(p, str) or _small_int(p) for p in pos))


def _scroll_decode(scroll_id: str, kind: str) -> Any:
    try:
        value = json.loads(base64.urlsafe_b64decode(scroll_id.encode()))
        if not isinstance(value, dict) or not _SCROLL_SHAPES[kind](value):
            raise ValueError
        return value
    except (ValueError, TypeError):
        raise errors.bad_request.InvalidScrollId(scroll_id=scroll_id) from None


def _check_line_format(line_format: str) -> None:
    """Only the plain line fields: no attribute or index lookups, conversions or nested fields."""
    try:
        parts = list(string.Formatter().parse(line_format))
    except ValueError:
        parts = None
    if parts is None or any(name is not None and (name not in _LINE_FIELDS or conv or "{" in (spec or ""))
                            for _text, name, spec, conv in parts):
        raise errors.bad_request.ValidationError(
            f"field 'line_format': use only the fields {{{'}, {'.join(sorted(_LINE_FIELDS))}}} (rule: lineFormat)",
            error_data={"field": "line_format", "rule": "lineFormat"})


class EventBLL:
    def __init__(self, config: dict[str, Any]):
        def db():
            return Event._get_db()

        self.scalars = ScalarStore(db, int(config["scalar_block_iterations"]), int(config["scalar_overview_groups"]),
                                   int(config["scalar_coarse_groups"]), int(config["scalar_fold_every"]),
                                   int(config["scalar_fold_points"]))
        self.logs = LogStore(db, int(config["log_block_lines"]), int(config["log_block_bytes"]))
        self.default_samples = int(config["histogram_default_samples"])
        # Who may read a task's (or a model's) events, who may change a task's, and what events
        # record on a task: the task and model rules own that; the app connects them.
        self.tasks: TaskBLL | None = None
        self.models: ModelBLL | None = None

    @property
    def coll(self):
        return Event._get_collection()

    def ensure_indexes(self) -> None:
        self.scalars.ensure_indexes()
        self.logs.ensure_indexes()

    def _readable(self, company: str, task: str, model_events: bool = False) -> dict[str, Any]:
        reader = self.models.readable if model_events else self.tasks.readable
        return reader(company, task, {"_id": 1, "name": 1})

    # -- writes -------------------------------------------------------------------------------

    def add_events(self, identity: Identity, events: list[dict[str, Any]]) -> dict[str, Any]:
        """Store events of the caller's tasks; bad ones are counted in errors, the rest are stored."""
        known = self.tasks.writable_ids(identity.company, list({e["task"] for e in events}))
        now_ms = int(time.time() * 1000)
        by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
        errors_info: dict[str, int] = defaultdict(int)
        for event in events:
            if event["task"] not in known:
                errors_info[f"invalid task id {event['task']}"] += 1
                continue
            if event["type"] not in EVENT_TYPES:
                errors_info[f"unknown event type {event['type']}"] += 1
                continue
            doc = {k: event[k] for k in EVENT_FIELDS if k in event and event[k] is not None}
            doc["timestamp"] = int(event.get("timestamp") or now_ms)
            if doc["type"] == SCALAR and not isinstance(doc.get("value"), (int, float)):
                errors_info["scalar event without a numeric value"] += 1
                continue
            by_type[doc["type"]].append(doc)
        company = identity.company
        if by_type.get(SCALAR):
            self.scalars.add(company, by_type[SCALAR])
        if by_type.get(LOG):
            self.logs.add(company, by_type[LOG])
        others = [{**d, "_id": new_id(), "company": company} for t, docs in by_type.items()
                  if t not in (SCALAR, LOG) for d in docs]
        if others:
            self.coll.insert_many(others, ordered=False)
        stored = [d for docs in by_type.values() for d in docs]
        if stored:
            self._update_task_metrics(company, stored)
        return {"added": len(stored), "errors": sum(errors_info.values()), "errors_info": dict(errors_info)}

    def _update_task_metrics(self, company: str, docs: list[dict[str, Any]]) -> None:
        """What the batch says about each task (its last iteration, its scalars' last, min and max),
        recorded on the tasks by the task rules."""
        reports: dict[str, TaskMetrics] = defaultdict(TaskMetrics)
        for doc in docs:
            report = reports[doc["task"]]
            if doc.get("iter") is not None and doc["iter"] > -(2**31):
                report.add_iteration(doc["iter"])
            if doc["type"] == SCALAR:
                report.add_scalar(doc.get("metric", ""), doc.get("variant", ""), float(doc["value"]))
        self.tasks.record_metrics(company, dict(reports))

    # -- logs ---------------------------------------------------------------------------------

    def get_task_log(self, company: str, data: dict[str, Any]) -> dict[str, Any]:
        task = data["task"]
        self._readable(company, task)
        earlier = data.get("navigate_earlier", True)
        from_ts = data.get("from_timestamp")
        lines, total = self.logs.page(task, int(data.get("batch_size") or 500), earlier,
                                      int(from_ts) if from_ts else None)
        order = data.get("order")
        if order and (order == "asc") == earlier:  # navigation order, unless asked otherwise (as ClearML)
            lines.reverse()
        return {"events": lines, "returned": len(lines), "total": total}

    def task_log_text(self, company: str, data: dict[str, Any]) -> Iterator[str]:
        """The whole log as text lines (``line_format`` fields) or JSON lines, oldest first."""
        task = data["task"]
        self._readable(company, task)
        as_json = data.get("line_type") == "json"
        line_format = data.get("line_format") or "{asctime} {worker} {level} {msg}"
        _check_line_format(line_format)
        for line in self.logs.all_lines(task):
            if as_json:
                yield json.dumps(line) + "\n"
                continue
            fields = {"asctime": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(line["timestamp"] / 1000)),
                      "worker": line.get("worker", ""), "level": line.get("level", ""), "msg": line.get("msg", ""),
                      "timestamp": line["timestamp"], "iter": line.get("iter", "")}
            text = line_format.format(**fields)
            yield text if text.endswith("\n") else text + "\n"

    def clear_task_log(self, company: str, task: str, threshold_sec: int | None) -> dict[str, int]:
        self.tasks.writable(company, task)
        if threshold_sec:
            return {"deleted": self.logs.clear_before(company, task, int(time.time() * 1000) - threshold_sec * 1000)}
        return {"deleted": self.logs.delete_task(company, task)}

    # -- any event type -----------------------------------------------------------------------

    def get_task_events(self, company: str, data: dict[str, Any]) -> dict[str, Any]:
        """A task's events page by page with scroll_id: one event type, or all (the other types, then
        scalars, then log lines); every event once."""
        task = data["task"]
        self._readable(company, task, data.get("model_events", False))
        size = min(int(data.get("batch_size") or 500), 10_000)
        descending = data.get("order") == "desc"
        event_type = data.get("event_type")
        metrics = [m if isinstance(m, dict) else {"metric": m} for m in data.get("metrics") or []] or None
        phases = [event_type] if event_type else ["other", SCALAR, LOG]
        state = _scroll_decode(data["scroll_id"], "events") if data.get("scroll_id") else {"p": 0, "pos": None}
        events: list[dict[str, Any]] = []
        while state["p"] < len(phases) and len(events) < size:
            try:
                page, pos = self._events_of(phases[state["p"]], task, state["pos"], size - len(events), descending,
                                            metrics)
            except (ValueError, TypeError, IndexError):  # a position of another kind of scroll than this one
                raise errors.bad_request.InvalidScrollId(scroll_id=data.get("scroll_id")) from None
            events.extend(page)
            state = {"p": state["p"], "pos": pos} if pos is not None else {"p": state["p"] + 1, "pos": None}
        total = sum(self._count_of(phase, task, metrics) for phase in phases)
        return {"events": events, "returned": len(events), "total": total, "scroll_id": _scroll_encode(state)}

    def _events_of(self, phase: str, task: str, pos: Any, limit: int, descending: bool,
                   metrics: list[dict[str, Any]] | None) -> tuple[list[dict[str, Any]], Any]:
        if phase == SCALAR:
            return self.scalar_events(task, metrics, pos, limit)
        if phase == LOG:
            return self.logs.scroll(task, pos, limit, descending)
        flt: dict[str, Any] = {"task": task}
        flt["type"] = phase if phase != "other" else {"$in": [VECTOR, DEBUG_IMAGE, PLOT]}
        wanted = _metric_filter(metrics)
        if wanted:
            flt["metric"] = {"$in": list(wanted)}
        direction = -1 if descending else 1
        order = [("timestamp", direction), ("_id", direction)]
        docs: list[dict[str, Any]] = []
        if pos:  # after (timestamp, _id): the rest of its timestamp, then the later ones (no top-level $or,
            op = "$lt" if descending else "$gt"  # which SecantusDB answers by scanning every task's events)
            docs = list(self.coll.find({**flt, "timestamp": pos[0], "_id": {op: pos[1]}}, {"company": 0})
                        .sort(order).limit(limit))
            flt["timestamp"] = {op: pos[0]}
        if len(docs) < limit:
            docs += self.coll.find(flt, {"company": 0}).sort(order).limit(limit - len(docs))
        docs = [d for d in docs if wanted is None or _wanted(wanted, {"metric": d.get("metric", ""),
                                                                        "variant": d.get("variant", "")})]
        if len(docs) < limit:
            return [api_id(d) for d in docs], None
        return [api_id(d) for d in docs], [docs[-1]["timestamp"], docs[-1]["_id"]]

    def _count_of(self, phase: str, task: str, metrics: list[dict[str, Any]] | None) -> int:
        if phase == SCALAR:
            return self.scalars.count(task, metrics)
        if phase == LOG:
            return self.logs.total(task)
        kinds = {"$in": [VECTOR, DEBUG_IMAGE, PLOT]} if phase == "other" else phase
        return self.coll.count_documents({"task": task, "type": kinds})

    # -- scalars ------------------------------------------------------------------------------

    def scalar_events(self, task: str, metrics: list[dict[str, Any]] | None, pos: Any, limit: int
                      ) -> tuple[list[dict[str, Any]], Any]:
        series = self.scalars.raw_series(task, metrics)
        points, nxt = self.scalars.points(series, pos, limit)
        return [{"task": task, "type": SCALAR, "metric": doc["metric"], "variant": doc["variant"], "iter": it,
                 "timestamp": ts, "value": value} for doc, (it, ts, value) in points], nxt

    def metrics_and_variants(self, company: str, task: str, model_events: bool = False
                             ) -> dict[str, dict[str, dict[str, str]]]:
        self._readable(company, task, model_events)
        return {metric: {v: {"name": v} for v in variants}
                for metric, variants in self.scalars.metric_variants(task).items()}

    def scalar_histogram(self, company: str, data: dict[str, Any]) -> dict[str, Any]:
        """Scalar series per metric/variant, at most ``samples`` points each (keeping every run's min and max)."""
        task = data["task"]
        self._readable(company, task, data.get("model_events", False))
        return self.scalars.histogram(task, self._samples(data), data.get("key") or "iter", data.get("metrics"))

    def _samples(self, data: dict[str, Any]) -> int:
        return int(data["samples"]) if data.get("samples") is not None else self.default_samples

    def multi_task_histogram(self, company: str, data: dict[str, Any]) -> dict[str, Any]:
        """{metric: {variant: {task id: {name: task name, x, y}}}} for several tasks."""
        out: dict[str, dict[str, dict[str, Any]]] = defaultdict(lambda: defaultdict(dict))
        key = data.get("key") or "iter"
        for task in dict.fromkeys(data["tasks"]):
            name = self._readable(company, task, data.get("model_events", False)).get("name")
            hist = self.scalars.histogram(task, self._samples(data), key, data.get("metrics"))
            for metric, variants in hist.items():
                for variant, series in variants.items():
                    out[metric][variant][task] = {**series, "name": name}
        return {m: dict(v) for m, v in out.items()}

    def scalar_iter_raw(self, company: str, data: dict[str, Any]) -> dict[str, Any]:
        """Every point of one metric's variants, page by page (scroll_id), each point once."""
        task = data["task"]
        self._readable(company, task, data.get("model_events", False))
        metric = data["metric"]
        metrics = [{"metric": metric.get("metric") or "", "variants": metric.get("variants")}]
        state = _scroll_decode(data["scroll_id"], "points") if data.get("scroll_id") else {"pos": None}
        series = self.scalars.raw_series(task, metrics)
        points, nxt = ([], None) if state.get("done") else self.scalars.points(
            series, state["pos"], int(data.get("batch_size") or 10_000))
        key = data.get("key") or "iter"
        variants: dict[str, dict[str, list]] = {}
        for doc, (it, ts, value) in points:
            entry = variants.setdefault(doc["variant"], {"x": [], "y": []})
            entry["x"].append(it if key == "iter" else ts if key == "timestamp" else iso_time(ts))
            entry["y"].append(value)
        total = self.scalars.count(task, metrics) if data.get("count_total") else None
        scroll = {"pos": nxt} if nxt is not None else {"done": True}
        return {"variants": variants, "returned": len(points), "total": total, "scroll_id": _scroll_encode(scroll)}

    def scalar_metric_data(self, company: str, data: dict[str, Any]) -> dict[str, Any]:
        """The scalar events of one metric, page by page unless ``no_scroll``."""
        task = data["task"]
        self._readable(company, task, data.get("model_events", False))
        metrics = [{"metric": data.get("metric") or ""}]
        state = _scroll_decode(data["scroll_id"], "points") if data.get("scroll_id") else {"pos": None}
        limit = 10**9 if data.get("no_scroll") else 10_000
        events, nxt = ([], None) if state.get("done") else self.scalar_events(task, metrics, state["pos"], limit)
        return {"events": events, "returned": len(events), "total": self.scalars.count(task, metrics),
                "scroll_id": _scroll_encode({"pos": nxt} if nxt is not None else {"done": True})}

    def latest_scalar_values(self, company: str, task: str) -> list[dict[str, Any]]:
        doc = self._readable_full(company, task)
        metrics: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for variants in (doc.get("last_metrics") or {}).values():
            for entry in variants.values():
                metrics[entry.get("metric", "")].append({"name": entry.get("variant", ""),
                                                         "last_value": entry.get("value")})
        return [{"name": name, "variants": sorted(variants, key=lambda v: v["name"])}
                for name, variants in sorted(metrics.items())]

    def _readable_full(self, company: str, task: str) -> dict[str, Any]:
        return self.tasks.readable(company, task, {"last_metrics": 1})

    def single_value_metrics(self, company: str, data: dict[str, Any]) -> list[dict[str, Any]]:
        out = []
        for task in dict.fromkeys(data["tasks"]):
            self._readable(company, task, data.get("model_events", False))
            out.append({"task": task, "values": self.scalars.single_values(task)})
        return out

    # -- metric names -------------------------------------------------------------------------

    def _metric_variants(self, task: str, event_type: str | None) -> dict[str, set[str]]:
        out: dict[str, set[str]] = defaultdict(set)
        if event_type in (None, SCALAR):
            for metric, variants in self.scalars.metric_variants(task).items():
                out[metric].update(variants)
        if event_type in (None, VECTOR, DEBUG_IMAGE, PLOT):
            types = [event_type] if event_type else [VECTOR, DEBUG_IMAGE, PLOT]
            rows = self.coll.aggregate([{"$match": {"task": task, "type": {"$in": types}}},
                                        {"$group": {"_id": {"m": "$metric", "v": "$variant"}}}])
            for row in rows:
                out[row["_id"].get("m") or ""].add(row["_id"].get("v") or "")
        return out

    def task_metrics(self, company: str, data: dict[str, Any]) -> list[dict[str, Any]]:
        out = []
        for task in dict.fromkeys(data["tasks"]):
            self._readable(company, task, data.get("model_events", False))
            out.append({"task": task, "metrics": sorted(self._metric_variants(task, data.get("event_type")))})
        return out

    def multi_task_metrics(self, company: str, data: dict[str, Any]) -> list[dict[str, Any]]:
        union: dict[str, set[str]] = defaultdict(set)
        for task in dict.fromkeys(data["tasks"]):
            self._readable(company, task, data.get("model_events", False))
            for metric, variants in self._metric_variants(task, data.get("event_type")).items():
                union[metric].update(variants)
        return [{"metric": m, "variants": sorted(v)} for m, v in sorted(union.items())]

    # -- plots --------------------------------------------------------------------------------

    def _latest_iterations(self, task: str, event_type: str, metrics: list[dict[str, Any]] | None, iters: int
                           ) -> list[dict[str, Any]]:
        """Events of the ``iters`` latest iterations of each metric/variant (the latest event of each)."""
        flt: dict[str, Any] = {"task": task, "type": event_type}
        wanted = _metric_filter(metrics)
        if wanted:
            flt["metric"] = {"$in": list(wanted)}
        latest: dict[tuple[str, str], dict[Any, dict[str, Any]]] = defaultdict(dict)
        for doc in self.coll.find(flt, {"company": 0}):
            metric, variant = doc.get("metric", ""), doc.get("variant", "")
            if wanted and not _wanted(wanted, {"metric": metric, "variant": variant}):
                continue
            slot = latest[(metric, variant)]
            prev = slot.get(doc.get("iter"))
            if prev is None or (doc["timestamp"], doc["_id"]) > (prev["timestamp"], prev["_id"]):
                slot[doc.get("iter")] = doc
        out = []
        for (_metric, _variant), by_iter in sorted(latest.items()):
            chosen = sorted(by_iter, key=lambda i: -1 if i is None else i, reverse=True)[:iters]
            out.extend(api_id(by_iter[i]) for i in chosen)
        return out

    def task_plots(self, company: str, data: dict[str, Any]) -> dict[str, Any]:
        task = data["task"]
        self._readable(company, task, data.get("model_events", False))
        if data.get("scroll_id") and _scroll_decode(data["scroll_id"], "pages").get("done"):
            plots: list[dict[str, Any]] = []
        else:
            plots = self._latest_iterations(task, PLOT, data.get("metrics"), int(data.get("iters") or 1))
        return {"plots": plots, "returned": len(plots), "total": len(plots),
                "scroll_id": _scroll_encode({"done": True})}

    def multi_task_plots(self, company: str, data: dict[str, Any]) -> dict[str, Any]:
        """{metric: {variant: {task id: {iteration: {name: task name, plots: [events]}}}}} of several tasks."""
        done = bool(data.get("scroll_id")) and _scroll_decode(data["scroll_id"], "pages").get("done")
        out: dict[str, Any] = {}
        returned = 0
        for task in dict.fromkeys(data["tasks"]):
            name = self._readable(company, task, data.get("model_events", False)).get("name")
            if done:
                continue
            for event in self._latest_iterations(task, PLOT, data.get("metrics"), int(data.get("iters") or 1)):
                slot = out.setdefault(event.get("metric", ""), {}).setdefault(event.get("variant", ""), {}) \
                    .setdefault(task, {}).setdefault(str(event.get("iter")), {"name": name, "plots": []})
                slot["plots"].append(event)
                returned += 1
        return {"plots": out, "returned": returned, "total": returned, "scroll_id": _scroll_encode({"done": True})}

    # -- one sample at a time (plots and debug images viewers) --------------------------------

    def sample(self, company: str, data: dict[str, Any], event_type: str) -> dict[str, Any]:
        """The plot (all variants) or debug image (one variant) of a metric at an iteration (the latest
        when none is given), with the metric's iteration range and a scroll_id to navigate from there."""
        task = data["task"]
        self._readable(company, task, data.get("model_events", False))
        if data.get("scroll_id") and not data.get("refresh"):
            state = _scroll_decode(data["scroll_id"], "sample")
            if state.get("task") != task:
                raise errors.bad_request.InvalidScrollId(scroll_id=data["scroll_id"])
        state = {"task": task, "type": event_type, "metric": data["metric"], "variant": data.get("variant"),
                 "current_metric": data.get("navigate_current_metric", True)}
        flt = self._sample_filter(state)
        if data.get("iteration") is not None:
            flt["iter"] = {"$lte": int(data["iteration"])}
        found = self._one_iteration(flt, earlier=True)
        return self._sample_answer(state, found)

    def next_sample(self, company: str, data: dict[str, Any], event_type: str) -> dict[str, Any]:
        task = data["task"]
        self._readable(company, task, data.get("model_events", False))
        state = _scroll_decode(data["scroll_id"], "sample")
        if state.get("task") != task or state.get("type") != event_type or state.get("iter") is None:
            raise errors.bad_request.InvalidScrollId(scroll_id=data["scroll_id"])
        earlier = data.get("navigate_earlier", True)
        if data.get("next_iteration"):
            flt = self._sample_filter(state)
            flt["iter"] = {"$lt" if earlier else "$gt": state["iter"]}
            return self._sample_answer(state, self._one_iteration(flt, earlier))
        # The neighbouring metric (plots) or variant (images) at the same iteration.
        pairs = self._pairs_at(state)
        here = (state["metric"], state.get("variant") or "") if event_type == DEBUG_IMAGE else state["metric"]
        ordered = sorted(pairs)
        after = [p for p in ordered if (p < here if earlier else p > here)]
        if not after:
            return {"scroll_id": _scroll_encode(state), "event": None, "events": [],
                    "min_iteration": state.get("min"), "max_iteration": state.get("max")}
        target = after[-1] if earlier else after[0]
        nstate = dict(state, metric=target[0] if event_type == DEBUG_IMAGE else target,
                      variant=target[1] if event_type == DEBUG_IMAGE else None)
        flt = self._sample_filter(nstate)
        flt["iter"] = state["iter"]
        return self._sample_answer(nstate, self._one_iteration(flt, True))

    def _sample_filter(self, state: dict[str, Any]) -> dict[str, Any]:
        flt: dict[str, Any] = {"task": state["task"], "type": state["type"], "metric": state["metric"]}
        if state["type"] == DEBUG_IMAGE and state.get("variant") is not None:
            flt["variant"] = state["variant"]
        return flt

    def _one_iteration(self, flt: dict[str, Any], earlier: bool) -> list[dict[str, Any]]:
        """The events (latest per variant) of the nearest iteration matching ``flt``."""
        docs = list(self.coll.find(flt, {"company": 0}))
        if not docs:
            return []
        pick = max if earlier else min
        it = pick(d.get("iter") or 0 for d in docs)
        latest: dict[str, dict[str, Any]] = {}
        for d in sorted((d for d in docs if (d.get("iter") or 0) == it), key=lambda d: (d["timestamp"], d["_id"])):
            latest[d.get("variant", "")] = d
        return [api_id(latest[v]) for v in sorted(latest)]

    def _pairs_at(self, state: dict[str, Any]) -> set:
        flt: dict[str, Any] = {"task": state["task"], "type": state["type"], "iter": state["iter"]}
        if state.get("current_metric"):
            flt["metric"] = state["metric"]
        docs = self.coll.find(flt, {"metric": 1, "variant": 1})
        if state["type"] == DEBUG_IMAGE:
            return {(d.get("metric", ""), d.get("variant", "")) for d in docs}
        return {d.get("metric", "") for d in docs}

    def _sample_answer(self, state: dict[str, Any], found: list[dict[str, Any]]) -> dict[str, Any]:
        iters = [d.get("iter") or 0 for d in self.coll.find(self._sample_filter(state), {"iter": 1})]
        state = dict(state, min=min(iters, default=None), max=max(iters, default=None))
        if found:
            state["iter"] = found[0].get("iter") or 0
        return {"scroll_id": _scroll_encode(state), "events": found, "event": found[0] if found else None,
                "min_iteration": state["min"], "max_iteration": state["max"]}

    # -- debug images -------------------------------------------------------------------------

    def debug_images(self, company: str, data: dict[str, Any]) -> dict[str, Any]:
        """Debug images of task metrics grouped by iteration, ``iters`` iterations per call.

        The scroll id holds, per task and metric, the last iteration handed out, so the next call
        continues from there (earlier iterations with navigate_earlier, the default); a call that
        returns no iterations for a metric means it is exhausted. Within an iteration, the latest
        image of each metric and variant is returned.
        """
        earlier = data.get("navigate_earlier", True)
        iters = int(data.get("iters") or 10)
        state = {} if data.get("refresh") or not data.get("scroll_id") else _scroll_decode(data["scroll_id"], "images")
        answer = []
        for item in data["metrics"]:
            task = item["task"]
            self._readable(company, task, data.get("model_events", False))
            key = f"{task}|{item.get('metric') or ''}"
            flt: dict[str, Any] = {"task": task, "type": DEBUG_IMAGE,
                                   "model_event": True if data.get("model_events") else {"$ne": True}}
            if item.get("metric"):
                flt["metric"] = item["metric"]
            if item.get("variants"):
                flt["variant"] = {"$in": item["variants"]}
            if key in state:
                flt["iter"] = {"$lt" if earlier else "$gt": state[key]}
            direction = -1 if earlier else 1
            rows = self.coll.aggregate([{"$match": flt}, {"$group": {"_id": "$iter"}}, {"$sort": {"_id": direction}},
                                        {"$limit": iters}])
            chosen = [r["_id"] for r in rows]
            by_iter: dict[Any, dict[tuple[str, str], dict[str, Any]]] = defaultdict(dict)
            if chosen:
                found = self.coll.find({**flt, "iter": {"$in": chosen}}, {"company": 0}).sort("timestamp", 1)
                for doc in found:
                    by_iter[doc.get("iter")][(doc.get("metric", ""), doc.get("variant", ""))] = api_id(doc)
                state[key] = chosen[-1]
            answer.append({"task": task, "iterations": [
                {"iter": it, "events": [by_iter[it][k] for k in sorted(by_iter[it])]} for it in chosen]})
        return {"metrics": answer, "scroll_id": _scroll_encode(state)}

    # -- deletes ------------------------------------------------------------------------------

    def urls_of_task(self, company: str, task: str) -> list[str]:
        """The file URLs the task's events point at (debug images, media), each once."""
        docs = self.coll.find({"company": company, "task": task, "url": {"$nin": [None, ""]}}, {"url": 1, "_id": 0})
        return list(dict.fromkeys(d["url"] for d in docs if d.get("url")))

    def delete_task_events(self, company: str, task: str) -> dict[str, int]:
        """events.delete_for_task: the caller must be able to change the task."""
        self.tasks.writable(company, task)
        return self.delete_for_task(company, task)

    def delete_for_task(self, company: str, task: str) -> dict[str, int]:
        """Every event of a task (also the hook of task reset and delete, which checked the task)."""
        deleted = self.coll.delete_many({"company": company, "task": task}).deleted_count
        deleted += self.scalars.delete_task(company, task)
        deleted += self.logs.delete_task(company, task)
        return {"deleted": deleted}
