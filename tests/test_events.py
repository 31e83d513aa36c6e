"""The events service through a real server: charts keep every block's extremes, raw values and log pages
page exactly, the ClearML web app's details and compare requests, another company's events stay hidden,
and events stored in the old one-document-per-event shape are migrated on start-up."""

from __future__ import annotations

import json
import time
from uuid import uuid4

import pymongo
import pytest

from tests.helpers import ServerProcess, until

JSON_LINES = {"Content-Type": "application/json-lines"}
SINGLE_VALUE_ITER = -(2**31)


def add_batch(client, events: list[dict]) -> dict:
    status, reply, _ = client.request("POST", "/events.add_batch", raw="\n".join(json.dumps(e) for e in events),
                                      headers=JSON_LINES)
    assert status == 200, reply
    assert reply["data"]["added"] == len(events), reply
    return reply["data"]


def value_at(i: int) -> float:
    """Distinct values in any run of fewer than 1009 iterations, in no order."""
    return ((i * 7919) % 1009) / 10


def extremes_per_block(iterations: range, block: int) -> list[int]:
    """For each block of ``block`` iterations, the iterations of its minimum and maximum, in order."""
    out = []
    for start in range(iterations.start, iterations.stop, block):
        its = range(start, min(start + block, iterations.stop))
        low, high = min(its, key=value_at), max(its, key=value_at)
        out += sorted({low, high})
    return out


@pytest.fixture(scope="module")
def scalar_task(admin):
    """One task with loss/train over iterations 0..2999 (sent in 6 batches, so some points wait to be
    folded), loss/val over 0..1999, a single value, and a second series in another metric."""
    task = admin.call("tasks.create", name=f"chart-{uuid4().hex[:6]}", type="training")["id"]
    now = int(time.time() * 1000)
    for start in range(0, 3000, 500):
        batch = [{"task": task, "type": "training_stats_scalar", "metric": "loss", "variant": "train", "iter": i,
                  "value": value_at(i), "timestamp": now + i} for i in range(start, start + 500)]
        if start < 2000:
            batch += [{"task": task, "type": "training_stats_scalar", "metric": "loss", "variant": "val",
                       "iter": i, "value": float(i), "timestamp": now + i} for i in range(start, start + 500)]
        add_batch(admin, batch)
    add_batch(admin, [{"task": task, "type": "training_stats_scalar", "metric": "Summary", "variant": "accuracy",
                       "iter": SINGLE_VALUE_ITER, "value": 0.93, "timestamp": now},
                      {"task": task, "type": "training_stats_scalar", "metric": "lr", "variant": "lr", "iter": 0,
                       "value": 0.1, "timestamp": now}])
    return task


def test_chart_keeps_each_blocks_minimum_and_maximum(admin, scalar_task):
    # 100 points: the coarse overview, 3000 iterations in 47 groups of 64 (2 points each: 94 <= 100)
    coarse = admin.call("events.scalar_metrics_iter_histogram", task=scalar_task, samples=100,
                        metrics=[{"metric": "loss", "variants": ["train"]}])
    expected = extremes_per_block(range(3000), 64)
    assert coarse == {"loss": {"train": {"name": "train", "x": expected, "y": [value_at(i) for i in expected]}}}
    # 800 points: the fine overview, 375 groups of 8 iterations
    fine = admin.call("events.scalar_metrics_iter_histogram", task=scalar_task, samples=800)
    expected = extremes_per_block(range(3000), 8)
    assert fine["loss"]["train"]["x"] == expected
    assert fine["loss"]["train"]["y"] == [value_at(i) for i in expected]
    # ClearML's default (6000 per series) holds every point of these series: they come whole
    whole = admin.call("events.scalar_metrics_iter_histogram", task=scalar_task)
    assert whole["loss"]["train"]["x"] == list(range(3000))
    assert whole["loss"]["val"]["y"] == [float(i) for i in range(2000)]
    assert whole["lr"] == {"lr": {"name": "lr", "x": [0], "y": [0.1]}}
    assert "Summary" not in whole  # the single value is not a chart
    by_time = admin.call("events.scalar_metrics_iter_histogram", task=scalar_task, key="iso_time", samples=100,
                         metrics=[{"metric": "lr"}])
    assert by_time["lr"]["lr"]["x"][0].endswith("Z") and by_time["lr"]["lr"]["y"] == [0.1]


