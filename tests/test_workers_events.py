"""The workers and events services: registration, reports, expiry, properties, stats; events and metrics."""

from __future__ import annotations

import time
from uuid import uuid4

import pytest


@pytest.fixture()
def worker_name() -> str:
    return f"host:{uuid4().hex[:8]}"


def test_register_report_list_and_unregister(api, other_api, worker_name):
    queue_name = f"wq-{uuid4().hex[:6]}"
    queue = api.call("queues.create", name=queue_name)["id"]
    waiting = api.call("tasks.create", name="waiting", type="training")["id"]
    api.call("tasks.enqueue", task=waiting, queue=queue)
    task = api.call("tasks.create", name="worked", type="training")["id"]
    assert api.call("workers.register", worker=worker_name, queues=[queue], timeout=600) == {}
    api.call("workers.status_report", worker=worker_name, timestamp=int(time.time() * 1000), task=task,
             queue=queue, machine_stats={"cpu_usage": [10.0, 30.0], "memory_used": 1024})
    api.call("workers.status_report", worker=worker_name, timestamp=int(time.time() * 1000), machine_stats=None)
    listed = {w["id"]: w for w in api.call("workers.get_all")["workers"]}
    assert worker_name in listed and worker_name not in {w["id"] for w in other_api.call("workers.get_all")["workers"]}
    me = listed[worker_name]
    assert me["queues"] == [{"id": queue, "name": queue_name, "display_name": None, "num_tasks": 1}]
    assert me["user"]["name"] == "admin" and me["last_activity_time"].endswith("+00:00")
    doc = api.call("tasks.get_by_id", task=task)["task"]
    assert doc["last_worker"] == worker_name and doc["last_worker_report"]
    assert worker_name in {w["id"] for w in api.call("workers.get_all", last_seen=60)["workers"]}
    assert api.call("workers.unregister", worker=worker_name) == {}
    assert api.error("workers.unregister", worker=worker_name).subcode == 1004
    assert worker_name not in {w["id"] for w in api.call("workers.get_all")["workers"]}


def test_report_registers_an_unknown_worker(api, worker_name):
    api.call("workers.status_report", worker=worker_name, timestamp=int(time.time() * 1000))
    assert worker_name in {w["id"] for w in api.call("workers.get_all")["workers"]}
    err = api.error("workers.status_report", worker=worker_name)
    assert err.code == 400 and err.meta["error_data"]["field"] == "timestamp"


def test_runtime_properties(api, worker_name):
    api.call("workers.register", worker=worker_name)
    assert api.call("workers.get_runtime_properties", worker=worker_name) == {"runtime_properties": []}
    api.call("workers.set_runtime_properties", worker=worker_name,
             runtime_properties=[{"key": "force_cpu", "value": "1"}, {"key": "short", "value": "x", "expiry": 1}])
    props = api.call("workers.get_runtime_properties", worker=worker_name)["runtime_properties"]
    assert {p["key"] for p in props} == {"force_cpu", "short"}
    time.sleep(1.2)
    props = api.call("workers.get_runtime_properties", worker=worker_name)["runtime_properties"]
    assert [p["key"] for p in props] == ["force_cpu"]
    assert api.error("workers.get_runtime_properties", worker="nobody").subcode == 1001


