"""The background jobs as the scheduler runs them: a server process of its own with one-second job
periods from config; every effect is observed through the API (or the lease document), never by
calling a job by hand. Each "it happened" check has a positive control beside it that must not happen."""

from __future__ import annotations

import functools
import os
import re
import signal
import time
from uuid import uuid4

import pymongo
import pytest
import requests

from tests.helpers import RestClient, ServerProcess, parent_pid, until

JOBS = {
    "APISERVER__workers__expiry_check_sec": "1",
    "APISERVER__manager__timeout_check_sec": "1",
    "APISERVER__manager__worker_timeout_sec": "2",
    "APISERVER__tasks__non_responsive_check_sec": "1",
    "APISERVER__tasks__non_responsive_timeout_sec": "3",
    "APISERVER__queues__metrics_sample_sec": "1",
    "APISERVER__scheduler__lease_renew_sec": "1",
    "APISERVER__scheduler__lease_ttl_sec": "3",
    "APISERVER__files__delete_check_sec": "1",
    "APISERVER__files__delete_delay_sec": "0",
    "APISERVER__files__incoming_sweep_sec": "1",
}


def now_ms() -> int:
    return int(time.time() * 1000)


@pytest.fixture(scope="module")
def jobs(mongo_uri, tmp_path_factory):
    files = tmp_path_factory.mktemp("jobs-files")
    proc = ServerProcess(mongo_uri, f"jobs_{uuid4().hex[:8]}", workers=1,
                         extra_env={**JOBS, "APISERVER__files__local__dir": str(files)})
    proc.files_dir = files
    proc.start(tmp_path_factory.mktemp("jobs"))
    yield proc
    proc.stop()


def test_the_expiry_job_expires_a_silent_worker_and_not_a_reporting_one(jobs):
    admin = jobs.admin()
    silent, alive = f"silent:{uuid4().hex[:6]}", f"alive:{uuid4().hex[:6]}"
    task = admin.call("tasks.create", name="held", type="training")["id"]
    admin.call("workers.register", worker=silent, timeout=2)
    admin.call("workers.status_report", worker=silent, timestamp=now_ms(), task=task)
    admin.call("workers.register", worker=alive, timeout=2)

    def listed_without_silent() -> set[str] | None:
        ids = {w["id"] for w in admin.call("workers.get_all")["workers"]}
        return ids if silent not in ids else None

    # get_all leaves out a worker past its timeout (as ClearML); the job then marks it expired
    seen = until("the silent worker expires", listed_without_silent,
                 keep_alive=lambda: admin.call("workers.status_report", worker=alive, timestamp=now_ms()))
    assert alive in seen

    def marked() -> dict | None:
        admin.call("workers.status_report", worker=alive, timestamp=now_ms())
        everyone = {w["id"]: w for w in admin.call("workers.get_all", include_expired=True)["workers"]}
        return everyone if everyone[silent]["expired"] else None

    everyone = until("the job marks the silent worker expired", marked)
    assert (everyone[silent]["expired"], everyone[silent]["task"]["id"]) == (True, task)
    assert everyone[alive]["expired"] is False
    assert admin.error("workers.get_runtime_properties", worker=silent).subcode == 1001
    admin.call("workers.status_report", worker=silent, timestamp=now_ms())  # a report brings it back
    assert silent in {w["id"] for w in admin.call("workers.get_all")["workers"]}


def test_the_non_responsive_job_stops_a_silent_task_and_not_a_pinged_one(jobs):
    admin = jobs.admin()
    silent = admin.call("tasks.create", name="silent", type="training")["id"]
    pinged = admin.call("tasks.create", name="pinged", type="training")["id"]
    for task in (silent, pinged):
        admin.call("tasks.started", task=task)

    def status(task: str) -> dict:
        return admin.call("tasks.get_by_id", task=task)["task"]

    stopped = until("the silent task is stopped", lambda: (t := status(silent))["status"] == "stopped" and t,
                    keep_alive=lambda: admin.call("tasks.ping", task=pinged))
    assert (stopped["status_reason"], stopped["status_message"]) == ("Forced stop (non-responsive)",) * 2
    assert status(pinged)["status"] == "in_progress"


def test_the_render_timeout_job_gives_a_silent_workers_task_back(jobs):
    client = RestClient(jobs.base_url, jobs.admin().auth)

    def rest(method: str, path: str, body: dict | None = None):
        status, answer, _ = client(method, path, body)
        assert status in (200, 202), (method, path, status, answer)
        return answer

    silent_host, busy_host = f"silent-{uuid4().hex[:6]}", f"busy-{uuid4().hex[:6]}"
    silent = rest("POST", "/workers", {"hostname": silent_host})[silent_host]["id"]
    busy = rest("POST", "/workers", {"hostname": busy_host})[busy_host]["id"]
    body = {"type": "blender_render", "parser": "blender_render", "settings": {"filepath": "/f.blend"},
            "frame_start": 1, "frame_end": 100}
    tasks = {rest("POST", "/tasks", body)["id"], rest("POST", "/tasks", body)["id"]}
    claimed = {worker: rest("PATCH", f"/workers/{worker}", {"status": "available"})["task_id"]
               for worker in (silent, busy)}
    assert set(claimed.values()) == tasks

    def progress() -> None:  # the busy worker keeps reporting
        rest("PATCH", f"/workers/{busy}", {"status": "rendering", "frame_current": 2})

    given_back = until("the silent worker's task waits again",
                       lambda: (t := rest("GET", f"/tasks/{claimed[silent]}"))["status"] == "waiting" and t,
                       keep_alive=progress)
    assert given_back["worker_id"] is None
    workers = rest("GET", "/workers")
    assert (workers[silent_host]["connection"], workers[silent_host]["current_task"]) == ("offline", None)
    assert (workers[busy_host]["connection"], workers[busy_host]["current_task"]) == ("online", claimed[busy])
    kept = rest("GET", f"/tasks/{claimed[busy]}")
    assert (kept["status"], kept["worker_id"]) == ("rendering", busy)


