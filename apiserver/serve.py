"""Owns running the server under gunicorn, with the embedded database owned by the master process.

Both ``python -m apiserver`` and ``gunicorn -c gunicorn.conf.py wsgi:app`` come through here: the
gunicorn master starts (or joins) the embedded database once, before forking, and exports its URI
so every worker connects to the same server; the master stops it when gunicorn exits.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import Any

from apiserver.config import Config, load_config
from apiserver.database.connection import embedded_from_config
from apiserver.database.embedded import EmbeddedDatabase

log = logging.getLogger("apiserver")
URI_ENV = "APISERVER__database__uri"
_embedded: EmbeddedDatabase | None = None


def gunicorn_options(config: Config) -> dict[str, Any]:
    listen = config.get("apiserver.listen", {})
    return {
        "bind": f"{listen.get('host', '127.0.0.1')}:{int(listen.get('port', 8008))}",
        "workers": int(config.get("apiserver.workers", 2)),
        "worker_class": "gthread",
        "threads": int(config.get("apiserver.threads", 8)),
        "timeout": int(config.get("apiserver.worker_timeout_sec", 60)),
        "graceful_timeout": 15,
        "accesslog": config.get("apiserver.access_log") or None,
        "loglevel": str(config.get("apiserver.log_level", "info")).lower(),
        # gunicorn 23+ opens a management socket at one fixed path per user; several servers on
        # one host would fight over it, and nothing here uses it.
        "control_socket_disable": True,
        "worker_exit": worker_exit,
        "post_fork": return_large_buffers,
    }


# glibc's mallopt parameter and the size from which a block is mmapped (and unmapped when freed).
M_MMAP_THRESHOLD = -3
LARGE_BUFFER = 256 * 1024


def return_large_buffers(server: Any = None, worker: Any = None) -> None:
    """In a new worker: large blocks (the file server's 1 MiB reads, GridFS chunks, their BSON)
    are mmapped and go back to the system when freed. glibc's default raises its mmap threshold
    after the first such free and then keeps these blocks in per-thread heaps, where a worker's
    memory grows by tens of MB with every large upload (seen in bench/files.py)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name or sys.platform != "linux":
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(name).mallopt(M_MMAP_THRESHOLD, LARGE_BUFFER)


def worker_exit(server: Any = None, worker: Any = None) -> None:
    """In a worker on its way out: stop its scheduler before the interpreter tears threads down."""
    from apiserver.state import peek_state

    state = peek_state()
    if state is not None and state.scheduler is not None:
        state.scheduler.shutdown()
        state.scheduler = None


def start_database(config: Config | None = None) -> None:
    """Before forking: start the embedded database unless a URI is configured; export its URI."""
    global _embedded
    config = config or load_config()
    if config.get("database.uri"):
        return
    embedded = embedded_from_config(config)
    os.environ[URI_ENV] = embedded.ensure_running()
    _embedded = embedded if embedded.owner else None


def stop_database() -> None:
    global _embedded
    if _embedded is not None and _embedded.owner:
        log.info("stopping the embedded database")
        _embedded.stop()
        _embedded = None


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

            return create_app()

    start_database(config)
    try:
        log.info("API server listening on http://%s", gunicorn_options(config)["bind"])
        Server().run()
    finally:
        stop_database()