def test_stats_and_activity(api, worker_name):
    start = time.time() - 1
    task = api.call("tasks.create", name="busy", type="training")["id"]
    for cpu in (10.0, 30.0):
        api.call("workers.status_report", worker=worker_name, timestamp=int(time.time() * 1000), task=task,
                 machine_stats={"cpu_usage": [cpu, cpu + 10], "memory_used": 100})
    idle = f"{worker_name}-idle"  # reports in the same window without a task: counted, not active
    api.call("workers.status_report", worker=idle, timestamp=int(time.time() * 1000),
             machine_stats={"cpu_usage": [1.0], "memory_used": 10})
    end = time.time() + 1
    stats = api.call("workers.get_stats", worker_ids=[worker_name], from_date=start, to_date=end, interval=3600,
                     items=[{"key": "cpu_usage", "aggregation": "max"}, {"key": "memory_used"}])["workers"]
    metrics = {m["metric"]: m for m in stats[0]["metrics"]}
    # each core's value is a sample, as ClearML charts them: the maximum of 10, 20, 30, 40
    assert metrics["cpu_usage"]["values"] == [40.0] and metrics["memory_used"]["values"] == [100.0]
    assert metrics["cpu_usage"]["dates"] == [int(start) * 1000]  # epoch milliseconds, as the web app reads them
    report = api.call("workers.get_activity_report", from_date=start, to_date=end, interval=3600)
    assert report["total"]["dates"][0] == int(start) * 1000
    # the window holds this test's reports only (the suite runs one test at a time)
    assert (report["total"]["counts"], report["active"]["counts"]) == ([2], [1])
    err = api.error("workers.get_stats", from_date=end, to_date=start, interval=60, items=[{"key": "x"}])
    assert (err.code, err.subcode) == (400, 6)  # impossible time range


def _events_body(events) -> str:
    import json

    return "\n".join(json.dumps(e) for e in events)


def test_events_batch_metrics_and_logs(api, other_api):
    task = api.call("tasks.create", name="events", type="training")["id"]
    now = int(time.time() * 1000)
    events = [{"task": task, "type": "training_stats_scalar", "metric": "loss", "variant": v, "iter": i,
               "value": float(10 - i) if v == "train" else float(i), "timestamp": now + i}
              for i in range(10) for v in ("train", "val")]
    events += [{"task": task, "type": "log", "msg": f"line {i}", "level": "info", "timestamp": now + i}
               for i in range(30)]
    events += [{"task": "0" * 32, "type": "log", "msg": "nowhere"}, {"task": task, "type": "training_stats_scalar",
                                                                     "metric": "m", "variant": "v"}]
    status, reply, _ = api.request("POST", "/events.add_batch", raw=_events_body(events),
                                   headers={"Content-Type": "application/json-lines"})
    assert status == 200 and reply["data"]["added"] == 50 and reply["data"]["errors"] == 2
    doc = api.call("tasks.get_by_id", task=task)["task"]
    assert doc["last_iteration"] == 9
    lm = {(e["metric"], e["variant"]): e for v in doc["last_metrics"].values() for e in v.values()}
    assert lm[("loss", "train")]["value"] == 1.0 and lm[("loss", "train")]["max_value"] == 10.0
    assert lm[("loss", "val")]["min_value"] == 0.0

    assert api.call("events.get_scalar_metrics_and_variants", task=task)["metrics"] == {
        "loss": {"train": {"name": "train"}, "val": {"name": "val"}}}
    hist = api.call("events.scalar_metrics_iter_histogram", task=task, samples=5)
    # 5 samples: two runs of iterations (0-4, 5-9), each shown by its maximum and its minimum point
    assert hist["loss"]["train"] == {"name": "train", "x": [0, 4, 5, 9], "y": [10.0, 6.0, 5.0, 1.0]}
    full = api.call("events.scalar_metrics_iter_histogram", task=task)
    assert full["loss"]["val"]["y"] == [float(i) for i in range(10)]
    latest = api.call("events.get_task_latest_scalar_values", task=task)["metrics"]
    assert latest == [{"name": "loss", "variants": [{"name": "train", "last_value": 1.0},
                                                    {"name": "val", "last_value": 9.0}]}]

    log = api.call("events.get_task_log", task=task, batch_size=10)
    assert log["total"] == 30 and [e["msg"] for e in log["events"]] == [f"line {i}" for i in range(29, 19, -1)]
    older = api.call("events.get_task_log", task=task, batch_size=10, from_timestamp=log["events"][-1]["timestamp"])
    assert older["events"][0]["msg"] == "line 19"
    forward = api.call("events.get_task_log", task=task, batch_size=5, navigate_earlier=False, order="asc")
    assert [e["msg"] for e in forward["events"]] == [f"line {i}" for i in range(5)]

    seen, scroll = [], None
    while True:
        page = api.call("events.get_task_events", task=task, event_type="log", batch_size=7, scroll_id=scroll)
        if not page["events"]:
            break
        seen += [e["msg"] for e in page["events"]]
        scroll = page["scroll_id"]
    assert seen == [f"line {i}" for i in range(30)]
    assert api.error("events.get_task_events", task=task, scroll_id="!!!").subcode == 1104

    # plots, ten of them sharing one timestamp: pages of 4 either way give each once, in order
    plots = api.call("tasks.create", name="plots", type="training")["id"]
    stamps = [1000 + i for i in range(8)] + [2000] * 10 + [3000 + i for i in range(7)]
    status, reply, _ = api.request("POST", "/events.add_batch", raw=_events_body(
        [{"task": plots, "type": "plot", "metric": "p", "variant": f"v{i}", "iter": i, "timestamp": ts,
          "plot_str": "{}"} for i, ts in enumerate(stamps)]), headers={"Content-Type": "application/json-lines"})
    assert status == 200 and reply["data"]["added"] == 25
    for order in ("asc", "desc"):
        seen, scroll = [], None
        while True:
            page = api.call("events.get_task_events", task=plots, event_type="plot", batch_size=4, order=order,
                            scroll_id=scroll)
            if not page["events"]:
                break
            seen += [(e["timestamp"], e["variant"]) for e in page["events"]]
            scroll = page["scroll_id"]
        assert len(seen) == 25 and len(set(seen)) == 25
        assert [ts for ts, _ in seen] == sorted(stamps, reverse=order == "desc")

    assert other_api.error("events.get_task_log", task=task).subcode == 101
    refused = other_api.error("events.add", task=task, type="log", msg="intruder")  # nothing added: 400/131
    assert (refused.code, refused.subcode) == (400, 131) and f"invalid task id {task}" in refused.msg
    assert api.call("events.delete_for_task", task=task) == {"deleted": 50}
    assert api.call("events.get_task_log", task=task)["total"] == 0


