"""Test support: a real server process, an API client that checks every answer against its spec."""

from __future__ import annotations

import base64
import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import requests
from jsonschema import Draft7Validator

from apiserver.schema.loader import SpecRegistry, load_specs, parse_version

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"  # screenshots of failed browser tests
ADMIN_KEY = "TESTADMINKEY0000000000AA"
ADMIN_SECRET = "test-admin-secret-4c1f0e8b9f2d4a7e"
OTHER_KEY = "TESTOTHERKEY000000000BBB"
OTHER_SECRET = "test-other-secret-1b2c3d4e5f60718293"
# The servers of most tests call members, registries and model servers on this machine, which the
# outbound guard refuses unless allowlisted. The SSRF tests run a server without this.
LOOPBACK_HOSTS = ["127.0.0.0/8", "::1"]
# Test clients of a test database (pymongo's and the servers') give up on a database that stopped
# answering instead of waiting forever (pymongo's default socket timeout is none).
BOUNDED_WAITS = "socketTimeoutMS=120000&serverSelectionTimeoutMS=30000"


def with_bounded_waits(uri: str) -> str:
    return f"{uri}{'&' if '?' in uri else '?'}{BOUNDED_WAITS}"
ALLOW_LOOPBACK = {"APISERVER__outbound__allow_hosts": '["127.0.0.0/8", "::1"]'}

_SPECS: SpecRegistry | None = None


def specs() -> SpecRegistry:
    global _SPECS
    if _SPECS is None:
        _SPECS = load_specs()
    return _SPECS


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def basic(key: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:{secret}".encode()).decode()


def check_response(name: str, actual_version: str | None, data: Any) -> None:
    """Every successful answer must match its endpoint's declared response schema."""
    registry = specs()
    spec = registry.resolve(name, parse_version(actual_version) if actual_version else None)
    assert spec is not None, f"answer names an unknown endpoint {name} {actual_version}"
    errors = sorted(Draft7Validator(spec.response_schema).iter_errors(data), key=lambda e: list(e.path))
    assert not errors, f"{name} {actual_version} answer breaks its response schema: " + \
        "; ".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:5])


def _rest_routes() -> list[tuple[str, re.Pattern, Any]]:
    routes = []
    for spec in specs().all():
        http = spec.http
        if http is None or http.style != "rest" or spec.internal:
            continue
        pattern = re.sub(r"<(?:path:)?[^>]+>", lambda m: "(.+)" if m.group(0).startswith("<path:") else "([^/]+)",
                         http.path)
        routes.append((http.method.upper(), re.compile(f"^{pattern}$"), spec))
    return routes


_REST_ROUTES: list | None = None


def check_rest(method: str, path: str, status: int, body: Any, rest_error_schema: dict) -> None:
    """A REST answer matches what its endpoint declares: the success status with a body valid
    against its response schema, or an error body valid against the RestError schema."""
    global _REST_ROUTES
    if _REST_ROUTES is None:
        _REST_ROUTES = _rest_routes()
    bare = path.split("?", 1)[0]
    found = [spec for m, rx, spec in _REST_ROUTES if m == method.upper() and rx.match(bare)]
    assert found, f"{method} {bare}: no declared REST endpoint"
    spec = max(found, key=lambda sp: len(sp.http.path))  # the most specific rule
    if status == spec.http.status:
        if body is None or spec.response_schema is None:
            return
        schema, what = spec.response_schema, f"{spec.name} answer"
    else:
        assert status >= 400, f"{method} {bare}: {status}, but {spec.name} declares {spec.http.status}"
        schema, what = rest_error_schema, f"{spec.name} error {status}"
    errors = sorted(Draft7Validator(schema).iter_errors(body), key=lambda e: list(e.path))
    assert not errors, f"{what} breaks its schema: " + "; ".join(
        f"{list(e.absolute_path)}: {e.message}" for e in errors[:5])


# Requests the test clients sent again because the connection closed before any answer came
# (method, URL, error); printed at the end of the run (conftest). A worker that died under a
# request still fails the run through the server-log check, whatever the retry then got.
RESENT: list[tuple[str, str, str]] = []
_CLOSED_UNANSWERED = (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected)


def send(session: requests.Session, method: str, url: str, resend: bool = True, **kwargs: Any) -> requests.Response:
    """``session.request``, sent once more on a new connection when a pooled keep-alive connection
    was closed by the server with no answer at all: the client's check that the connection is open
    and the server closing it at its keep-alive timeout race (as in any HTTP client; the ClearML
    SDK retries such requests too). Every other error, and any answer, is the test's."""
    try:
        return session.request(method, url, **kwargs)
    except requests.ConnectionError as exc:
        cause = exc.args[0] if exc.args else None  # urllib3's ProtocolError("Connection aborted.", reason)
        reason = cause.args[-1] if isinstance(cause, Exception) and cause.args else None
        if not resend or not isinstance(reason, _CLOSED_UNANSWERED):
            raise
        RESENT.append((method, url, repr(reason)))
        session.close()  # the retry opens a new connection
        return session.request(method, url, **kwargs)


