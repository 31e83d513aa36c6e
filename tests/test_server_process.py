"""The server as deployed: a real process, the embedded database it owns, gunicorn workers."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from uuid import uuid4

import pytest
import requests

from tests.helpers import ADMIN_KEY, ADMIN_SECRET, ROOT, ServerProcess, basic, free_port


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_embedded_database_starts_persists_and_stops_with_the_server(tmp_path):
    data_dir = tmp_path / "data"
    first = ServerProcess(None, "persist", workers=1, data_dir=data_dir).start(tmp_path)
    try:
        info = json.loads((data_dir / "embedded.json").read_text())
        db_port = info["port"]
        assert listening(db_port)
        admin = first.admin()
        assert admin.call("server.info")["database"] == "secantusdb"
        creds = admin.call("auth.create_credentials", label="survives restart")["credentials"]
    finally:
        assert first.stop() == 0
    # the database child stopped with the server and released its folder
    deadline = time.monotonic() + 10
    while listening(db_port) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not listening(db_port)
    assert not (data_dir / "embedded.json").exists()

    second = ServerProcess(None, "persist", workers=1, data_dir=data_dir).start(tmp_path)
    try:
        client = second.client().login(creds["access_key"], creds["secret_key"])
        labels = [c["label"] for c in client.call("auth.get_credentials")["credentials"]]
        assert "survives restart" in labels
    finally:
        assert second.stop(signal.SIGINT) == 0  # Ctrl-C is a clean stop


def test_two_gunicorn_workers_share_one_embedded_database(tmp_path):
    env = {"APISERVER__database__embedded__data_dir": str(tmp_path / "data"), "APISERVER__apiserver__workers": "2"}
    proc = ServerProcess(None, "gunicorn", extra_env=env,
                         argv=[sys.executable, "-m", "gunicorn", "-c", "python:apiserver.gunicorn_conf",
                               "apiserver.wsgi:app"])
    proc.env["APISERVER__apiserver__listen__port"] = str(proc.port)
    proc.start(tmp_path)
    try:
        auth = basic(ADMIN_KEY, ADMIN_SECRET)
        created = proc.client(auth).call("auth.create_credentials", label="shared")["credentials"]["access_key"]
        pids = set()
        for _ in range(400):  # a new connection each time, until both workers have answered
            close = {"Authorization": auth, "Connection": "close"}
            resp = requests.post(f"{proc.base_url}/auth.get_credentials", headers=close)
            assert created in [c["access_key"] for c in resp.json()["data"]["credentials"]]
            pids.add(requests.post(f"{proc.base_url}/server.info", headers=close).json()["data"]["process_id"])
            if len(pids) == 2:
                break
        assert len(pids) == 2, f"expected both workers to answer, got {pids}"
        # one database process for the folder, owned by the gunicorn master
        owner = json.loads((tmp_path / "data" / "embedded.json").read_text())["owner_pid"]
        assert owner == proc.proc.pid and owner not in pids
    finally:
        assert proc.stop() == 0
    assert not (tmp_path / "data" / "embedded.json").exists()


def test_health_is_open_and_everything_else_needs_credentials(server):
    assert requests.get(server.base_url + "/health").json() == {"status": "ok", "database": "ok"}
    for path in ("/server.info", "/debug.ping", "/openapi.json", "/auth.get_credentials", "/v2.13/users.get_all"):
        method = "GET" if path == "/openapi.json" else "POST"
        resp = requests.request(method, server.base_url + path)
        assert resp.status_code == 401, path


def test_openapi_document(admin, server):
    status, doc, _ = admin.request("GET", "/openapi.json")
    assert status == 200 and doc["openapi"] == "3.1.0"
    assert "/auth.login" in doc["paths"] and "post" in doc["paths"]["/auth.login"]
    assert doc["paths"]["/health"]["get"]["security"] == []
    assert doc["paths"]["/api/auth/workspace"]["get"]["security"]
    refs = json.dumps(doc)
    assert "#/definitions/" not in refs  # every $ref points into components
    for name in set(re.findall(r'"#/components/schemas/([^"]+)"', refs)):
        assert name in doc["components"]["schemas"]


def test_server_info(admin):
    info = admin.call("server.info")
    assert info["api_version"] == "2.23" and info["version"]
    assert info["database"] in ("secantusdb", "mongodb") and info["uptime_sec"] >= 0
    assert info["process_id"] != os.getpid()


def test_a_misspelled_config_key_stops_start_up_naming_it(tmp_path):
    env = {**os.environ, "APISERVER__database__nmae": "x"}
    proc = subprocess.run([sys.executable, "-m", "apiserver", "--port", "1", "--data-dir", str(tmp_path)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "'database.nmae' (did you mean 'database.name'?)" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "embedded.json").exists()  # it stopped before starting anything


def test_a_broken_spec_stops_a_real_start_naming_its_file(tmp_path):
    """The server's own copy, one service file broken: ``python -m apiserver`` stops before starting
    anything, naming the file and the problem, with no traceback."""
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(ROOT / "apiserver", root / "apiserver", ignore=shutil.ignore_patterns("__pycache__"))
    spec = root / "apiserver" / "schema" / "services" / "queues.conf"
    spec.write_text(spec.read_text() + '\nbroken_endpoint { "2.1" { request { type: nonsense } } }\n')
    data_dir = tmp_path / "data"
    proc = subprocess.run([sys.executable, "-m", "apiserver", "--port", str(free_port()), "--data-dir",
                           str(data_dir)], cwd=root, env={**os.environ, "PYTHONPATH": str(root)},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.startswith("apiserver: ") and "queues.conf" in proc.stderr, proc.stderr[-2000:]
    assert "broken_endpoint" in proc.stderr and "Traceback" not in proc.stderr
    assert not (data_dir / "embedded.json").exists()  # no database was started


def test_a_second_server_on_a_data_folder_in_use_refuses_to_start(tmp_path):
    data_dir = tmp_path / "data"
    first = ServerProcess(None, "locked", workers=1, data_dir=data_dir).start(tmp_path)
    try:
        env = {**os.environ, "APISERVER__database__embedded__start_timeout_sec": "2",
               "APISERVER_ADMIN_ACCESS_KEY": ADMIN_KEY, "APISERVER_ADMIN_SECRET_KEY": ADMIN_SECRET}
        env.pop("APISERVER__database__uri", None)
        second = subprocess.run([sys.executable, "-m", "apiserver", "--port", str(free_port()), "--workers", "1",
                                 "--data-dir", str(data_dir)], cwd=ROOT, env=env, capture_output=True, text=True,
                                timeout=90)
        owner = json.loads((data_dir / "embedded.json").read_text())
        assert second.returncode != 0
        assert (f"the data folder {data_dir.resolve()} is in use by another server (server pid "
                f"{owner['owner_pid']}, database on port {owner['port']}); stop it or use another --data-dir"
                ) in second.stderr + second.stdout
        # the first server and its database went on serving
        assert first.admin().call("debug.ping") == {"msg": "ping"}
        assert json.loads((data_dir / "embedded.json").read_text()) == owner
    finally:
        first.stop()


def test_config_layers_environment_and_debug_reach_a_running_server(tmp_path, mongo_uri, admin):
    """Two config folders in order (the later wins key by key, the earlier's other keys stay), an
    APISERVER__ variable over both, and debug stacks only from a server whose debug is on."""
    first, later = tmp_path / "first", tmp_path / "later"
    first.mkdir()
    later.mkdir()
    (first / "apiserver.conf").write_text("debug: false\ncheck_max_version: false\n")
    (first / "auth.conf").write_text(
        'fixed_users: [{username: "layered", company: "layered-co", role: admin, '
        'access_key: "LAYEREDKEY00000000000AAA", secret_key: "layered-secret-0123456789"}]\n')
    (later / "apiserver.conf").write_text("debug: true\n")
    proc = ServerProcess(mongo_uri, f"layers_{uuid4().hex[:8]}", workers=1, extra_env={
        "APISERVER_CONFIG_DIR": f"{first}{os.pathsep}{later}", "APISERVER__apiserver__check_max_version": "true"})
    proc.start(tmp_path)
    try:
        layered = proc.client().login("LAYEREDKEY00000000000AAA", "layered-secret-0123456789")  # first's key
        me = layered.call("users.get_current_user")["user"]
        assert me["company"] == {"id": me["company"]["id"], "name": "layered-co"}, me
        # the variable over the first folder's false: a version above the maximum is refused
        status, body = layered.envelope("debug.ping", "999.0")
        assert (status, body["meta"]["result_subcode"]) == (400, 31)
        status, body = admin.envelope("debug.ping", "999.0")  # the session server keeps the default
        assert (status, body["meta"]["endpoint"]["actual_version"]) == (200, "2.1")
        # the later folder's debug: true over the first's false: errors carry their stack
        status, body = layered.envelope("tasks.get_by_id", task="no-such-task")
        assert (status, body["meta"]["result_subcode"]) == (400, 101)
        assert body["meta"]["error_stack"].startswith("Traceback (most recent call last):")
        status, rest_error, _ = layered.request("GET", "/tasks/999999")
        assert status == 404 and rest_error["error_stack"].startswith("Traceback (most recent call last):")
        # debug off (the default): no stack in either form
        status, body = admin.envelope("tasks.get_by_id", task="no-such-task")
        assert (status, body["meta"]["result_subcode"], body["meta"]["error_stack"]) == (400, 101, None)
        status, rest_error, _ = admin.request("GET", "/tasks/999999")
        assert status == 404 and "error_stack" not in rest_error and rest_error["subcode"] == 1
    finally:
        proc.stop()


def test_a_database_from_an_earlier_version_starts_and_keeps_its_pipeline_index(tmp_path, mongo_uri):
    """Earlier versions declared the one-running-pipeline index on the model, so mongoengine created it
    with its own options (background: false). Asking for the same name with other options is refused,
    which stopped a server on such a database from booting; the index must be kept as it is."""
    import pymongo

    db_name = f"upgraded_{uuid4().hex[:8]}"
    client = pymongo.MongoClient(mongo_uri)
    try:
        pipelines = client[db_name].pipelines
        pipelines.create_index([("user_id", 1), ("project_id", 1)], name="one_running_per_user_project",
                               unique=True, background=False, partialFilterExpression={"status": "running"})
        proc = ServerProcess(mongo_uri, db_name, workers=1).start(tmp_path)
        try:
            assert proc.client().login(ADMIN_KEY, ADMIN_SECRET).call("debug.ping") == {"msg": "ping"}
        finally:
            assert proc.stop() == 0, proc.log()
        index = pipelines.index_information()["one_running_per_user_project"]
        assert index["unique"] and index["partialFilterExpression"] == {"status": "running"}, index
        pipelines.insert_one({"user_id": "u", "project_id": "p", "status": "running"})
        with pytest.raises(pymongo.errors.DuplicateKeyError):  # it still holds one running pipeline
            pipelines.insert_one({"user_id": "u", "project_id": "p", "status": "running"})
    finally:
        client.drop_database(db_name)
        client.close()
