"""Owns upgrades of stored data: the schema version this code reads and writes, the migrations that bring
older data to it, and the refusal of data written by a newer release.

The version is one document (``server_meta``, ``_id: "schema"``). At start-up ``create_app`` first
calls ``refuse_newer_data`` (nothing is written to data this code does not know), then ``migrate``:
one process of the deployment takes the ``migrations`` lease (the scheduler's lease keeper, renewed
while it works) and runs each migration above the stored version in order, recording the version
after each one; the others wait until the version is current. A process that lost the lease while a
migration ran stops (``MigrationsLeaseLost``) before recording its version. A migration is resumable:
it converts what is still in the old shape, so one interrupted (a crash, a lost lease) is simply run
again.

Adding a shape change: append a ``Migration`` with the next number and raise ``SCHEMA_VERSION``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from apiserver.bll.events.migration import migrate_legacy_events
from apiserver.bll.scheduling.lease import LeaseKeeper
from apiserver.database.model.base import utcnow
from apiserver.database.model.meta import ServerMeta
from apiserver.database.store import store_of

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
SCHEMA_DOC = "schema"
LEASE = "migrations"
# gunicorn's "worker failed to boot" (Arbiter.WORKER_BOOT_ERROR): a worker exiting with it makes the
# master stop instead of starting another that fails the same way. A failed start-up ends a worker
# with it (app.py), and the master exits with it when it refuses newer data (serve.py).
EXIT_BOOT_ERROR = 3


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    run: Callable[[Any], int]  # run(state) -> how many records it changed


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "events stored one document per event move into series and log blocks",
              lambda state: migrate_legacy_events(state.events.stores)),
    # Nothing to convert: pending documents of the shape before are read and folded as they are. The
    # version marks that a release before it would not read this one's (it would miss pending console
    # lines and the series registered only when folded), so such a release refuses the data.
    Migration(2, "pending events hold an add call's console lines and series names; series register when folded",
              lambda state: 0),
)


class DataTooNew(RuntimeError):
    """The data was written by a newer release than this one."""


class MigrationsLeaseLost(RuntimeError):
    """Another process took the migrations lease while this one ran a migration."""


def stored_version() -> int:
    doc = store_of(ServerMeta).find_one({"_id": SCHEMA_DOC}, {"version": 1})
    return int(doc["version"]) if doc else 0


def refuse_newer_data(server_version: str) -> int:
    """The stored schema version; raises DataTooNew when it is above this code's."""
    found = stored_version()
    if found > SCHEMA_VERSION:
        doc = store_of(ServerMeta).find_one({"_id": SCHEMA_DOC}) or {}
        raise DataTooNew(
            f"this data was written by a newer release (schema version {found}, server "
            f"{doc.get('server_version') or 'unknown'}); this server ({server_version}) reads schema version "
            f"{SCHEMA_VERSION} and older. Nothing was changed: start that release or a newer one on this data, "
            f"or restore a backup made by this release.")
    return found


def migrate(state: Any, server_version: str, lease_ttl_sec: float, alive: Callable[[], None] = lambda: None,
            wait_sec: float = 1.0) -> int:
    """Bring the stored data to SCHEMA_VERSION (see the module doc); returns how many migrations this
    process ran. ``alive()`` is called every few seconds while it runs or waits (gunicorn's worker
    heartbeat: a long migration must not look like a hung worker)."""
    ran = 0
    lease = LeaseKeeper(LEASE, lease_ttl_sec)
    waited = False
    while (version := refuse_newer_data(server_version)) < SCHEMA_VERSION:
        alive()
        if not lease.acquire():
            if not waited:
                log.info("schema version %d: waiting for the migrations another process runs", version)
                waited = True
            time.sleep(wait_sec)
            continue
        try:  # released however it ends: a failed migration must not make the others wait out the ttl
            with _renewing(lease, alive) as renewing:
                for migration in MIGRATIONS:
                    if migration.version <= stored_version():
                        continue
                    began = time.monotonic()
                    log.info("migration %d (%s) started", migration.version, migration.name)
                    changed = migration.run(state)
                    renewing.check_held(migration)
                    _record(migration, server_version)
                    ran += 1
                    log.info("migration %d done: %d records changed in %.1fs; schema version is now %d",
                             migration.version, changed, time.monotonic() - began, migration.version)
        finally:
            lease.release()  # only deletes the lease while this process holds it
    return ran


def _record(migration: Migration, server_version: str) -> None:
    store_of(ServerMeta).update_one(
        {"_id": SCHEMA_DOC},
        {"$set": {"version": migration.version, "server_version": server_version, "updated": utcnow()},
         "$push": {"done": f"{migration.version}: {migration.name}"}}, upsert=True)


class _renewing:
    """Renews ``lease`` (every third of its ttl, at least every 5 s) and says ``alive()`` while the block
    runs, so a long migration keeps its lease and its worker."""

    def __init__(self, lease: LeaseKeeper, alive: Callable[[], None]):
        self.lease = lease
        self.alive = alive
        self.stop = threading.Event()
        self.lost = False  # a renewal found the lease taken: even got back later, another may have run
        self.thread = threading.Thread(target=self._run, daemon=True, name="migrations-lease")

    def _run(self) -> None:
        while not self.stop.wait(min(5.0, self.lease.ttl.total_seconds() / 3)):
            self.alive()
            try:
                if not self.lease.acquire():
                    self.lost = True
            except Exception:  # noqa: BLE001 - the next renewal tries again
                log.warning("could not renew the migrations lease")

    def check_held(self, migration: Migration) -> None:
        """Raises MigrationsLeaseLost unless this process held the lease all along, so a version is
        never recorded by a process that another took over from (it may be running the same migration)."""
        if self.lost or not self.lease.acquire():
            self.lost = True
            raise MigrationsLeaseLost(
                f"migration {migration.version}: another process took the migrations lease while this one ran "
                f"it (a stall longer than scheduler.lease_ttl_sec?); its version is not recorded here")

    def __enter__(self) -> _renewing:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
