"""Owns worker records and their reports; a worker is live until its timeout passes without a report."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from apiserver.apierrors import errors
from apiserver.bll import intervals
from apiserver.bll import query as q
from apiserver.bll.auth.identity import Identity
from apiserver.bll.query import parse_date
from apiserver.database.model.auth import User
from apiserver.database.model.base import new_id, utcnow
from apiserver.database.model.queue import Queue
from apiserver.database.model.worker import Worker, WorkerStat
from apiserver.database.store import store_of

if TYPE_CHECKING:
    from apiserver.bll.tasks.tasks import TaskBLL

# Most stat reports workers.get_metric_keys reads.
MAX_STAT_SCAN = 5_000
# The shortest interval a worker chart is cut into (ClearML's services.workers.min_chart_interval_sec).
MIN_CHART_INTERVAL_SEC = 40


def worker_key(company: str, user: str | None, worker: str) -> str:
    """A worker's key as ClearML shows it: its company, its user and its name."""
    return f"worker_{company}_{user}_{worker}"


def report_time(data: dict[str, Any], now: datetime) -> datetime:
    """When a status report's stats were taken: its ``timestamp`` (epoch milliseconds) as ClearML
    charts them, else now; one more than a day from now is taken as now."""
    stamp = data.get("timestamp")
    if not isinstance(stamp, (int, float)) or isinstance(stamp, bool):
        return now
    try:
        taken = datetime.fromtimestamp(stamp / 1000, UTC).replace(tzinfo=None)
    except (OverflowError, OSError, ValueError):
        return now
    return taken if abs((taken - now).total_seconds()) < 86_400 else now

