"""Owns running the server under gunicorn, with the embedded database owned by the master process.

Both ``python -m apiserver`` and ``gunicorn -c python:apiserver.gunicorn_conf apiserver.wsgi:app`` come
through here: the gunicorn master starts (or joins) the embedded database once, before forking, and
exports its URI so every worker connects to the same server; the master stops it when gunicorn exits.
``python -m apiserver database`` runs that database alone (``run_database``), for API hosts elsewhere.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import tempfile
import threading
import time
from typing import Any

from gunicorn.arbiter import Arbiter
from gunicorn.glogging import Logger as GunicornLogger

from apiserver.config import Config, load_config
from apiserver.database.connection import embedded_from_config
from apiserver.database.embedded import WILDCARDS, EmbeddedDatabase
from apiserver.metrics import prepare_multiprocess_dir, remove_multiprocess_dir
from apiserver.readiness import SHUTDOWN_FLAG_ENV

log = logging.getLogger("apiserver")
URI_ENV = "APISERVER__database__uri"
DATABASE_HOST_PORT = 27017  # `python -m apiserver database` when database.embedded.port is 0 (a free port)
_embedded: EmbeddedDatabase | None = None  # the master's, when it started one (start_master)
_metrics_dir: str | None = None


def gunicorn_options(config: Config) -> dict[str, Any]:
    listen = config.get("apiserver.listen", {})
    return {
        "bind": f"{listen.get('host', '127.0.0.1')}:{int(listen.get('port', 8008))}",
        "workers": int(config["apiserver.workers"]),
        "worker_class": "gthread",
        "threads": int(config["apiserver.threads"]),
        "timeout": int(config["apiserver.worker_timeout_sec"]),
        "graceful_timeout": 15,
        "accesslog": config.get("apiserver.access_log") or None,
        "loglevel": str(config["apiserver.log_level"]).lower(),
        # gunicorn 23+ opens a management socket at one fixed path per user; several servers on
        # one host would fight over it, and nothing here uses it.
        "control_socket_disable": True,
        "worker_exit": worker_exit,
        "post_fork": post_fork,
        "post_worker_init": post_worker_init,
        "logger_class": JsonGunicornLogger if config["apiserver.log_format"] == "json" else None,
    }


def post_fork(server: Any, worker: Any) -> None:
    """In a new worker, before it loads the app: a long start-up (migrations, waiting for them) tells
    the master it is alive, which the worker's loop does only once it serves."""
    from apiserver.readiness import set_boot_heartbeat

    set_boot_heartbeat(worker.notify)


def post_worker_init(worker: Any) -> None:
    """In a new worker: SIGTERM (a shutdown) makes /health/ready answer 503 for what it still serves."""
    from apiserver.readiness import mark_shutting_down

    def handle_exit(sig: int, frame: Any) -> None:
        mark_shutting_down()
        worker.handle_exit(sig, frame)

    signal.signal(signal.SIGTERM, handle_exit)


