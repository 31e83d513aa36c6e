"""Benchmark support: serve a WSGI app with gunicorn and measure requests per second over loopback.

Every benchmark compares two things measured in the same run on the same machine, so the printed
ratio means something on any machine; absolute numbers are printed for context only.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Gunicorn:
    """``gunicorn APP`` with the given settings, in a child process."""

    def __init__(self, app: str, workers: int = 1, threads: int = 1, env: dict | None = None):
        self.port = free_port()
        self.cmd = [sys.executable, "-m", "gunicorn", "-b", f"127.0.0.1:{self.port}", "-w", str(workers),
                    "-k", "gthread", "--threads", str(threads), "--no-control-socket", "--log-level", "warning",
                    app]
        self.env = {**os.environ, **(env or {}), "PYTHONPATH": str(ROOT)}
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Gunicorn:
        self.proc = subprocess.Popen(self.cmd, cwd=ROOT, env=self.env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                requests.get(f"http://127.0.0.1:{self.port}/", timeout=1)
                return self
            except requests.RequestException:
                time.sleep(0.2)
        raise RuntimeError("gunicorn did not start")

    def __exit__(self, *exc) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)


def requests_per_second(port: int, method: str, path: str, body: dict | None = None,
                        headers: dict | None = None, seconds: float = 3.0, expect: int = 200) -> float:
    """Sequential requests on one keep-alive connection for ``seconds``; returns requests/second."""
    conn = http.client.HTTPConnection("127.0.0.1", port)
    payload = json.dumps(body).encode() if body is not None else None
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    for _ in range(50):  # warm up
        conn.request(method, path, payload, hdrs)
        resp = conn.getresponse()
        resp.read()
        assert resp.status == expect, (path, resp.status)
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        conn.request(method, path, payload, hdrs)
        resp = conn.getresponse()
        resp.read()
        count += 1
    elapsed = time.perf_counter() - start
    conn.close()
    return count / elapsed


def interleaved(rounds: int, measure_a, measure_b) -> tuple[float, float]:
    """Alternate the two measurements ``rounds`` times and keep each side's best, so drift in
    machine load hits both sides alike."""
    best_a = best_b = 0.0
    for _ in range(rounds):
        best_a = max(best_a, measure_a())
        best_b = max(best_b, measure_b())
    return best_a, best_b


class ApiServer:
    """A real ``python -m apiserver`` (gunicorn) on its own embedded database, logged in as admin.

    ``http`` is a requests.Session with a Bearer token; ``db`` is pymongo on the same database, for
    baselines and for seeding.
    """

    KEY, SECRET = "BENCHADMINKEY00000000000", "bench-admin-secret-000000000000000"

    def __init__(self, workers: int = 1, env: dict[str, str] | None = None):
        self.workers = workers
        self.extra_env = env or {}

    def __enter__(self) -> ApiServer:
        import shutil
        import tempfile

        import pymongo

        from apiserver.database.embedded import EmbeddedDatabase

        self._work = Path(tempfile.mkdtemp(prefix="bench-"))
        self._cleanup = lambda: shutil.rmtree(self._work, ignore_errors=True)
        self.database = EmbeddedDatabase(self._work / "db")
        uri = self.database.ensure_running()
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "APISERVER__database__uri": uri, "APISERVER__database__name": "bench",
               "APISERVER_ADMIN_ACCESS_KEY": self.KEY, "APISERVER_ADMIN_SECRET_KEY": self.SECRET,
               "APISERVER__auth__bcrypt_rounds": "4", "APISERVER__apiserver__log_level": "WARNING",
               **self.extra_env}
        self._env = env
        self._start()
        me = self.call("users.get_current_user")["user"]
        self.company, self.user = me["company"]["id"], me["id"]
        self.db = pymongo.MongoClient(uri).bench
        return self

    def _start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "apiserver", "--port", str(self.port), "--workers",
                                      str(self.workers)], cwd=ROOT, env=self._env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(self.base + "/health", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.2)
        self.http = requests.Session()
        token = self.http.post(self.base + "/auth.login", auth=(self.KEY, self.SECRET)).json()["data"]["token"]
        self.http.headers["Authorization"] = f"Bearer {token}"
        self._lean = None

    def restart(self) -> None:
        """A new server process on the same database: whatever the old one kept in memory is gone."""
        self.proc.terminate()
        self.proc.wait(30)
        self._start()

    def post_lean(self, endpoint: str, body: dict) -> bytes:
        """The answer's bytes, over one kept-alive http.client connection: for latency ratios against
        pymongo, whose client is C, so that the ratio weighs the server rather than the requests
        library (about 1 ms of Python per call on this machine)."""
        if self._lean is None:
            self._lean = http.client.HTTPConnection("127.0.0.1", self.port)
        self._lean.request("POST", f"/{endpoint}", json.dumps(body).encode(),
                           {"Content-Type": "application/json", "Authorization": self.http.headers["Authorization"]})
        resp = self._lean.getresponse()
        content = resp.read()
        assert resp.status == 200, content[:300]
        return content

    def call(self, endpoint: str, **data) -> dict:
        resp = self.http.post(f"{self.base}/{endpoint}", json=data)
        assert resp.status_code == 200, resp.text
        return resp.json()["data"]

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        self.database.stop()
        self._cleanup()


def size_parser(doc: str | None) -> argparse.ArgumentParser:
    """Arguments of a bench measured at a small and a large size: --small, --large, --repeat."""
    parser = argparse.ArgumentParser(description=doc)
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=9)
    return parser


def timed(fn, n: int) -> list[float]:
    """Seconds taken by each of ``n`` calls of ``fn``."""
    out = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


class PeakMemory:
    """The largest RSS growth of any child process of ``pid`` (gunicorn's workers) while in use."""

    def __init__(self, pid: int, interval: float = 0.05):
        import psutil

        self._missing = psutil.NoSuchProcess
        self.interval = interval
        self.workers = psutil.Process(pid).children(recursive=True)
        self.base = {p.pid: p.memory_info().rss for p in self.workers}
        self.peak = dict(self.base)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            for proc in self.workers:
                with contextlib.suppress(self._missing):
                    self.peak[proc.pid] = max(self.peak[proc.pid], proc.memory_info().rss)
            time.sleep(self.interval)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth(self) -> int:
        """Bytes by which the worker that grew most grew."""
        return max((self.peak[pid] - self.base[pid] for pid in self.base), default=0)

    @property
    def peak_rss(self) -> int:
        return max(self.peak.values(), default=0)
