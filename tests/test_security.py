"""Security regressions: each test here failed on the code a penetration test probed (issue 11)."""

from __future__ import annotations

import json
import time

import pytest
import requests

from tests.helpers import basic


@pytest.fixture(scope="module")
def guest(admin, server):
    made = admin.call("users.create", name="Guest Reader", role="guest", credentials=True)
    return server.client().login(made["credentials"]["access_key"], made["credentials"]["secret_key"])


# -- regexes from requests ------------------------------------------------------------------------

EVIL = "(a+)+$"


@pytest.fixture(scope="module")
def evil_names(admin):
    """Names on which a backtracking engine takes exponential time for ``(a+)+$``."""
    name = "a" * 30 + "b"
    project = admin.call("projects.create", name=f"redos-{time.time_ns()}")["id"]
    task = admin.call("tasks.create", name=name, type="training", project=project)["id"]
    admin.call("queues.create", name="a" * 30 + "b-" + str(time.time_ns()))
    return project, task, name


@pytest.mark.parametrize("endpoint,data,key", [
    ("tasks.get_all", {"name": EVIL}, "tasks"),
    ("tasks.get_all", {"_any_": {"pattern": EVIL, "fields": ["name", "comment"]}}, "tasks"),
    ("projects.get_all", {"name": EVIL}, "projects"),
    ("queues.get_all", {"name": EVIL}, "queues"),
    ("users.get_all", {"name": EVIL}, "users"),
])
def test_a_guest_regex_answers_at_once_and_the_server_stays_healthy(server, guest, evil_names, endpoint, data,
                                                                    key):
    import re2

    project, task, name = evil_names
    started = time.monotonic()
    found = guest.call(endpoint, **data)[key]
    elapsed = time.monotonic() - started
    assert elapsed < 1.0, f"{endpoint} took {elapsed:.2f}s"
    # Whatever else the suite created that ends in "a" may match; the names ending in "b" never do.
    # ``_any_`` matches any of its fields, case-insensitively: a task another test commented
    # "edited <id>" is found when its id ends in "a", whatever its name.
    fields, pattern = (data["_any_"]["fields"], "(?i)" + EVIL) if "_any_" in data else (["name"], EVIL)

    def matches(x):
        return any(re2.search(pattern, x.get(f) or "") for f in fields)

    assert [x["name"] for x in found if not matches(x)] == []
    assert task not in [x["id"] for x in found]
    if endpoint == "tasks.get_all":
        assert guest.call(endpoint, project=[project], **data)[key] == []
    assert requests.get(server.base_url + "/health", timeout=2).status_code == 200


def test_patterns_still_match_as_regexes(guest, evil_names):
    project, task, name = evil_names
    assert [t["id"] for t in guest.call("tasks.get_all", name="^a{30}b$", project=[project])["tasks"]] == [task]
    assert [t["id"] for t in guest.call("tasks.get_all", name=f"^{name}$", project=[project])["tasks"]] == [task]
    assert [t["id"] for t in guest.call("tasks.get_all", name="a+b", project=[project])["tasks"]] == [task]
    assert guest.call("tasks.get_all", name="^a{31}b$", project=[project])["tasks"] == []
    found = guest.call("tasks.get_all", _any_={"pattern": "A{30}B", "fields": ["comment", "name"]},
                       project=[project])["tasks"]
    assert [t["id"] for t in found] == [task]  # _any_ is case-insensitive, over any of the fields


@pytest.mark.parametrize("pattern,rule", [("(a)\\1", "pattern"), ("(?=a)a", "pattern"), ("a" * 600, "maxLength")])
def test_patterns_no_linear_engine_can_run_are_clear_400s(guest, pattern, rule):
    err = guest.error("tasks.get_all", name=pattern)
    assert (err.code, err.subcode) == (400, 21)
    assert err.meta["error_data"] == {"field": "name", "rule": rule}