def test_raw_values_page_every_point_once(admin, scalar_task):
    seen, scroll, totals, sizes = [], None, set(), []
    while True:  # batch_size only in the first call: the scroll keeps it (as ClearML)
        page = admin.call("events.scalar_metrics_iter_raw", task=scalar_task, metric={"metric": "loss"},
                          count_total=True, scroll_id=scroll, **({} if scroll else {"batch_size": 700}))
        totals.add(page["total"])
        if not page["returned"]:
            break
        sizes.append(page["returned"])
        assert page["returned"] == sum(len(v["iter"]) for v in page["variants"].values())  # named by the key
        seen += [(variant, x, y) for variant, v in page["variants"].items() for x, y in zip(v["iter"], v["y"],
                                                                                           strict=True)]
        scroll = page["scroll_id"]
    expected = [("train", i, value_at(i)) for i in range(3000)] + [("val", i, float(i)) for i in range(2000)]
    assert seen == expected
    assert totals == {5000} and sizes == [700] * 7 + [100]
    one = admin.call("events.scalar_metrics_iter_raw", task=scalar_task, batch_size=200000, key="timestamp",
                     metric={"metric": "loss", "variants": ["val"]})
    assert one["returned"] == 2000 and one["total"] is None and list(one["variants"]) == ["val"]
    assert len(one["variants"]["val"]["timestamp"]) == 2000
    data = admin.call("events.get_scalar_metric_data", task=scalar_task, metric="lr")
    assert [(e["metric"], e["variant"], e["iter"], e["value"]) for e in data["events"]] == [("lr", "lr", 0, 0.1)]
    assert data["total"] == 1
    scalars, scroll = [], None
    while True:
        page = admin.call("events.get_task_events", task=scalar_task, event_type="training_stats_scalar",
                          batch_size=1500, scroll_id=scroll)
        if not page["events"]:
            break
        scalars += page["events"]
        scroll = page["scroll_id"]
    assert len(scalars) == 5002 and page["total"] == 5002  # loss 5000, lr 1, the single value 1
    assert len({(e["metric"], e["variant"], e["iter"]) for e in scalars}) == 5002


def test_metric_names_and_single_values(admin, scalar_task):
    other = admin.call("tasks.create", name="compare-with", type="training")["id"]
    add_batch(admin, [{"task": other, "type": "training_stats_scalar", "metric": "loss", "variant": "test",
                       "iter": 3, "value": 2.0}])
    assert admin.call("events.get_task_metrics", tasks=[scalar_task, other], event_type="training_stats_scalar") == {
        "metrics": [{"task": scalar_task, "metrics": ["Summary", "loss", "lr"]}, {"task": other, "metrics": ["loss"]}]}
    assert admin.call("events.get_multi_task_metrics", tasks=[scalar_task, other],
                      event_type="training_stats_scalar")["metrics"] == [
        {"metric": "Summary", "variants": ["accuracy"]}, {"metric": "loss", "variants": ["test", "train", "val"]},
        {"metric": "lr", "variants": ["lr"]}]
    single = admin.call("events.get_task_single_value_metrics", tasks=[scalar_task, other])["tasks"]
    name = admin.call("tasks.get_by_id", task=scalar_task)["task"]["name"]
    assert [(t["task"], t["task_name"], [(v["metric"], v["variant"], v["value"]) for v in t["values"]])
            for t in single] == [(scalar_task, name, [("Summary", "accuracy", 0.93)])]  # other has none: left out
    assert admin.call("events.get_task_single_value_metrics", tasks=[scalar_task],
                      metrics=[{"metric": "Summary", "variants": ["other"]}])["tasks"] == []
    assert len(admin.call("events.get_task_single_value_metrics", tasks=[scalar_task],
                          metrics=[{"metric": "Summary"}])["tasks"]) == 1
    compare = admin.call("events.multi_task_scalar_metrics_iter_histogram", tasks=[scalar_task, other], samples=100,
                         key="iter", metrics=[{"metric": "loss", "variants": ["test", "val"]}])["metrics"]
    assert set(compare) == {"loss"} and set(compare["loss"]) == {"test", "val"}
    assert compare["loss"]["test"] == {other: {"name": "compare-with", "x": [3], "y": [2.0]}}
    assert list(compare["loss"]["val"]) == [scalar_task]
    assert admin.call("events.get_scalar_metrics_and_variants", task=other)["metrics"] == {
        "loss": {"test": {"name": "test"}}}


