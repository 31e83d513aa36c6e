"""The pipeline leader end to end: a real server process with its heartbeat, real member processes
(member_kit), completion in order, failures, hung members, stops, forged reports, two servers on
one database stepping one pipeline at once, concurrent starts, and a restart in the middle of a pipeline."""

from __future__ import annotations

import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from uuid import uuid4

import pymongo
import pytest
import requests

from tests.helpers import (
    ADMIN_KEY,
    ADMIN_SECRET,
    ALLOW_LOOPBACK,
    LOOPBACK_HOSTS,
    ROOT,
    ApiClient,
    ApiError,
    ServerProcess,
    free_port,
    race,
)

FAST = {**ALLOW_LOOPBACK, "APISERVER__pipeline__heartbeat_sec": "1", "APISERVER__pipeline__read_timeout_sec": "1",
        "APISERVER__pipeline__connect_timeout_sec": "1", "APISERVER__pipeline__max_missed_beats": "2",
        "APISERVER__scheduler__lease_renew_sec": "1", "APISERVER__scheduler__lease_ttl_sec": "4"}


class Members:
    """Real member processes; each registered with the leader at run time."""

    def __init__(self, leader_url: str, log_dir):
        self.leader_url = leader_url
        self.log_dir = log_dir
        self.procs: dict[str, tuple[subprocess.Popen, int]] = {}

    def start(self, container_id: str, work: str = "0.3:success", *flags: str) -> int:
        port = free_port()
        log = open(self.log_dir / f"member-{container_id}-{port}.log", "wb")  # noqa: SIM115 - child's
        proc = subprocess.Popen([sys.executable, "-m", "member_kit", "--container-id", container_id, "--port",
                                 str(port), "--leader", self.leader_url, "--work", work, *flags], cwd=ROOT,
                                stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                requests.get(f"http://127.0.0.1:{port}/_calls", timeout=0.5)
                break
            except requests.RequestException:
                if "--unresponsive" in flags:
                    time.sleep(0.5)
                    break
                time.sleep(0.1)
        self.procs[container_id] = (proc, port)
        return port

    def url(self, container_id: str) -> str:
        return f"http://127.0.0.1:{self.procs[container_id][1]}"

    def calls(self, container_id: str) -> dict:
        return requests.get(self.url(container_id) + "/_calls", timeout=5).json()

    def stop_all(self) -> None:
        for proc, _ in self.procs.values():
            proc.kill()
            proc.wait(10)
        self.procs.clear()


@pytest.fixture(scope="module")
def leader(mongo_uri, tmp_path_factory):
    db_name = f"pipelines_{uuid4().hex[:8]}"
    proc = ServerProcess(mongo_uri, db_name, workers=2, extra_env=FAST).start(tmp_path_factory.mktemp("leader"))
    yield proc
    proc.stop()


@pytest.fixture()
def members(leader, tmp_path):
    group = Members(leader.base_url, tmp_path)
    yield group
    group.stop_all()


def register(admin: ApiClient, members: Members, *ids: str) -> None:
    for cid in ids:
        admin.call("members.register", container_id=cid, url=members.url(cid))


def wait_for(admin: ApiClient, pipeline: str, statuses=("completed", "failed", "stopped"), timeout=60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        doc = admin.call("workflows.get_by_id", pipeline=pipeline)["pipeline"]
        if doc["status"] in statuses:
            return doc
        time.sleep(0.2)
    raise AssertionError(f"pipeline still {doc['status']}: {doc}")


def wait_beats(admin: ApiClient, beats: int = 2, timeout: float = 30) -> None:
    """Wait until ``beats`` more heartbeat cycles over running pipelines have ended (their count, not
    a sleep: a cycle is recorded once every pipeline it stepped is done)."""
    seen = [admin.call("workflows.get_heartbeat_stats")["at"]]
    deadline = time.monotonic() + timeout
    while len(seen) <= beats:
        assert time.monotonic() < deadline, f"fewer than {beats} heartbeat cycles in {timeout}s"
        time.sleep(0.1)
        at = admin.call("workflows.get_heartbeat_stats")["at"]
        if at != seen[-1]:
            seen.append(at)


def test_three_members_complete_in_order(leader, members):
    admin = leader.admin()
    for cid in ("labelling", "bms", "neck_nas"):
        members.start(cid, "0.5:success")
    register(admin, members, "labelling", "bms", "neck_nas")
    pid = admin.call("workflows.create", project_id=f"p-{uuid4().hex[:6]}",
                     workflow=["labelling", "bms", "neck_nas"])["id"]
    checks = admin.call("workflows.check_members", pipeline=pid)["members"]
    assert {m["container_id"]: m["ready"] for m in checks} == {"bms": True, "labelling": True, "neck_nas": True}
    started = admin.call("workflows.start", pipeline=pid)["pipeline"]
    assert started["status"] == "running" and started["steps"][0]["start_calls"] == 1
    done = wait_for(admin, pid)
    assert done["status"] == "completed"
    assert [(s["container_id"], s["status"], s["start_calls"]) for s in done["steps"]] == [
        ("labelling", "completed", 1), ("bms", "completed", 1), ("neck_nas", "completed", 1)]
    for cid in ("labelling", "bms", "neck_nas"):
        assert members.calls(cid)["start"] == 1
    events = admin.call("workflows.get_log", pipeline=pid)["events"]
    starts = [e["container_id"] for e in events if e["call"] == "start"]
    assert starts == ["labelling", "bms", "neck_nas"]
    assert any(e["direction"] == "from_member" and e["call"] == "status_report" for e in events)
    assert all(e["time"] and e["direction"] in ("to_member", "from_member", "note") for e in events)
    assert any(e["call"] == "status_request" and e["answer"] == "completed" for e in events)


def test_a_failing_member_fails_the_pipeline_and_later_members_never_start(leader, members):
    admin = leader.admin()
    members.start("labelling", "0.2:success")
    members.start("bms", "0.2:failure")
    members.start("neck_nas", "0.2:success")
    register(admin, members, "labelling", "bms", "neck_nas")
    pid = admin.call("workflows.create", project_id=f"p-{uuid4().hex[:6]}",
                     workflow=["labelling", "bms", "neck_nas"])["id"]
    admin.call("workflows.start", pipeline=pid)
    done = wait_for(admin, pid)
    assert done["status"] == "failed" and "bms" in done["reason"]
    assert [s["status"] for s in done["steps"]] == ["completed", "failed", "pending"]
    assert members.calls("neck_nas").get("start", 0) == 0


def test_a_hung_member_fails_its_step_and_others_keep_going(leader, members):
    admin = leader.admin()
    members.start("vis2code", "30:success", "--freeze-after-start")
    members.start("code_gen", "0.3:success")
    members.start("cloud_deploy", "0.3:success")
    register(admin, members, "vis2code", "code_gen", "cloud_deploy")
    hung = admin.call("workflows.create", project_id=f"h-{uuid4().hex[:6]}", workflow=["vis2code"])["id"]
    fine = admin.call("workflows.create", project_id=f"f-{uuid4().hex[:6]}",
                      workflow=["code_gen", "cloud_deploy"])["id"]
    admin.call("workflows.start", pipeline=hung)
    began = time.monotonic()
    admin.call("workflows.start", pipeline=fine)
    assert wait_for(admin, fine)["status"] == "completed"
    fine_took = time.monotonic() - began
    failed = wait_for(admin, hung, timeout=60)
    assert failed["status"] == "failed" and "no usable answer" in failed["steps"][0]["reason"]
    assert fine_took < 15, f"the healthy pipeline took {fine_took:.1f}s next to a hung member"


def test_stop_in_the_middle(leader, members):
    admin = leader.admin()
    members.start("backbone_nas", "0.2:success")
    members.start("ondevice_deploy", "60:success")
    members.start("bms", "0.2:success")
    members.start("labelling", "60:success")  # a running pipeline beside it keeps the heartbeat cycling
    register(admin, members, "backbone_nas", "ondevice_deploy", "bms", "labelling")
    pid = admin.call("workflows.create", project_id=f"s-{uuid4().hex[:6]}",
                     workflow=["backbone_nas", "ondevice_deploy", "bms"])["id"]
    keeper = admin.call("workflows.create", project_id=f"k-{uuid4().hex[:6]}", workflow=["labelling"])["id"]
    admin.call("workflows.start", pipeline=keeper)
    admin.call("workflows.start", pipeline=pid)
    deadline = time.monotonic() + 30
    while admin.call("workflows.get_by_id", pipeline=pid)["pipeline"]["current_step"] != 1:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    stopped = admin.call("workflows.stop", pipeline=pid)["pipeline"]
    assert stopped["status"] == "stopped" and stopped["steps"][1]["status"] == "stopped"
    assert members.calls("ondevice_deploy")["stop"] == 1
    asked = members.calls("labelling").get("status_request", 0)
    wait_beats(admin, 2)  # two cycles stepped the running pipeline beside it; nothing moves a stopped one
    assert members.calls("labelling").get("status_request", 0) > asked  # positive control: beats stepped
    assert admin.call("workflows.get_by_id", pipeline=pid)["pipeline"] == stopped
    assert members.calls("bms").get("start", 0) == 0
    assert admin.call("workflows.stop", pipeline=keeper)["pipeline"]["status"] == "stopped"
    assert admin.error("workflows.start", pipeline=pid).subcode == 1202
    assert admin.call("workflows.delete", pipeline=pid) == {"deleted": 1}


def _wait_until_starting(admin: ApiClient, pid: str, step: int) -> None:
    """Until the pipeline's ``step`` is claimed and its /start is out (the pipeline still running)."""
    deadline = time.monotonic() + 30
    while (doc := admin.call("workflows.get_by_id", pipeline=pid)["pipeline"])["steps"][step]["status"] != "starting":
        assert time.monotonic() < deadline and doc["status"] == "running", doc
        time.sleep(0.05)


def test_a_stop_while_a_start_is_in_flight_stops_the_member_after_it_started(leader, members):
    admin = leader.admin()
    members.start("backbone_nas", "0.2:success")
    members.start("ondevice_deploy", "60:success", "--start-delay", "0.8")  # the leader waits up to 1 s
    register(admin, members, "backbone_nas", "ondevice_deploy")
    project = f"sf-{uuid4().hex[:6]}"
    pid = admin.call("workflows.create", project_id=project, workflow=["backbone_nas", "ondevice_deploy"])["id"]
    user = admin.call("workflows.start", pipeline=pid)["pipeline"]["user_id"]
    _wait_until_starting(admin, pid, 1)
    stopped = admin.call("workflows.stop", pipeline=pid)["pipeline"]
    assert stopped["status"] == "stopped"
    assert (stopped["steps"][1]["status"], stopped["steps"][1]["reason"]) == ("stopped", "stopped by user")
    # /stop reached the member after /start had: its job is stopped, not left running for 60 s
    assert members.calls("ondevice_deploy")["stop"] == 1
    state = requests.get(members.url("ondevice_deploy") + "/status_request",
                         params={"user_id": user, "project_id": project}, timeout=5).text
    assert state == "stopped"


def test_forged_and_misdirected_reports_move_nothing(leader, members, mongo_uri):
    admin = leader.admin()
    members.start("labelling", "30:success")
    register(admin, members, "labelling")
    project = f"forge-{uuid4().hex[:6]}"
    pid = admin.call("workflows.create", project_id=project, workflow=["labelling"])["id"]
    user = admin.call("workflows.start", pipeline=pid)["pipeline"]["user_id"]
    forged = requests.get(leader.base_url + "/status_report", params={
        "container_id": "labelling", "user_id": user, "project_id": project, "status": "success"})
    assert forged.status_code == 200 and forged.text == "OK"
    wait_beats(admin)  # the beats step this running pipeline too; still nothing may move it
    doc = admin.call("workflows.get_by_id", pipeline=pid)["pipeline"]
    assert doc["status"] == "running" and doc["steps"][0]["status"] == "running"  # the member says running
    asked = [e["answer"] for e in admin.call("workflows.get_log", pipeline=pid)["events"]
             if e["call"] == "status_request"]
    assert "running" in asked  # the leader asked the member itself, and that answer is what counted
    # Misdirected reports are answered and logged: from a member that is not the running step's (on
    # the pipeline's log), and for a project with no running pipeline (on a record of no pipeline).
    wrong_member = {"container_id": "bms", "user_id": user, "project_id": project, "status": "failed"}
    assert requests.get(leader.base_url + "/status_report", params=wrong_member).text == "OK"
    noted = [e for e in admin.call("workflows.get_log", pipeline=pid)["events"]
             if e["call"] == "status_report" and e["container_id"] == "bms"]
    assert [(e["params"], e["error"]) for e in noted] == [
        (wrong_member, "no running step of this project is this member's")], noted
    other = requests.get(leader.base_url + "/status_report", params={
        "container_id": "bms", "user_id": user, "project_id": "no-such-project", "status": "failed"})
    assert other.status_code == 200
    with pymongo.MongoClient(mongo_uri, serverSelectionTimeoutMS=10_000) as client:
        unowned = client[leader.env["APISERVER__database__name"]]["pipeline_log"].find_one(
            {"_id": "ignored-report:-:bms"})
    assert unowned and unowned["params"]["project_id"] == "no-such-project", unowned
    assert unowned["error"] == "no running step of this project is this member's"
    for params in ({"container_id": "nope", "status": "success"}, {"container_id": "bms", "status": "done"},
                   {"status": "success"}):
        bad = requests.get(leader.base_url + "/status_report", params=params)
        assert bad.status_code == 400 and bad.text, params
    admin.call("workflows.stop", pipeline=pid)


def test_a_reply_outside_the_protocol_is_recorded_not_a_crash(leader):
    """A member that answers /start but then talks nonsense: noted on the log, then the step fails."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Babbler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            command = self.path.split("?")[0].strip("/")
            query = self.path.partition("?")[2]
            word = {"start": b"started"}.get(command, b"ready" if "user_id=&" in query else b"banana")
            self.send_response(200)
            self.send_header("Content-Length", str(len(word)))
            self.end_headers()
            self.wfile.write(word)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Babbler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        admin = leader.admin()
        admin.call("members.register", container_id="vis2code", url=f"http://127.0.0.1:{httpd.server_address[1]}")
        pid = admin.call("workflows.create", project_id=f"babble-{uuid4().hex[:6]}", workflow=["vis2code"])["id"]
        admin.call("workflows.start", pipeline=pid)
        done = wait_for(admin, pid)
        assert done["status"] == "failed" and "banana" in done["steps"][0]["reason"]
        notes = [e for e in admin.call("workflows.get_log", pipeline=pid)["events"] if e["direction"] == "note"]
        assert notes and "not one of" in notes[0]["error"]
    finally:
        httpd.shutdown()


def test_validation_and_roles(leader, server):
    admin = leader.admin()
    err = admin.error("workflows.create", project_id="x", workflow=["bms", "nope"])
    assert err.code == 400 and err.meta["error_data"]["field"] == "workflow.1"
    assert admin.error("workflows.get_by_id", pipeline="0" * 32).subcode == 1201
    assert admin.error("members.register", container_id="x", url="ftp://nowhere").code == 400
    assert admin.error("members.register", container_id="Bad Id", url="http://h:1").code == 400
    made = admin.call("users.create", name="plain", role="user", credentials=True)["credentials"]
    plain = leader.client().login(made["access_key"], made["secret_key"])
    assert plain.error("members.register", container_id="x1", url="http://h:1").code == 403
    assert "bms" in {m["container_id"] for m in plain.call("members.get_all")["members"]}
    not_ready = admin.call("workflows.create", project_id="nr", workflow=["cloud_deploy"])["id"]
    admin.call("members.register", container_id="cloud_deploy", url=f"http://127.0.0.1:{free_port()}")
    err = admin.error("workflows.start", pipeline=not_ready)
    assert err.subcode == 1204 and "cloud_deploy" in err.msg


def _fire_together(urls: list[str], params: dict) -> list[tuple[int, str]]:
    """GET every URL from its own thread, all released at once by a barrier."""
    import threading

    barrier = threading.Barrier(len(urls))
    answers: list[tuple[int, str]] = [(0, "")] * len(urls)

    def one(i: int) -> None:
        session = requests.Session()
        barrier.wait(30)
        resp = session.get(urls[i], params=params, timeout=30)
        answers[i] = (resp.status_code, resp.text)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(urls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return answers


def _member_answer(members: Members, cid: str, user: str, project: str) -> str:
    return requests.get(members.url(cid) + "/status_request", params={"user_id": user, "project_id": project},
                        timeout=5).text


def test_two_servers_stepping_one_pipeline_at_once_start_each_step_once(mongo_uri, tmp_path, members):
    """Two server processes (two gunicorn workers each) on one database step the same pipeline at the
    same moment: at each step's end, 16 status reports released by a barrier reach both servers, and
    every one of them makes its process step the pipeline. The members count one /start per step.

    The heartbeat is slowed to 120 s so that only these racing reports move the pipeline, and the
    members report to no leader (their own report would step it before the race)."""
    db_name = f"two_servers_{uuid4().hex[:8]}"
    env = {**FAST, "APISERVER__pipeline__heartbeat_sec": "120"}
    first = ServerProcess(mongo_uri, db_name, workers=2, extra_env=env).start(tmp_path)
    second = ServerProcess(mongo_uri, db_name, workers=2, extra_env=env).start(tmp_path)
    try:
        members.leader_url = f"http://127.0.0.1:{free_port()}"  # nobody listens: reports come from us
        workflow = ["labelling", "bms", "neck_nas"]
        for cid in workflow:
            members.start(cid, "0.3:success")
        admin = first.admin()
        register(admin, members, *workflow)
        project = f"race-{uuid4().hex[:6]}"
        pid = admin.call("workflows.create", project_id=project, workflow=workflow)["id"]
        user = admin.call("workflows.start", pipeline=pid)["pipeline"]["user_id"]
        urls = [f"{srv.base_url}/status_report" for srv in (first, second)] * 8
        for i, cid in enumerate(workflow):
            deadline = time.monotonic() + 30
            while _member_answer(members, cid, user, project) != "completed":  # its work is done
                assert time.monotonic() < deadline, f"{cid} never completed its work"
                time.sleep(0.1)
            answers = _fire_together(urls, {"container_id": cid, "user_id": user, "project_id": project,
                                            "status": "success"})
            assert answers == [(200, "OK")] * 16
            doc = admin.call("workflows.get_by_id", pipeline=pid)["pipeline"]
            started = min(i + 2, 3)  # steps whose /start went out by now
            assert (doc["status"], doc["current_step"], doc["reason"], doc["steps"][i]["status"],
                    [s["start_calls"] for s in doc["steps"]]) == \
                ("completed" if i == 2 else "running", min(i + 1, 2), None, "completed",
                 [1] * started + [0] * (3 - started)), doc
        done = admin.call("workflows.get_by_id", pipeline=pid)["pipeline"]
        assert [(s["status"], s["start_calls"]) for s in done["steps"]] == [("completed", 1)] * 3
        assert {cid: members.calls(cid).get("start", 0) for cid in workflow} == dict.fromkeys(workflow, 1)
        starts = [e["container_id"] for e in admin.call("workflows.get_log", pipeline=pid)["events"]
                  if e["call"] == "start"]
        assert starts == workflow
    finally:
        first.stop()
        second.stop()


def _beat_until_finished(mongo_uri: str, db_name: str, pipeline_id: str, ready: str) -> int:
    """Another heartbeat on the same database: the leader's own ``beat()`` (the scheduler job's body)
    every 20 ms from when the pipeline runs until it no longer does (``ready`` is written once this
    process can beat); the number of beats that stepped it."""
    import os
    from pathlib import Path

    os.environ.update({"APISERVER_ADMIN_ACCESS_KEY": ADMIN_KEY, "APISERVER_ADMIN_SECRET_KEY": ADMIN_SECRET})
    from apiserver.app import create_app
    from apiserver.state import get_state

    create_app(overrides={"database.uri": mongo_uri, "database.name": db_name, "auth.bcrypt_rounds": 4,
                          "outbound.allow_hosts": LOOPBACK_HOSTS, "pipeline.read_timeout_sec": 1,
                          "pipeline.connect_timeout_sec": 1, "pipeline.max_missed_beats": 2},
               start_scheduler=False)
    pipelines = get_state().pipelines
    coll = pymongo.MongoClient(mongo_uri)[db_name]["pipelines"]
    Path(ready).write_text("ready")
    beats, deadline = 0, time.monotonic() + 90
    while coll.find_one({"_id": pipeline_id})["status"] == "created":
        assert time.monotonic() < deadline, "the pipeline was never started"
        time.sleep(0.01)
    while coll.find_one({"_id": pipeline_id})["status"] == "running":
        assert time.monotonic() < deadline, coll.find_one({"_id": pipeline_id})
        beats += 1 if pipelines.beat() else 0
        time.sleep(0.02)
    return beats


def test_heartbeats_racing_on_one_pipeline_send_each_start_once(mongo_uri, tmp_path, members):
    """Heartbeats that race on one pipeline: the server's own (every second) and two more processes'
    (every 20 ms each; in a deployment the scheduler lease keeps a second heartbeat away, here nothing
    does), all stepping the same pipeline through its members' answers. Each member gets one
    ``/start``: only the step's claim (a compare-and-set from ``pending``) keeps the others away."""
    db_name = f"beats_{uuid4().hex[:8]}"
    leader = ServerProcess(mongo_uri, db_name, workers=2, extra_env=FAST).start(tmp_path)
    try:
        members.leader_url = f"http://127.0.0.1:{free_port()}"  # nobody listens: only heartbeats step it
        workflow = ["labelling", "bms", "neck_nas", "code_gen"]
        for cid in workflow:
            members.start(cid, "0.5:success")
        admin = leader.admin()
        register(admin, members, *workflow)
        pid = admin.call("workflows.create", project_id=f"beats-{uuid4().hex[:6]}", workflow=workflow)["id"]
        ready = [tmp_path / f"racer-{i}.ready" for i in range(2)]
        with ThreadPoolExecutor(1) as pool:
            racing = pool.submit(race, _beat_until_finished, [(mongo_uri, db_name, pid, str(r)) for r in ready],
                                 timeout=150)
            deadline = time.monotonic() + 90
            while not all(r.exists() for r in ready):  # both can beat: start it
                assert time.monotonic() < deadline and not racing.done(), racing.done() and racing.result()
                time.sleep(0.05)
            admin.call("workflows.start", pipeline=pid)
            beats = racing.result()
        done = wait_for(admin, pid)
        assert (done["status"], [(s["status"], s["start_calls"]) for s in done["steps"]]) == \
            ("completed", [("completed", 1)] * len(workflow)), done
        assert {cid: members.calls(cid).get("start", 0) for cid in workflow} == dict.fromkeys(workflow, 1)
        assert min(beats) > len(workflow), beats  # each racer stepped the pipeline at every step
    finally:
        leader.stop()


def test_reports_while_a_start_is_out_are_not_missed_beats(mongo_uri, tmp_path, members):
    """A member answers ``ready`` to /status_request until its slow /start returns: that is no
    missed beat. Reports for the starting step, each making the leader ask, used to count those
    ``ready`` answers and fail the pipeline (``no usable answer for 2 beats (ready)``) while its
    /start was still being answered."""
    env = {**FAST, "APISERVER__pipeline__read_timeout_sec": "6"}
    leader = ServerProcess(mongo_uri, f"slow_start_{uuid4().hex[:8]}", workers=2, extra_env=env).start(tmp_path)
    try:
        members.leader_url = f"http://127.0.0.1:{free_port()}"  # nobody listens: reports come from us
        members.start("labelling", "0.2:success")
        members.start("bms", "0.3:success", "--start-delay", "3")
        admin = leader.admin()
        register(admin, members, "labelling", "bms")
        project = f"slow-{uuid4().hex[:6]}"
        pid = admin.call("workflows.create", project_id=project, workflow=["labelling", "bms"])["id"]
        user = admin.call("workflows.start", pipeline=pid)["pipeline"]["user_id"]
        _wait_until_starting(admin, pid, 1)
        report = {"container_id": "bms", "user_id": user, "project_id": project, "status": "success"}
        assert _member_answer(members, "bms", user, project) == "ready"  # its /start is still out
        for _ in range(3):
            assert requests.get(leader.base_url + "/status_report", params=report, timeout=30).text == "OK"
        doc = admin.call("workflows.get_by_id", pipeline=pid)["pipeline"]
        assert (doc["status"], doc["steps"][1]["status"]) == ("running", "starting"), doc
        assert members.calls("bms").get("start", 0) <= 1  # the claimed /start may still be on its way
        done = wait_for(admin, pid, timeout=60)  # the heartbeat finds bms completed once it has run
        assert (done["status"], [s["status"] for s in done["steps"]]) == ("completed", ["completed"] * 2), done
        assert members.calls("bms").get("start") == 1
    finally:
        leader.stop()


def test_one_running_pipeline_per_user_and_project_under_20_concurrent_starts(mongo_uri, tmp_path, members):
    """20 callers start 20 different pipelines of one user and project at the same moment (a barrier,
    two server workers): exactly one runs, the 19 others get 400/1202 and stay created. (A server of
    its own: each start first asks the member, 20 at once, which the 1 s timeouts of FAST may miss.)"""
    import threading

    env = {**FAST, "APISERVER__pipeline__read_timeout_sec": "15", "APISERVER__pipeline__connect_timeout_sec": "5"}
    leader = ServerProcess(mongo_uri, f"one_running_{uuid4().hex[:8]}", workers=2, extra_env=env).start(tmp_path)
    members.leader_url = leader.base_url
    admin = leader.admin()
    members.start("labelling", "30:success")
    register(admin, members, "labelling")
    project = f"one-{uuid4().hex[:6]}"
    pids = [admin.call("workflows.create", project_id=project, workflow=["labelling"])["id"] for _ in range(20)]
    barrier = threading.Barrier(20)
    outcomes: dict[str, object] = {}

    def start(pid: str) -> None:
        caller = ApiClient(leader.base_url, auth=admin.auth)
        barrier.wait(30)
        try:
            outcomes[pid] = caller.call("workflows.start", pipeline=pid)["pipeline"]["status"]
        except AssertionError as exc:  # ApiError included
            outcomes[pid] = exc

    threads = [threading.Thread(target=start, args=(pid,)) for pid in pids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    try:
        def outcome(value: object) -> str:
            if isinstance(value, ApiError):
                return f"{value.code}/{value.subcode}: {value.msg}"
            return str(value)

        got = sorted(outcome(outcomes.get(pid, "no answer")) for pid in pids)
        winner = next((pid for pid in pids if outcomes.get(pid) == "running"), None)
        refusal = ("400/1202: invalid pipeline status (another pipeline of this user and project is running): "
                   f"running={winner}")  # the refusal names the running one
        assert got == [refusal] * 19 + ["running"], got
        statuses = {pid: admin.call("workflows.get_by_id", pipeline=pid)["pipeline"]["status"] for pid in pids}
        assert sorted(statuses.values()) == ["created"] * 19 + ["running"]
        assert members.calls("labelling")["start"] == 1
    finally:
        leader.stop()


def test_restart_in_the_middle_resumes(mongo_uri, tmp_path, members):
    db_name = f"restart_{uuid4().hex[:8]}"
    server = ServerProcess(mongo_uri, db_name, workers=1, extra_env=FAST)
    port = server.port
    server.start(tmp_path)
    members.leader_url = server.base_url
    members.start("labelling", "0.2:success")
    members.start("bms", "4:success")
    members.start("neck_nas", "0.2:success")
    admin = server.admin()
    register(admin, members, "labelling", "bms", "neck_nas")
    pid = admin.call("workflows.create", project_id="restart", workflow=["labelling", "bms", "neck_nas"])["id"]
    admin.call("workflows.start", pipeline=pid)
    deadline = time.monotonic() + 30
    while admin.call("workflows.get_by_id", pipeline=pid)["pipeline"]["current_step"] != 1:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    server.stop()
    again = ServerProcess(mongo_uri, db_name, workers=1, extra_env=FAST, port=port).start(tmp_path)
    try:
        done = wait_for(again.admin(), pid)
        assert done["status"] == "completed" and [s["start_calls"] for s in done["steps"]] == [1, 1, 1]
        assert members.calls("bms")["start"] == 1
    finally:
        again.stop()


def test_reports_only_from_the_members_host(mongo_uri, tmp_path, members):
    """With reports_from_member_host_only, a report from another address is logged and ignored."""
    env = {**FAST, "APISERVER__pipeline__reports_from_member_host_only": "true",
           "APISERVER__pipeline__heartbeat_sec": "30"}  # no beat in time: only the report could move it
    server = ServerProcess(mongo_uri, f"hostonly_{uuid4().hex[:8]}", workers=1, extra_env=env).start(tmp_path)
    try:
        members.leader_url = server.base_url
        members.start("code_gen", "0.5:success", "--host", "0.0.0.0")
        admin = server.admin()
        # Registered as 127.0.0.2 (loopback too); its report arrives from 127.0.0.1, another address.
        admin.call("members.register", container_id="code_gen",
                   url=members.url("code_gen").replace("127.0.0.1", "127.0.0.2"))
        pid = admin.call("workflows.create", project_id="host-only", workflow=["code_gen"])["id"]
        admin.call("workflows.start", pipeline=pid)
        deadline = time.monotonic() + 15
        notes = []
        while not notes and time.monotonic() < deadline:
            time.sleep(0.3)
            notes = [e for e in admin.call("workflows.get_log", pipeline=pid)["events"]
                     if e["call"] == "status_report"]
        assert notes and "ignored: sent from 127.0.0.1" in notes[0]["error"]
        assert admin.call("workflows.get_by_id", pipeline=pid)["pipeline"]["status"] == "running"
        # positive control: a member registered at the address its report comes from moves its pipeline
        members.start("bms", "0.5:success")
        admin.call("members.register", container_id="bms", url=members.url("bms"))
        heard = admin.call("workflows.create", project_id="host-ok", workflow=["bms"])["id"]
        admin.call("workflows.start", pipeline=heard)
        assert wait_for(admin, heard, timeout=20)["status"] == "completed"  # no beat in time: the report did it
        accepted = [e for e in admin.call("workflows.get_log", pipeline=heard)["events"]
                    if e["call"] == "status_report"]
        assert [(e["direction"], e["error"]) for e in accepted] == [("from_member", None)]
    finally:
        server.stop()


def test_members_belong_to_the_registering_company(server, admin, other_admin, tmp_path):
    """Another company's admin registers ``labelling`` at his own URL: our pipelines still call ours,
    and each company's members.get_all shows its own registration."""
    ours, theirs = Members(server.base_url, tmp_path), Members(server.base_url, tmp_path)
    try:
        ours.start("labelling", "0.3:success")
        theirs.start("labelling", "0.3:success")
        admin.call("members.register", container_id="labelling", url=ours.url("labelling"))
        other_admin.call("members.register", container_id="labelling", url=theirs.url("labelling"))
        for client, group in ((admin, ours), (other_admin, theirs)):
            listed = {m["container_id"]: m for m in client.call("members.get_all")["members"]}
            assert listed["labelling"]["url"] == group.url("labelling")
            assert listed["labelling"]["source"] == "registered"
        pid = admin.call("workflows.create", project_id=f"mine-{uuid4().hex[:6]}", workflow=["labelling"])["id"]
        admin.call("workflows.start", pipeline=pid)
        assert wait_for(admin, pid)["status"] == "completed"
        assert ours.calls("labelling")["start"] == 1
        assert sum(n for c, n in theirs.calls("labelling").items() if c != "_calls") == 0  # never called
        # their own pipeline calls their member
        theirs_pid = other_admin.call("workflows.create", project_id=f"theirs-{uuid4().hex[:6]}",
                                      workflow=["labelling"])["id"]
        other_admin.call("workflows.start", pipeline=theirs_pid)
        assert wait_for(other_admin, theirs_pid)["status"] == "completed"
        assert theirs.calls("labelling")["start"] == 1 and ours.calls("labelling")["start"] == 1
    finally:
        ours.stop_all()
        theirs.stop_all()