def test_task_names_are_bounded(admin):
    err = admin.error("tasks.create", name="x" * 1001, type="training")
    assert (err.code, err.subcode) == (400, 12)
    assert err.meta["error_data"] == {"field": "name", "rule": "maxLength"}


def test_basic_header_helper_is_used(server):
    """Positive control for the Basic tests below: a good key pair works on any endpoint."""
    from tests.helpers import ADMIN_KEY, ADMIN_SECRET

    assert server.client(basic(ADMIN_KEY, ADMIN_SECRET)).call("debug.ping") == {"msg": "ping"}


# -- tokens end with what made them ------------------------------------------------------------------

def _until_refused(client, deadline_sec: float = 6.0):
    """The first error of ``debug.ping`` within the deadline (tokens are re-checked every 2 s per process)."""
    deadline = time.monotonic() + deadline_sec
    while time.monotonic() < deadline:
        status, body = client.envelope("debug.ping")
        if status != 200:
            return status, body["meta"]
        time.sleep(0.1)
    raise AssertionError("the token kept working")


def test_a_revoked_keys_tokens_stop_working(admin, server):
    made = admin.call("auth.create_credentials", label="revoke-me")["credentials"]
    other = admin.call("auth.create_credentials", label="keep-me")["credentials"]
    doomed = server.client().login(made["access_key"], made["secret_key"])
    kept = server.client().login(other["access_key"], other["secret_key"])
    assert doomed.call("debug.ping") == {"msg": "ping"}
    assert admin.call("auth.revoke_credentials", access_key=made["access_key"]) == {"revoked": 1}
    status, meta = _until_refused(doomed)
    assert (status, meta["result_code"], meta["result_subcode"]) == (401, 401, 32)
    assert "revoked" in meta["result_msg"]
    for _ in range(6):  # both gunicorn workers: the other key's token is untouched
        assert kept.call("debug.ping") == {"msg": "ping"}


def test_a_demoted_users_tokens_stop_working(admin, server):
    made = admin.call("users.create", name="Soon Demoted", role="admin", credentials=True)
    token_client = server.client().login(made["credentials"]["access_key"], made["credentials"]["secret_key"])
    assert token_client.call("users.create", name="made by an admin")["id"]
    assert admin.call("auth.edit_user", user=made["id"], role="guest")["updated"] == 1
    status, meta = _until_refused(token_client)
    assert (status, meta["result_subcode"]) == (401, 32) and "role" in meta["result_msg"]
    # Signing in again gives a token with the new role.
    again = server.client().login(made["credentials"]["access_key"], made["credentials"]["secret_key"])
    assert again.call("users.get_current_user")["user"]["role"] == "guest"
    assert again.error("users.create", name="x").code == 403


def test_a_token_cannot_renew_itself(admin):
    err = admin.error("auth.login")
    assert (err.code, err.subcode) == (401, 10)


# -- sign-in throttling and timing ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def strict_server(mongo_uri, tmp_path_factory):
    """A server with production-like bcrypt cost and a small per-address limit, on its own database."""
    from tests.helpers import ServerProcess

    proc = ServerProcess(mongo_uri, f"sec_{time.time_ns()}", workers=1, extra_env={
        "APISERVER__auth__bcrypt_rounds": "10",
        "APISERVER__auth__sign_in_throttle__max_failures_per_address": "40"})
    proc.start(tmp_path_factory.mktemp("strict"))
    yield proc
    proc.stop()


