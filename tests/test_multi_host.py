"""Several API hosts on one database host: ``python -m apiserver database`` runs the embedded database
on its own, and two API servers (separate processes, separate data folders, files on GridFS) join it
by the URI it prints. What one host does, the other sees: files, revoked keys, the scheduler's jobs
(a pipeline survives the death of the host that ran it) and render claims."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from uuid import uuid4

import pymongo
import pytest
import requests

from tests.helpers import ROOT, ServerProcess, parent_pid, race, until
from tests.test_clearml_sdk_files import make_workdir, run_sdk
from tests.test_manager import Rest, _render_worker, make_task
from tests.test_pipelines import FAST, Members, register, wait_for

DB_NAME = "apiserver"  # what every host uses by default: they share it through the URI alone
HOST_ENV = {**FAST, "APISERVER__files__backend": "gridfs", "APISERVER__auth__token_recheck_sec": "2"}


class DatabaseHost:
    """``python -m apiserver --data-dir D database --port P`` in its own process group."""

    def __init__(self, data_dir: Path, log_dir: Path):
        from tests.helpers import free_port

        self.port = free_port()
        self.data_dir = data_dir
        self.log_path = log_dir / "database-host.log"
        self.proc: subprocess.Popen | None = None
        self.uri = ""

    def start(self, timeout: float = 60) -> DatabaseHost:
        env = {k: v for k, v in os.environ.items() if not k.startswith("APISERVER__")}
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "apiserver", "--data-dir", str(self.data_dir),
                                          "database", "--port", str(self.port)], cwd=ROOT, env=env,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not (found := re.search(r"APISERVER__database__uri='([^']+)'", self.log())):
            assert self.proc.poll() is None, f"the database host exited:\n{self.log()}"
            assert time.monotonic() < deadline, f"no URI printed in {timeout}s:\n{self.log()}"
            time.sleep(0.2)
        self.uri = found.group(1)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode


def _lease_holder_pid(uri: str) -> int | None:
    with pymongo.MongoClient(uri, serverSelectionTimeoutMS=10_000) as client:
        holder = (client[DB_NAME]["leases"].find_one({"_id": "scheduler"}) or {}).get("holder")
    return int(holder.split(":")[1]) if holder else None


def _held_by(uri: str, host: ServerProcess) -> bool:
    pid = _lease_holder_pid(uri)
    try:
        return pid is not None and parent_pid(pid) == host.proc.pid
    except (OSError, IndexError):  # the holder's process is gone
        return False


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    """The database host, then API host A (which takes the scheduler lease: it starts first), then B."""
    base = tmp_path_factory.mktemp("multi-host")
    database = DatabaseHost(base / "db-host", base).start()
    started: list[ServerProcess] = []
    try:
        a = ServerProcess(database.uri, DB_NAME, workers=1, data_dir=base / "host-a", extra_env=HOST_ENV)
        started.append(a.start(base))
        until("host A holds the scheduler lease", lambda: _held_by(database.uri, a))
        b = ServerProcess(database.uri, DB_NAME, workers=2, data_dir=base / "host-b", extra_env=HOST_ENV)
        started.append(b.start(base))
        yield database, a, b
    finally:
        for host in started:
            host.stop()
        assert database.stop() == 0, database.log()
    assert not (base / "db-host" / "embedded.json").exists()  # the database stopped with its host


def test_the_database_host_requires_its_credentials_and_keeps_its_folder(hosts):
    database, a, _ = hosts
    assert "apiserver:" in database.uri and f"127.0.0.1:{database.port}" in database.uri
    anonymous = pymongo.MongoClient(f"mongodb://127.0.0.1:{database.port}/", serverSelectionTimeoutMS=5000)
    with pytest.raises(pymongo.errors.OperationFailure):
        anonymous[DB_NAME]["tasks"].find_one()
    anonymous.close()
    assert (database.data_dir / "db_credentials.json").stat().st_mode & 0o077 == 0
    # the API hosts ran no database of their own
    assert not (Path(a.argv[a.argv.index("--data-dir") + 1]) / "db").exists()


SDK_UPLOAD = """
import hashlib, json, os
from clearml import Task

task = Task.init(project_name="multi-host", task_name="upload via A", reuse_last_task_id=False,
                 auto_connect_frameworks=False, auto_resource_monitoring=False)
