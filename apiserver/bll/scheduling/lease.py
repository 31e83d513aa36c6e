"""Owns taking and renewing a lease in MongoDB with one conditional update, so one holder wins."""

from __future__ import annotations

import os
import socket
from datetime import timedelta
from uuid import uuid4

from apiserver.database.errors import DuplicateKeyError
from apiserver.database.model.base import utcnow
from apiserver.database.model.lease import Lease
from apiserver.database.store import store_of


def holder_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid4().hex[:8]}"


class LeaseKeeper:
    def __init__(self, name: str, ttl_sec: float, holder: str | None = None):
        self.name = name
        self.ttl = timedelta(seconds=ttl_sec)
        self.holder = holder or holder_id()

    def acquire(self) -> bool:
        """Take or renew the lease; True when this process holds it until ``now + ttl``."""
        now = utcnow()
        coll = store_of(Lease)
        try:
            # One conditional write: it matches only if we hold the lease or it expired. The
            # answer's counts say whether it matched (no returned document is trusted: see
            # tests/test_database_conformance.py).
            result = coll.update_one(
                {"_id": self.name, "$or": [{"holder": self.holder}, {"expires_at": {"$lt": now}}]},
                {"$set": {"holder": self.holder, "expires_at": now + self.ttl}}, upsert=True)
        except DuplicateKeyError:
            return False  # someone else holds a live lease (the upsert collided with it)
        return result.matched_count == 1 or result.upserted_id is not None

    def release(self) -> None:
        store_of(Lease).delete_one({"_id": self.name, "holder": self.holder})
