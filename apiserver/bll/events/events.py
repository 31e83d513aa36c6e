"""Owns task events in MongoDB: storing batches, reading logs and metrics, keeping last_metrics current."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections import defaultdict
from typing import Any

from pymongo import UpdateOne

from apiserver.apierrors import errors
from apiserver.bll.auth.identity import Identity
from apiserver.bll.query import api_id
from apiserver.database.model.base import new_id, utcnow
from apiserver.database.model.event import Event
from apiserver.database.model.task import Task

SCALAR = "training_stats_scalar"
LOG = "log"
DEBUG_IMAGE = "training_debug_image"
EVENT_TYPES = (SCALAR, "training_stats_vector", DEBUG_IMAGE, "plot", LOG)
# Fields an event may carry; anything else a client sends is dropped, not stored.
EVENT_FIELDS = ("task", "type", "timestamp", "iter", "metric", "variant", "value", "values", "msg", "level",
                "worker", "url", "key", "plot_str", "model_event")


def metric_hash(name: str) -> str:
    return hashlib.md5(name.encode()).hexdigest()  # noqa: S324 - a field key, not a secret


def _scroll_encode(position: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode()


def _scroll_decode(scroll_id: str) -> dict[str, Any]:
    try:
        value = json.loads(base64.urlsafe_b64decode(scroll_id.encode()))
        if not isinstance(value, dict):
            raise ValueError
        return value
    except (ValueError, TypeError):
        raise errors.bad_request.InvalidScrollId(scroll_id=scroll_id) from None


class EventBLL:
    @property
    def coll(self):
        return Event._get_collection()

    def _writable_tasks(self, company: str, task_ids: set[str]) -> set[str]:
        found = Task._get_collection().find({"_id": {"$in": list(task_ids)}, "company": company}, {"_id": 1})
        return {t["_id"] for t in found}

    def add_events(self, identity: Identity, events: list[dict[str, Any]]) -> dict[str, Any]:
        """Store events of the caller's tasks; bad ones are counted in errors, the rest are stored."""
        known = self._writable_tasks(identity.company, {e["task"] for e in events})
        now_ms = int(time.time() * 1000)
        docs, errors_info = [], defaultdict(int)
        for event in events:
            if event["task"] not in known:
                errors_info[f"invalid task id {event['task']}"] += 1
                continue
            if event["type"] not in EVENT_TYPES:
                errors_info[f"unknown event type {event['type']}"] += 1
                continue
            doc = {k: event[k] for k in EVENT_FIELDS if k in event and event[k] is not None}
            doc.update({"_id": new_id(), "company": identity.company,
                        "timestamp": int(event.get("timestamp") or now_ms)})
            if doc["type"] == SCALAR and not isinstance(doc.get("value"), (int, float)):
                errors_info["scalar event without a numeric value"] += 1
                continue
            docs.append(doc)
        if docs:
            self.coll.insert_many(docs, ordered=False)
            self._update_task_metrics(identity.company, docs)
        return {"added": len(docs), "errors": sum(errors_info.values()), "errors_info": dict(errors_info)}

    def _update_task_metrics(self, company: str, docs: list[dict[str, Any]]) -> None:
        """last_metrics (last, min, max per metric/variant), last_iteration and last_update per task."""
        per_task: dict[str, dict[str, Any]] = defaultdict(lambda: {"set": {}, "min": {}, "max": {}})
        for doc in docs:
            upd = per_task[doc["task"]]
            if doc.get("iter") is not None:
                upd["max"]["last_iteration"] = max(upd["max"].get("last_iteration", doc["iter"]), doc["iter"])
            if doc["type"] != SCALAR:
                continue
            metric, variant = doc.get("metric", ""), doc.get("variant", "")
            path = f"last_metrics.{metric_hash(metric)}.{metric_hash(variant)}"
            value = float(doc["value"])
            upd["set"].update({f"{path}.metric": metric, f"{path}.variant": variant, f"{path}.value": value})
            upd["min"][f"{path}.min_value"] = min(upd["min"].get(f"{path}.min_value", value), value)
            upd["max"][f"{path}.max_value"] = max(upd["max"].get(f"{path}.max_value", value), value)
        ops = []
        for task_id, upd in per_task.items():
            update: dict[str, Any] = {"$set": {**upd["set"], "last_update": utcnow()}}
            if upd["min"]:
                update["$min"] = upd["min"]
            if upd["max"]:
                update["$max"] = upd["max"]
            ops.append(UpdateOne({"_id": task_id, "company": company}, update))
        if ops:
            Task._get_collection().bulk_write(ops, ordered=False)

    def _readable_task(self, company: str, task_id: str) -> None:
        if not Task._get_collection().count_documents({"_id": task_id, "company": {"$in": [company, ""]}}, limit=1):
            raise errors.bad_request.InvalidTaskId(id=task_id)

    def get_task_log(self, company: str, data: dict[str, Any]) -> dict[str, Any]:
        task = data["task"]
        self._readable_task(company, task)
        size = int(data.get("batch_size") or 500)
        earlier = data.get("navigate_earlier", True)
        flt: dict[str, Any] = {"task": task, "type": LOG}
        if data.get("from_timestamp"):
            flt["timestamp"] = {"$lt" if earlier else "$gt": int(data["from_timestamp"])}
        direction = -1 if earlier else 1
        docs = list(self.coll.find(flt, {"company": 0}).sort([("timestamp", direction), ("_id", direction)])
                    .limit(size))
        if (data.get("order") or ("desc" if earlier else "asc")) == "asc":
            docs.sort(key=lambda d: (d["timestamp"], d["_id"]))
        else:
            docs.sort(key=lambda d: (d["timestamp"], d["_id"]), reverse=True)
        total = self.coll.count_documents({"task": task, "type": LOG})
        return {"events": [api_id(d) for d in docs], "returned": len(docs), "total": total}

    def get_task_events(self, company: str, data: dict[str, Any]) -> dict[str, Any]:
        task = data["task"]
        self._readable_task(company, task)
        size = min(int(data.get("batch_size") or 500), 10_000)
        flt: dict[str, Any] = {"task": task}
        if data.get("event_type"):
            flt["type"] = data["event_type"]
        if data.get("metrics"):
            flt["metric"] = {"$in": [m["metric"] if isinstance(m, dict) else m for m in data["metrics"]]}
        total = self.coll.count_documents(flt)
        direction = -1 if data.get("order") == "desc" else 1
        if data.get("scroll_id"):
            pos = _scroll_decode(data["scroll_id"])
            op = "$lt" if direction == -1 else "$gt"
            flt["$or"] = [{"timestamp": {op: pos["t"]}}, {"timestamp": pos["t"], "_id": {op: pos["i"]}}]
        docs = list(self.coll.find(flt, {"company": 0}).sort([("timestamp", direction), ("_id", direction)])
                    .limit(size))
        scroll = _scroll_encode({"t": docs[-1]["timestamp"], "i": docs[-1]["_id"]}) if docs else data.get("scroll_id")
        return {"events": [api_id(d) for d in docs], "returned": len(docs), "total": total,
                "scroll_id": scroll}

    def metrics_and_variants(self, company: str, task: str) -> dict[str, dict[str, dict[str, str]]]:
        self._readable_task(company, task)
        rows = self.coll.aggregate([{"$match": {"task": task, "type": SCALAR}},
                                    {"$group": {"_id": {"m": "$metric", "v": "$variant"}}}])
        out: dict[str, dict[str, dict[str, str]]] = defaultdict(dict)
        for row in rows:
            out[row["_id"].get("m", "")][row["_id"].get("v", "")] = {"name": row["_id"].get("v", "")}
        return dict(out)

    def scalar_histogram(self, company: str, data: dict[str, Any]) -> dict[str, Any]:
        """Scalar series per metric/variant, down-sampled to at most ``samples`` points each."""
        task = data["task"]
        self._readable_task(company, task)
        samples = int(data.get("samples") or 10_000)
        key = data.get("key") or "iter"
        flt: dict[str, Any] = {"task": task, "type": SCALAR}
        if data.get("metrics"):
            flt["metric"] = {"$in": data["metrics"]}
        series: dict[tuple[str, str], list[tuple[Any, float]]] = defaultdict(list)
        proj = {"metric": 1, "variant": 1, "value": 1, "iter": 1, "timestamp": 1, "_id": 0}
        for doc in self.coll.find(flt, proj).sort([("metric", 1), ("variant", 1), ("iter", 1)]):
            x = doc.get("iter", 0) if key == "iter" else doc["timestamp"]
            if key == "iso_time":
                x = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(doc["timestamp"] / 1000)) + "Z"
            series[(doc.get("metric", ""), doc.get("variant", ""))].append((x, doc["value"]))
        out: dict[str, dict[str, Any]] = defaultdict(dict)
        for (metric, variant), points in series.items():
            if key != "iter":
                points.sort(key=lambda p: p[0])
            if len(points) > samples:
                step = len(points) / samples
                points = [points[int(i * step)] for i in range(samples)]
            out[metric][variant] = {"name": variant, "x": [p[0] for p in points], "y": [p[1] for p in points]}
        return dict(out)

    def latest_scalar_values(self, company: str, task: str) -> list[dict[str, Any]]:
        self._readable_task(company, task)
        doc = Task._get_collection().find_one({"_id": task, "company": {"$in": [company, ""]}},
                                              {"last_metrics": 1}) or {}
        metrics: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for variants in (doc.get("last_metrics") or {}).values():
            for entry in variants.values():
                metrics[entry.get("metric", "")].append({"name": entry.get("variant", ""),
                                                         "last_value": entry.get("value")})
        return [{"name": name, "variants": sorted(variants, key=lambda v: v["name"])}
                for name, variants in sorted(metrics.items())]

    def debug_images(self, company: str, data: dict[str, Any]) -> dict[str, Any]:
        """Debug images of task metrics grouped by iteration, ``iters`` iterations per call.

        The scroll id holds, per task and metric, the last iteration handed out, so the next call
        continues from there (earlier iterations with navigate_earlier, the default); a call that
        returns no iterations for a metric means it is exhausted. Within an iteration, the latest
        image of each metric and variant is returned.
        """
        earlier = data.get("navigate_earlier", True)
        iters = int(data.get("iters") or 10)
        state = {} if data.get("refresh") or not data.get("scroll_id") else _scroll_decode(data["scroll_id"])
        answer = []
        for item in data["metrics"]:
            task = item["task"]
            self._readable_task(company, task)
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

    def urls_of_task(self, company: str, task: str) -> list[str]:
        """The file URLs the task's events point at (debug images, media), each once."""
        docs = self.coll.find({"company": company, "task": task, "url": {"$nin": [None, ""]}}, {"url": 1, "_id": 0})
        return list(dict.fromkeys(d["url"] for d in docs if d.get("url")))

    def delete_for_task(self, company: str, task: str) -> dict[str, int]:
        return {"deleted": self.coll.delete_many({"company": company, "task": task}).deleted_count}