def _median_wrong_ms(server, key: str, n: int = 5) -> float:
    times = []
    for i in range(n):
        started = time.perf_counter()
        resp = requests.post(server.base_url + "/debug.ping", headers={"Authorization": basic(key, f"wrong-{i}")},
                             timeout=10)
        times.append((time.perf_counter() - started) * 1000)
        assert resp.status_code == 401
    return sorted(times)[n // 2]


def test_wrong_secrets_cost_the_same_before_and_after_a_good_login_and_for_unknown_keys(strict_server):
    admin = strict_server.admin()
    made = admin.call("auth.create_credentials", label="timing")["credentials"]
    before = _median_wrong_ms(strict_server, made["access_key"])
    assert strict_server.client(basic(made["access_key"], made["secret_key"])).call("debug.ping")  # good login
    after = _median_wrong_ms(strict_server, made["access_key"])
    unknown = _median_wrong_ms(strict_server, "NOSUCHKEY0000000000000000")
    # bcrypt at cost 10 is tens of ms; a cached compare or a missing user was ~1 ms.
    assert before > 10
    for other in (after, unknown):
        assert 0.5 < other / before < 2.0, (before, after, unknown)


def test_the_eleventh_wrong_attempt_is_throttled_even_with_the_right_secret(strict_server):
    admin = strict_server.admin()
    made = admin.call("auth.create_credentials", label="throttle")["credentials"]
    key, secret = made["access_key"], made["secret_key"]
    url = strict_server.base_url
    for i in range(10):
        resp = requests.post(url + "/auth.login", headers={"Authorization": basic(key, f"guess-{i}")}, timeout=10)
        assert resp.status_code == 401, i
    resp = requests.post(url + "/auth.login", headers={"Authorization": basic(key, "guess-10")}, timeout=10)
    assert resp.status_code == 429 and resp.json()["meta"]["result_code"] == 429
    assert 1 <= int(resp.headers["Retry-After"]) <= 60
    resp = requests.post(url + "/auth.login", headers={"Authorization": basic(key, secret)}, timeout=10)
    assert resp.status_code == 429  # the right secret does not get through while throttled
    # Other accounts are not affected by this account's failures.
    other = admin.call("auth.create_credentials", label="unaffected")["credentials"]
    assert strict_server.client().login(other["access_key"], other["secret_key"]).call("debug.ping")


def test_password_sign_in_is_throttled_per_user_name(strict_server):
    admin = strict_server.admin()
    admin.call("users.create", name="Pw User", username="pw-user", password="correct horse battery")
    url = strict_server.base_url + "/api/auth/token/obtain"
    assert requests.post(url, json={"username": "pw-user", "password": "correct horse battery"},
                         timeout=10).status_code == 200
    for i in range(10):
        assert requests.post(url, json={"username": "pw-user", "password": f"nope-{i}"}, timeout=10).status_code == 401
    resp = requests.post(url, json={"username": "pw-user", "password": "correct horse battery"}, timeout=10)
    assert resp.status_code == 429 and resp.json()["code"] == 429 and int(resp.headers["Retry-After"]) >= 1


def test_failures_from_one_address_are_throttled_across_accounts(mongo_uri, tmp_path):
    from tests.helpers import ServerProcess

    proc = ServerProcess(mongo_uri, f"addr_{time.time_ns()}", workers=1, extra_env={
        "APISERVER__auth__sign_in_throttle__max_failures_per_address": "5"}).start(tmp_path)
    try:
        url = proc.base_url + "/debug.ping"
        # a client talking to the server directly cannot pose as others: its X-Forwarded-For is ignored
        statuses = [requests.post(url, headers={"Authorization": basic(f"UNKNOWNKEY{i:014d}", "x"),
                                                "X-Forwarded-For": f"203.0.113.{i}"}, timeout=10)
                    .status_code for i in range(7)]
        assert statuses == [401] * 5 + [429] * 2  # 5 failures from this address, whatever the keys
        resp = requests.post(url, headers={"Authorization": basic(*_admin_pair())}, timeout=10)
        assert resp.status_code == 429 and int(resp.headers["Retry-After"]) >= 1
    finally:
        proc.stop()


def test_behind_a_trusted_proxy_clients_are_throttled_by_their_forwarded_address(mongo_uri, tmp_path):
    from tests.helpers import ServerProcess

    proc = ServerProcess(mongo_uri, f"proxied_{time.time_ns()}", workers=1, extra_env={
        "APISERVER__apiserver__trusted_proxies": '["127.0.0.1", "10.0.0.0/8"]',
        "APISERVER__auth__sign_in_throttle__max_failures_per_address": "5"}).start(tmp_path)
    try:
        url = proc.base_url + "/debug.ping"

        def status(forwarded_for: str, pair: tuple[str, str]) -> int:
            return requests.post(url, headers={"Authorization": basic(*pair), "X-Forwarded-For": forwarded_for},
                                 timeout=10).status_code

        wrong = [status("203.0.113.7", (f"UNKNOWNKEY{i:014d}", "x")) for i in range(6)]
        assert wrong == [401] * 5 + [429]
        # the proxy's other clients, all from 127.0.0.1, sign in as before
        assert status("203.0.113.8", _admin_pair()) == 200
        # the right-most hop that is not a listed proxy is the client: a forged hop on the left, or a
        # listed inner proxy on the right, changes nothing
        assert status("198.51.100.1, 203.0.113.7", _admin_pair()) == 429
        assert status("203.0.113.7, 10.1.2.3", _admin_pair()) == 429
        assert status("203.0.113.7, 192.0.2.1", _admin_pair()) == 200  # 192.0.2.1 is an unlisted hop
        # what the server records as the caller's address is the forwarded one
        admin = proc.admin()
        worker = f"proxied-worker-{time.time_ns()}"
        queue = admin.call("queues.create", name=f"proxied-{time.time_ns()}")["id"]
        resp = requests.post(proc.base_url + "/workers.register", json={"worker": worker, "queues": [queue]},
                             headers={"Authorization": admin.auth, "X-Forwarded-For": "203.0.113.8"}, timeout=10)
        assert resp.status_code == 200, resp.text
        listed = admin.call("workers.get_all")["workers"]
        assert [w.get("ip") for w in listed if w["id"] == worker] == ["203.0.113.8"]
    finally:
        proc.stop()


def _admin_pair() -> tuple[str, str]:
    from tests.helpers import ADMIN_KEY, ADMIN_SECRET

    return ADMIN_KEY, ADMIN_SECRET


@pytest.mark.parametrize("name", ["password", "secret_key", "apiKey", "access_token"])
def test_secrets_are_refused_in_query_strings(server, name):
    """The names the registry masks as secrets are the names refused in a URL (one rule)."""
    resp = requests.post(server.base_url + f"/api/auth/token/obtain?{name}=hunter22",
                         json={"username": "nobody"}, timeout=10)
    assert resp.status_code == 400
    assert (resp.json()["field"], resp.json()["rule"]) == (name, "notInQuery")


# -- smaller findings ------------------------------------------------------------------------------------

def test_another_companys_worker_cannot_read_our_task_name(admin, other_admin):
    ours = admin.call("tasks.create", name="our secret experiment", type="training")["id"]
    theirs = other_admin.call("tasks.create", name="their own experiment", type="training")["id"]
    worker = f"spy-{time.time_ns()}"
    other_admin.call("workers.status_report", worker=worker, timestamp=int(time.time() * 1000), task=ours)
    other_admin.call("workers.status_report", worker=worker + "-ok", timestamp=int(time.time() * 1000), task=theirs)
    listed = {w["id"]: w for w in other_admin.call("workers.get_all")["workers"]}
    assert listed[worker + "-ok"]["task"]["name"] == "their own experiment"  # positive control
    assert listed[worker]["task"] is None  # not ours to show: as if the id did not exist
    assert "our secret experiment" not in str(listed)


def test_a_body_over_the_limit_is_a_413_not_a_500(server, admin):
    import http.client

    for path in ("/tasks.get_all", "/api/auth/token/obtain"):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.putrequest("POST", path)
        conn.putheader("Authorization", admin.auth)
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(500 * 1024 * 1024))
        conn.endheaders()
        conn.send(b"{}")
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status == 413, (path, body[:200])
        assert b"Traceback" not in body and b"too large" in body
        conn.close()


