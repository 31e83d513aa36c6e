"""Owns moving events stored one document per event (the shape before series and log blocks) into the blocks.

Runs at start-up (``create_app``) and as ``python -m apiserver.bll.events.migration`` against the
configured database. One process migrates at a time: it holds the ``events.blocks_v1`` lease,
renewed per task; a process that finds the lease held by a live holder leaves the work to it. Each
task's old scalar and log documents are written through the same stores as new events, then
deleted by id, so a task is converted once; new events arriving meanwhile go to the blocks anyway.
"""

from __future__ import annotations

import logging
import os
import socket
from datetime import timedelta
from typing import Any

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from apiserver.bll.events.logs import LOG
from apiserver.bll.events.scalars import SCALAR
from apiserver.database.model.base import utcnow

log = logging.getLogger(__name__)

LEASE = "events.blocks_v1"
LEASE_SEC = 120
BATCH = 5000


def _take_lease(db: Any, holder: str) -> bool:
    leases = db["leases"]
    now = utcnow()
    try:
        leases.insert_one({"_id": LEASE, "holder": holder, "expires_at": now + timedelta(seconds=LEASE_SEC)})
        return True
    except DuplicateKeyError:
        pass
    taken = leases.find_one_and_update(  # small collection: one lease document
        {"_id": LEASE, "$or": [{"holder": holder}, {"expires_at": {"$lt": now}}]},
        {"$set": {"holder": holder, "expires_at": now + timedelta(seconds=LEASE_SEC)}},
        return_document=ReturnDocument.AFTER)
    return taken is not None


def migrate_legacy_events(events_bll: Any) -> int:
    """Convert every old-shape scalar and log event; returns how many were converted (0: nothing to do)."""
    coll = events_bll.coll
    db = coll.database
    legacy = {"type": {"$in": [SCALAR, LOG]}}
    if coll.find_one(legacy, {"_id": 1}) is None:
        return 0
    holder = f"{socket.gethostname()}:{os.getpid()}"
    converted = 0
    while True:
        if not _take_lease(db, holder):
            log.info("events migration runs in another process")
            return converted
        first = coll.find_one(legacy, {"task": 1, "company": 1})
        if first is None:
            break
        task, company = first["task"], first.get("company", "")
        docs = list(coll.find({"task": task, "type": {"$in": [SCALAR, LOG]}}).limit(BATCH))
        for kind, store in ((SCALAR, events_bll.scalars), (LOG, events_bll.logs)):
            of_kind = [d for d in docs if d["type"] == kind]
            if of_kind:
                store.add(company, of_kind)
        events_bll.scalars.fold(task)
        coll.delete_many({"_id": {"$in": [d["_id"] for d in docs]}})
        converted += len(docs)
        log.info("events migration: task %s, %d events moved into blocks", task, len(docs))
    db["leases"].delete_one({"_id": LEASE, "holder": holder})
    log.info("events migration done: %d events", converted)
    return converted


def main() -> int:
    """Run the migration against the configured database."""
    from apiserver.app import configure_logging
    from apiserver.bll.events.events import EventBLL
    from apiserver.config import load_config
    from apiserver.database.connection import connect

    config = load_config()
    configure_logging(config["apiserver.log_level"])
    connect(config)
    print(f"{migrate_legacy_events(EventBLL(config.get('events')))} events moved into blocks")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