class JsonGunicornLogger(GunicornLogger):
    """gunicorn's own log lines (boot, worker exits) as JSON lines too, with ``log_format: json``."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        from apiserver.jsonlog import JsonLinesFormatter

        for handler in self.error_log.handlers:
            handler.setFormatter(JsonLinesFormatter())


def start_master(config: Config) -> None:
    """Before forking (``run``, gunicorn_conf's ``on_starting``): the embedded database unless a URI is
    configured, the metrics folder the workers share and the shutdown flag they watch, each named in
    the environment the workers inherit. ``stop_master`` undoes it."""
    global _embedded, _metrics_dir
    if not config.get("database.uri"):
        embedded = embedded_from_config(config)
        os.environ[URI_ENV] = embedded.ensure_running()
        _embedded = embedded if embedded.owner else None
    os.environ[SHUTDOWN_FLAG_ENV] = os.path.join(tempfile.gettempdir(), f"apiserver-draining-{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        os.remove(os.environ[SHUTDOWN_FLAG_ENV])
    _metrics_dir = prepare_multiprocess_dir(str(config.get("apiserver.metrics.multiproc_dir") or ""))


def stop_master() -> None:
    """When the master exits (``run``, gunicorn_conf's ``on_exit``): the embedded database it started
    stops, a temporary metrics folder goes."""
    global _embedded, _metrics_dir
    if _embedded is not None and _embedded.owner:
        log.info("stopping the embedded database")
        _embedded.stop()
        _embedded = None
    if _metrics_dir is not None:
        remove_multiprocess_dir(_metrics_dir)
        _metrics_dir = None


def stop_if_data_too_new() -> None:
    """In the master, before forking: data written by a newer release stops the server here, with
    the reason on stderr and exit code 3 (the workers would each refuse it). The config is read
    again: ``start_master`` exported the embedded database's URI."""
    from apiserver import __version__
    from apiserver.bll.migrations import EXIT_BOOT_ERROR, DataTooNew, refuse_newer_data
    from apiserver.database.connection import connect, disconnect
    from apiserver.database.errors import ConnectionFailure

    try:
        connect(load_config())
        refuse_newer_data(__version__)
    except ConnectionFailure:
        log.warning("the database does not answer yet: the workers wait for it")
    except DataTooNew as exc:
        print(f"apiserver: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_BOOT_ERROR) from None
    finally:
        disconnect()  # no client may cross the fork


def worker_exit(server: Any = None, worker: Any = None) -> None:
    """In a worker on its way out: stop its scheduler before the interpreter tears threads down."""
    from apiserver.state import peek_state

    state = peek_state()
    if state is not None and state.scheduler is not None:
        state.scheduler.shutdown()
        state.scheduler = None


def run(config: Config) -> None:
    """Serve with gunicorn in this process (the master) until SIGTERM or SIGINT."""
    from gunicorn.app.base import BaseApplication

    class Server(BaseApplication):
        def load_config(self) -> None:
            for key, value in gunicorn_options(config).items():
                if value is not None:
                    self.cfg.set(key, value)

        def load(self):
            from apiserver.app import create_app

            return create_app(wait_for_database=True)

        def run(self) -> None:
            DrainingArbiter(self, float(config["apiserver.shutdown_drain_sec"])).run()

    start_master(config)
    try:
        stop_if_data_too_new()
        log.info("API server listening on http://%s", gunicorn_options(config)["bind"])
        Server().run()
    finally:
        stop_master()


class DrainingArbiter(Arbiter):
    """gunicorn's master, which on SIGTERM first drains for ``drain_sec``: the workers go on serving
    while /health/ready answers 503 (the shutdown flag), then it stops as gunicorn does. A second
    SIGTERM stops at once."""

    def __init__(self, app: Any, drain_sec: float):
        super().__init__(app)
        self.drain_sec = drain_sec
        self.drain_until: float | None = None

    def handle_term(self) -> None:
        if self.drain_sec <= 0 or self.drain_until is not None:
            raise StopIteration
        self.drain_until = time.monotonic() + self.drain_sec
        with open(os.environ[SHUTDOWN_FLAG_ENV], "w"):
            pass
        self.log.info("draining for %.1fs before stopping (/health/ready answers 503)", self.drain_sec)

    def murder_workers(self) -> None:
        super().murder_workers()
        if self.drain_until is not None and time.monotonic() >= self.drain_until:
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.environ[SHUTDOWN_FLAG_ENV])
            raise StopIteration


def run_database(config: Config, host: str | None = None, port: int | None = None) -> int:
    """``python -m apiserver database``: the embedded database alone, in the foreground, until SIGTERM
    or SIGINT; prints the ``database.uri`` for API hosts. Returns the process's exit code."""
    if config.get("database.uri"):
        print("apiserver: database.uri is set, so this server uses that database; the database command runs "
              "the embedded one (unset database.uri)", file=sys.stderr)
        return 2
    embedded = embedded_from_config(config)
    embedded.host = host or embedded.host
    embedded.port = port if port is not None else (embedded.port or DATABASE_HOST_PORT)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        embedded.ensure_running()
    except RuntimeError as exc:
        print(f"apiserver: {exc}", file=sys.stderr)
        return 1
    advertised = socket.getfqdn() if embedded.host in WILDCARDS else embedded.host
    print(f"database host ready: data in {embedded.data_dir}, listening on {embedded.host}:{embedded.port}\n"
          f"API hosts join with:\n"
          f"  APISERVER__database__uri='{embedded.uri_for(advertised)}'\n"
          f"  APISERVER__files__backend=gridfs", flush=True)
    try:
        while not stop.wait(1.0):
            if embedded.process is None or embedded.process.poll() is not None:
                log.error("the embedded database exited (code %s); see %s",
                          embedded.process and embedded.process.returncode, embedded.data_dir / "embedded.log")
                return 1
    finally:
        log.info("stopping the embedded database")
        embedded.stop()
    return 0
