"""Events retention: the job deletes the events, and the files they point at in this server's store, of
exactly the tasks that ended or are archived and did not change for their project's retention (or the
server's default); nothing else in the events collections or the file store changes, and the tasks stay."""

from __future__ import annotations

from datetime import timedelta
from uuid import uuid4

from tests.test_files import api_company, company_file, files_url, unique, upload

EVENT_COLLECTIONS = ("events", "event_scalar_pending", "event_scalar_tasks", "event_scalar_blocks",
                     "event_series_groups", "event_series_coarse", "event_log_blocks", "event_log_heads")


def _task_with_events(api, web, project: str, name: str, status: str, archived: bool = False) -> dict:
    task = api.call("tasks.create", name=name, type="training", project=project)["id"]
    path = unique(f"{name}-image.png")
    assert upload(web, api.auth, {path: f"image of {name}".encode()}).status_code == 200
    api.call("events.add", task=task, type="log", msg=f"{name} says hello", level="info")
    api.call("events.add", task=task, type="training_stats_scalar", metric="loss", variant="v", iter=1, value=0.5)
    api.call("events.add", task=task, type="training_debug_image", metric="img", variant="v", iter=1,
             url=files_url(path))
    if status != "created":
        api.call("tasks.started", task=task)
    if status in ("completed", "stopped"):
        api.call(f"tasks.{status}", task=task, force=True)
    if archived:
        api.call("tasks.archive", tasks=[task])
    return {"id": task, "path": path}


def _has_events(api, task: str) -> tuple[int, int, int]:
    log = api.call("events.get_task_log", task=task)["total"]
    scalars = api.call("events.get_task_events", task=task, event_type="training_stats_scalar")["total"]
    images = api.call("events.get_task_events", task=task, event_type="training_debug_image")["total"]
    return log, scalars, images


def test_retention_deletes_exactly_the_events_and_files_it_should(app, api, web, files, monkeypatch):
    from apiserver.database.model.base import utcnow
    from apiserver.state import get_state

    monkeypatch.setattr(files, "delete_delay_sec", 0)
    state = get_state()
    db = state.db
    tag = uuid4().hex[:6]
    default = api.call("projects.create", name=f"retention-default-{tag}")["id"]
    keep = api.call("projects.create", name=f"retention-keep-{tag}", events_retention_days=0)["id"]
    short = api.call("projects.create", name=f"retention-short-{tag}", events_retention_days=1)["id"]
    assert api.call("projects.get_by_id", project=short)["project"]["events_retention_days"] == 1
    # (project, status, archived, days since the task last changed) -> expires?
    cases = {
        "ended-old": (default, "completed", False, 40, True),
        "ended-recent": (default, "completed", False, 20, False),
        "stopped-old": (default, "stopped", False, 40, True),
        "running-old": (default, "in_progress", False, 40, False),
        "draft-old": (default, "created", False, 40, False),
        "archived-draft-old": (default, "created", True, 40, True),
        "kept-forever": (keep, "completed", False, 400, False),
        "short-2-days": (short, "completed", False, 2, True),
        "short-12-hours": (short, "completed", False, 0.5, False),
        "public-ended-old": (default, "completed", False, 40, True),  # its events stay its owner's
    }
    tasks = {name: _task_with_events(api, web, project, f"{name}-{tag}", status, archived)
             for name, (project, status, archived, _days, _expires) in cases.items()}
    api.call("tasks.make_public", ids=[tasks["public-ended-old"]["id"]])
    now = utcnow()
    for name, (_project, _status, _archived, days, _expires) in cases.items():
        db.tasks.update_one({"_id": tasks[name]["id"]}, {"$set": {"last_update": now - timedelta(days=days)}})
    mine = {t["id"] for t in tasks.values()}
    others_before = {name: {d["_id"] for d in db[name].find({"task": {"$nin": list(mine)}}, {"_id": 1})}
                     for name in EVENT_COLLECTIONS}
    assert all(_has_events(api, t["id"]) == (1, 1, 1) for t in tasks.values())

    done = state.deletion.expire_events(30, 100)

    expired = {name for name, case in cases.items() if case[4]}
    for name, task in tasks.items():
        assert _has_events(api, task["id"]) == ((0, 0, 0) if name in expired else (1, 1, 1)), name
        assert api.call("tasks.get_by_id", task=task["id"])["task"]["id"] == task["id"]  # the task stays
    assert done["tasks"] >= len(expired) and done["files"] >= len(expired)
    files.process_due_deletions()
    company = api_company(api)
    for name, task in tasks.items():
        content = company_file(files, company, task["path"])
        assert content == (None if name in expired else f"image of {name}-{tag}".encode()), name
    others_after = {name: {d["_id"] for d in db[name].find({"task": {"$nin": list(mine)}}, {"_id": 1})}
                    for name in EVENT_COLLECTIONS}
    # other tasks' events: none disappeared (new ones may come from the session's other tests meanwhile)
    assert all(others_before[name] <= others_after[name] for name in EVENT_COLLECTIONS)

    marks = {name: db.tasks.find_one({"_id": tasks[name]["id"]}).get("events_expired") for name in cases}
    assert {name for name, mark in marks.items() if mark} == expired
    state.deletion.expire_events(30, 100)  # marked tasks are not taken again; kept ones still are not due
    assert {name: db.tasks.find_one({"_id": tasks[name]["id"]}).get("events_expired") for name in cases} == marks
    assert all(_has_events(api, tasks[name]["id"]) == (1, 1, 1) for name in cases if name not in expired)
    revived = tasks["ended-old"]["id"]
    api.call("events.add", task=revived, type="log", msg="new life", level="info")  # new events expire anew
    assert db.tasks.find_one({"_id": revived}).get("events_expired") is None
    db.tasks.update_one({"_id": revived}, {"$set": {"last_update": now - timedelta(days=40)}})
    state.deletion.expire_events(30, 100)
    assert api.call("events.get_task_log", task=revived)["total"] == 0


def test_retention_days_of_a_project_are_checked(api):
    tag = uuid4().hex[:6]
    for bad, rule in ((-1, "minimum"), (40000, "maximum"), ("7", "type")):
        error = api.error("projects.create", name=f"bad-retention-{tag}", events_retention_days=bad)
        assert error.status == 400 and "events_retention_days" in error.msg and rule in error.msg, error.msg
    project = api.call("projects.create", name=f"retention-{tag}")["id"]
    api.call("projects.update", project=project, events_retention_days=7)
    assert api.call("projects.get_by_id", project=project)["project"]["events_retention_days"] == 7
    api.call("projects.update", project=project, events_retention_days=None)
    assert api.call("projects.get_by_id", project=project)["project"].get("events_retention_days") is None


def test_the_hosts_uploads_came_to_are_kept_bounded(app):
    """Retention knows this store's URLs by the Hosts uploads came to (a job has no request); they come
    from requests, so the deployment keeps only the first ones."""
    from apiserver.bll import server_settings
    from apiserver.bll.files.files import FILE_HOSTS_KEPT

    setting = f"test.hosts.{uuid4().hex[:6]}"
    for n in range(FILE_HOSTS_KEPT + 5):
        server_settings.remember(setting, f"host-{n}:8008", FILE_HOSTS_KEPT)
    server_settings.remember(setting, "host-0:8008", FILE_HOSTS_KEPT)  # a known one again changes nothing
    assert server_settings.remembered(setting) == [f"host-{n}:8008" for n in range(FILE_HOSTS_KEPT)]