def test_reset_clears_events(api):
    task = api.call("tasks.create", name="reset-events", type="training")["id"]
    api.call("events.add", task=task, type="log", msg="before reset")
    api.call("tasks.started", task=task)
    assert api.call("tasks.reset", task=task, force=True)["events"] == {"deleted": 1}


def test_bad_events_are_clear_400s(api):
    task = api.call("tasks.create", name="bad-events", type="training")["id"]
    err = api.error("events.add", task=task, type="bogus")  # as ClearML: counted, and nothing added is 400/131
    assert (err.code, err.subcode) == (400, 131) and err.meta["error_data"] == {
        "errors_info": {"unknown event type bogus": 1}}
    err = api.error("events.add", type="log", msg="no task")
    assert (err.code, err.subcode) == (400, 131)
    assert err.meta["error_data"] == {"errors_info": {"event without a task": 1}}
    status, reply, _ = api.request("POST", "/events.add_batch", raw=_events_body(
        [{"task": task, "type": "unknown type"}, {"task": task, "type": "log", "msg": "kept"}]),
        headers={"Content-Type": "application/json-lines"})
    assert status == 200 and reply["data"] == {"added": 1, "errors": 1,
                                               "errors_info": {"unknown event type unknown type": 1}}
    status, reply, _ = api.request("POST", "/events.add_batch", raw='{"task": "x"}\n{broken',
                                   headers={"Content-Type": "application/json-lines"})
    assert status == 400 and reply["meta"]["result_subcode"] == 30


