"""Running it in production: /metrics summed over two gunicorn workers, JSON log lines carrying the
request id the client got, and /health/ready (503 before the database answers and while the server
drains at shutdown, 200 otherwise). One server per scenario; the drain test stops this module's server,
so it comes last."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from uuid import uuid4

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from pymongo import uri_parser

from apiserver import __version__
from tests.helpers import ADMIN_KEY, ADMIN_SECRET, ServerProcess, basic, free_port, until
from tests.test_database_stall import StallingRelay

DRAIN_SEC = 3


@pytest.fixture(scope="module")
def obs_server(mongo_uri, tmp_path_factory):
    proc = ServerProcess(mongo_uri, f"obs_{uuid4().hex[:8]}", workers=2,
                         extra_env={"APISERVER__apiserver__log_format": "json",
                                    "APISERVER__apiserver__shutdown_drain_sec": str(DRAIN_SEC)})
    proc.start(tmp_path_factory.mktemp("obs-logs"))
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def obs_admin(obs_server):
    return obs_server.admin()


def scrape(server: ServerProcess) -> dict[tuple[str, frozenset], float]:
    resp = requests.get(server.base_url + "/metrics", auth=(ADMIN_KEY, ADMIN_SECRET), timeout=10)
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"].startswith("text/plain")
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(resp.text) for s in family.samples}


def info_pid(server: ServerProcess) -> int:
    resp = requests.post(server.base_url + "/server.info", json={}, timeout=10,
                         headers={"Authorization": basic(ADMIN_KEY, ADMIN_SECRET), "Connection": "close"})
    assert resp.status_code == 200, resp.text
    return resp.json()["data"]["process_id"]


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_metrics_count_every_workers_requests(obs_server, obs_admin):
    before = scrape(obs_server)
    pids: list[int] = []
    with ThreadPoolExecutor(8) as pool:  # new connections at once, so both workers take some
        while len(set(pids)) < 2 and len(pids) < 400:
            pids += pool.map(lambda _: info_pid(obs_server), range(40))
    for _ in range(3):
        assert requests.post(obs_server.base_url + "/tasks.get_all", json={}, timeout=10).status_code == 401
    after = scrape(obs_server)
    assert len(set(pids)) == 2, "the calls reached one worker only; both must count"
    assert value(after, "apiserver_requests_total", endpoint="server.info", code="200") - \
        value(before, "apiserver_requests_total", endpoint="server.info", code="200") == len(pids)
    assert value(after, "apiserver_requests_total", endpoint="tasks.get_all", code="401") - \
        value(before, "apiserver_requests_total", endpoint="tasks.get_all", code="401") == 3
    assert value(after, "apiserver_request_duration_seconds_count", endpoint="server.info") - \
        value(before, "apiserver_request_duration_seconds_count", endpoint="server.info") == len(pids)
    timed = sum(v for (name, _), v in after.items() if name == "apiserver_database_command_duration_seconds_count")
    assert timed > 0, "no database command was timed"
    # the first scrape counts itself once the answer is written: it is in the second
    assert value(after, "apiserver_requests_total", endpoint="server.metrics", code="200") >= 1


def test_scrape_time_gauges_and_events_stored(obs_server, obs_admin):
    before = scrape(obs_server)
    queue = obs_admin.call("queues.create", name=f"obs-{uuid4().hex[:6]}")["id"]
    task = obs_admin.call("tasks.create", name="observed", type="training")["id"]
    obs_admin.call("tasks.enqueue", task=task, queue=queue)
    obs_admin.call("workers.register", worker=f"obs-worker-{uuid4().hex[:6]}", queues=[queue])
    events = [{"task": task, "type": "training_stats_scalar", "metric": "loss", "variant": "train",
               "iter": i, "value": 1.0 / (i + 1)} for i in range(5)]
    status, reply, _ = obs_admin.request("POST", "/events.add_batch", raw="\n".join(json.dumps(e) for e in events),
                                         headers={"Content-Type": "application/json-lines"})
    assert status == 200 and reply["data"]["added"] == 5, reply
    after = scrape(obs_server)
    assert value(after, "apiserver_events_stored_total") - value(before, "apiserver_events_stored_total") == 5
    queues = {dict(labels)["queue_id"]: v for (name, labels), v in after.items() if name == "apiserver_queue_length"}
    assert queues[queue] == 1
    assert value(after, "apiserver_workers_online") == value(before, "apiserver_workers_online") + 1
    holders = [dict(labels) for (name, labels), v in after.items() if name == "apiserver_lease_holder" and v == 1]
    assert [h["lease"] for h in holders].count("scheduler") == 1, holders
    for status_name in ("waiting", "rendering", "completed"):
        assert ("apiserver_render_tasks", frozenset({"status": status_name}.items())) in after
    assert ("apiserver_pipelines", frozenset({"status": "running"}.items())) in after


def test_metrics_need_an_admin(obs_server):
    assert requests.get(obs_server.base_url + "/metrics", timeout=10).status_code == 401


def test_json_log_lines_carry_the_request_id(obs_server, obs_admin):
    mine = f"obs-{uuid4().hex[:12]}"
    status, body, headers = obs_admin.request("POST", "/server.info", {}, headers={"X-Request-Id": mine})
    assert status == 200 and headers["X-Request-Id"] == mine and body["meta"]["id"] == mine
    status, body, headers = obs_admin.request("POST", "/server.info", {}, headers={"X-Request-Id": "bad id\u00e9!"})
    given = headers["X-Request-Id"]
    assert given != "bad id\u00e9!" and body["meta"]["id"] == given  # an unsafe id is replaced, not echoed

    def logged() -> list[dict]:
        lines = obs_server.log_path.read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]  # every line is one JSON object

    records = until("both requests logged",
                    lambda: (r := logged()) and {mine, given} <= {x.get("request_id") for x in r} and r)
    line = next(r for r in records if r.get("request_id") == mine and r.get("logger") == "apiserver.request")
    who = obs_admin.call("users.get_current_user")["user"]
    assert line["endpoint"] == "server.info" and line["status"] == 200 and line["level"] == "INFO"
    assert line["company"] == who["company"]["id"] and line["user"] == who["id"]
    assert isinstance(line["duration_ms"], float) and line["time"].startswith("20")


def test_the_migrations_ran_once_for_both_workers(obs_server):
    """Two workers started on a new database: one took the migrations lease and ran them, logging
    each with its count; the other found the schema version current."""
    def logged() -> list[dict]:
        return [json.loads(line) for line in obs_server.log_path.read_text().splitlines() if line.strip()]

    def both_ready() -> bool:  # the second worker may still be starting when the first answers
        return len({r["pid"] for r in logged() if r["message"].startswith(f"API server {__version__} ready")}) == 2

    until("both workers started", both_ready)
    records = logged()
    started = [r for r in records if r["message"].startswith("migration 1 (")]
    done = [r for r in records if r["message"].startswith("migration 1 done: 0 records changed")]
    assert len(started) == 1 and len(done) == 1 and started[0]["pid"] == done[0]["pid"], started + done


def test_ready_when_started(obs_server):
    resp = requests.get(obs_server.base_url + "/health/ready", timeout=10)
    assert resp.status_code == 200 and resp.json() == {"status": "ready"}


def test_ready_is_503_while_the_server_drains_at_shutdown(obs_server):
    """Last in this module: it stops the module's server."""
    obs_server.proc.send_signal(signal.SIGTERM)
    began = time.monotonic()
    until("/health/ready answers 503",
          lambda: requests.get(obs_server.base_url + "/health/ready", timeout=5).status_code == 503, timeout=DRAIN_SEC)
    assert requests.get(obs_server.base_url + "/health", timeout=5).status_code == 200  # alive, still serving
    assert "shutting down" in requests.get(obs_server.base_url + "/health/ready", timeout=5).json()["message"]
    assert obs_server.proc.wait(DRAIN_SEC + 30) == 0
    assert time.monotonic() - began >= DRAIN_SEC - 0.5


