"""Owns the numbers ``/metrics`` reads from the database at scrape time: a company's queue lengths, workers
online, pipelines and render tasks by status, and who holds each background-job lease. Each is one cheap
read (counts on indexed keys, queue entries by their queue); no rule here is new, each names its owner."""

from __future__ import annotations

from typing import Any

from apiserver.bll.manager.manager import TASK_STATUSES as RENDER_TASK_STATUSES
from apiserver.bll.pipelines.status import PIPELINE_STATUSES
from apiserver.database.model.base import utcnow
from apiserver.database.model.lease import Lease
from apiserver.database.model.pipeline import Pipeline
from apiserver.database.model.queue import Queue
from apiserver.database.model.render import RenderTask
from apiserver.database.store import store_of

Samples = list[tuple[dict[str, str], float]]
Gauge = tuple[str, str, Samples]


def company_gauges(company: str, workers_online: int) -> list[Gauge]:
    """The gauges of one company; ``workers_online`` is WorkerBLL.count's (its rule of "online")."""
    queues = [({"queue": q.get("name") or q["_id"], "queue_id": q["_id"]}, float(len(q.get("entries") or [])))
              for q in store_of(Queue).find({"company": company}, {"name": 1, "entries.task": 1})]
    return [
        ("apiserver_queue_length", "Tasks waiting in each queue of the caller's company", queues),
        ("apiserver_workers_online", "Agents registered and not expired, in the caller's company",
         [({}, float(workers_online))]),
        ("apiserver_pipelines", "Leader pipelines of the caller's company by status",
         _by_status(store_of(Pipeline), company, PIPELINE_STATUSES)),
        ("apiserver_render_tasks", "Render manager tasks of the caller's company by status",
         _by_status(store_of(RenderTask), company, RENDER_TASK_STATUSES)),
        ("apiserver_lease_holder", "1 for the process that holds each background-job lease (e.g. scheduler)",
         lease_holders()),
    ]


def _by_status(store: Any, company: str, statuses: tuple[str, ...]) -> Samples:
    return [({"status": s}, float(store.count({"company": company, "status": s}))) for s in statuses]


def lease_holders() -> Samples:
    now = utcnow()
    return [({"lease": d["_id"], "holder": d.get("holder") or ""}, 1.0)
            for d in store_of(Lease).find({"expires_at": {"$gt": now}}, {"holder": 1})]