def test_log_pages_both_ways_download_and_clear(admin):
    task = admin.call("tasks.create", name="console", type="training")["id"]
    now = int(time.time() * 1000)
    stamp = [now - 3_600_000 + i if i < 200 else now - 100_000 + i for i in range(450)]  # 200 old lines
    for start in range(0, 450, 100):
        add_batch(admin, [{"task": task, "type": "log", "level": "info", "worker": "w1", "msg": f"line {i}",
                           "timestamp": stamp[i]} for i in range(start, min(start + 100, 450))])
    msgs = lambda page: [e["msg"] for e in page["events"]]  # noqa: E731

    newest = admin.call("events.get_task_log", task=task, batch_size=100)
    assert newest["total"] == 450 and msgs(newest) == [f"line {i}" for i in range(449, 349, -1)]
    earlier = admin.call("events.get_task_log", task=task, batch_size=300, navigate_earlier=True,
                         from_timestamp=newest["events"][-1]["timestamp"])
    assert msgs(earlier) == [f"line {i}" for i in range(349, 49, -1)]
    rest = admin.call("events.get_task_log", task=task, batch_size=100,
                      from_timestamp=earlier["events"][-1]["timestamp"])
    assert msgs(rest) == [f"line {i}" for i in range(49, -1, -1)]
    oldest = admin.call("events.get_task_log", task=task, batch_size=100, navigate_earlier=False)
    assert msgs(oldest) == [f"line {i}" for i in range(100)]
    later = admin.call("events.get_task_log", task=task, batch_size=250, navigate_earlier=False,
                       from_timestamp=oldest["events"][-1]["timestamp"], order="desc")
    assert msgs(later) == [f"line {i}" for i in range(349, 99, -1)]
    assert set(newest["events"][0]) == {"id", "task", "type", "timestamp", "msg", "level", "worker"}

    status, text, headers = admin.request("POST", "/events.download_task_log", {"task": task, "line_type": "text",
                                                                               "line_format": "{level} {msg}"})
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert text.splitlines() == [f"info line {i}" for i in range(450)]
    status, text, _ = admin.request("POST", "/events.download_task_log", {"task": task, "line_type": "json"})
    assert [json.loads(line)["msg"] for line in text.splitlines()] == [f"line {i}" for i in range(450)]

    for bad in ("{msg.__class__}", "{msg!r}", "{password}", "{0}", "{"):  # only the plain line fields
        status, text, _ = admin.request("POST", "/events.download_task_log", {"task": task, "line_format": bad})
        assert (status, text) == (400, "validation error (field 'line_format': use only the fields {asctime}, "
                                       "{iter}, {level}, {msg}, {timestamp}, {worker} (rule: lineFormat))"), bad

    assert admin.call("events.clear_task_log", task=task, threshold_sec=600) == {"deleted": 200}
    kept = admin.call("events.get_task_log", task=task, batch_size=1000, navigate_earlier=False)
    assert kept["total"] == 250 and msgs(kept) == [f"line {i}" for i in range(200, 450)]
    assert admin.call("events.clear_task_log", task=task) == {"deleted": 250}
    assert admin.call("events.get_task_log", task=task) == {"events": [], "returned": 0, "total": 0}


