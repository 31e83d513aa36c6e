"""Owns the task status machine: which changes are allowed without ``force``."""

from __future__ import annotations

from apiserver.apierrors import errors

CREATED, QUEUED, IN_PROGRESS, STOPPED = "created", "queued", "in_progress", "stopped"
PUBLISHED, PUBLISHING, CLOSED, FAILED, COMPLETED, UNKNOWN = (
    "published", "publishing", "closed", "failed", "completed", "unknown")
# Every task status, in the order tasks.conf's task_status_enum lists them (checked at start-up).
STATUSES = (CREATED, QUEUED, IN_PROGRESS, STOPPED, PUBLISHED, PUBLISHING, CLOSED, FAILED, COMPLETED, UNKNOWN)
# The statuses of a task that ran and ended (events retention counts a task's age from then on).
ENDED = (STOPPED, PUBLISHED, CLOSED, FAILED, COMPLETED)

# ClearML's table of allowed changes (a change to the same status is allowed too, except where the
# caller says otherwise: `started` is not, so two agents cannot both start one task).
ALLOWED: dict[str, frozenset[str]] = {
    CREATED: frozenset({QUEUED, IN_PROGRESS}),
    QUEUED: frozenset({CREATED, IN_PROGRESS, STOPPED}),
    IN_PROGRESS: frozenset({STOPPED, FAILED, CREATED, COMPLETED}),
    STOPPED: frozenset({CLOSED, CREATED, FAILED, QUEUED, IN_PROGRESS, PUBLISHED, PUBLISHING, COMPLETED}),
    CLOSED: frozenset({CREATED, FAILED, PUBLISHED, PUBLISHING, STOPPED}),
    FAILED: frozenset({CREATED, STOPPED, PUBLISHED, QUEUED}),
    PUBLISHING: frozenset({PUBLISHED}),
    COMPLETED: frozenset({PUBLISHED, IN_PROGRESS, CREATED}),
    PUBLISHED: frozenset(),
    UNKNOWN: frozenset(),
}


def check_transition(current: str, new: str, force: bool = False, allow_same: bool = True) -> None:
    """Raise 400/110 naming both statuses unless ``current -> new`` is allowed (or forced)."""
    if force:
        return
    if current == new and allow_same:
        return
    if new not in ALLOWED.get(current, frozenset()):
        raise errors.bad_request.InvalidTaskStatus(
            f"cannot change status from {current} to {new}", current_status=current, new_status=new)