def test_ready_is_503_until_the_database_answers(mongo_uri, tmp_path):
    """Started against a database address where nothing answers: the probes answer (503) and nothing
    else; once the database answers there (a relay to the session's database opens on it), the server
    finishes starting and is ready."""
    host, port = uri_parser.parse_uri(mongo_uri)["nodelist"][0]
    relay_port, relay = free_port(), None
    uri = mongo_uri.replace(f"{host}:{port}", f"127.0.0.1:{relay_port}", 1)
    # SecantusDB answers as a replica set member naming its own address: reach it through the relay only
    uri += ("&" if "?" in uri else "/?") + "directConnection=true"
    server = ServerProcess(uri, f"ready_{uuid4().hex[:8]}", workers=1,
                           extra_env={"APISERVER__database__server_selection_timeout_sec": "1"})
    server.log_path = tmp_path / "server.log"
    server._log = open(server.log_path, "ab")  # noqa: SIM115 - closed by stop()
    server.proc = subprocess.Popen(server.argv, cwd=server.cwd, env=server.env, stdout=server._log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        until("the server answers /health/ready", lambda: _status(server, "/health/ready") is not None, timeout=60)
        for _ in range(3):
            assert _status(server, "/health/ready") == 503
            assert _status(server, "/health") == 503  # it answers: the process lives, the database does not
            time.sleep(0.5)
        login = requests.post(server.base_url + "/auth.login", timeout=5,
                              headers={"Authorization": basic(ADMIN_KEY, ADMIN_SECRET)})
        assert login.status_code == 503 and login.json()["meta"]["result_subcode"] == 2
        relay = StallingRelay(host, port, listen_port=relay_port).start()  # never stalled: a plain relay
        until("ready once the database answers", lambda: _status(server, "/health/ready") == 200, timeout=60)
        assert server.admin().call("server.info")["version"]
    finally:
        server.stop()
        if relay is not None:
            relay.close()


def test_a_starting_app_is_not_ready_though_the_state_is_set(app):
    """The gap between a waiting start-up's set_state and the swap of its wsgi_app: the started state
    is there and its database answers, yet the starting app serves. Only /health answers there; its
    /health/ready is 503 like every other call (it was 200 while the rest answered 503)."""
    from apiserver.app import _probes_only_app
    from apiserver.state import get_state

    starting = _probes_only_app(get_state().config).test_client()
    ready = starting.get("/health/ready")
    assert ready.status_code == 503 and "starting" in ready.get_json()["message"], ready.get_data()
    assert starting.get("/health").status_code == 200
    assert starting.post("/server.info", json={}).status_code == 503


def _status(server: ServerProcess, path: str) -> int | None:
    assert server.proc.poll() is None, f"the server exited with {server.proc.returncode}:\n{server.log()}"
    try:
        return requests.get(server.base_url + path, timeout=5).status_code
    except requests.RequestException:
        return None