def test_plots_and_their_samples(admin):
    task = admin.call("tasks.create", name="plots", type="training")["id"]
    events = [{"task": task, "type": "plot", "metric": "confusion", "variant": "matrix", "iter": it,
               "plot_str": json.dumps({"data": [{"z": [[it]]}]}), "timestamp": 1000 + it} for it in (1, 2, 3)]
    events.append({"task": task, "type": "plot", "metric": "roc", "variant": "curve", "iter": 2,
                   "plot_str": "{}", "timestamp": 2000})
    add_batch(admin, events)
    plots = admin.call("events.get_task_plots", task=task, iters=1)
    assert [(p["metric"], p["iter"]) for p in plots["plots"]] == [("confusion", 3), ("roc", 2)]
    assert plots["returned"] == 2 and json.loads(plots["plots"][0]["plot_str"]) == {"data": [{"z": [[3]]}]}
    assert admin.call("events.get_task_plots", task=task, iters=1, scroll_id=plots["scroll_id"])["plots"] == []
    two = admin.call("events.get_task_plots", task=task, iters=2, metrics=[{"metric": "confusion"}])
    assert [p["iter"] for p in two["plots"]] == [3, 2]

    multi = admin.call("events.get_multi_task_plots", tasks=[task], iters=1, last_iters_per_task_metric=True,
                       metrics=[{"metric": "confusion", "variants": ["matrix"]}])
    entry = multi["plots"]["confusion"]["matrix"][task]
    assert list(entry) == ["3"] and entry["3"]["name"] == "plots" and entry["3"]["plots"][0]["iter"] == 3
    assert admin.call("events.get_multi_task_plots", tasks=[task], iters=1,
                      scroll_id=multi["scroll_id"])["returned"] == 0

    sample = admin.call("events.get_plot_sample", task=task, metric="confusion", navigate_current_metric=False)
    assert [e["iter"] for e in sample["events"]] == [3]
    assert (sample["min_iteration"], sample["max_iteration"]) == (1, 3)
    back = admin.call("events.next_plot_sample", task=task, scroll_id=sample["scroll_id"], navigate_earlier=True,
                      next_iteration=True)
    assert [e["iter"] for e in back["events"]] == [2]
    first = admin.call("events.next_plot_sample", task=task, scroll_id=back["scroll_id"], next_iteration=True)
    assert [e["iter"] for e in first["events"]] == [1]
    end = admin.call("events.next_plot_sample", task=task, scroll_id=first["scroll_id"], next_iteration=True)
    assert end["events"] == []
    at_two = admin.call("events.get_plot_sample", task=task, metric="confusion", iteration=2,
                        navigate_current_metric=False)
    other_metric = admin.call("events.next_plot_sample", task=task, scroll_id=at_two["scroll_id"],
                              navigate_earlier=False)
    assert [(e["metric"], e["iter"]) for e in other_metric["events"]] == [("roc", 2)]


def test_debug_image_samples(admin):
    task = admin.call("tasks.create", name="images", type="training")["id"]
    add_batch(admin, [{"task": task, "type": "training_debug_image", "metric": "samples", "variant": v, "iter": it,
                       "url": f"https://files.example/{v}_{it}.png", "timestamp": 1000 + it}
                      for it in (0, 5, 10) for v in ("a", "b")])
    first = admin.call("events.get_debug_image_sample", task=task, metric="samples", variant="a")
    assert first["event"]["url"] == "https://files.example/a_10.png"
    assert (first["min_iteration"], first["max_iteration"]) == (0, 10)
    earlier = admin.call("events.next_debug_image_sample", task=task, scroll_id=first["scroll_id"],
                         navigate_earlier=True, next_iteration=True)
    assert earlier["event"]["url"] == "https://files.example/b_5.png"  # the previous iteration's last variant
    beside = admin.call("events.next_debug_image_sample", task=task, scroll_id=earlier["scroll_id"])
    assert beside["event"]["url"] == "https://files.example/a_5.png"
    onward = admin.call("events.next_debug_image_sample", task=task, scroll_id=beside["scroll_id"],
                        navigate_earlier=False)
    assert onward["event"]["url"] == "https://files.example/b_5.png"
    onward = admin.call("events.next_debug_image_sample", task=task, scroll_id=onward["scroll_id"],
                        navigate_earlier=False)
    assert onward["event"]["url"] == "https://files.example/a_10.png"  # the next iteration's first variant
    last = admin.call("events.get_debug_image_sample", task=task, metric="samples", variant="b")
    end = admin.call("events.next_debug_image_sample", task=task, scroll_id=last["scroll_id"], navigate_earlier=False)
    assert end["event"] is None and end["scroll_id"] == last["scroll_id"]  # nothing there: the viewer stays
    at = admin.call("events.get_debug_image_sample", task=task, metric="samples", variant="b", iteration=4)
    assert at["event"]["url"] == "https://files.example/b_0.png"
    assert admin.call("events.get_task_metrics", tasks=[task], event_type="training_debug_image")["metrics"] == [
        {"task": task, "metrics": ["samples"]}]
    pages = admin.call("events.debug_images", metrics=[{"task": task, "metric": "samples"}], iters=3,
                       navigate_earlier=True, refresh=True, scroll_id=None)
    assert [i["iter"] for i in pages["metrics"][0]["iterations"]] == [10, 5, 0]
    assert admin.error("events.next_debug_image_sample", task=task, scroll_id="!!!").subcode == 1104
    foreign = first["scroll_id"]  # a sample's scroll id is not a raw-values one, and the other way round
    assert admin.error("events.scalar_metrics_iter_raw", task=task, metric={"metric": "m"},
                       scroll_id=foreign).subcode == 1104
    raw = admin.call("events.scalar_metrics_iter_raw", task=task, metric={"metric": "m"})["scroll_id"]
    assert admin.error("events.next_debug_image_sample", task=task, scroll_id=raw).subcode == 1104


