"""Owns the background jobs: APScheduler in every process, each job run only by the lease holder.

A job registered with ``@periodic("name", "section.key")`` runs every that config key's seconds
(its default is in ``apiserver/config/default``) in the one process of the deployment that holds the lease
named ``scheduler``; the others keep trying to take it over, so a dead holder is replaced within
``lease_ttl_sec``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from apscheduler.schedulers.background import BackgroundScheduler

from apiserver.bll.scheduling.lease import LeaseKeeper
from apiserver.state import ServerState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PeriodicJob:
    name: str
    interval_key: str  # config key holding the period in seconds
    fn: Callable[[ServerState], None]


_JOBS: list[PeriodicJob] = []


def periodic(name: str, interval_key: str):
    """Register ``fn(state)`` as a once-per-deployment job whose period is the config key's value."""
    def register(fn: Callable[[ServerState], None]) -> Callable[[ServerState], None]:
        _JOBS.append(PeriodicJob(name, interval_key, fn))
        return fn
    return register


class LeaderScheduler:
    def __init__(self, state: ServerState):
        cfg = state.config
        self.state = state
        self.lease = LeaseKeeper("scheduler", float(cfg["scheduler.lease_ttl_sec"]))
        self.scheduler = BackgroundScheduler(daemon=True, job_defaults={"coalesce": True, "max_instances": 1})
        self.is_leader = False
        self.holds_until = 0.0  # time.monotonic() until which the last renewal holds the lease
        self.scheduler.add_job(self._renew, "interval", seconds=float(cfg["scheduler.lease_renew_sec"]),
                               id="lease")
        for job in _JOBS:
            period = float(cfg[job.interval_key])
            self.scheduler.add_job(self._guarded(job), "interval", seconds=period, id=job.name)

    def _renew(self) -> None:
        asked = time.monotonic()  # the lease written now lasts ttl from a moment after this one
        try:
            leader = self.lease.acquire()
        except Exception:  # noqa: BLE001 - the database may be briefly unreachable
            log.exception("could not renew the scheduler lease")
            leader = False
        if leader:
            self.holds_until = asked + self.lease.ttl.total_seconds()
        if leader != self.is_leader:
            log.info("scheduler lease %s by %s", "taken" if leader else "lost", self.lease.holder)
        self.is_leader = leader

    def holds_lease(self) -> bool:
        """Whether this process's lease is still live by its own clock: a renewal that ran late (a
        stalled process, a slow database) may have let it expire and another process take it, while
        ``is_leader`` still says what the last renewal found."""
        return self.is_leader and time.monotonic() < self.holds_until

    def _guarded(self, job: PeriodicJob) -> Callable[[], None]:
        def run() -> None:
            if not self.holds_lease():
                return
            began = time.time()
            try:
                job.fn(self.state)
            except Exception:  # noqa: BLE001 - a failing job must not stop the scheduler
                log.exception("background job %s failed", job.name)
            finally:  # tests/test_jobs.py reads these to check no two holders ever ran jobs at once
                log.debug("job %s ran as %s from %.6f to %.6f", job.name, self.lease.holder, began, time.time())
        return run

    def start(self) -> LeaderScheduler:
        self._renew()
        self.scheduler.start()
        return self

    def shutdown(self) -> None:
        if self.scheduler.running:
            # wait for a job still running: the lease is released below, and the next holder's jobs
            # must not start while this one's are still at work
            self.scheduler.shutdown(wait=True)
        if self.is_leader:
            try:
                self.lease.release()
            except Exception:  # noqa: BLE001
                log.warning("could not release the scheduler lease")


def start_scheduler(state: ServerState) -> LeaderScheduler:
    return LeaderScheduler(state).start()