def test_the_metrics_job_samples_queue_lengths(jobs):
    admin = jobs.admin()
    qid = admin.call("queues.create", name=f"m-{uuid4().hex[:6]}")["id"]
    began = time.time() - 1
    for _ in range(2):
        task = admin.call("tasks.create", name="waiting", type="training")["id"]
        admin.call("tasks.enqueue", task=task, queue=qid)

    def sampled():
        got = admin.call("queues.get_queue_metrics", from_date=began, to_date=time.time() + 1, interval=3600,
                         queue_ids=[qid])["queues"]
        # the interval's samples: 1 and 2 taken at the two enqueues (as ClearML samples each change), then 2
        # at each run of the job, so their average passes 1.5 once the job has sampled
        return got if got and got[0]["queue_lengths"] and got[0]["queue_lengths"][0] > 1.5 else None

    got = until("a periodic metrics sample of the queue", sampled)
    waited = time.time() - began
    assert got[0]["queue"] == qid and 1.5 < got[0]["queue_lengths"][0] < 2
    assert 0 <= got[0]["avg_waiting_times"][0] <= waited, (got, waited)
    assert got[0]["dates"] == [int(began) * 1000]  # epoch milliseconds, as the web app reads them
    # Without queue ids: one series for all the company's queues (the queues page's overall chart).
    to_date = time.time() + 1
    every = [q["id"] for q in admin.call("queues.get_all")["queues"]]
    per_queue = admin.call("queues.get_queue_metrics", from_date=began, to_date=to_date, interval=3600,
                           queue_ids=every)["queues"]
    total = admin.call("queues.get_queue_metrics", from_date=began, to_date=to_date, interval=3600)["queues"]
    assert [t["queue"] for t in total] == ["total"]
    lengths = {p["queue"]: p["queue_lengths"][0] for p in per_queue if p["queue_lengths"]}
    # the job samples between the two reads: the total and the queues' sum may differ by the last samples
    assert abs(total[0]["queue_lengths"][0] - sum(lengths.values())) < 1 and 1.5 < lengths[qid] <= 2
    assert total[0]["dates"] == [int(began) * 1000]


def test_the_file_job_deletes_a_deleted_tasks_files_and_not_a_live_ones(jobs):
    admin = jobs.admin()
    session = requests.Session()
    session.headers["Authorization"] = admin.auth
    paths = {}
    for who in ("doomed", "kept"):
        task = admin.call("tasks.create", name=who, type="training")["id"]
        path = f"jobs-{uuid4().hex[:8]}/{who}.bin"
        resp = session.post(f"{jobs.base_url}/files/", files={path: (path.rsplit("/", 1)[1], who.encode())}, timeout=30)
        assert resp.status_code == 200, resp.text
        admin.call("tasks.add_or_update_artifacts", task=task, artifacts=[
            {"key": "a", "type": "custom", "uri": f"{jobs.base_url}/files/{path}"}])
        paths[who] = (task, path)
    out = admin.call("tasks.delete", task=paths["doomed"][0], force=True, return_file_urls=True)
    assert out["urls"]["artifact_urls"] == [f"{jobs.base_url}/files/{paths['doomed'][1]}"]

    def status(who: str) -> int:
        return session.get(f"{jobs.base_url}/files/{paths[who][1]}", timeout=30).status_code

    until("the deleted task's file is deleted", lambda: status("doomed") == 404)
    assert status("kept") == 200
    assert session.get(f"{jobs.base_url}/files/{paths['kept'][1]}", timeout=30).content == b"kept"


def test_the_sweep_job_clears_an_old_unfinished_upload_and_not_a_fresh_one(jobs):
    """What a server killed mid-upload leaves in the store's incoming folder: an old one goes
    (``files.incoming_max_age_sec``, a day), one of the last minute stays."""
    incoming = jobs.files_dir / ".incoming"
    old, fresh = incoming / f"crashed-{uuid4().hex[:8]}", incoming / f"uploading-{uuid4().hex[:8]}"
    old.write_bytes(b"half an upload")
    fresh.write_bytes(b"half an upload")
    two_days_ago = time.time() - 2 * 86400
    os.utime(old, (two_days_ago, two_days_ago))
    until("the old unfinished upload is swept", lambda: not old.exists())
    assert fresh.exists()
    fresh.unlink()