def test_debug_images_whose_file_names_are_reused(admin):
    """A client keeping the last 3 images reuses 3 file names: only the iterations since the latest
    image's file was written before still show their own picture, in pages and in the viewer."""
    task = admin.call("tasks.create", name="reused", type="training")["id"]
    add_batch(admin, [{"task": task, "type": "training_debug_image", "metric": "m", "variant": "v", "iter": it,
                       "url": f"https://f.example/v_{it % 3}.png"} for it in range(8)])
    pages = admin.call("events.debug_images", metrics=[{"task": task}], iters=10)["metrics"][0]["iterations"]
    assert [i["iter"] for i in pages] == [7, 6, 5]
    sample = admin.call("events.get_debug_image_sample", task=task, metric="m", variant="v", iteration=2)
    assert (sample["min_iteration"], sample["max_iteration"], sample["event"]) == (5, 7, None)
    back = admin.call("events.next_debug_image_sample", task=task, next_iteration=True,
                      scroll_id=admin.call("events.get_debug_image_sample", task=task, metric="m",
                                           variant="v", iteration=5)["scroll_id"])
    assert back["event"] is None  # nothing valid before 5


def test_plots_by_iteration_and_a_forged_scroll(admin, other_admin):
    task = admin.call("tasks.create", name="plot-pages", type="training")["id"]
    add_batch(admin, [{"task": task, "type": "plot", "metric": "m", "variant": v, "iter": it, "plot_str": f"{v}{it}"}
                      for it in range(4) for v in ("a", "b")])
    first = admin.call("events.plots", metrics=[{"task": task}], iters=3)
    assert [(i["iter"], [e["plot_str"] for e in i["events"]]) for i in first["metrics"][0]["iterations"]] == [
        (3, ["a3", "b3"]), (2, ["a2", "b2"]), (1, ["a1", "b1"])]
    rest = admin.call("events.plots", metrics=[{"task": task}], iters=3, scroll_id=first["scroll_id"])
    assert [i["iter"] for i in rest["metrics"][0]["iterations"]] == [0]
    again = admin.call("events.plots", metrics=[{"task": task}], iters=2, scroll_id=rest["scroll_id"],
                       navigate_earlier=False)
    assert [i["iter"] for i in again["metrics"][0]["iterations"]] == [2, 1]  # newest first, after the range read
    # the scroll_id is the client's to keep: a forged one naming a task the caller may not read reads nothing of it
    forged = first["scroll_id"]
    own = other_admin.call("tasks.create", name="mine", type="training")["id"]
    assert other_admin.call("events.plots", metrics=[{"task": own}], scroll_id=forged)["metrics"] == [
        {"task": own, "iterations": []}]
    assert other_admin.error("events.plots", metrics=[{"task": task}], scroll_id=forged).subcode == 101
    assert admin.error("events.plots", metrics=[{"task": task}], scroll_id="e30=").subcode == 1104  # {}: not ours
    sample = admin.call("events.get_plot_sample", task=task, metric="m")["scroll_id"]
    assert admin.error("events.plots", metrics=[{"task": task}], scroll_id=sample).subcode == 1104


