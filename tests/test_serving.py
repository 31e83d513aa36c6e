"""ClearML serving's registry over real HTTP, with the bodies clearml-serving's inference containers
and the web app's Model Endpoints pages send (ClearML's reference and its own serving test): two
containers serve one endpoint; their reports add up per endpoint; a container registered without
a URL is loading; details and metric charts per container; unregister, expiry (read and the
background job), workspaces apart, and bad input as 400s naming the field."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from uuid import uuid4

import pymongo
import pytest

from tests.helpers import ServerProcess

REFERENCE = [{"type": "app_id", "value": "test"}, {"type": "model", "value": "262829d3"},
             {"type": "model", "value": "7ea29c04"}]


def _url() -> str:
    return f"http://serving.test/{uuid4().hex[:8]}/serve/my_model"


def _info(container_id: str, url: str | None, **extra) -> dict:
    """What clearml-serving sends about a container, with the nulls ClearML's APIClient sends."""
    return {"container_id": container_id, "endpoint_name": "my endpoint", "endpoint_url": url,
            "model_name": "my model", "model_source": "s3://my_bucket", "model_version": "3.1.0",
            "preprocess_artifact": "py_code_my_model", "input_type": "float32", "input_size": 9_000_000,
            "tags": ["tag1", "tag2"], "system_tags": None, **extra}


def _report(admin, container_id: str, url: str, n: int, **extra) -> None:
    admin.call("serving.container_status_report", **_info(container_id, url, **extra), uptime_sec=1000 * n,
               requests_num=1000 * n, requests_min=5 * n, latency_ms=100 * n,
               machine_stats={"cpu_usage": [10, 20], "memory_used": 50 * 1024, "memory_free": 14 * 1024})


def _two_containers(admin) -> tuple[str, str, str]:
    """Two containers registered on one URL, then each reporting (the second twice the first)."""
    url, first, second = _url(), f"c1-{uuid4().hex[:6]}", f"c2-{uuid4().hex[:6]}"
    admin.call("serving.register_container", **_info(first, url, reference=REFERENCE), timeout=100)
    admin.call("serving.register_container", **_info(second, url), timeout=100)
    _report(admin, first, url, 1, reference=REFERENCE)
    _report(admin, second, url, 2)
    return url, first, second


def _endpoint(admin, url: str) -> dict | None:
    found = [e for e in admin.call("serving.get_endpoints")["endpoints"] if e["url"] == url]
    assert len(found) <= 1
    return found[0] if found else None