_REST_ERROR: dict | None = None


def rest_error_schema() -> dict:
    """The RestError schema the server publishes in /openapi.json (built by the same code)."""
    global _REST_ERROR
    if _REST_ERROR is None:
        from apiserver import MAX_API_VERSION, __version__
        from apiserver.service_repo.openapi import build_openapi

        _REST_ERROR = build_openapi(specs(), __version__, MAX_API_VERSION)["components"]["schemas"]["RestError"]
    return _REST_ERROR


class RestClient:
    """Plain REST calls with one Authorization header; every answer is checked against what its
    endpoint declares (``check_rest``); an RPC path called through it is checked as an envelope."""

    def __init__(self, base_url: str, auth: str):
        self.base_url = base_url
        self.session = requests.Session()
        self.session.headers["Authorization"] = auth

    def __call__(self, method: str, path: str, body: Any = None) -> tuple[int, Any, dict]:
        resp = send(self.session, method, self.base_url + path, json=body, timeout=90)
        answer = resp.json() if resp.content and "json" in resp.headers.get("Content-Type", "") else \
            (resp.text or None)
        name = path.split("?", 1)[0].rsplit("/", 1)[-1]
        if "." in name and isinstance(answer, dict) and "meta" in answer:
            if resp.status_code == 200:
                check_response(name, answer["meta"]["endpoint"]["actual_version"], answer["data"])
        else:
            check_rest(method, path, resp.status_code, answer, rest_error_schema())
        return resp.status_code, answer, resp.headers


class ApiError(AssertionError):
    def __init__(self, status: int, meta: dict):
        self.status = status
        self.meta = meta
        self.code = meta.get("result_code")
        self.subcode = meta.get("result_subcode")
        self.msg = meta.get("result_msg", "")
        super().__init__(f"{status} {self.code}/{self.subcode}: {self.msg}")


class ApiClient:
    """Calls RPC endpoints over real HTTP (or a Flask test client) and checks the answers."""

    def __init__(self, base_url: str | None = None, flask_client: Any = None, auth: str | None = None):
        self.base_url = base_url
        self.flask_client = flask_client
        self.auth = auth
        self._local = threading.local()  # one requests.Session per thread (Sessions are not thread-safe)
        self.resend = True  # off for a test that kills the server under its requests (tests/test_crash.py)

    @property
    def session(self) -> requests.Session:
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
        return self._local.session

    def with_auth(self, auth: str | None) -> ApiClient:
        return ApiClient(self.base_url, self.flask_client, auth)

    def login(self, key: str, secret: str, **data: Any) -> ApiClient:
        token = self.with_auth(basic(key, secret)).call("auth.login", **data)["token"]
        return self.with_auth(f"Bearer {token}")

    def request(self, method: str, path: str, body: Any = None, headers: dict | None = None,
                raw: bytes | str | None = None) -> tuple[int, Any, dict]:
        hdrs = {"Authorization": self.auth} if self.auth else {}
        hdrs.update(headers or {})
        if self.flask_client is not None:
            kwargs = {"data": raw} if raw is not None else ({"json": body} if body is not None else {})
            resp = self.flask_client.open(path, method=method, headers=hdrs, **kwargs)
            text = resp.get_data(as_text=True)
            ctype = resp.headers.get("Content-Type", "")
            return resp.status_code, (resp.get_json() if "json" in ctype else text), dict(resp.headers)
        kwargs = {"data": raw} if raw is not None else ({"json": body} if body is not None else {})
        resp = send(self.session, method, self.base_url + path, self.resend, headers=hdrs, timeout=60, **kwargs)
        ctype = resp.headers.get("Content-Type", "")
        return resp.status_code, (resp.json() if "json" in ctype else resp.text), dict(resp.headers)

    def envelope(self, name: str, /, _version: str | None = None, _method: str = "POST",
                 **data: Any) -> tuple[int, dict]:
        version, method = _version, _method
        path = f"/v{version}/{name}" if version else f"/{name}"
        status, body, _ = self.request(method, path, data)
        assert isinstance(body, dict) and "meta" in body, f"{path}: not an envelope: {body!r}"
        return status, body

    def call(self, name: str, /, _version: str | None = None, _method: str = "POST", **data: Any) -> Any:
        """Call ``name`` (at version ``_version``) with ``data``; raise ApiError unless it succeeds."""
        status, body = self.envelope(name, _version, _method, **data)
        meta = body["meta"]
        assert status == meta["result_code"], f"HTTP {status} but result_code {meta['result_code']}"
        if status != 200:
            raise ApiError(status, meta)
        check_response(name, meta["endpoint"]["actual_version"], body["data"])
        return body["data"]

    def error(self, name: str, /, _version: str | None = None, **data: Any) -> ApiError:
        """Call an endpoint that must fail; return the error."""
        try:
            self.call(name, _version, **data)
        except ApiError as exc:
            return exc
        raise AssertionError(f"{name} succeeded but was expected to fail")