def test_events_of_a_model(admin, other_admin, mongo_uri, db_name):
    db = pymongo.MongoClient(mongo_uri)[db_name]
    model = admin.call("models.create", name="reported", uri="file:///m.bin")["id"]
    task = admin.call("tasks.create", name="beside", type="training")["id"]
    events = [{"task": model, "model_event": True, "type": "training_stats_scalar", "metric": "acc", "variant": "v",
               "iter": it, "value": float(it)} for it in (1, 2)]
    events += [{"task": model, "model_event": True, "type": "training_debug_image", "metric": "img", "variant": "v",
                "iter": 2, "url": "https://f.example/m.png"},
               {"task": model, "model_event": True, "type": "log", "msg": "a model keeps no log"},
               {"task": task, "type": "log", "msg": "the task's"}]
    status, reply, _ = admin.request("POST", "/events.add_batch", raw="\n".join(json.dumps(e) for e in events),
                                     headers=JSON_LINES)
    assert status == 200 and reply["data"] == {"added": 4, "errors": 1,
                                               "errors_info": {"log events of models are not supported": 1}}
    chart = admin.call("events.scalar_metrics_iter_histogram", task=model, model_events=True)
    assert chart["acc"]["v"]["x"] == [1, 2] and chart["acc"]["v"]["y"] == [1.0, 2.0]
    images = admin.call("events.debug_images", metrics=[{"task": model}], model_events=True)["metrics"]
    assert [e["url"] for e in images[0]["iterations"][0]["events"]] == ["https://f.example/m.png"]
    recorded = admin.call("models.get_by_id", model=model)["model"]
    assert recorded["last_iteration"] == 2
    assert [(m["metric"], m["value"]) for v in recorded["last_metrics"].values() for m in v.values()] == [("acc", 2.0)]
    refused = other_admin.error("events.add", task=model, model_event=True, type="plot", plot_str="{}")
    assert refused.subcode == 131 and f"invalid model id {model}" in refused.msg
    refused = admin.error("events.add", task=task, model_event=True, type="plot", plot_str="{}")  # a task, not a model
    assert refused.subcode == 131 and f"invalid model id {task}" in refused.msg
    def kept() -> tuple[int, int]:  # the model's image events, and its scalars' documents (pending or folded)
        return db.events.count_documents({"task": model}), db.event_scalar_pending.count_documents(
            {"task": model}) + db.event_scalar_tasks.count_documents({"_id": model})

    assert kept()[0] == 1 and kept()[1] >= 1
    admin.call("models.delete", model=model)  # its events go with it
    assert kept() == (0, 0)


def test_another_companys_events_are_not_readable(admin, other_admin, scalar_task):
    one = {"task": scalar_task}
    for name, body in [
        ("events.scalar_metrics_iter_histogram", one), ("events.get_task_log", one),
        ("events.scalar_metrics_iter_raw", {**one, "metric": {"metric": "loss"}}),
        ("events.get_scalar_metric_data", {**one, "metric": "loss"}), ("events.get_task_events", one),
        ("events.get_task_plots", one), ("events.get_plot_sample", {**one, "metric": "loss"}),
        ("events.get_debug_image_sample", {**one, "metric": "loss", "variant": "train"}),
        ("events.get_scalar_metrics_and_variants", one), ("events.get_task_latest_scalar_values", one),
        ("events.get_task_metrics", {"tasks": [scalar_task]}),
        ("events.get_multi_task_metrics", {"tasks": [scalar_task]}),
        ("events.get_task_single_value_metrics", {"tasks": [scalar_task]}),
        ("events.multi_task_scalar_metrics_iter_histogram", {"tasks": [scalar_task]}),
        ("events.get_multi_task_plots", {"tasks": [scalar_task]}),
        ("events.debug_images", {"metrics": [one]}), ("events.plots", {"metrics": [one]}),
        ("events.clear_task_log", one), ("events.delete_for_task", one),
    ]:
        err = other_admin.error(name, **body)
        assert (err.status, err.subcode) == (400, 101), name
    status, body, _ = other_admin.request("POST", "/events.download_task_log", one)
    assert (status, body) == (400, f"invalid task id: id={scalar_task}")
    assert admin.call("events.get_scalar_metric_data", task=scalar_task, metric="lr")["total"] == 1  # untouched