def _lease(mongo_uri: str, db_name: str) -> dict:
    with pymongo.MongoClient(mongo_uri, serverSelectionTimeoutMS=10_000) as client:
        return client[db_name]["leases"].find_one({"_id": "scheduler"}) or {}


def test_after_the_lease_holder_is_killed_another_server_takes_the_jobs_over(mongo_uri, tmp_path):
    """Two servers on one database: kill -9 the one whose worker holds the scheduler lease; the
    other takes the lease once it expires and runs the jobs (a worker registered after the kill
    expires)."""
    db_name = f"lease_{uuid4().hex[:8]}"
    servers = [ServerProcess(mongo_uri, db_name, workers=1, extra_env=JOBS).start(tmp_path) for _ in range(2)]
    try:
        holder = until("a lease holder", lambda: _lease(mongo_uri, db_name).get("holder"))
        holder_pid = int(holder.split(":")[1])
        owners = [s for s in servers if parent_pid(holder_pid) == s.proc.pid]
        assert len(owners) == 1, (holder, [s.proc.pid for s in servers])
        dead, survivor = owners[0], next(s for s in servers if s is not owners[0])
        os.killpg(dead.proc.pid, signal.SIGKILL)
        dead.proc.wait(10)
        taken = until("another process takes the lease",
                      lambda: (h := _lease(mongo_uri, db_name).get("holder")) != holder and h, timeout=30)
        assert parent_pid(int(taken.split(":")[1])) == survivor.proc.pid
        admin = survivor.admin()
        worker = f"after-kill:{uuid4().hex[:6]}"
        admin.call("workers.register", worker=worker, timeout=1)
        until("the survivor's expiry job expires a worker",
              lambda: worker not in {w["id"] for w in admin.call("workers.get_all")["workers"]})
    finally:
        for server in servers:
            server.stop()


JOB_RUN = re.compile(r"job (\S+) ran as (\S+) from ([\d.]+) to ([\d.]+)$")


def _job_runs(server: ServerProcess) -> list[tuple[float, float, str, str]]:
    """(start, end, holder, job) of every job run its log records (scheduler.py logs each at DEBUG)."""
    runs = []
    for line in server.log_path.read_text(errors="replace").splitlines():
        if (m := JOB_RUN.search(line)) is not None:
            runs.append((float(m.group(3)), float(m.group(4)), m.group(2), m.group(1)))
    return runs


def test_two_live_servers_never_run_jobs_at_once(mongo_uri, tmp_path):
    """Servers on one database with a 1.5 s lease renewed every 0.3 s and jobs every 0.3-1 s, for about
    a minute: every job run (its start and end, logged by the process that ran it) by one lease holder
    ends before any run by another begins. Over and over, a server is started and the one whose worker
    holds the lease is stopped, so the lease changes hands while at least two servers' schedulers run."""
    db_name = f"lease2_{uuid4().hex[:8]}"
    env = {**JOBS, "APISERVER__scheduler__lease_renew_sec": "0.3", "APISERVER__scheduler__lease_ttl_sec": "1.5",
           "APISERVER__workers__expiry_check_sec": "0.3", "APISERVER__queues__metrics_sample_sec": "0.3",
           "APISERVER__pipeline__heartbeat_sec": "0.5", "APISERVER__apiserver__log_level": "DEBUG"}

    def start() -> ServerProcess:
        return ServerProcess(mongo_uri, db_name, workers=2, extra_env=env).start(tmp_path)

    def runs_by(holder: str) -> bool:
        return any(run[2] == holder for server in live for run in _job_runs(server))

    live, every = [start(), start()], []
    try:
        deadline, handovers = time.monotonic() + 40, 0
        while time.monotonic() < deadline:
            holder = until("a lease holder", lambda: _lease(mongo_uri, db_name).get("holder"))
            until("the holder runs jobs", functools.partial(runs_by, holder))
            live.append(start())  # the others' schedulers keep trying to take the lease meanwhile
            time.sleep(3)
            owner = next((s for s in live if parent_pid(int(holder.split(":")[1])) == s.proc.pid), None)
            if owner is None:  # the lease changed hands on its own (a late renewal) and its holder left
                continue
            assert owner.stop() == 0
            live.remove(owner)
            every.append(owner)
            handovers += 1
    finally:
        for server in live:
            server.stop()
        every += live
    runs = sorted(run for server in every for run in _job_runs(server))
    holders = {run[2] for run in runs}
    assert handovers >= 3 and len(holders) >= 4 and len(runs) > 100, (handovers, holders, len(runs))
    ends: dict[str, tuple] = {}  # per holder, its run that ends last among those begun so far
    for run in runs:  # in the order they began
        overlapped = [other for holder, other in ends.items() if holder != run[2] and other[1] > run[0]]
        assert not overlapped, f"{run[3]} by {run[2]} began at {run[0]:.3f}, during {overlapped}"
        if run[2] not in ends or run[1] > ends[run[2]][1]:
            ends[run[2]] = run
