"""A task's progress document (``bll/tasks/progress.py``): add calls on a task written a moment ago
record their metrics there instead of on the task, and no answer shows the split. Checked through a
real server's API, with the database read directly to prove each call took the path the test means."""

from __future__ import annotations

import json
import time
from uuid import uuid4

import pymongo

from tests.helpers import ServerProcess


def _scalars(api, task: str, metric: str, points: list[tuple[int, float]]) -> None:
    """One add call, as the SDK sends it."""
    events = [{"task": task, "type": "training_stats_scalar", "metric": metric, "variant": "v", "iter": i,
               "value": v} for i, v in points]
    status, reply, _ = api.request("POST", "/events.add_batch", raw="\n".join(json.dumps(e) for e in events),
                                   headers={"Content-Type": "application/json-lines"})
    assert status == 200 and reply["data"]["added"] == len(events), reply


def _series(doc: dict) -> dict:
    """The one series of a stored last_metrics, or {}."""
    return next((s for variants in (doc.get("last_metrics") or {}).values() for s in variants.values()), {})


def test_calls_a_moment_apart_are_one_record_however_the_task_is_read(server, admin, mongo_uri, db_name):
    db = pymongo.MongoClient(mongo_uri)[db_name]
    project = admin.call("projects.create", name=f"progress {uuid4().hex[:6]}")["id"]
    task = admin.call("tasks.create", name="progress", type="training", project=project)["id"]
    admin.call("tasks.started", task=task)
    time.sleep(5.5)  # older than tasks.progress_write_sec (5): the first call writes the task itself
    _scalars(admin, task, "loss", [(0, 4.0), (1, 3.0), (2, 5.0)])
    _scalars(admin, task, "loss", [(3, 1.0), (4, 2.0)])  # a moment later: to the progress document
    stored = db.tasks.find_one({"_id": task})
    assert _series(stored)["count"] == 3 and stored["last_iteration"] == 2
    progress = db.task_progress.find_one({"_id": task})
    assert _series(progress)["count"] == 2 and progress["last_iteration"] == 4

    whole = {"value": 2.0, "min_value": 1.0, "min_value_iteration": 3, "max_value": 5.0, "max_value_iteration": 2,
             "first_value": 4.0, "first_value_iteration": 0, "count": 5, "mean_value": 3.0}
    by_id = admin.call("tasks.get_by_id", task=task)["task"]
    listed = admin.call("tasks.get_all_ex", id=[task], only_fields=["last_metrics", "last_iteration",
                                                                  "last_update"])["tasks"][0]
    for shown in (by_id, listed):
        assert {k: _series(shown).get(k) for k in whole} == whole
        assert shown["last_iteration"] == 4
    assert listed["last_update"] == by_id["last_update"] > stored["last_update"].isoformat()
    latest = admin.call("events.get_task_latest_scalar_values", task=task)
    assert latest["last_iter"] == 4 and latest["metrics"][0]["variants"][0]["last_value"] == 2.0
    # a projection of one series field shows only it
    one = next(iter(by_id["last_metrics"]))
    variant = next(iter(by_id["last_metrics"][one]))
    narrow = admin.call("tasks.get_all_ex", id=[task], only_fields=[f"last_metrics.{one}.{variant}.value"])
    assert narrow["tasks"][0]["last_metrics"] == {one: {variant: {"value": 2.0}}}

    # a series the task does not name yet is written to the task at once (menus and columns list it)
    _scalars(admin, task, "accuracy", [(5, 0.5)])
    names = {s["metric"] for variants in db.tasks.find_one({"_id": task})["last_metrics"].values()
             for s in variants.values()}
    assert names == {"loss", "accuracy"}
    assert db.task_progress.find_one({"_id": task}) is None  # taken along with that write
    assert _series(db.tasks.find_one({"_id": task}, {f"last_metrics.{one}": 1}))["count"] == 5

    # a reset drops the progress with the metrics
    _scalars(admin, task, "loss", [(6, 0.5)])
    assert db.task_progress.find_one({"_id": task}) is not None
    admin.call("tasks.reset", task=task, force=True)
    assert db.task_progress.find_one({"_id": task}) is None
    assert not admin.call("tasks.get_by_id", task=task)["task"].get("last_metrics")


def test_the_job_writes_the_progress_of_a_run_that_stopped_reporting_into_its_task(mongo_uri, tmp_path):
    name = f"progress_{uuid4().hex[:8]}"
    server = ServerProcess(mongo_uri, name, workers=1, extra_env={"APISERVER__tasks__progress_write_sec": "2",
                                                                  "APISERVER__tasks__progress_fold_sec": "1"})
    server.start(tmp_path)
    try:
        api = server.admin()
        db = pymongo.MongoClient(mongo_uri)[name]
        task = api.call("tasks.create", name="quiet", type="training")["id"]
        time.sleep(2.5)
        _scalars(api, task, "loss", [(0, 1.0)])
        _scalars(api, task, "loss", [(1, 0.5)])
        assert db.task_progress.find_one({"_id": task}) is not None
        deadline = time.monotonic() + 30
        while db.task_progress.find_one({"_id": task}) is not None and time.monotonic() < deadline:
            time.sleep(0.5)
        stored = db.tasks.find_one({"_id": task})
        assert db.task_progress.find_one({"_id": task}) is None
        assert _series(stored)["count"] == 2 and _series(stored)["value"] == 0.5 and stored["last_iteration"] == 1
    finally:
        server.stop()
        pymongo.MongoClient(mongo_uri).drop_database(name)
