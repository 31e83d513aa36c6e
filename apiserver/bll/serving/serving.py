"""Owns ClearML serving's registry: serving containers of a workspace, what each serves, its status
reports, their expiry, and the endpoint summaries and charts drawn from them.

A container is live until ``register_timeout`` seconds pass without a register or a status report;
reads ignore expired ones at once and a background job deletes them. Containers without an
endpoint URL are still loading; the others are grouped into endpoints by URL."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from apiserver.apierrors import errors
from apiserver.bll import intervals
from apiserver.bll.auth.identity import Identity
from apiserver.bll.query import parse_date
from apiserver.config.settings import ServingSettings
from apiserver.database.errors import DuplicateKeyError
from apiserver.database.model.base import new_id, utcnow
from apiserver.database.model.serving import ServingContainer, ServingStat
from apiserver.database.store import store_of

# What a container says about itself; each register or report replaces all of it.
DESCRIPTION = ("endpoint_name", "endpoint_url", "model_name", "model_source", "model_version",
               "preprocess_artifact", "input_type", "input_size", "tags", "system_tags", "reference")
COUNTERS = ("uptime_sec", "requests_num", "requests_min", "latency_ms", "machine_stats")

# metric_type -> (the stat field charted, the chart's title, how containers add up per interval).
# The spec's metric_type_enum lists these keys (checked at start-up).
METRICS: dict[str, tuple[str, str, str]] = {
    "requests": ("requests_num", "Number of Requests", "sum"),
    "requests_min": ("requests_min", "Requests per Minute", "sum"),
    "latency_ms": ("latency_ms", "Average Latency (ms)", "mean"),
    "cpu_count": ("cpu_num", "CPU Count", "sum"),
    "gpu_count": ("gpu_num", "GPU Count", "sum"),
    "cpu_util": ("cpu_usage", "Average CPU Load (%)", "mean"),
    "gpu_util": ("gpu_usage", "Average GPU Utilization (%)", "mean"),
    "ram_total": ("memory_total", "RAM Total (GB)", "sum"),
    "ram_used": ("memory_used", "RAM Used (GB)", "sum"),
    "ram_free": ("memory_free", "RAM Free (GB)", "sum"),
    "gpu_ram_total": ("gpu_memory_total", "GPU RAM Total (GB)", "sum"),
    "gpu_ram_used": ("gpu_memory_used", "GPU RAM Used (GB)", "sum"),
    "gpu_ram_free": ("gpu_memory_free", "GPU RAM Free (GB)", "sum"),
    "network_rx": ("network_rx", "Network Throughput RX (MBps)", "sum"),
    "network_tx": ("network_tx", "Network Throughput TX (MBps)", "sum"),
}
METRIC_TYPES = tuple(METRICS)
# An interval that starts later than this share of an interval before to_date is still open and
# left out of a chart (ClearML's tolerance).
OPEN_INTERVAL_SHARE = 0.9


def _mean_and_count(value: Any) -> tuple[float | None, int]:
    """A stat given as one number or one per device: its mean and how many devices."""
    values = value if isinstance(value, list) else [value]
    numbers = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if not numbers:
        return None, 0
    return sum(numbers) / len(numbers), len(numbers)


def chart_sample(report: Mapping[str, Any]) -> dict[str, Any]:
    """The numbers of a status report the endpoint charts show; memory from MB to GB."""
    sample = {key: report.get(key) for key in ("requests_num", "requests_min", "latency_ms")}
    stats = report.get("machine_stats") or {}
    for device in ("cpu", "gpu"):
        sample[f"{device}_usage"], sample[f"{device}_num"] = _mean_and_count(stats.get(f"{device}_usage"))
    for memory in ("memory", "gpu_memory"):
        used, _ = _mean_and_count(stats.get(f"{memory}_used"))
        free, _ = _mean_and_count(stats.get(f"{memory}_free"))
        sample[f"{memory}_used"] = None if used is None else used / 1024
        sample[f"{memory}_free"] = None if free is None else free / 1024
        sample[f"{memory}_total"] = None if used is None and free is None else ((used or 0) + (free or 0)) / 1024
    for network in ("network_rx", "network_tx"):
        sample[network], _ = _mean_and_count(stats.get(network))
    return sample


class ServingBLL:
    def __init__(self, settings: ServingSettings):
        self.default_timeout_sec = settings.default_container_timeout_sec
        self.auto_register = settings.container_auto_register
        self.auto_unregister = settings.container_auto_unregister
        self.min_chart_interval_sec = settings.min_chart_interval_sec
        self.max_chart_points = settings.max_chart_points

    @property
    def store(self):
        return store_of(ServingContainer)

    # ----- what containers send

    def _save(self, identity: Identity, data: Mapping[str, Any], ip: str | None, registered: dict[str, Any] | None,
              timeout: int, counters: bool) -> None:
        """Write the container's whole record: the description (and counters) as sent, absent ones
        cleared; ``registered`` keeps its registration time, None starts a new registration."""
        now = utcnow()
        doc: dict[str, Any] = {key: data.get(key) for key in DESCRIPTION + (COUNTERS if counters else ())}
        doc.update(company=identity.company, container_id=data["container_id"], user=identity.user,
                   ip=ip or (registered or {}).get("ip"), register_timeout=timeout, last_activity_time=now,
                   expires_at=now + timedelta(seconds=timeout),
                   register_time=(registered or {}).get("register_time") or now)
        flt = {"company": identity.company, "container_id": data["container_id"]}
        for attempt in range(2):
            existing = self.store.find_one(flt, {"_id": 1})
            doc["_id"] = existing["_id"] if existing else new_id()
            try:
                self.store.replace_one(flt, doc, upsert=True)
                return
            except DuplicateKeyError:  # another call inserted it meanwhile: replace that one
                if attempt:
                    raise

    def _live(self, company: str, container_id: str) -> dict[str, Any] | None:
        return self.store.find_one({"company": company, "container_id": container_id, "expires_at": {"$gt": utcnow()}},
                                  {"register_time": 1, "register_timeout": 1, "ip": 1})

    def register(self, identity: Identity, data: Mapping[str, Any], ip: str | None) -> None:
        self._save(identity, data, ip, None, int(data.get("timeout") or self.default_timeout_sec), counters=False)

    def unregister(self, identity: Identity, container_id: str) -> None:
        deleted = self.store.delete_one({"company": identity.company, "container_id": container_id}).deleted_count
        if not deleted and not self.auto_unregister:
            raise errors.bad_request.ContainerNotRegistered(container=container_id)

    def status_report(self, identity: Identity, data: Mapping[str, Any], ip: str | None) -> None:
        registered = self._live(identity.company, data["container_id"])
        if registered is None and not self.auto_register:
            raise errors.bad_request.ContainerNotRegistered(container=data["container_id"])
        timeout = int((registered or {}).get("register_timeout") or self.default_timeout_sec)
        self._save(identity, data, ip, registered, timeout, counters=True)
        store_of(ServingStat).insert_one({
            "_id": new_id(), "company": identity.company, "endpoint_url": data["endpoint_url"],
            "container_id": data["container_id"], "timestamp": utcnow(), **chart_sample(data)})

    def expire(self) -> int:
        """Delete the containers (of every workspace) whose timeout passed without a register or report."""
        return self.store.delete_many({"expires_at": {"$lt": utcnow()}}).deleted_count

    # ----- what the web app reads

    def _containers(self, company: str, endpoint_url: Any) -> list[dict[str, Any]]:
        """Live containers of the workspace with the given URL (None: loading ones; a dict: a filter)."""
        return list(self.store.find({"company": company, "endpoint_url": endpoint_url, "expires_at": {"$gt": utcnow()}},
                                   {"machine_stats": 1, "container_id": 1, "register_time": 1,
                                    "last_activity_time": 1, **{k: 1 for k in DESCRIPTION + COUNTERS}})
                    .sort("container_id", 1))

    @staticmethod
    def _model_info(doc: Mapping[str, Any]) -> dict[str, Any]:
        return {"endpoint": doc.get("endpoint_name"), "model": doc.get("model_name"), "url": doc.get("endpoint_url"),
                "model_source": doc.get("model_source"), "model_version": doc.get("model_version"),
                "preprocess_artifact": doc.get("preprocess_artifact"), "input_type": doc.get("input_type"),
                "input_size": doc.get("input_size")}

    def get_endpoints(self, company: str) -> list[dict[str, Any]]:
        by_url: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for doc in self._containers(company, {"$ne": None}):
            by_url[doc["endpoint_url"]].append(doc)
        out = []
        for url, docs in by_url.items():
            first = docs[0]

            def present(key: str, docs=docs) -> list[Any]:
                return [d[key] for d in docs if d.get(key) is not None]

            rates, latencies, uptimes = present("requests_min"), present("latency_ms"), present("uptime_sec")
            out.append({"endpoint": first.get("endpoint_name"), "model": first.get("model_name"), "url": url,
                        "instances": len(docs), "uptime_sec": max(uptimes) if uptimes else None,
                        "requests": sum(present("requests_num")),
                        "requests_min": round(sum(rates) / len(rates), 2) if rates else None,
                        "latency_ms": round(sum(latencies) / len(latencies)) if latencies else None,
                        "last_update": max(d["last_activity_time"] for d in docs)})
        return sorted(out, key=lambda e: (e["endpoint"] or "", e["url"]))

    def get_loading_instances(self, company: str) -> list[dict[str, Any]]:
        now = utcnow()
        return [{"id": doc["container_id"], **self._model_info(doc), "uptime_sec": doc.get("uptime_sec"),
                 "last_update": doc.get("last_activity_time"),
                 "age_sec": int((now - doc["register_time"]).total_seconds())}
                for doc in self._containers(company, None)]

    def get_endpoint_details(self, company: str, endpoint_url: str) -> dict[str, Any]:
        docs = self._containers(company, endpoint_url)
        if not docs:
            raise errors.bad_request.NoContainersForUrl(url=endpoint_url)
        uptimes = [d["uptime_sec"] for d in docs if d.get("uptime_sec") is not None]
        instances = []
        for doc in docs:
            stats = doc.get("machine_stats") or {}
            instances.append({
                "id": doc["container_id"], "uptime_sec": doc.get("uptime_sec"), "requests": doc.get("requests_num"),
                "requests_min": doc.get("requests_min"), "latency_ms": doc.get("latency_ms"),
                "last_update": doc.get("last_activity_time"),
                "cpu_count": _mean_and_count(stats.get("cpu_usage"))[1],
                "gpu_count": _mean_and_count(stats.get("gpu_usage"))[1],
                "reference": doc.get("reference") or []})
        return {**self._model_info(docs[0]), "uptime_sec": max(uptimes) if uptimes else None,
                "last_update": max(d["last_activity_time"] for d in docs), "instances": instances}

    def _chart_range(self, data: Mapping[str, Any]) -> tuple[datetime, int, int]:
        """The chart's start, its interval and how many (closed) intervals it has."""
        if data["from_date"] >= data["to_date"]:
            raise errors.bad_request.FieldsValueError("from_date must be less than to_date",
                                                      error_data={"field": "from_date", "rule": "lessThanToDate"})
        start, end = parse_date(data["from_date"], "from_date"), parse_date(data["to_date"], "to_date")
        span = (end - start).total_seconds()
        interval = max(int(data["interval"]), self.min_chart_interval_sec,
                       math.ceil(span / self.max_chart_points))
        closed = span - OPEN_INTERVAL_SHARE * interval
        return start, interval, (math.floor(closed / interval) + 1 if closed >= 0 else 0)

    def metrics_history(self, company: str, data: Mapping[str, Any]) -> dict[str, Any]:
        metric = data.get("metric_type") or "requests"
        field, title, combine = METRICS[metric]
        start, interval, count = self._chart_range(data)
        answer: dict[str, Any] = {"computed_interval": interval, "total": {"title": title, "dates": [], "values": []},
                                  "instances": {}}
        if not count:
            return answer
        end = start + timedelta(seconds=count * interval)
        # container -> interval -> the reported values; only the charted field is read
        values: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
        for stat in store_of(ServingStat).find(
                {"company": company, "endpoint_url": data["endpoint_url"], "timestamp": {"$gte": start, "$lt": end}},
                {"_id": 0, "container_id": 1, "timestamp": 1, field: 1}):
            of_container = values[stat["container_id"]]  # listed even if it never reported this field
            if stat.get(field) is not None:
                of_container[intervals.bucket(stat["timestamp"], start, interval)].append(stat[field])
        keys = list(range(count))
        dates = intervals.bucket_dates(start, interval, keys)
        means = {cid: [sum(b[k]) / len(b[k]) if b.get(k) else None for k in keys] for cid, b in values.items()}
        total = []
        for k in keys:
            present = [series[k] for series in means.values() if series[k] is not None]
            combined = sum(present) / len(present) if present and combine == "mean" else sum(present)
            total.append(_rounded(combined))
        answer["total"].update(dates=dates, values=total)
        if data.get("instance_charts", True):
            answer["instances"] = {cid: {"title": cid, "dates": dates, "values": [_rounded(v) for v in series]}
                                   for cid, series in sorted(means.items())}
        return answer


def _rounded(value: float | None) -> float:
    """Chart values as ClearML answers them: two decimals, a missing value as 0."""
    return round(value, 2) if value else 0