def _iso_ms(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_two_reporting_containers_make_one_endpoint_with_summed_counters(admin):
    before = time.time()
    url, first, second = _two_containers(admin)
    endpoint = _endpoint(admin, url)
    last_update = endpoint.pop("last_update")
    assert endpoint == {"endpoint": "my endpoint", "model": "my model", "url": url, "instances": 2,
                        "uptime_sec": 2000, "requests": 3000, "requests_min": 7.5, "latency_ms": 150}
    assert before - 1 <= _iso_ms(last_update) <= time.time() + 1

    details = admin.call("serving.get_endpoint_details", endpoint_url=url)
    assert {k: v for k, v in details.items() if k not in ("instances", "last_update")} == {
        "endpoint": "my endpoint", "model": "my model", "url": url, "model_source": "s3://my_bucket",
        "model_version": "3.1.0", "preprocess_artifact": "py_code_my_model", "input_type": "float32",
        "input_size": 9_000_000, "uptime_sec": 2000}
    assert details["last_update"] == last_update
    assert {i["id"]: [i[k] for k in ("uptime_sec", "requests", "requests_min", "latency_ms", "cpu_count",
                                     "gpu_count", "reference")] for i in details["instances"]} == {
        first: [1000, 1000, 5, 100, 2, 0, REFERENCE], second: [2000, 2000, 10, 200, 2, 0, []]}
    # Reading changes nothing; the web app's /v999.0 and ClearML's 2.31 read the same.
    assert admin.call("serving.get_endpoint_details", endpoint_url=url) == details
    for version in ("999.0", "2.31"):
        assert admin.call("serving.get_endpoint_details", _version=version, endpoint_url=url) == details


def test_a_report_replaces_what_the_container_said_before(admin):
    url, other_url, container = _url(), _url(), f"moving-{uuid4().hex[:6]}"
    admin.call("serving.register_container", **_info(container, url, reference=REFERENCE))
    _report(admin, container, url, 1, reference=REFERENCE)
    _report(admin, container, other_url, 3, model_version=None)
    assert _endpoint(admin, url) is None
    moved = admin.call("serving.get_endpoint_details", endpoint_url=other_url)
    assert (moved["model_version"], moved["instances"][0]["reference"], moved["instances"][0]["requests"]) == \
        (None, [], 3000)


def test_a_container_registered_without_a_url_is_loading_until_it_reports_one(admin):
    container = f"loading-{uuid4().hex[:6]}"
    before = time.time()
    admin.call("serving.register_container", **_info(container, None), timeout=300)
    loading = {i["id"]: i for i in admin.call("serving.get_loading_instances")["instances"]}
    mine = loading[container]
    assert {k: v for k, v in mine.items() if k not in ("last_update", "age_sec")} == {
        "id": container, "endpoint": "my endpoint", "model": "my model", "url": None,
        "model_source": "s3://my_bucket", "model_version": "3.1.0", "preprocess_artifact": "py_code_my_model",
        "input_type": "float32", "input_size": 9_000_000, "uptime_sec": None}
    assert 0 <= mine["age_sec"] <= time.time() - before + 1
    assert before - 1 <= _iso_ms(mine["last_update"]) <= time.time() + 1
    assert all(e["url"] is not None for e in admin.call("serving.get_endpoints")["endpoints"])

    url = _url()
    _report(admin, container, url, 1)
    assert container not in {i["id"] for i in admin.call("serving.get_loading_instances")["instances"]}
    assert _endpoint(admin, url)["instances"] == 1


def test_a_status_report_must_name_its_url(admin):
    err = admin.error("serving.container_status_report", **_info(f"no-url-{uuid4().hex[:6]}", None), requests_num=1)
    assert (err.status, err.subcode, err.meta["error_data"]) == (400, 11, {"field": "endpoint_url",
                                                                          "rule": "required"})


def test_an_unregistered_container_leaves_its_endpoint_and_an_unknown_one_is_no_error(admin):
    url, first, second = _two_containers(admin)
    admin.call("serving.unregister_container", container_id=first)
    assert _endpoint(admin, url)["instances"] == 1
    assert [i["id"] for i in admin.call("serving.get_endpoint_details", endpoint_url=url)["instances"]] == [second]
    admin.call("serving.unregister_container", container_id=second)
    assert _endpoint(admin, url) is None
    err = admin.error("serving.get_endpoint_details", endpoint_url=url)
    assert (err.status, err.subcode, err.msg) == (400, 1052, f"no container instances found for serving url: url={url}")
    assert admin.call("serving.unregister_container", container_id=f"never-{uuid4().hex[:6]}") == {}


def test_a_container_silent_past_its_timeout_is_no_longer_listed(admin):
    url, silent, alive = _url(), f"silent-{uuid4().hex[:6]}", f"alive-{uuid4().hex[:6]}"
    loading = f"loading-{uuid4().hex[:6]}"
    admin.call("serving.register_container", **_info(silent, url), timeout=2)
    admin.call("serving.register_container", **_info(loading, None), timeout=2)
    admin.call("serving.register_container", **_info(alive, url), timeout=60)
    _report(admin, silent, url, 1)
    started = time.monotonic()
    ids = [silent, alive]
    while silent in ids:
        assert time.monotonic() - started < 30, "the silent container is still listed"
        time.sleep(0.3)
        ids = [i["id"] for i in admin.call("serving.get_endpoint_details", endpoint_url=url)["instances"]]
    # A report refreshes the timeout the container registered with, so it lasted at least those 2s.
    assert time.monotonic() - started >= 1.5
    assert ids == [alive]
    assert loading not in {i["id"] for i in admin.call("serving.get_loading_instances")["instances"]}
    # Reporting again registers it anew (with the default timeout).
    _report(admin, silent, url, 1)
    assert _endpoint(admin, url)["instances"] == 2


def _chart(admin, url: str, **extra) -> dict:
    now = int(time.time())
    return admin.call("serving.get_endpoint_metrics_history", endpoint_url=url, from_date=now - 60,
                      to_date=now + 40, interval=1, **extra)


@pytest.mark.parametrize(("metric_type", "title", "value"), [
    (None, "Number of Requests", 3000),
    ("requests_min", "Requests per Minute", 15),
    ("latency_ms", "Average Latency (ms)", 150),
    ("cpu_count", "CPU Count", 4),
    ("cpu_util", "Average CPU Load (%)", 15),
    ("ram_used", "RAM Used (GB)", 100),
    ("ram_total", "RAM Total (GB)", 128),
    ("gpu_count", "GPU Count", 0),
])
def test_the_metrics_chart_adds_up_the_containers_per_interval(admin, metric_type, title, value):
    url, first, second = _two_containers(admin)
    chart = _chart(admin, url, metric_type=metric_type)
    # interval 1 grows to the minimum of 40s; 100s hold two closed intervals (the third is still open)
    assert chart["computed_interval"] == 40
    assert chart["total"]["title"] == title
    dates = chart["total"]["dates"]
    assert len(dates) == 2 and dates[1] - dates[0] == 40_000
    assert value in chart["total"]["values"] and len(chart["total"]["values"]) == 2
    assert sorted(chart["instances"]) == sorted([first, second])
    for cid, series in chart["instances"].items():
        assert (series["title"], series["dates"], len(series["values"])) == (cid, dates, 2)
    per_container = {"requests": (1000, 2000), "latency_ms": (100, 200)}.get(metric_type or "requests")
    if per_container:
        slot = chart["total"]["values"].index(value)
        assert (chart["instances"][first]["values"][slot], chart["instances"][second]["values"][slot]) == \
            per_container


def test_the_chart_averages_reports_of_one_interval_and_can_leave_out_the_containers(admin):
    url, container = _url(), f"twice-{uuid4().hex[:6]}"
    admin.call("serving.container_status_report", **_info(container, url), requests_num=10, latency_ms=100)
    admin.call("serving.container_status_report", **_info(container, url), requests_num=30, latency_ms=300)
    now = time.time()
    chart = admin.call("serving.get_endpoint_metrics_history", endpoint_url=url, from_date=now - 5, to_date=now + 400,
                       interval=100, metric_type="latency_ms", instance_charts=False)
    assert chart["computed_interval"] == 100
    assert chart["total"]["values"] == [200, 0, 0, 0] and chart["instances"] == {}
    assert chart["total"]["dates"] == [int(now - 5) * 1000 + k * 100_000 for k in range(4)]
    # A range that does not yet hold one closed interval has no points.
    empty = admin.call("serving.get_endpoint_metrics_history", endpoint_url=url, from_date=now - 5, to_date=now,
                       interval=60)
    assert (empty["total"]["dates"], empty["total"]["values"], empty["instances"]) == ([], [], {})
    # A long range gets a longer interval rather than a huge answer.
    whole = int(now)
    year = admin.call("serving.get_endpoint_metrics_history", endpoint_url=url, from_date=whole - 365 * 86400,
                      to_date=whole, interval=1, instance_charts=False)
    assert year["computed_interval"] == 15768 and len(year["total"]["dates"]) == 2000


def test_another_workspace_sees_none_of_the_containers(admin, other_admin):
    url, first, _ = _two_containers(admin)
    loading = f"theirs-{uuid4().hex[:6]}"
    admin.call("serving.register_container", **_info(loading, None))
    assert url not in [e["url"] for e in other_admin.call("serving.get_endpoints")["endpoints"]]
    assert loading not in [i["id"] for i in other_admin.call("serving.get_loading_instances")["instances"]]
    err = other_admin.error("serving.get_endpoint_details", endpoint_url=url)
    assert (err.status, err.subcode) == (400, 1052)  # ClearML's code
    chart = _chart(other_admin, url)
    assert (chart["total"]["values"], chart["instances"]) == ([0, 0], {})
    # The same container id in the other workspace is another container; unregistering it there
    # leaves this one alone.
    other_admin.call("serving.container_status_report", **_info(first, url), requests_num=7)
    assert _endpoint(other_admin, url)["requests"] == 7
    other_admin.call("serving.unregister_container", container_id=first)
    assert _endpoint(admin, url)["instances"] == 2 and _endpoint(admin, url)["requests"] == 3000


@pytest.mark.parametrize(("endpoint", "body", "field", "rule"), [
    ("serving.register_container", {"endpoint_name": "e", "model_name": "m"}, "container_id", "required"),
    ("serving.register_container", {"container_id": "", "endpoint_name": "e", "model_name": "m"},
     "container_id", "minLength"),
    ("serving.register_container", {"container_id": "c", "endpoint_name": "e", "model_name": "m", "timeout": 0},
     "timeout", "minimum"),
    ("serving.register_container", {"container_id": "c", "endpoint_name": "e", "model_name": "m",
                                    "reference": [{"type": "dataset", "value": "x"}]}, "reference.0.type", "enum"),
    ("serving.container_status_report", {"container_id": "c", "endpoint_name": "e", "model_name": "m",
                                         "endpoint_url": "http://x", "requests_num": "many"}, "requests_num", "type"),
    ("serving.container_status_report", {"container_id": "c", "endpoint_name": "e", "model_name": "m",
                                         "endpoint_url": "http://x", "machine_stats": {"cpu_usage": "hot"}},
     "machine_stats.cpu_usage", "type"),
    ("serving.unregister_container", {}, "container_id", "required"),
    ("serving.get_endpoint_details", {}, "endpoint_url", "required"),
    ("serving.get_endpoint_metrics_history", {"endpoint_url": "u", "from_date": 1, "to_date": 2, "interval": 1,
                                              "metric_type": "disk"}, "metric_type", "enum"),
    ("serving.get_endpoint_metrics_history", {"endpoint_url": "u", "from_date": 1, "to_date": 2, "interval": 0},
     "interval", "minimum"),
    ("serving.get_endpoint_metrics_history", {"endpoint_url": "u", "from_date": 5, "to_date": 5, "interval": 1},
     "from_date", "lessThanToDate"),
])
def test_bad_input_is_a_400_naming_the_field_and_the_rule(admin, endpoint, body, field, rule):
    err = admin.error(endpoint, **body)
    assert err.status == 400 and err.meta["error_data"] == {"field": field, "rule": rule}, err.meta


def test_guests_read_endpoints_but_do_not_register_containers(admin, server):
    made = admin.call("users.create", name=f"guest-{uuid4().hex[:6]}", role="guest", credentials=True)["credentials"]
    guest = server.client().login(made["access_key"], made["secret_key"])
    url, _, _ = _two_containers(admin)
    assert _endpoint(guest, url)["instances"] == 2
    err = guest.error("serving.register_container", **_info(f"guest-{uuid4().hex[:6]}", url))
    assert (err.status, err.subcode) == (403, 20)


@pytest.fixture(scope="module")
def sweeping(mongo_uri, tmp_path_factory):
    """A server of its own whose expiry job runs every second."""
    name = f"serving_{uuid4().hex[:8]}"
    proc = ServerProcess(mongo_uri, name, workers=1, extra_env={
        "APISERVER__serving__expiry_check_sec": "1", "APISERVER__scheduler__lease_renew_sec": "1"})
    proc.start(tmp_path_factory.mktemp("serving-jobs"))
    yield proc, name
    proc.stop()


def test_the_expiry_job_deletes_a_silent_container_and_keeps_a_live_one(sweeping, mongo_uri):
    proc, db_name = sweeping
    admin = proc.admin()
    silent, alive = f"silent-{uuid4().hex[:6]}", f"alive-{uuid4().hex[:6]}"
    admin.call("serving.register_container", **_info(silent, None), timeout=1)
    admin.call("serving.register_container", **_info(alive, None), timeout=600)
    with pymongo.MongoClient(mongo_uri, serverSelectionTimeoutMS=10_000) as client:
        coll = client[db_name]["serving_containers"]
        deadline = time.monotonic() + 30
        while coll.count_documents({"container_id": silent}):
            assert time.monotonic() < deadline, "the expiry job did not delete the silent container"
            time.sleep(0.3)
        kept = coll.find_one({"container_id": alive})
        assert kept is not None and kept["expires_at"] > datetime.now(UTC).replace(tzinfo=None)
    assert [i["id"] for i in admin.call("serving.get_loading_instances")["instances"]] == [alive]
