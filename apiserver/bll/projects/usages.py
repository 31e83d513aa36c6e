"""Owns ``organization.get_project_usages``: how long the tasks of some projects ran in a period, by
project, user and queue, in total and per UTC day."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from apiserver.apierrors import errors
from apiserver.bll.projects.contents import descendants
from apiserver.bll.query import parse_date
from apiserver.database.model.auth import User
from apiserver.database.model.base import utcnow
from apiserver.database.model.project import Project
from apiserver.database.model.queue import Queue
from apiserver.database.model.task import Task
from apiserver.database.store import store_of

BREAKDOWNS = {"project": ("projects", Project), "user": ("users", User), "queue": ("queues", Queue)}
MAX_DAYS = 3660  # a series holds one point per day: ten years at most


def _runs(company: str, within: list[str], start: datetime, end: datetime, development: bool) -> list[dict]:
    """The tasks of these projects that ran at some time in [start, end)."""
    match: dict[str, Any] = {
        "company": company, "project": {"$in": within}, "started": {"$ne": None, "$lt": end},
        "$or": [{"status": "in_progress"}, {"completed": {"$gt": start}}, {"status_changed": {"$gt": start}}],
    }
    if not development:
        match["system_tags"] = {"$ne": "development"}
        match["execution.queue"] = {"$nin": [None, ""]}
    proj = {"project": 1, "user": 1, "execution.queue": 1, "status": 1, "started": 1, "completed": 1,
            "status_changed": 1, "last_update": 1}
    return list(store_of(Task).find(match, proj))


def _ran(task: dict, start: datetime, end: datetime, now: datetime) -> tuple[datetime, datetime] | None:
    """The part of [start, end) the task ran in: from its start until it completed (now while running;
    its last status change for a task that failed or stopped without completing)."""
    began = max(task["started"], start)
    if task.get("status") == "in_progress":
        ended = now
    else:
        ended = task.get("completed") or task.get("status_changed") or task.get("last_update") or began
    ended = min(ended, end)
    return (began, ended) if ended > began else None


def _per_day(began: datetime, ended: datetime) -> dict[datetime, float]:
    out: dict[datetime, float] = {}
    day = datetime(began.year, began.month, began.day)
    while day < ended:
        following = day + timedelta(days=1)
        seconds = (min(ended, following) - max(began, day)).total_seconds()
        if seconds > 0:
            out[day] = seconds
        day = following
    return out


def project_usages(company: str, projects: list[str], from_date: str, to_date: str | None,
                   include_development: bool = False, breakdown_keys: list[str] | None = None,
                   usage_fields: list[str] | None = None) -> dict[str, Any]:
    now = utcnow()
    start = parse_date(from_date, "from_date")
    end = min(parse_date(to_date, "to_date"), now) if to_date else now
    if end <= start:
        raise errors.bad_request.ValidationError("to_date must be after from_date", field="to_date")
    if (end - start).days > MAX_DAYS:
        raise errors.bad_request.ValidationError(f"the period is at most {MAX_DAYS} days", field="from_date")
    if not projects:
        raise errors.bad_request.ValidationError("name at least one project", field="projects")
    roots = {p["_id"] for p in store_of(Project).find({"company": company, "_id": {"$in": projects}}, {"_id": 1})}
    if missing := sorted(set(projects) - roots):
        raise errors.bad_request.InvalidProjectId(id=missing[0])
    root_of: dict[str, str] = {}
    for root, ids in descendants(company, sorted(roots)).items():
        for pid in ids:
            root_of.setdefault(pid, root)
    keys = breakdown_keys or list(BREAKDOWNS)
    fields = usage_fields or ["duration"]
    totals: dict[str, dict[str, float]] = {k: defaultdict(float) for k in keys}
    series: dict[str, dict[str, dict[datetime, float]]] = {k: defaultdict(lambda: defaultdict(float)) for k in keys}
    for task in _runs(company, sorted(root_of), start, end, include_development):
        ran = _ran(task, start, end, now)
        if ran is None:
            continue
        owners = {"project": root_of.get(task.get("project")), "user": task.get("user"),
                  "queue": (task.get("execution") or {}).get("queue")}
        days = _per_day(*ran)
        for key in keys:
            owner = owners[key]
            if not owner:
                continue
            totals[key][owner] += (ran[1] - ran[0]).total_seconds()
            for day, seconds in days.items():
                series[key][owner][day] += seconds
    answer: dict[str, Any] = {}
    for key in keys:
        out_name, doc = BREAKDOWNS[key]
        names = {d["_id"]: d.get("name", "") for d in
                 store_of(doc).find({"company": company, "_id": {"$in": sorted(totals[key])}}, {"name": 1})}
        answer[out_name] = {
            "total": [{"id": owner, "name": names.get(owner, owner),
                       **({"duration": int(seconds)} if "duration" in fields else {})}
                      for owner, seconds in sorted(totals[key].items(), key=lambda kv: -kv[1])],
            "series": [{"id": owner, "name": names.get(owner, owner),
                        "dates": [int((d - datetime(1970, 1, 1)).total_seconds()) for d in sorted(by_day)],
                        **({"duration": [by_day[d] for d in sorted(by_day)]} if "duration" in fields else {})}
                       for owner, by_day in sorted(series[key].items())],
        }
    return answer