def test_last_metrics_keep_extremes_first_and_mean_across_concurrent_batches(api):
    """ClearML's last_metrics fields: the lowest and highest value with the iteration they were first
    reached at, the value at the lowest iteration, the count and the mean; batches of one task posted
    at once all count (the write uses $min/$max/$inc, not a read-modify-write)."""
    from concurrent.futures import ThreadPoolExecutor

    task = api.call("tasks.create", name="extremes", type="training")["id"]
    now = int(time.time() * 1000)
    # iterations 0..159 in 8 batches of 20; values: a valley of -5 at 37 and again at 90 (a tie: the
    # earlier iteration stays), a peak of 100 at 151, everything else 1..9; iteration 0 holds 3
    values = {i: float(1 + i % 9) for i in range(160)}
    values.update({0: 3.0, 37: -5.0, 90: -5.0, 151: 100.0})
    batches = [[{"task": task, "type": "training_stats_scalar", "metric": "loss", "variant": "total", "iter": i,
                 "value": values[i], "timestamp": now + i} for i in range(start, start + 20)]
               for start in range(0, 160, 20)]

    def post(batch):
        status, reply, _ = api.request("POST", "/events.add_batch", raw=_events_body(batch),
                                       headers={"Content-Type": "application/json-lines"})
        return status, reply["data"].get("added")

    with ThreadPoolExecutor(7) as pool:  # the first seven at once, the newest iterations after them
        assert list(pool.map(post, batches[:7])) == [(200, 20)] * 7
    assert post(batches[7]) == (200, 20)
    doc = api.call("tasks.get_by_id", task=task)["task"]
    (series,), = [list(v.values()) for v in doc["last_metrics"].values()]
    assert (series["metric"], series["variant"]) == ("loss", "total")
    assert series["count"] == 160 and series["mean_value"] == sum(values.values()) / 160
    assert (series["min_value"], series["min_value_iteration"]) == (-5.0, 37)
    assert (series["max_value"], series["max_value_iteration"]) == (100.0, 151)
    assert (series["first_value"], series["first_value_iteration"]) == (3.0, 0)
    assert series["value"] == values[159] and doc["last_iteration"] == 159  # the newest batch's latest point
    assert not {"min_at", "max_at", "first_at", "total"} & set(series)  # the stored pairs stay inside


def test_console_lines_that_name_a_metric_are_read_and_cleared_by_it(api):
    task = api.call("tasks.create", name="log metrics", type="training")["id"]
    now = int(time.time() * 1000)
    lines = [{"task": task, "type": "log", "msg": f"plain {i}", "timestamp": now + i} for i in range(6)]
    lines += [{"task": task, "type": "log", "msg": f"{m} {i}", "metric": m, "variant": "v", "timestamp": now + 10 + i}
              for m in ("alpha", "beta") for i in range(3)]
    status, reply, _ = api.request("POST", "/events.add_batch", raw=_events_body(lines),
                                   headers={"Content-Type": "application/json-lines"})
    assert status == 200 and reply["data"]["added"] == 12

    def log(**kw):
        return api.call("events.get_task_log", task=task, **kw)

    assert log()["total"] == 12
    alpha = log(metrics=[{"metric": "alpha"}], batch_size=2)
    assert alpha["total"] == 3 and [e["msg"] for e in alpha["events"]] == ["alpha 2", "alpha 1"]
    older = log(metrics=[{"metric": "alpha"}], batch_size=2, from_timestamp=alpha["events"][-1]["timestamp"])
    assert [e["msg"] for e in older["events"]] == ["alpha 0"] and older["events"][0]["metric"] == "alpha"
    assert log(metrics=[{"metric": "beta", "variants": ["other"]}])["total"] == 0
    metrics = api.call("events.get_task_metrics", tasks=[task], event_type="log")["metrics"]
    assert metrics == [{"task": task, "metrics": ["alpha", "beta"]}]

    assert api.call("events.clear_task_log", task=task, include_metrics=["beta"])["deleted"] == 3
    assert log()["total"] == 9 and log(metrics=[{"metric": "beta"}])["total"] == 0
    assert api.call("events.clear_task_log", task=task, exclude_metrics=["alpha"])["deleted"] == 6
    assert sorted(e["msg"] for e in log()["events"]) == ["alpha 0", "alpha 1", "alpha 2"]