blob = os.urandom(300_000)
open("blob.bin", "wb").write(blob)
task.upload_artifact("blob", artifact_object="blob.bin", wait_on_upload=True)
task.close()
print("RESULT", json.dumps({"url": Task.get_task(task.id).artifacts["blob"].url,
                            "sha256": hashlib.sha256(blob).hexdigest(), "task": task.id}))
"""


def test_a_file_uploaded_through_host_a_with_the_sdk_is_served_by_host_b(hosts, tmp_path):
    _, a, b = hosts
    got = run_sdk(make_workdir(a.base_url, tmp_path), SDK_UPLOAD, "upload.py")
    assert got["url"].startswith(a.base_url + "/files/"), got["url"]
    path = got["url"][len(a.base_url):]
    admin_b = b.admin()
    resp = requests.get(b.base_url + path, headers={"Authorization": admin_b.auth}, timeout=30)
    assert resp.status_code == 200 and hashlib.sha256(resp.content).hexdigest() == got["sha256"]
    assert requests.get(b.base_url + path, timeout=30).status_code == 401  # and not to anyone
    task = admin_b.call("tasks.get_by_id", task=got["task"])["task"]
    assert task["name"] == "upload via A" and task["status"] == "completed"


def test_a_key_revoked_on_host_a_is_refused_by_host_b_within_the_recheck_period(hosts):
    _, a, b = hosts
    admin_a = a.admin()
    made = admin_a.call("auth.create_credentials", label="multi-host")["credentials"]
    on_b = b.client().login(made["access_key"], made["secret_key"])
    for _ in range(4):  # both of B's workers have checked the token and remember it as good
        assert on_b.call("debug.ping") == {"msg": "ping"}
    assert admin_a.call("auth.revoke_credentials", access_key=made["access_key"]) == {"revoked": 1}
    revoked = time.monotonic()
    time.sleep(2.0 + 0.3)  # auth.token_recheck_sec, and a margin for the call in flight
    assert time.monotonic() - revoked >= 2.0
    for _ in range(4):  # every worker of B refuses it now
        status, body = on_b.envelope("debug.ping")
        assert (status, body["meta"]["result_subcode"]) == (401, 32), body["meta"]


def test_render_claims_through_both_hosts_hand_out_every_task_once(hosts):
    _, a, b = hosts
    admin = a.admin()
    rest = Rest(b.base_url, admin.auth)
    ids = {make_task(rest, priority=i % 5, frame_start=i, frame_end=i + 2)["id"] for i in range(120)}
    tag = uuid4().hex[:6]
    results = race(_render_worker, [((a, b)[i % 2].base_url, admin.auth, f"mh-{tag}-{i}")
                                    for i in range(6)], timeout=300)
    rendered = [t for r in results for t in r]
    assert sorted(rendered) == sorted(ids), f"{len(rendered)} rendered, {len(set(rendered))} distinct"
    assert all(results), [len(r) for r in results]  # all six took part


def test_a_pipeline_survives_the_death_of_the_host_that_ran_it(hosts, tmp_path):
    """(Last: it kills A.) A holds the scheduler lease and starts a pipeline; in its first step A's whole process group
    gets SIGKILL. B takes the lease over and its heartbeat completes the pipeline, with exactly one
    /start per step. The members report to A (dead), so only B's heartbeat can move the pipeline on."""
    database, a, b = hosts
    assert _held_by(database.uri, a)
    members = Members(a.base_url, tmp_path)
    try:
        workflow = ["labelling", "bms", "neck_nas"]
        members.start("labelling", "4:success")
        members.start("bms", "0.5:success")
        members.start("neck_nas", "0.5:success")
        admin_a = a.admin()
        register(admin_a, members, *workflow)
        pid = admin_a.call("workflows.create", project_id=f"mh-{uuid4().hex[:6]}", workflow=workflow)["id"]
        assert admin_a.call("workflows.start", pipeline=pid)["pipeline"]["steps"][0]["start_calls"] == 1
        assert members.calls("labelling").get("start") == 1
        os.killpg(a.proc.pid, signal.SIGKILL)
        a.proc.wait(10)
        until("host B takes the scheduler lease", lambda: _held_by(database.uri, b), timeout=30)
        admin_b = b.admin()
        done = wait_for(admin_b, pid, timeout=90)
        assert (done["status"], [(s["status"], s["start_calls"]) for s in done["steps"]]) == \
            ("completed", [("completed", 1)] * 3), done
        assert {cid: members.calls(cid).get("start", 0) for cid in workflow} == dict.fromkeys(workflow, 1)
    finally:
        members.stop_all()