def test_old_shape_events_are_migrated_on_start(mongo_uri, tmp_path):
    """Scalars and log lines written one document per event (the shape before blocks) by an earlier
    server are readable through the API after a restart, and no longer in the old shape."""
    db_name = f"migrate_{uuid4().hex[:8]}"
    server = ServerProcess(mongo_uri, db_name, workers=1).start(tmp_path)
    try:
        admin = server.admin()
        task = admin.call("tasks.create", name="before-blocks", type="training")["id"]
        company = admin.call("users.get_current_user")["user"]["company"]["id"]
    finally:
        server.stop()
    db = pymongo.MongoClient(mongo_uri)[db_name]
    db.server_meta.delete_many({})  # the release that wrote one document per event kept no schema version
    old = [{"_id": f"s{i}", "company": company, "task": task, "type": "training_stats_scalar", "metric": "loss",
            "variant": "train", "iter": i, "value": float(i % 7), "timestamp": 1_700_000_000_000 + i}
           for i in range(300)]
    old += [{"_id": f"l{i}", "company": company, "task": task, "type": "log", "msg": f"old line {i}",
             "level": "info", "timestamp": 1_700_000_000_000 + i} for i in range(250)]
    old.append({"_id": "p0", "company": company, "task": task, "type": "plot", "metric": "cm", "variant": "v",
                "iter": 1, "plot_str": "{}", "timestamp": 1_700_000_000_000})
    db.events.insert_many(old)
    server = ServerProcess(mongo_uri, db_name, workers=2).start(tmp_path)
    try:
        admin = server.admin()
        chart = admin.call("events.scalar_metrics_iter_histogram", task=task)
        assert chart == {"loss": {"train": {"name": "train", "x": list(range(300)),
                                            "y": [float(i % 7) for i in range(300)]}}}
        log = admin.call("events.get_task_log", task=task, batch_size=3)
        assert log["total"] == 250 and [e["msg"] for e in log["events"]] == ["old line 249", "old line 248",
                                                                               "old line 247"]
        assert [e["id"] for e in log["events"]] == ["l249", "l248", "l247"]
        assert admin.call("events.get_task_plots", task=task)["returned"] == 1
    finally:
        server.stop()
    assert db.events.count_documents({"type": {"$in": ["training_stats_scalar", "log"]}}) == 0
    assert db.events.count_documents({"type": "plot"}) == 1
    db.client.drop_database(db_name)


def test_the_events_migration_waits_for_a_live_lease_holder_and_takes_an_expired_lease(app):
    """The migration runs under the ``events.blocks_v1`` lease of the scheduler's lease keeper: while
    another process holds it, old-shape events stay for that process; once its lease expired, this one
    moves them into the blocks and lets the lease go."""
    from datetime import timedelta

    from apiserver.bll.events.migration import LEASE, migrate_legacy_events
    from apiserver.database.model.base import utcnow
    from apiserver.state import get_state

    state = get_state()
    stores, db = state.events.stores, state.db
    task, company = f"lease-{uuid4().hex}", f"c-{uuid4().hex[:8]}"
    old = [{"_id": f"{task}-s{i}", "company": company, "task": task, "type": "training_stats_scalar",
            "metric": "loss", "variant": "train", "iter": i, "value": float(i), "timestamp": 1_700_000_000_000 + i}
           for i in range(20)]
    old += [{"_id": f"{task}-l{i}", "company": company, "task": task, "type": "log", "msg": f"line {i}",
             "timestamp": 1_700_000_000_000 + i} for i in range(5)]
    db.events.insert_many(old)
    now = utcnow()
    db.leases.replace_one({"_id": LEASE}, {"holder": "another-host:1", "expires_at": now + timedelta(minutes=5)},
                          upsert=True)
    try:
        assert migrate_legacy_events(stores) == 0
        assert db.events.count_documents({"task": task}) == 25
        db.leases.update_one({"_id": LEASE}, {"$set": {"expires_at": now - timedelta(seconds=1)}})
        assert migrate_legacy_events(stores) == 25
        assert db.events.count_documents({"task": task}) == 0
        assert stores.scalars.count(task) == 20 and stores.logs.total(task) == 5
        assert db.leases.find_one({"_id": LEASE}) is None
    finally:
        db.events.delete_many({"task": task})
        db.leases.delete_many({"_id": LEASE, "holder": "another-host:1"})
        stores.scalars.delete_task(company, task)
        stores.logs.delete_task(company, task)