STARTED_SERVERS: list[ServerProcess] = []  # every server of this test run, for the log check at its end
TRACEBACK = "Traceback (most recent call last):"
LOG_RECORD = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:|\[\d{4}-\d\d-\d\d )")  # ours, or gunicorn's
# gunicorn's master on a worker that died while the server ran (SIGTERM is a shutdown, logged after
# stop() and so never read): a request in flight on it was dropped without an answer.
WORKER_DIED = re.compile(r"WORKER TIMEOUT|Worker \(pid:\d+\) (was sent (?!SIGTERM)|exited with code)")


class ServerProcess:
    """``python -m apiserver`` as a child process on a free port, against a given database.

    ``expected_log_errors``: regexes of the tracebacks its test provokes on purpose; any other
    traceback, or a worker's death, its log holds before it is stopped fails the test run
    (``unexpected_errors``)."""

    def __init__(self, mongo_uri: str | None, db_name: str, workers: int = 2, data_dir: Path | None = None,
                 extra_env: dict[str, str] | None = None, port: int | None = None,
                 argv: list[str] | None = None, expected_log_errors: tuple[str, ...] = (),
                 cwd: Path | None = None):
        self.expected_log_errors = expected_log_errors
        self.cwd = cwd or ROOT
        self.log_end: int | None = None  # the log's size when stop() was called: later lines are shutdown
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "APISERVER__database__name": db_name, "APISERVER__auth__bcrypt_rounds": "4",
                    "APISERVER_ADMIN_ACCESS_KEY": ADMIN_KEY, "APISERVER_ADMIN_SECRET_KEY": ADMIN_SECRET,
                    "PYTHONUNBUFFERED": "1", **(extra_env or {})}
        if mongo_uri:
            self.env["APISERVER__database__uri"] = mongo_uri
        else:
            self.env.pop("APISERVER__database__uri", None)
        self.argv = argv or [sys.executable, "-m", "apiserver", "--port", str(self.port), "--workers", str(workers)]
        if data_dir is not None and argv is None:
            self.argv += ["--data-dir", str(data_dir)]
        self.proc: subprocess.Popen | None = None
        self.log_path: Path | None = None

    def start(self, log_dir: Path, timeout: float = 60) -> ServerProcess:
        self.log_path = log_dir / f"server-{self.port}.log"
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(self.argv, cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self._log = log
        STARTED_SERVERS.append(self)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if requests.get(self.base_url + "/health", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server did not become healthy in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:] if self.log_path else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            if self.log_end is None and self.log_path is not None:
                self.log_end = self.log_path.stat().st_size
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def client(self, auth: str | None = None) -> ApiClient:
        return ApiClient(self.base_url, auth=auth)

    def unexpected_errors(self) -> list[str]:
        """The tracebacks its log holds from start until it was asked to stop, each with the log line
        before it (what failed), and the records of workers that died (``WORKER_DIED``), except
        those ``expected_log_errors`` match."""
        if self.log_path is None or not self.log_path.exists():
            return []
        with open(self.log_path, "rb") as fh:
            lines = fh.read(self.log_end if self.log_end is not None else -1).decode(errors="replace").splitlines()
        found: list[str] = []

        def keep(text: str) -> None:
            if not any(re.search(pattern, text) for pattern in self.expected_log_errors):
                found.append(text)

        block: list[str] | None = None
        for i, line in enumerate([*lines, None]):  # None: the end closes the last block
            if line is None or LOG_RECORD.match(line):
                if block is not None:
                    keep("\n".join(block))
                    block = None
                if line is not None and WORKER_DIED.search(line):
                    keep(line)
            elif line.strip() == TRACEBACK and block is None:
                block = lines[max(0, i - 1):i + 1]  # the record that logged it, and the traceback
                continue
            if block is not None:
                block.append(line)
        return found

    def admin(self) -> ApiClient:
        return self.client().login(ADMIN_KEY, ADMIN_SECRET)


def _race_child(target, args: tuple, index: int, barrier, out) -> None:
    """One racer: wait at the barrier with the others, run, report (index, ok, value or traceback)."""
    import traceback

    try:
        barrier.wait(120)
    except Exception:  # noqa: BLE001 - a broken barrier is reported like any failure
        out.put((index, False, "the start barrier broke (another racer never arrived):\n" + traceback.format_exc()))
        return
    try:
        out.put((index, True, target(*args)))
    except BaseException:  # noqa: BLE001 - the parent's failure message carries it
        out.put((index, False, traceback.format_exc()))


def race(target, args_per_process: list[tuple], timeout: float = 240) -> list[Any]:
    """Run ``target(*args)`` in one spawned process per args tuple, released at the same moment by a
    barrier (every process is up and connected before any starts); returns their return values in
    ``args_per_process`` order.

    A racer that raises fails the race with its traceback in the message (each failing racer's, not
    just a timeout); a racer that dies without a report, or a race still running after ``timeout``
    seconds, fails it too. Every racer still alive is terminated, on success and on failure.
    """
    import multiprocessing
    import queue as queue_mod

    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    barrier = ctx.Barrier(len(args_per_process))
    procs = [ctx.Process(target=_race_child, args=(target, args, i, barrier, out), daemon=True)
             for i, args in enumerate(args_per_process)]
    results: dict[int, Any] = {}
    failures: dict[int, str] = {}
    try:
        for proc in procs:
            proc.start()
        deadline = time.monotonic() + timeout
        while len(results) + len(failures) < len(procs):
            try:
                index, ok, value = out.get(timeout=0.5)
            except queue_mod.Empty:
                reported = results.keys() | failures.keys()
                for i, proc in enumerate(procs):
                    if i not in reported and proc.exitcode is not None:
                        try:  # its report may still be in the pipe
                            index, ok, value = out.get(timeout=2)
                        except queue_mod.Empty:
                            failures[i] = f"exited with code {proc.exitcode} without a report"
                            break
                        (results if ok else failures)[index] = value
                        break
                if time.monotonic() > deadline:
                    pending = [i for i in range(len(procs)) if i not in results and i not in failures]
                    for i in pending:
                        failures[i] = f"still running after {timeout:.0f}s"
                    break
                continue
            (results if ok else failures)[index] = value
            if failures:
                break  # the race is lost: do not wait for the others
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
        for proc in procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
    if failures:
        report = "\n".join(f"--- racer {i} {args_per_process[i]!r}:\n{text}" for i, text in sorted(failures.items()))
        raise AssertionError(f"{len(failures)} of {len(procs)} racers failed:\n{report}")
    return [results[i] for i in range(len(procs))]


def sign_in_page(page: Any, base_url: str, user: str, password: str) -> None:
    """Sign in through the ClearML web app's own login page, as a person would: once the page has
    settled (the login form is drawn again when the sign-in modes arrive, which empties what was typed
    before), with the typed values checked before the form is sent. When the page stays on the login
    form, the failure says what the page shows."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import expect

    page.goto(base_url + "/")
    page.wait_for_load_state("networkidle")
    name = page.locator("input[name=name], input[formcontrolname=name], input[type=text]").first
    name.wait_for(timeout=30_000)
    name.fill(user)
    secret = page.locator("input[type=password]")
    secret.fill(password)
    expect(name).to_have_value(user)
    expect(secret).to_have_value(password)
    secret.press("Enter")
    try:
        page.wait_for_url(lambda url: "/login" not in url, timeout=30_000)
    except PlaywrightTimeout:
        shown = page.locator("body").inner_text()[:500]
        raise AssertionError(f"still on {page.url} 30 s after signing in; the page shows: {shown!r}") from None


def console_context(browser, request):
    """A browser context for the console's pages: ``problems`` collects uncaught script errors and
    CSP violations (``watch_console``), which fail the test; a failed test leaves screenshots."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    ctx.problems = []
    yield ctx
    assert not ctx.problems, ctx.problems
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        for i, page in enumerate(ctx.pages):
            page.screenshot(path=str(ARTIFACTS / f"{request.node.name}-{i}.png"), full_page=True)
    ctx.close()


def watch_console(context: Any, page: Any) -> None:
    """Record the page's uncaught script errors and CSP violations in ``context.problems``."""
    page.on("pageerror", lambda exc: context.problems.append(f"uncaught: {exc}"))
    page.on("console", lambda msg: context.problems.append(msg.text)
            if msg.type == "error" and "Content Security Policy" in msg.text else None)


def sign_in_console(page: Any, url: str, name: str, password: str) -> None:
    """Open ``url`` (a console page) and sign in through the console's own form."""
    page.goto(url)
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("navigation", name="Pages").wait_for(timeout=20_000)


def until(what: str, check, timeout: float = 30, every: float = 0.3, keep_alive=None):
    """Poll ``check()`` until it returns something truthy (calling ``keep_alive()`` before each try)."""
    deadline = time.monotonic() + timeout
    while True:
        if keep_alive is not None:
            keep_alive()
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, f"{what}: not within {timeout}s"
        time.sleep(every)


def parent_pid(pid: int) -> int:
    """The parent of a process (a gunicorn worker's is its server's master)."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[1])
