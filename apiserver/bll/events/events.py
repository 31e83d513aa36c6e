"""Owns task events: storing batches, reading logs, metrics, plots and debug images, keeping last_metrics current.

Scalars live in series blocks and overviews, console lines in log blocks; plots, debug images and
vectors, which are few per task, stay one document per event in ``events`` (their stores:
``database/events/``; what a chart shows: ``scalars.py``). Every read first checks that the caller
may read the task (the task rule's own ``readable``), so another company's events look like a
missing task.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from apiserver.apierrors import errors
from apiserver.bll import scroll
from apiserver.bll.auth.identity import Identity
from apiserver.bll.events import iterations, logtext, samples
from apiserver.bll.events.scalars import histogram, iso_time
from apiserver.bll.events.scrolls import decode_scroll
from apiserver.bll.events.selections import metric_selection, requested_tasks
from apiserver.bll.query import api_id
from apiserver.bll.tasks.tasks import TaskMetrics
from apiserver.config.settings import EventsSettings
from apiserver.database.events.selection import Selection, selected
from apiserver.database.events.stores import EventStores
from apiserver.database.model.event import DEBUG_IMAGE, EVENT_TYPES, LOG, PLOT, SCALAR, VECTOR

if TYPE_CHECKING:
    from apiserver.bll.models.models import ModelBLL
    from apiserver.bll.tasks.tasks import TaskBLL

__all__ = ["DEBUG_IMAGE", "EVENT_TYPES", "LOG", "PLOT", "SCALAR", "VECTOR", "EventBLL"]
OTHER_TYPES = [VECTOR, DEBUG_IMAGE, PLOT]  # few per task: one document per event
# Fields an event may carry; anything else a client sends is dropped, not stored.
EVENT_FIELDS = ("task", "type", "timestamp", "iter", "metric", "variant", "value", "values", "msg", "level",
                "worker", "url", "key", "plot_str", "model_event", "skip_validation", "x_axis_label")


def _event_type(event: dict[str, Any]) -> str:
    """The event's type, spaces read as underscores (as ClearML's clients may send them)."""
    return (event.get("type") or "").replace(" ", "_")


def _event_problem(event: dict[str, Any]) -> str | None:
    """Why an event cannot be stored, before its task is looked at (the key it is counted under in
    errors_info); None when it may be."""
    if not event.get("type"):
        return "event without a type"
    if _event_type(event) not in EVENT_TYPES:
        return f"unknown event type {event['type']}"
    if event.get("model_event") and _event_type(event) == LOG:
        return "log events of models are not supported"
    if not event.get("task"):
        return "event without a task"
    return None


class EventBLL:
    def __init__(self, settings: EventsSettings, tasks: TaskBLL, models: ModelBLL):
        self.stores = EventStores.from_settings(settings)
        self.scalars, self.logs, self.store = self.stores.scalars, self.stores.logs, self.stores.events
        self.default_samples = settings.histogram_default_samples
        # Who may read a task's (or a model's) events, who may change a task's, and what events
        # record on a task: the task and model rules own that.
        self.tasks = tasks
        self.models = models

    def ensure_indexes(self) -> None:
        self.stores.ensure_indexes()

    def _readable(self, company: str, task: str, model_events: bool = False) -> dict[str, Any]:
        reader = self.models.readable if model_events else self.tasks.readable
        return reader(company, task, {"_id": 1, "name": 1})

    # -- writes -------------------------------------------------------------------------------

    def add_events(self, identity: Identity, events: list[dict[str, Any]]) -> dict[str, Any]:
        """Store events of the caller's tasks (and models: events with model_event); bad ones are counted in
        errors, the rest are stored.

        The tasks' metrics are recorded first: that write is also the check that the caller may change
        each task (``TaskBLL.record_metrics``), so an add call of one task costs the tasks one update and
        the events one insert (``EventStores.add``)."""
        now_ms = int(time.time() * 1000)
        by_task: dict[tuple[str, bool], list[dict[str, Any]]] = defaultdict(list)  # (task or model, model_event)
        errors_info: dict[str, int] = defaultdict(int)
        for event in events:
            problem = _event_problem(event)
            if problem:
                errors_info[problem] += 1
                continue
            doc = {k: event[k] for k in EVENT_FIELDS if k in event and event[k] is not None}
            doc["type"] = _event_type(event)
            doc["timestamp"] = int(event.get("timestamp") or now_ms)
            if doc["type"] == SCALAR and not isinstance(doc.get("value"), (int, float)):
                errors_info["scalar event without a numeric value"] += 1
                continue
            by_task[(doc["task"], bool(doc.get("model_event")))].append(doc)
        company = identity.company
        known = self._record_metrics(company, by_task)
        stored = [d for owner, docs in by_task.items() if owner in known for d in docs]
        for (task, model_event), docs in by_task.items():
            if (task, model_event) not in known:
                errors_info[f"invalid {'model' if model_event else 'task'} id {task}"] += len(docs)
        if stored:
            by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for doc in stored:
                by_type[doc["type"]].append(doc)
            self.stores.add(company, by_type.pop(SCALAR, []), by_type.pop(LOG, []),
                            [d for docs in by_type.values() for d in docs])
        if not stored:  # as ClearML: a call that adds nothing fails, saying why per kind of error
            raise errors.bad_request.EventsNotAdded(error_data={"errors_info": dict(errors_info)}, **errors_info)
        return {"added": len(stored), "errors": sum(errors_info.values()), "errors_info": dict(errors_info)}

    def _record_metrics(self, company: str, by_owner: dict[tuple[str, bool], list[dict[str, Any]]]
                        ) -> set[tuple[str, bool]]:
        """Record what the events say on their tasks, and on their models (events with model_event,
        whose ``task`` is a model's id); returns the (id, model_event) pairs the caller may change."""
        known: set[tuple[str, bool]] = set()
        for model_event, recorder in ((False, self.tasks.record_metrics), (True, self.models.record_metrics)):
            reports = {task: TaskMetrics.of_events(docs) for (task, of_model), docs in by_owner.items()
                       if of_model == model_event}
            if reports:
                known |= {(task, model_event) for task in recorder(company, reports)}
        return known

    # -- logs ---------------------------------------------------------------------------------

    def get_task_log(self, company: str, data: dict[str, Any]) -> dict[str, Any]:
        """A page of the task's console lines; with ``metrics``, of the lines that name those metrics."""
        task = data["task"]
        self._readable(company, task)
        earlier = data.get("navigate_earlier", True)
        from_ts = int(data["from_timestamp"]) if data.get("from_timestamp") else None
        size = int(data.get("batch_size") or 500)
        selection = metric_selection(data.get("metrics"))
        if selection is None:
            lines, total = self.logs.page(task, size, earlier, from_ts)
        else:
            lines, total = self.logs.selected_page(
                task, lambda line: selected(selection, line.get("metric", ""), line.get("variant", "")), size,
                earlier, from_ts)
        order = data.get("order")
        if order and (order == "asc") == earlier:  # navigation order, unless asked otherwise (as ClearML)
            lines.reverse()
        return {"events": lines, "returned": len(lines), "total": total}

    def task_log_text(self, company: str, data: dict[str, Any]) -> Iterator[str]:
        """The whole log as text lines (``line_format`` fields) or JSON lines, oldest first."""
        task = data["task"]
        self._readable(company, task)
        line_format = data.get("line_format") or logtext.DEFAULT_FORMAT
        logtext.check_line_format(line_format)
        return logtext.log_text(self.logs.all_lines(task), data.get("line_type") == "json", line_format)

    def clear_task_log(self, company: str, data: dict[str, Any]) -> dict[str, int]:
        """Delete the task's console lines: all, or those older than ``threshold_sec``, of the
        ``include_metrics`` only, or but those of ``exclude_metrics``."""
        task = data["task"]
        self.tasks.writable(company, task)
        threshold_sec, include, exclude = data.get("threshold_sec"), data.get("include_metrics"), \
            data.get("exclude_metrics")
        if not threshold_sec and include is None and exclude is None:
            return {"deleted": self.logs.delete_task(company, task)}
        cutoff = int(time.time() * 1000) - threshold_sec * 1000 if threshold_sec else None
        return {"deleted": self.logs.clear(company, task, cutoff, include, exclude)}

    # -- any event type -----------------------------------------------------------------------

    def get_task_events(self, company: str, data: dict[str, Any]) -> dict[str, Any]:
        """A task's events page by page with scroll_id: one event type, or all (the other types, then
        scalars, then log lines); every event once."""
        task = data["task"]
        self._readable(company, task, data.get("model_events", False))
        size = min(int(data.get("batch_size") or 500), 10_000)
        descending = data.get("order") == "desc"
        event_type = data.get("event_type")
        metrics = metric_selection([m if isinstance(m, dict) else {"metric": m} for m in data.get("metrics") or []])
        phases = [event_type] if event_type else ["other", SCALAR, LOG]
        state = decode_scroll(data["scroll_id"], "events") if data.get("scroll_id") else {"p": 0, "pos": None}
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
        return {"events": events, "returned": len(events), "total": total, "scroll_id": scroll.encode(state)}

    def _events_of(self, phase: str, task: str, pos: Any, limit: int, descending: bool,
                   metrics: Selection | None) -> tuple[list[dict[str, Any]], Any]:
        if phase == SCALAR:
            return self.scalar_events(task, metrics, pos, limit)
        if phase == LOG:
            return self.logs.scroll(task, pos, limit, descending)
        docs, nxt = self.store.page(task, OTHER_TYPES if phase == "other" else [phase], metrics, pos, limit,
                                    descending)
        return [api_id(d) for d in docs], nxt

    def _count_of(self, phase: str, task: str, metrics: Selection | None) -> int:
        if phase == SCALAR:
            return self.scalars.count(task, metrics)
        if phase == LOG:
            return self.logs.total(task)
        return self.store.count_of(task, OTHER_TYPES if phase == "other" else [phase])

    # -- scalars ------------------------------------------------------------------------------

    def scalar_events(self, task: str, metrics: Selection | None, pos: Any, limit: int
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
        return histogram(self.scalars, task, self._samples(data), data.get("key") or "iter",
                         metric_selection(data.get("metrics")))

    def _samples(self, data: dict[str, Any]) -> int:
        return int(data["samples"]) if data.get("samples") is not None else self.default_samples

    def multi_task_histogram(self, company: str, data: dict[str, Any]) -> dict[str, Any]:
        """{metric: {variant: {task id: {name: task name, x, y}}}} for several tasks."""
        out: dict[str, dict[str, dict[str, Any]]] = defaultdict(lambda: defaultdict(dict))
        key = data.get("key") or "iter"
        for task in dict.fromkeys(data["tasks"]):
            name = self._readable(company, task, data.get("model_events", False)).get("name")
            hist = histogram(self.scalars, task, self._samples(data), key, metric_selection(data.get("metrics")))
            for metric, variants in hist.items():
                for variant, series in variants.items():
                    out[metric][variant][task] = {**series, "name": name}
        return {m: dict(v) for m, v in out.items()}

    def scalar_iter_raw(self, company: str, data: dict[str, Any]) -> dict[str, Any]:
        """Every point of one metric's variants, page by page (scroll_id), each point once."""
        task = data["task"]
        self._readable(company, task, data.get("model_events", False))
        metric = data["metric"]
        metrics = metric_selection([{"metric": metric.get("metric") or "", "variants": metric.get("variants")}])
        state = decode_scroll(data["scroll_id"], "points") if data.get("scroll_id") else {"pos": None}
        # a page without batch_size is as long as the first one, which the scroll keeps (as ClearML)
        size = int(data.get("batch_size") or state.get("size") or 10_000)
        series = self.scalars.raw_series(task, metrics)
        points, nxt = ([], None) if state.get("done") else self.scalars.points(series, state["pos"], size)
        key = data.get("key") or "iter"
        variants: dict[str, dict[str, list]] = {}
        for doc, (it, ts, value) in points:  # each variant's x values under the key's name, as ClearML
            entry = variants.setdefault(doc["variant"], {key: [], "y": []})
            entry[key].append(it if key == "iter" else ts if key == "timestamp" else iso_time(ts))
            entry["y"].append(value)
        total = self.scalars.count(task, metrics) if data.get("count_total") else None
        position = {"pos": nxt, "size": size} if nxt is not None else {"done": True}
        return {"variants": variants, "returned": len(points), "total": total, "scroll_id": scroll.encode(position)}

    def scalar_metric_data(self, company: str, data: dict[str, Any]) -> dict[str, Any]:
        """The scalar events of one metric, page by page unless ``no_scroll``."""
        task = data["task"]
        self._readable(company, task, data.get("model_events", False))
        metrics = metric_selection([{"metric": data.get("metric") or ""}])
        state = decode_scroll(data["scroll_id"], "points") if data.get("scroll_id") else {"pos": None}
        limit = 10**9 if data.get("no_scroll") else 10_000
        events, nxt = ([], None) if state.get("done") else self.scalar_events(task, metrics, state["pos"], limit)
        return {"events": events, "returned": len(events), "total": self.scalars.count(task, metrics),
                "scroll_id": scroll.encode({"pos": nxt} if nxt is not None else {"done": True})}

    def latest_scalar_values(self, company: str, task: str) -> dict[str, Any]:
        """The last value of each of the task's series, and (as ClearML) its last iteration."""
        doc = self.tasks.readable_current(company, task, {"last_metrics": 1, "last_iteration": 1})
        metrics: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for variants in (doc.get("last_metrics") or {}).values():
            for entry in variants.values():
                metrics[entry.get("metric", "")].append({"name": entry.get("variant", ""),
                                                         "last_value": entry.get("value")})
        return {"metrics": [{"name": name, "variants": sorted(variants, key=lambda v: v["name"])}
                            for name, variants in sorted(metrics.items())],
                "last_iter": doc.get("last_iteration")}

    def single_value_metrics(self, company: str, data: dict[str, Any]) -> list[dict[str, Any]]:
        """Per task (with its name) its single values of the selected metrics; as ClearML, a task with none
        is left out."""
        selection = metric_selection(data.get("metrics"))
        out = []
        for task in dict.fromkeys(data["tasks"]):
            name = self._readable(company, task, data.get("model_events", False)).get("name")
            values = [v for v in self.scalars.single_values(task)
                      if selection is None or selected(selection, v["metric"], v["variant"])]
            if values:
                out.append({"task": task, "task_name": name, "values": values})
        return out

    # -- metric names -------------------------------------------------------------------------

    def _metric_variants(self, task: str, event_type: str | None) -> dict[str, set[str]]:
        out: dict[str, set[str]] = defaultdict(set)
        if event_type in (None, SCALAR):
            for metric, variants in self.scalars.metric_variants(task).items():
                out[metric].update(variants)
        if event_type in (None, *OTHER_TYPES):
            for metric, variant in self.store.series(task, [event_type] if event_type else OTHER_TYPES):
                out[metric].add(variant)
        if event_type == LOG:  # only when asked: it reads the whole log
            for metric, variants in self.logs.metric_variants(task).items():
                out[metric].update(variants)
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
        latest = self.store.latest_per_iteration(task, event_type, metric_selection(metrics))
        out = []
        for (_metric, _variant), by_iter in sorted(latest.items()):
            chosen = sorted(by_iter, key=lambda i: -1 if i is None else i, reverse=True)[:iters]
            out.extend(api_id(by_iter[i]) for i in chosen)
        return out

    def task_plots(self, company: str, data: dict[str, Any]) -> dict[str, Any]:
        task = data["task"]
        self._readable(company, task, data.get("model_events", False))
        if data.get("scroll_id") and decode_scroll(data["scroll_id"], "pages").get("done"):
            plots: list[dict[str, Any]] = []
        else:
            plots = self._latest_iterations(task, PLOT, data.get("metrics"), int(data.get("iters") or 1))
        return {"plots": plots, "returned": len(plots), "total": len(plots),
                "scroll_id": scroll.encode({"done": True})}

    def multi_task_plots(self, company: str, data: dict[str, Any]) -> dict[str, Any]:
        """{metric: {variant: {task id: {iteration: {name: task name, plots: [events]}}}}} of several tasks."""
        done = bool(data.get("scroll_id")) and decode_scroll(data["scroll_id"], "pages").get("done")
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
        return {"plots": out, "returned": returned, "total": returned, "scroll_id": scroll.encode({"done": True})}

    # -- one sample at a time (plots and debug images viewers) --------------------------------

    def sample(self, company: str, data: dict[str, Any], event_type: str) -> dict[str, Any]:
        """The plot (all variants) or debug image (one variant) of a metric at an iteration (the latest
        when none is given), with the metric's iteration range and a scroll_id to navigate from there."""
        self._readable(company, data["task"], data.get("model_events", False))
        return samples.first_sample(self.store, data, event_type)

    def next_sample(self, company: str, data: dict[str, Any], event_type: str) -> dict[str, Any]:
        """The next (or previous) iteration's sample, or the neighbouring metric's or variant's."""
        self._readable(company, data["task"], data.get("model_events", False))
        return samples.next_sample(self.store, data, event_type)

    # -- what a report embeds ------------------------------------------------------------------

    def report_data(self, company: str, data: dict[str, Any]) -> dict[str, Any]:
        """reports.get_task_data: tasks (models, with model_events) listed as get_all_ex lists them, at most
        ``size`` (100), and of them each events part asked for as its events endpoint answers."""
        model_events = bool(data.get("model_events"))
        listing = {k: v for k, v in data.items() if k not in (
            "debug_images", "plots", "scalar_metrics_iter_histogram", "single_value_metrics", "model_events", "size")}
        if "page" not in listing:
            listing.update(page=0, page_size=data.get("size") or 100)
        listed = (self.models if model_events else self.tasks).get_all(company, listing, ex=True)
        tasks = [t["id"] for t in listed]  # readable: the listing's rule
        out: dict[str, Any] = {"tasks": listed}
        if data.get("debug_images") is not None:
            part = data["debug_images"]
            wanted = requested_tasks([{"task": t, **m} for t in tasks for m in part.get("metrics") or [{}]])
            out["debug_images"] = iterations.metric_events(self.store, wanted, DEBUG_IMAGE, int(part.get("iters") or 1),
                                                           True, False, None, model_events)["metrics"]
        if data.get("plots") is not None:
            out["plots"] = self.multi_task_plots(company, {**data["plots"], "tasks": tasks,
                                                           "model_events": model_events})["plots"]
        if data.get("scalar_metrics_iter_histogram") is not None:
            out["scalar_metrics_iter_histogram"] = self.multi_task_histogram(
                company, {**data["scalar_metrics_iter_histogram"], "tasks": tasks, "model_events": model_events})
        if data.get("single_value_metrics") is not None:
            out["single_value_metrics"] = self.single_value_metrics(company, {"tasks": tasks,
                                                                              "model_events": model_events})
        return out

    # -- plots and debug images by iteration --------------------------------------------------

    def metric_events(self, company: str, data: dict[str, Any], event_type: str) -> dict[str, Any]:
        """events.plots and events.debug_images: per task, the next ``iters`` iterations of its plots or
        debug images (``iterations.py``), every task checked readable first."""
        tasks = requested_tasks(data["metrics"])
        model_events = bool(data.get("model_events"))
        for task in tasks:
            self._readable(company, task, model_events)
        return iterations.metric_events(self.store, tasks, event_type, int(data.get("iters") or 1),
                                        data.get("navigate_earlier", True), bool(data.get("refresh")),
                                        data.get("scroll_id"), model_events)

    # -- deletes ------------------------------------------------------------------------------

    def urls_of_task(self, company: str, task: str) -> list[str]:
        """The file URLs the task's events point at (debug images, media), each once."""
        return self.store.urls(company, task)

    def delete_task_events(self, company: str, task: str) -> dict[str, int]:
        """events.delete_for_task: the caller must be able to change the task."""
        self.tasks.writable(company, task)
        return self.delete_for_task(company, task)

    def delete_for_model(self, company: str, model: str) -> list[str]:
        """Every event reported for a deleted model (its hook, ``ModelBLL.on_delete``); the file URLs they
        pointed at."""
        urls = self.store.urls(company, model)
        self.stores.delete_task(company, model)
        return urls

    def delete_for_task(self, company: str, task: str) -> dict[str, int]:
        """Every event of a task (also the hook of task reset and delete, which checked the task)."""
        return {"deleted": self.stores.delete_task(company, task)}
