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

import requests

from tests.helpers import ADMIN_KEY, ADMIN_SECRET, ROOT, ServerProcess, basic


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
                         argv=[sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"])
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