class WorkerBLL:
    def __init__(self, tasks: TaskBLL, default_timeout_sec: int = 600):
        self.tasks = tasks
        self.default_timeout_sec = default_timeout_sec

    @property
    def store(self):
        return store_of(Worker)

    def _live(self, company: str, worker: str) -> dict[str, Any]:
        doc = self.store.find_one({"company": company, "worker": worker, "expired": {"$ne": True}})
        if doc is None:
            raise errors.bad_request.InvalidWorkerId("worker is not registered", worker=worker)
        return doc

    def register(self, identity: Identity, data: dict[str, Any], ip: str | None) -> None:
        timeout = int(data.get("timeout") or self.default_timeout_sec)
        now = utcnow()
        sets = {"user": identity.user, "ip": ip, "register_time": now, "last_activity_time": now,
                "register_timeout": timeout, "expires_at": now + timedelta(seconds=timeout), "expired": False,
                "queues": data.get("queues") or [], "tags": data.get("tags") or [],
                "system_tags": data.get("system_tags") or []}
        self.store.update_one({"company": identity.company, "worker": data["worker"]},
                             {"$set": sets, "$setOnInsert": {"_id": new_id(), "runtime_properties": []}},
                             upsert=True)

    def listening(self, company: str, queue_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        """The live workers listening on each of the queues: name, address, key and the task they run."""
        found: dict[str, list[dict[str, Any]]] = {}
        docs = list(self.store.find({"company": company, "queues": {"$in": queue_ids}, "expired": {"$ne": True}},
                                    {"worker": 1, "ip": 1, "task": 1, "queues": 1, "user": 1}).sort("worker", 1))
        tasks = self.tasks.readable_many(company, [d["task"] for d in docs if d.get("task")], {"name": 1})
        for doc in docs:
            task = {"id": doc["task"], "name": tasks.get(doc["task"], {}).get("name")} if doc.get("task") else None
            shown = {"name": doc["worker"], "ip": doc.get("ip"), "task": task,
                     "key": worker_key(company, doc.get("user"), doc["worker"])}
            for qid in doc.get("queues") or []:
                if qid in queue_ids:
                    found.setdefault(qid, []).append(shown)
        return found

    def queue_watched(self, company: str, queue_id: str) -> bool:
        """Whether a live (not expired) worker listens on the queue."""
        return self.store.count_documents({"company": company, "queues": queue_id, "expired": {"$ne": True},
                                          "expires_at": {"$gte": utcnow()}}, limit=1) > 0

    def unregister(self, identity: Identity, worker: str) -> None:
        if not self.store.delete_one({"company": identity.company, "worker": worker}).deleted_count:
            raise errors.bad_request.WorkerNotRegistered(worker=worker)

    def status_report(self, identity: Identity, data: dict[str, Any], ip: str | None) -> None:
        """Record a report; an unknown (or expired) worker is registered by it."""
        now = utcnow()
        worker = data["worker"]
        existing = self.store.find_one({"company": identity.company, "worker": worker},
                                      {"register_timeout": 1, "expired": 1})
        if existing is None or existing.get("expired"):
            self.register(identity, {"worker": worker, "queues": data.get("queues"), "tags": data.get("tags")}, ip)
            existing = {"register_timeout": self.default_timeout_sec}
        timeout = int(existing.get("register_timeout") or self.default_timeout_sec)
        sets: dict[str, Any] = {"last_activity_time": now, "expires_at": now + timedelta(seconds=timeout),
                                "task": data.get("task"), "queue": data.get("queue"), "ip": ip}
        if data.get("queues") is not None:
            sets["queues"] = data["queues"]
        if data.get("machine_stats") is not None:
            sets["machine_stats"] = data["machine_stats"]
        for key in ("tags", "system_tags"):
            if data.get(key) is not None:
                sets[key] = data[key]
        if data.get("task"):
            sets["project"] = self.tasks.record_worker_report(identity.company, data["task"], worker, now)
        self.store.update_one({"company": identity.company, "worker": worker}, {"$set": sets})
        store_of(WorkerStat).insert_one({
            "_id": new_id(), "company": identity.company, "worker": worker, "timestamp": report_time(data, now),
            "task": data.get("task"), "stats": data.get("machine_stats") or {}})

    @staticmethod
    def _listing_filter(company: str, data: dict[str, Any]) -> dict[str, Any]:
        """Which workers get_all and get_count see: live ones (their timeout not passed, unless
        ``include_expired``), seen in the last ``last_seen`` seconds, with these tags."""
        flt: dict[str, Any] = {"company": company}
        if not data.get("include_expired"):
            flt.update({"expired": {"$ne": True}, "expires_at": {"$gte": utcnow()}})
        if data.get("last_seen"):
            flt["last_activity_time"] = {"$gte": utcnow() - timedelta(seconds=int(data["last_seen"]))}
        return q.combine(flt, *(q.list_filter(key, data[key]) for key in ("tags", "system_tags") if data.get(key)))

    def get_all(self, company: str, data: dict[str, Any]) -> list[dict[str, Any]]:
        docs = list(self.store.find(self._listing_filter(company, data)).sort([("worker", 1)]))
        queue_ids = {qid for d in docs for qid in (d.get("queues") or []) + [d.get("queue")] if qid}
        queues = {q["_id"]: q for q in store_of(Queue).find(
            {"_id": {"$in": list(queue_ids)}, "company": company}, {"name": 1, "display_name": 1, "entries": 1})}
        task_ids = [d["task"] for d in docs if d.get("task")]
        tasks = self.tasks.readable_many(company, task_ids, {"name": 1, "started": 1, "last_iteration": 1})
        users = {u["_id"]: u for u in store_of(User).find(
            {"_id": {"$in": [d.get("user") for d in docs]}}, {"name": 1})}
        now = utcnow()
        out = []
        for d in docs:
            task = tasks.get(d.get("task"))
            user = users.get(d.get("user"))

            def queue_info(qid, queues=queues):
                found = queues.get(qid)
                return {"id": qid, "name": found["name"] if found else None,
                        "display_name": found.get("display_name") if found else None,
                        "num_tasks": len(found.get("entries") or []) if found else 0}

            out.append({
                "id": d["worker"], "key": worker_key(company, d.get("user"), d["worker"]), "company": {"id": company},
                "user": {"id": d.get("user"), "name": user["name"] if user else None}, "ip": d.get("ip"),
                "register_time": d.get("register_time"), "last_activity_time": d.get("last_activity_time"),
                "last_report_time": d.get("last_activity_time"), "expired": bool(d.get("expired")),
                "task": {"id": task["_id"], "name": task.get("name"), "last_iteration": task.get("last_iteration"),
                         "running_time": int((now - task["started"]).total_seconds() * 1000)
                         if task.get("started") else None} if task else None,
                "project": {"id": d["project"]} if d.get("project") else None,
                "queue": queue_info(d["queue"]) if d.get("queue") else None,
                "queues": [queue_info(qid) for qid in d.get("queues") or []],
                "tags": d.get("tags") or [], "system_tags": d.get("system_tags") or [],
            })
        return out

    def get_runtime_properties(self, company: str, worker: str) -> list[dict[str, Any]]:
        doc = self._live(company, worker)
        now = utcnow()
        return [p for p in doc.get("runtime_properties") or []
                if not p.get("expires_at") or p["expires_at"] > now]

    def set_runtime_properties(self, company: str, worker: str, props: list[dict[str, Any]]) -> dict[str, Any]:
        doc = self._live(company, worker)
        current = {p["key"]: p for p in doc.get("runtime_properties") or []}
        now = utcnow()
        for prop in props:
            entry = {"key": prop["key"], "value": prop.get("value")}
            if prop.get("expiry"):
                entry["expires_at"] = now + timedelta(seconds=int(prop["expiry"]))
            current[prop["key"]] = entry
        self.store.update_one({"_id": doc["_id"]}, {"$set": {"runtime_properties": list(current.values())}})
        return {"added": [p["key"] for p in props], "removed": [], "errors": []}

    def expire(self) -> int:
        """Mark workers whose timeout passed without a report; they keep the task they held."""
        return self.store.update_many({"expired": {"$ne": True}, "expires_at": {"$lt": utcnow()}},
                                     {"$set": {"expired": True}}).modified_count

    def _range(self, data: dict[str, Any]) -> tuple[datetime, datetime, int, list[int]]:
        """The chart's start, end, interval (at least ``MIN_CHART_INTERVAL_SEC``, as ClearML) and
        every interval's index: charts are dense, an interval without reports shows 0."""
        start, end = parse_date(data["from_date"], "from_date"), parse_date(data["to_date"], "to_date")
        interval = max(int(data.get("interval") or 60), MIN_CHART_INTERVAL_SEC)
        if end <= start:
            raise errors.bad_request.ImpossibleTimeRange(from_date=data["from_date"], to_date=data["to_date"])
        count = math.ceil((end - start).total_seconds() / interval)
        if count > 10_000:
            raise errors.bad_request.ValidationError("more than 10,000 intervals; use a longer interval",
                                                     error_data={"field": "interval", "rule": "minimum"})
        return start, end, interval, list(range(count))

    def activity_report(self, company: str, data: dict[str, Any]) -> dict[str, Any]:
        start, end, interval, keys = self._range(data)
        total, active = defaultdict(set), defaultdict(set)
        for s in store_of(WorkerStat).find({"company": company, "timestamp": {"$gte": start, "$lt": end}},
                                                   {"worker": 1, "timestamp": 1, "task": 1}):
            bucket = intervals.bucket(s["timestamp"], start, interval)
            total[bucket].add(s["worker"])
            if s.get("task"):
                active[bucket].add(s["worker"])

        def series(buckets):
            return {"dates": intervals.bucket_dates(start, interval, keys), "counts": [len(buckets[k]) for k in keys]}

        return {"total": series(total), "active": series(active)}

    def get_stats(self, company: str, data: dict[str, Any]) -> list[dict[str, Any]]:
        """Each worker's metrics per interval, by aggregation, as ClearML charts them: a list value
        (one per GPU or core) counts as that many samples; ``split_by_resource`` adds each GPU's own
        series to a ``gpu_*`` metric of several (``resource_series``); the older ``split_by_variant``
        answers one metric entry per index instead."""
        start, end, interval, keys = self._range(data)
        flt: dict[str, Any] = {"company": company, "timestamp": {"$gte": start, "$lt": end}}
        if data.get("worker_ids"):
            flt["worker"] = {"$in": data["worker_ids"]}
        items = data.get("items") or []
        split = bool(data.get("split_by_variant"))
        by_resource = bool(data.get("split_by_resource"))
        # worker -> (metric, variant) -> interval -> values, and per resource (GPU index) for resource_series
        series: dict[str, dict[tuple[str, str | None], dict[int, list[float]]]] = defaultdict(
            lambda: defaultdict(lambda: defaultdict(list)))
        resources: dict[str, dict[str, dict[str, dict[int, list[float]]]]] = defaultdict(
            lambda: defaultdict(lambda: defaultdict(lambda: defaultdict(list))))
        names = list(dict.fromkeys(item["key"] for item in items))
        for s in store_of(WorkerStat).find(flt, {"worker": 1, "timestamp": 1, "stats": 1}):
            bucket = intervals.bucket(s["timestamp"], start, interval)
            for key in names:
                value = (s.get("stats") or {}).get(key)
                values = value if isinstance(value, list) else [value]
                numbers = [(str(i), float(v)) for i, v in enumerate(values) if isinstance(v, (int, float))]
                if not numbers:  # a key this report lacks: no series (else an all-zero chart of it)
                    continue
                if split and isinstance(value, list):
                    for variant, number in numbers:
                        series[s["worker"]][(key, variant)][bucket].append(number)
                    continue
                series[s["worker"]][(key, None)][bucket].extend(n for _, n in numbers)
                if by_resource and key.startswith("gpu_") and isinstance(value, list):
                    for variant, number in numbers:
                        resources[s["worker"]][key][variant][bucket].append(number)
        agg = {"avg": lambda v: sum(v) / len(v), "min": min, "max": max}

        def values(buckets: dict[int, list[float]], how: str) -> list[float]:
            return [agg[how](buckets[k]) if buckets.get(k) else 0.0 for k in keys]

        dates = intervals.bucket_dates(start, interval, keys)
        out = []
        for worker, metrics in sorted(series.items()):
            entries = []
            for (key, variant), buckets in sorted(metrics.items(), key=lambda kv: (names.index(kv[0][0]),
                                                                                   kv[0][1] or "")):
                per_gpu = resources[worker][key] if len(resources[worker][key]) > 1 else {}
                stats = [{"aggregation": how, "dates": dates, "values": values(buckets, how),
                          **({"resource_series": [{"name": name, "values": values(per_gpu[name], how)}
                                                  for name in sorted(per_gpu)]} if by_resource else {})}
                         for how in dict.fromkeys(i.get("aggregation") or "avg" for i in items if i["key"] == key)]
                entry = {"metric": key, "dates": dates, "stats": stats, "values": stats[0]["values"]}
                if variant is not None:
                    entry["variant"] = variant
                entries.append(entry)
            out.append({"worker": worker, "metrics": entries})
        return out

    def count(self, company: str, data: dict[str, Any]) -> int:
        return self.store.count_documents(self._listing_filter(company, data))

    def metric_keys(self, company: str, worker_ids: list[str] | None) -> list[dict[str, Any]]:
        """The machine stat keys workers reported in the last day, by category (the key's first word)."""
        flt: dict[str, Any] = {"company": company, "timestamp": {"$gte": utcnow() - timedelta(days=1)}}
        if worker_ids:
            flt["worker"] = {"$in": worker_ids}
        found: set[str] = set()
        for s in store_of(WorkerStat).find(flt, {"stats": 1}).limit(MAX_STAT_SCAN):
            found.update(k for k, v in (s.get("stats") or {}).items() if v is not None)
        if not found and worker_ids:  # as ClearML: named workers without stats are an error
            raise errors.bad_request.WorkerStatsNotFound(workers=",".join(worker_ids)[:200])
        categories: dict[str, list[str]] = defaultdict(list)
        for key in sorted(found):
            categories[key.split("_", 1)[0]].append(key)
        return [{"name": name, "metric_keys": keys} for name, keys in sorted(categories.items())]