def test_an_add_call_is_one_insert_and_reads_see_folded_and_pending_events_alike(mongo_uri, tmp_path):
    """The write path: an add call of a task is one inserted document with its scalars and lines (and
    one update of the task), whatever its mix; after ``scalar_fold_every`` to twice as many calls (drawn
    per task) a process folds the task's pending documents into the series and log blocks (its folder
    thread, soon after the call). Log pages, the chart, raw values, counts and the download read the
    folded and the still pending events as one log and one series."""
    db_name = f"fold_{uuid4().hex[:8]}"
    server = ServerProcess(mongo_uri, db_name, workers=1,
                           extra_env={"APISERVER__events__scalar_fold_every": "4"}).start(tmp_path)
    db = pymongo.MongoClient(mongo_uri)[db_name]

    def add(call: int) -> None:
        add_batch(admin, [{"task": task, "type": "log", "level": "info", "msg": f"line {call * 30 + i}",
                           "timestamp": now + call * 30 + i} for i in range(30)]
                  + [{"task": task, "type": "training_stats_scalar", "metric": "loss", "variant": "v",
                      "iter": call * 5 + i, "value": float(call * 5 + i), "timestamp": now + i} for i in range(5)])

    def settled() -> bool:
        """Every line either folded into the head's blocks or pending, and no fold came for half a second."""
        def state() -> tuple[int, int]:
            head = db.event_log_heads.find_one({"_id": task}) or {"total": 0}
            return head["total"], sum(d["nl"] for d in db.event_scalar_pending.find({"task": task}))
        before = state()
        time.sleep(0.5)
        return state() == before and sum(before) == calls * 30

    try:
        admin = server.admin()
        task = admin.call("tasks.create", name="folding", type="training")["id"]
        now = int(time.time() * 1000)
        add(0)  # no fold before the fourth call: one pending document holds the call
        pending = list(db.event_scalar_pending.find({"task": task}))
        assert [(doc["nl"], len(doc["lines"]), len(doc["series"][0]["i"])) for doc in pending] == [(30, 30, 5)]
        for call in range(1, 10):
            add(call)
        calls = 10
        until("the due folds", settled)
        if not db.event_scalar_pending.count_documents({"task": task}):  # the tenth call made a fold due
            add(calls)  # the counts begin again: this call stays pending
            calls += 1
            until("the pending call", settled)
        folded = db.event_log_heads.find_one({"_id": task})["total"]
        assert 120 <= folded < calls * 30  # the first fold came by the eighth call; some calls still wait
        sizes = [b["n"] for b in db.event_log_blocks.find({"task": task}).sort("seq", 1)]
        assert sum(sizes) == folded and all(n == 200 for n in sizes[:-1])  # a fold tops up the last block
        assert db.event_scalar_tasks.find_one({"_id": task})["s"]  # the folded series are registered
        lines, points = calls * 30, calls * 5
        msgs = lambda page: [e["msg"] for e in page["events"]]  # noqa: E731
        newest = admin.call("events.get_task_log", task=task, batch_size=100)
        assert newest["total"] == lines and msgs(newest) == [f"line {i}" for i in range(lines - 1, lines - 101, -1)]
        oldest = admin.call("events.get_task_log", task=task, batch_size=250, navigate_earlier=False)
        assert msgs(oldest) == [f"line {i}" for i in range(250)]
        chart = admin.call("events.scalar_metrics_iter_histogram", task=task)["loss"]["v"]
        assert chart["x"] == list(range(points)) and chart["y"] == [float(i) for i in range(points)]
        last = admin.call("tasks.get_by_id", task=task)["task"]
        assert last["last_iteration"] == points - 1
        assert [v["value"] for m in last["last_metrics"].values() for v in m.values()] == [float(points - 1)]
        assert db.event_log_heads.find_one({"_id": task})["total"] == folded  # the reads above fold nothing
        status, text, _ = admin.request("POST", "/events.download_task_log", {"task": task, "line_type": "json"})
        assert [json.loads(line)["msg"] for line in text.splitlines()] == [f"line {i}" for i in range(lines)]
        assert db.event_scalar_pending.count_documents({"task": task}) == 0  # a whole-log read folds first
        assert admin.call("events.get_task_log", task=task, batch_size=lines)["total"] == lines
        assert admin.call("events.delete_for_task", task=task) == {"deleted": lines + points}
    finally:
        server.stop()
        db.client.drop_database(db_name)


def test_an_add_call_too_long_for_one_document_is_stored_whole(admin):
    """Console lines of one call longer together than a database document may be (16 MB) are stored
    in as many pending documents as they need, and read back whole and in order."""
    task = admin.call("tasks.create", name="long lines", type="training")["id"]
    now = int(time.time() * 1000)
    lines = [{"task": task, "type": "log", "level": "info", "timestamp": now + i, "msg": f"{i}:" + "é" * 3_000_000}
             for i in range(3)]  # 6 MB each in UTF-8, 18 MB together
    add_batch(admin, lines + [{"task": task, "type": "training_stats_scalar", "metric": "m", "variant": "v",
                               "iter": 1, "value": 1.0, "timestamp": now}])
    page = admin.call("events.get_task_log", task=task, batch_size=10, navigate_earlier=False)
    assert page["total"] == 3 and [e["msg"] for e in page["events"]] == [line["msg"] for line in lines]
    assert admin.call("events.scalar_metrics_iter_histogram", task=task)["m"]["v"]["y"] == [1.0]
