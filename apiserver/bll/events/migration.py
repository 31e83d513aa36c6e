"""Owns moving events stored one document per event (the shape before series and log blocks) into the blocks.

Runs at start-up (``create_app``) and as ``python -m apiserver.bll.events.migration`` against the
configured database. One process migrates at a time: it holds the ``events.blocks_v1`` lease (the
scheduler's lease keeper, ``bll/scheduling/lease.py``), renewed per task; a process that finds the
lease held by a live holder leaves the work to it. Each task's old scalar and log documents are
written through the same stores as new events, then deleted by id, so a task is converted once; new
events arriving meanwhile go to the blocks anyway.
"""

from __future__ import annotations

import logging

from apiserver.bll.scheduling.lease import LeaseKeeper
from apiserver.config.settings import Settings
from apiserver.database.events.stores import EventStores
from apiserver.database.model.event import LOG, SCALAR

log = logging.getLogger(__name__)

LEASE = "events.blocks_v1"
LEASE_SEC = 120
BATCH = 5000


def migrate_legacy_events(stores: EventStores) -> int:
    """Convert every old-shape scalar and log event; returns how many were converted (0: nothing to do)."""
    if not stores.events.has_legacy():
        return 0
    lease = LeaseKeeper(LEASE, LEASE_SEC)
    converted = 0
    while True:
        if not lease.acquire():
            log.info("events migration runs in another process")
            return converted
        batch = stores.events.legacy_batch(BATCH)
        if batch is None:
            break
        task, company, docs = batch
        stores.add(company, [d for d in docs if d["type"] == SCALAR], [d for d in docs if d["type"] == LOG], [])
        stores.pending.fold(task)
        stores.events.delete_ids([d["_id"] for d in docs])
        converted += len(docs)
        log.info("events migration: task %s, %d events moved into blocks", task, len(docs))
    lease.release()
    log.info("events migration done: %d events", converted)
    return converted


def main() -> int:
    """Run the migration against the configured database."""
    from apiserver.config import load_config
    from apiserver.database.connection import connect

    config = load_config()
    # as the server logs (apiserver.app.configure_logging), without importing the app from here
    logging.basicConfig(level=config["apiserver.log_level"],
                        format="%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s")
    connect(config)
    print(f"{migrate_legacy_events(EventStores.from_settings(Settings.from_config(config).events))} events moved into "
          "blocks")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
