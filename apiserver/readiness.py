"""Owns whether this process should get traffic (``/health/ready``): its start-up is done (specs loaded,
database connected, state built), its database answers, and the server is not shutting down.

Shutting down is known two ways: this worker got SIGTERM (``mark_shutting_down``, from the gunicorn
hook in ``serve.py``), or the master is draining before it stops (it creates the file named in
``SHUTDOWN_FLAG_ENV``, which every worker checks).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from apiserver.state import get_state

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


def not_ready_because() -> str | None:
    """Why this process should get no traffic now, or None when it should."""
    if shutting_down():
        return "the server is shutting down"
    state = get_state()  # served once start-up is done: a starting app answers 503 itself (dispatcher.py)
    try:
        state.db.command("ping")
    except Exception:  # noqa: BLE001 - any database fault means "not ready"
        return "the database does not answer"
    return None
