"""Owns the throttling of failed sign-ins, per account and per address, shared by every process.

Each failed check of a secret or password counts against the account it named and the address it
came from, in a fixed window. Once either count reaches its limit, every sign-in for that account
or from that address is refused with 429 and ``Retry-After`` until the window ends, good secret or
not: otherwise an attacker could keep guessing and learn the right secret from the one answer that
is not a 429. Counts live in MongoDB so that all workers and hosts share them.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from apiserver.apierrors import errors
from apiserver.database.model.auth import SignInFailure
from apiserver.database.model.base import utcnow
from apiserver.database.store import store_of


@dataclass(frozen=True)
class ThrottleLimits:
    window_sec: int
    per_account: int
    per_address: int


def _key(kind: str, value: str) -> str:
    # Hashed: the collection must not become a list of user names and guessed keys.
    return f"{kind}:{hashlib.sha256(value.encode()).hexdigest()}"


class SignInThrottle:
    def __init__(self, limits: ThrottleLimits):
        self.limits = limits

    @property
    def store(self):
        return store_of(SignInFailure)

    def _keys(self, account: str, address: str | None) -> dict[str, int]:
        keys = {_key("account", account.lower()): self.limits.per_account}
        if address:
            keys[_key("address", address)] = self.limits.per_address
        return keys

    def check(self, account: str, address: str | None) -> None:
        """429 with Retry-After when the account or the address is over its limit."""
        keys = self._keys(account, address)
        now = utcnow()
        for doc in self.store.find({"_id": {"$in": list(keys)}, "expires": {"$gt": now}}):
            if doc.get("count", 0) >= keys[doc["_id"]]:
                wait = max(1, math.ceil((doc["expires"] - now).total_seconds()))
                kind = "account" if doc["_id"].startswith("account:") else "address"
                raise errors.too_many_requests.TooManyFailedSignIns(
                    f"too many failed sign-ins for this {kind}; retry in {wait} s",
                    headers={"Retry-After": str(wait)})

    def failed(self, account: str, address: str | None) -> None:
        now = utcnow()
        expires = now + timedelta(seconds=self.limits.window_sec)
        for key in self._keys(account, address):
            # Count within the open window; a closed window starts over (one conditional write each).
            doc: dict[str, Any] | None = self.store.update_and_read({"_id": key, "expires": {"$gt": now}},
                                                         {"$inc": {"count": 1}})
            if doc is None:
                self.store.replace_one({"_id": key}, {"count": 1, "expires": expires}, upsert=True)
