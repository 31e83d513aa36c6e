"""The test tooling of tests/helpers.py: the race helper (a racer's failure reaches the test with its
text, at once, and no racer outlives the race), the server-log check of the run's end, and the one
resend of a request whose connection closed unanswered."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest
import requests

from tests import helpers
from tests.helpers import ServerProcess, race


def _racer(kind: str, pid_dir: str) -> int:
    Path(pid_dir, f"{kind}.pid").write_text(str(os.getpid()))
    if kind == "fails":
        raise AssertionError("racer-assertion-marker 41 != 42")
    if kind == "hangs":
        time.sleep(3600)
    return os.getpid()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a terminated child not yet reaped by anyone is a zombie: not running
    return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"


def test_results_come_back_in_argument_order(tmp_path):
    pids = race(_racer, [("a", str(tmp_path)), ("b", str(tmp_path)), ("c", str(tmp_path))])
    assert pids == [int((tmp_path / f"{k}.pid").read_text()) for k in "abc"]
    assert len(set(pids)) == 3 and os.getpid() not in pids


def test_a_failing_racer_fails_the_race_with_its_message_and_the_rest_are_stopped(tmp_path):
    with pytest.raises(AssertionError) as failed:
        race(_racer, [("hangs", str(tmp_path)), ("fails", str(tmp_path))], timeout=600)
    message = str(failed.value)
    # only the failing racer is reported: the failure ended the race, not its timeout
    assert "1 of 2 racers failed" in message and "racer 1 ('fails'" in message and "racer 0" not in message
    assert "racer-assertion-marker 41 != 42" in message
    assert not _alive(int((tmp_path / "hangs.pid").read_text()))


def test_a_race_past_its_timeout_names_the_racers_still_running(tmp_path):
    with pytest.raises(AssertionError) as failed:
        race(_racer, [("hangs", str(tmp_path)), ("done", str(tmp_path))], timeout=10)
    assert "racer 0 ('hangs'" in str(failed.value) and "still running after 10s" in str(failed.value)
    assert "racer 1" not in str(failed.value)
    assert not _alive(int((tmp_path / "hangs.pid").read_text()))


LOG = """2026-11-23 19:41:35,935 INFO 16194 apiserver: API server listening on http://127.0.0.1:33059
[2026-11-23 19:41:35 +0000] [16194] [INFO] Booting worker with pid: 16205
2026-11-23 22:03:03,888 ERROR 16205 apiserver.scheduler: background job expire_workers failed
Traceback (most recent call last):
  File "/x/pool.py", line 336, in receive_message
OSError: connection closed

The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File "/x/jobs.py", line 22, in expire_workers
pymongo.errors.AutoReconnect: 127.0.0.1:1: connection closed
2026-11-23 22:03:04,001 INFO 16205 apiserver: still here
2026-11-23 22:03:05,002 ERROR 16205 apiserver.service_repo.dispatcher: request 1 to tasks.enqueue failed
Traceback (most recent call last):
  File "/x/queues.py", line 64, in add_entry
TypeError: provoked on purpose
[2026-11-23 22:03:05 +0000] [16194] [CRITICAL] WORKER TIMEOUT (pid:16206)
[2026-11-23 22:03:05 +0000] [16194] [ERROR] Worker (pid:16206) was sent SIGKILL! Perhaps out of memory?
[2026-11-23 22:03:06 +0000] [16194] [INFO] Handling signal: term
[2026-11-23 22:03:06 +0000] [16194] [INFO] Worker (pid:16205) was sent SIGTERM!
"""


def test_the_log_check_finds_each_traceback_with_the_record_that_logged_it_and_each_worker_death(tmp_path):
    log = tmp_path / "server.log"
    log.write_text(LOG)
    srv = ServerProcess(None, "unused")
    srv.log_path = log
    found = srv.unexpected_errors()
    assert [b.splitlines()[0][24:] for b in found[:2]] == [
        "ERROR 16205 apiserver.scheduler: background job expire_workers failed",
        "ERROR 16205 apiserver.service_repo.dispatcher: request 1 to tasks.enqueue failed"]
    assert found[0].splitlines()[-1] == "pymongo.errors.AutoReconnect: 127.0.0.1:1: connection closed"
    assert found[1].splitlines()[-1] == "TypeError: provoked on purpose"
    # a worker killed while the server ran counts; one stopped by the shutdown (SIGTERM) does not
    assert [line.split("] ", 2)[2] for line in found[2:]] == [
        "[CRITICAL] WORKER TIMEOUT (pid:16206)", "[ERROR] Worker (pid:16206) was sent SIGKILL! Perhaps out of memory?"]
    srv.expected_log_errors = ("TypeError: provoked on purpose", "16206")
    assert len(srv.unexpected_errors()) == 1
    srv.log_end = LOG.index("2026-11-23 22:03:05")  # stopped before the second one
    srv.expected_log_errors = ()
    assert len(srv.unexpected_errors()) == 1


def test_the_rest_check_refuses_a_body_or_status_its_endpoint_does_not_declare():
    from tests.helpers import check_rest

    error_schema = {"type": "object", "required": ["message", "code", "request_id"]}
    check_rest("GET", "/workers", 200, {}, error_schema)  # an empty map of workers is valid
    check_rest("GET", "/tasks/7", 404, {"message": "no", "code": 404, "request_id": "r"}, error_schema)
    with pytest.raises(AssertionError, match="answer breaks its schema"):
        check_rest("GET", "/tasks/7", 200, {"id": "not an integer"}, error_schema)
    with pytest.raises(AssertionError, match="error 404 breaks its schema"):
        check_rest("GET", "/tasks/7", 404, {"message": "no"}, error_schema)
    with pytest.raises(AssertionError, match="declares 204"):
        check_rest("PATCH", "/tasks/7", 200, None, error_schema)
    with pytest.raises(AssertionError, match="no declared REST endpoint"):
        check_rest("GET", "/no/such/route", 200, {}, error_schema)


def _closing_server(unanswered: int) -> tuple[str, list[bytes]]:
    """A one-thread HTTP server on loopback that reads each request and closes its connection
    without a byte of answer ``unanswered`` times, then answers 200 "ok"."""
    listener = socket.create_server(("127.0.0.1", 0))
    seen: list[bytes] = []

    def serve() -> None:
        with listener:
            while True:
                conn, _ = listener.accept()
                with conn:
                    seen.append(conn.recv(65536).split(b"\r\n", 1)[0])
                    if len(seen) > unanswered:
                        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                        return

    threading.Thread(target=serve, daemon=True).start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}/x", seen


def test_a_request_closed_unanswered_is_sent_once_more_and_recorded(monkeypatch):
    monkeypatch.setattr(helpers, "RESENT", [])
    url, seen = _closing_server(unanswered=1)
    resp = helpers.send(requests.Session(), "POST", url, json={"a": 1}, timeout=5)
    assert (resp.status_code, resp.text) == (200, "ok")
    assert seen == [b"POST /x HTTP/1.1"] * 2
    assert [(m, u) for m, u, _ in helpers.RESENT] == [("POST", url)]


def test_a_second_unanswered_close_is_the_tests_error(monkeypatch):
    monkeypatch.setattr(helpers, "RESENT", [])
    url, seen = _closing_server(unanswered=2)
    with pytest.raises(requests.ConnectionError):
        helpers.send(requests.Session(), "POST", url, json={}, timeout=5)
    assert len(seen) == 2 and len(helpers.RESENT) == 1
