"""Turn a Python function into a pipeline member container (standard library only).

    from member_kit import Member

    def train(user_id: str, project_id: str, member: Member) -> bool:
        ...                                  # the work; return False (or raise) for failure
        return True

    Member("bms", train, leader_url="http://127.0.0.1:8085", port=8081).serve_forever()

The member serves the reference protocol with plain-text answers:

- ``GET /start?user_id=&project_id=``: ``started`` (the function runs in a background thread), or
  ``error`` when a job is already running.
- ``GET /stop?user_id=&project_id=``: ``finished`` when the job of those ids was told to stop
  (``member.should_stop()`` turns true; a function that never checks it is abandoned), else ``error``.
- ``GET /status_request?user_id=&project_id=``: ``ready`` for empty ids or ids it has no job for;
  otherwise the job's state: ``started``, ``running``, ``completed``, ``failed`` or ``stopped``.

When the function returns, the member calls the leader's
``/status_report?container_id=&user_id=&project_id=&status=success|failed``. ``GET /_calls``
(JSON) counts the calls it received, for tests and diagnostics.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger("member_kit")

Work = Callable[[str, str, "Member"], bool | None]


class Member:
    def __init__(self, container_id: str, work: Work, leader_url: str | None, host: str = "127.0.0.1",
                 port: int = 0, report_timeout: float = 5.0):
        self.container_id = container_id
        self.work = work
        self.leader_url = leader_url.rstrip("/") if leader_url else None
        self.report_timeout = report_timeout
        self._lock = threading.Lock()
        self._job: dict | None = None  # {user_id, project_id, status}
        self._stop = threading.Event()
        self.calls: Counter[str] = Counter()
        self.server = ThreadingHTTPServer((host, port), self._handler())
        self.port = self.server.server_address[1]

    # -- the protocol -------------------------------------------------------------------------

    start_delay = 0.0  # seconds before /start is handled (a slow container, for tests)

    def start(self, user_id: str, project_id: str) -> str:
        time.sleep(self.start_delay)
        with self._lock:
            if self._job and self._job["status"] in ("started", "running"):
                return "error"
            self._job = {"user_id": user_id, "project_id": project_id, "status": "started"}
            self._stop.clear()
        threading.Thread(target=self._run, args=(user_id, project_id), daemon=True).start()
        return "started"

    def stop(self, user_id: str, project_id: str) -> str:
        with self._lock:
            job = self._job
            if not job or (job["user_id"], job["project_id"]) != (user_id, project_id) or \
                    job["status"] not in ("started", "running"):
                return "error"
            job["status"] = "stopped"
            self._stop.set()
        return "finished"

    def status(self, user_id: str, project_id: str) -> str:
        with self._lock:
            job = self._job
            if not user_id and not project_id:
                return "ready"
            if not job or (job["user_id"], job["project_id"]) != (user_id, project_id):
                return "ready"
            return job["status"]

    def should_stop(self) -> bool:
        """For the work function: true once the leader asked this job to stop."""
        return self._stop.is_set()

    # -- running the work ---------------------------------------------------------------------

    def _run(self, user_id: str, project_id: str) -> None:
        with self._lock:
            if self._job and self._job["status"] == "started":
                self._job["status"] = "running"
        try:
            ok = self.work(user_id, project_id, self) is not False
        except Exception:  # noqa: BLE001 - a failing job is a "failed" answer, not a dead member
            log.exception("member %s: the work failed", self.container_id)
            ok = False
        with self._lock:
            if self._job["status"] == "stopped":
                return  # stopped on request: no report
            self._job["status"] = "completed" if ok else "failed"
        self.report(user_id, project_id, "success" if ok else "failed")

    def report(self, user_id: str, project_id: str, status: str) -> None:
        if not self.leader_url:
            return
        query = urllib.parse.urlencode({"container_id": self.container_id, "user_id": user_id,
                                        "project_id": project_id, "status": status})
        try:
            with urllib.request.urlopen(f"{self.leader_url}/status_report?{query}", timeout=self.report_timeout):
                pass
        except OSError as exc:  # the leader polls anyway; a lost report only delays it one beat
            log.warning("member %s: status_report failed: %s", self.container_id, exc)

    # -- HTTP ---------------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        member = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                url = urllib.parse.urlparse(self.path)
                args = {k: v[0] for k, v in urllib.parse.parse_qs(url.query, keep_blank_values=True).items()}
                user_id, project_id = args.get("user_id", ""), args.get("project_id", "")
                command = url.path.strip("/")
                member.calls[command] += 1
                if command == "start":
                    self._send(member.start(user_id, project_id))
                elif command == "stop":
                    self._send(member.stop(user_id, project_id))
                elif command == "status_request":
                    self._send(member.status(user_id, project_id))
                elif command == "_calls":
                    self._send(json.dumps(dict(member.calls)), "application/json")
                else:
                    self._send("not found", status=404)

            def _send(self, text: str, ctype: str = "text/plain", status: int = 200) -> None:
                body = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, fmt: str, *args) -> None:
                log.debug("member %s: " + fmt, member.container_id, *args)

        return Handler

    def serve_forever(self) -> None:
        log.info("member %s listening on port %d", self.container_id, self.port)
        self.server.serve_forever()

    def serve_in_background(self) -> Member:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def shutdown(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def sleep_work(seconds: float, outcome: str = "success") -> Work:
    """A stand-in job: sleep (checking for stop), then succeed, fail, or never finish ("hang")."""
    def work(user_id: str, project_id: str, member: Member) -> bool:
        deadline = time.monotonic() + seconds
        while outcome == "hang" or time.monotonic() < deadline:
            if member.should_stop():
                return False
            time.sleep(0.05)
        return outcome == "success"
    return work