def test_a_series_keeps_its_x_axis_label_on_the_chart_and_in_last_metrics(api):
    task = api.call("tasks.create", name="labels", type="training")["id"]
    for iteration, label in ((0, "epoch"), (1, None), (2, "step")):  # the latest label given holds
        event = {"task": task, "type": "training_stats_scalar", "metric": "loss", "variant": "total",
                 "iter": iteration, "value": float(iteration)}
        api.call("events.add", **event, **({"x_axis_label": label} if label else {}))
        chart = api.call("events.scalar_metrics_iter_histogram", task=task)["loss"]["total"]
        (series,), = [list(v.values()) for v in api.call("tasks.get_by_id", task=task)["task"]["last_metrics"].values()]
        want = label or "epoch"
        assert chart.get("x_axis_label") == want and series.get("x_axis_label") == want, (iteration, chart, series)
    api.call("events.get_task_events", task=task, event_type="training_stats_scalar")  # folds the pending points
    assert api.call("events.scalar_metrics_iter_histogram", task=task)["loss"]["total"]["x_axis_label"] == "step"
    plain = api.call("tasks.create", name="no labels", type="training")["id"]
    api.call("events.add", task=plain, type="training_stats_scalar", metric="m", variant="v", iter=0, value=1.0)
    assert "x_axis_label" not in api.call("events.scalar_metrics_iter_histogram", task=plain)["m"]["v"]


def test_last_metrics_written_as_the_api_shows_them_go_on_counting(api, mongo_uri, db_name):
    """An import writes a task's last_metrics as ClearML answers them (``fields.to_storage``); events
    recorded on the task afterwards keep its mean, first value and extremes' iterations right."""
    import pymongo

    from apiserver.bll.tasks.fields import last_metrics_to_storage, metric_hash

    task = api.call("tasks.create", name="imported metrics", type="training")["id"]
    shown = {"metric": "loss", "variant": "v", "value": 4.0, "min_value": 1.0, "min_value_iteration": 3,
             "max_value": 9.0, "max_value_iteration": 5, "first_value": 2.0, "first_value_iteration": 0,
             "count": 10, "mean_value": 5.0}
    imported = {metric_hash("loss"): {metric_hash("v"): shown}}
    with pymongo.MongoClient(mongo_uri) as client:  # what the import's writer stores
        client[db_name].tasks.update_one({"_id": task}, {"$set": {"last_metrics": last_metrics_to_storage(imported)}})

    def series():
        (entry,), = [list(v.values()) for v in api.call("tasks.get_by_id", task=task)["task"]["last_metrics"].values()]
        return entry

    assert series() == shown  # read back as it was given
    now = int(time.time() * 1000)
    events = [{"task": task, "type": "training_stats_scalar", "metric": "loss", "variant": "v", "iter": it,
               "value": value, "timestamp": now + it} for it, value in ((20, 0.5), (21, 9.5))]
    status, reply, _ = api.request("POST", "/events.add_batch", raw=_events_body(events),
                                   headers={"Content-Type": "application/json-lines"})
    assert status == 200 and reply["data"]["added"] == 2
    after = series()
    assert after["count"] == 12 and after["mean_value"] == (50.0 + 0.5 + 9.5) / 12
    assert (after["min_value"], after["min_value_iteration"]) == (0.5, 20)
    assert (after["max_value"], after["max_value_iteration"]) == (9.5, 21)
    assert (after["first_value"], after["first_value_iteration"]) == (2.0, 0) and after["value"] == 9.5
