"""Owns whether this process should get traffic (``/health/ready``): its start-up is done (specs loaded,
database connected, state built), its database answers, and the server is not shutting down.

Shutting down is known two ways: this worker got SIGTERM (``mark_shutting_down``, from the gunicorn
hook in ``serve.py``), or the master is draining before it stops (it creates the file named in
``SHUTDOWN_FLAG_ENV``, which every worker checks).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from apiserver.state import peek_state

SHUTDOWN_FLAG_ENV = "APISERVER_SHUTDOWN_FLAG"

_shutting_down = False
_boot_heartbeat: Callable[[], None] | None = None


def set_boot_heartbeat(beat: Callable[[], None]) -> None:
    global _boot_heartbeat
    _boot_heartbeat = beat


def still_starting() -> None:
    """Said by a long start-up step now and then: under gunicorn, the master would otherwise take a
    worker silent for apiserver.worker_timeout_sec for hung and kill it."""
    if _boot_heartbeat is not None:
        _boot_heartbeat()


def mark_shutting_down() -> None:
    global _shutting_down
    _shutting_down = True


def shutting_down() -> bool:
    flag = os.environ.get(SHUTDOWN_FLAG_ENV)
    return _shutting_down or bool(flag and os.path.exists(flag))


def database_problem() -> str | None:
    """Why this process cannot use its database now (/health and /health/ready), or None when it can."""
    state = peek_state()
    if state is None:  # start-up still waits for the database (create_app's wait_for_database)
        return "the database does not answer"
    try:
        state.db.command("ping")
    except Exception:  # noqa: BLE001 - any database fault means "does not answer"
        return "the database does not answer"
    return None


def not_ready_because() -> str | None:
    """Why this process should get no traffic now, or None when it should. Served once start-up is
    done: a starting app answers 503 itself (dispatcher.py)."""
    if shutting_down():
        return "the server is shutting down"
    return database_problem()