def test_an_oversized_json_lines_batch_is_refused_before_parsing(admin, server):
    task = admin.call("tasks.create", name="batch cap", type="training")["id"]
    line = json.dumps({"task": task, "type": "log", "msg": "x", "timestamp": 1}).encode() + b"\n"
    started = time.monotonic()
    status, body, _ = admin.request("POST", "/events.add_batch", raw=line * 200_000 + b"not json\n",
                                    headers={"Content-Type": "application/json-lines"})
    elapsed = time.monotonic() - started
    assert status == 400 and body["meta"]["error_data"] == {"field": "", "rule": "maxItems"}
    assert "200001" in body["meta"]["result_msg"]  # counted, not parsed (the last line is not JSON)
    assert elapsed < 3.0
    status, body, _ = admin.request("POST", "/events.add_batch", raw=line * 3,
                                    headers={"Content-Type": "application/json-lines"})
    assert status == 200 and body["data"]["added"] == 3


def test_the_embedded_database_needs_the_servers_credentials(tmp_path):
    import os
    import stat

    import pymongo
    from pymongo.errors import OperationFailure

    from tests.helpers import ServerProcess

    data = tmp_path / "data"
    for round_ in range(2):  # first start provisions the user; a restart reuses it
        proc = ServerProcess(None, "apiserver", workers=1, data_dir=data).start(tmp_path)
        try:
            admin = proc.admin()
            if round_ == 0:
                admin.call("projects.create", name="kept across restarts")
            assert [p["name"] for p in admin.call("projects.get_all", name="^kept across restarts$")["projects"]] \
                == ["kept across restarts"]
            port = json.loads((data / "embedded.json").read_text())["port"]
            creds = json.loads((data / "db_credentials.json").read_text())
            assert stat.S_IMODE(os.stat(data / "db_credentials.json").st_mode) == 0o600
            assert stat.S_IMODE(os.stat(data).st_mode) == 0o700
            anonymous = pymongo.MongoClient("127.0.0.1", port, retryWrites=False, serverSelectionTimeoutMS=5000)
            with pytest.raises(OperationFailure, match="requires authentication"):
                anonymous.apiserver.server_settings.find_one()
            wrong = pymongo.MongoClient("127.0.0.1", port, username=creds["user"], password="guess",
                                        authSource="admin", retryWrites=False, serverSelectionTimeoutMS=5000)
            with pytest.raises(OperationFailure):
                wrong.apiserver.server_settings.find_one()
            right = pymongo.MongoClient("127.0.0.1", port, username=creds["user"], password=creds["password"],
                                        authSource="admin", retryWrites=False, serverSelectionTimeoutMS=5000)
            assert right.apiserver.server_settings.find_one({"_id": "token_secret"})  # positive control
            assert [u["user"] for u in right.admin.command("usersInfo")["users"]] == ["apiserver"]
        finally:
            proc.stop()


def test_open_status_reports_leave_one_record_per_member_and_hide_member_ids(server, admin):
    from pymongo import MongoClient

    url = server.base_url + "/status_report"
    project = f"spam-{time.time_ns()}"
    for i in range(30):
        resp = requests.get(url, params={"container_id": "bms", "user_id": f"u{i}", "project_id": project,
                                         "status": "success"}, timeout=10)
        assert resp.status_code == 200 and resp.text == "OK"
    bad = requests.get(url, params={"container_id": "no-such-member", "status": "success"}, timeout=10)
    assert bad.status_code == 400
    assert "labelling" not in bad.text and "known:" not in bad.text  # no list of member ids for strangers
    db = MongoClient(server.env["APISERVER__database__uri"])[server.env["APISERVER__database__name"]]
    records = list(db.pipeline_log.find({"container_id": "bms", "params.project_id": project}))
    assert len(records) == 1 and records[0]["count"] == 30 and records[0]["params"]["user_id"] == "u29"
    # A signed-in caller still learns which ids exist.
    err = admin.error("workflows.create", project_id=project, workflow=["no-such-member"])
    assert "labelling" in err.msg
