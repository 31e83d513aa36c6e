"""Owns hashing and checking secrets and passwords (bcrypt), and generating new keys."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import string
import threading

import bcrypt

_KEY_ALPHABET = string.ascii_uppercase + string.digits


def generate_access_key() -> str:
    return "".join(secrets.choice(_KEY_ALPHABET) for _ in range(24))


def generate_secret_key() -> str:
    return secrets.token_urlsafe(48)


def _prehash(secret: str) -> bytes:
    # bcrypt reads at most 72 bytes (bcrypt 5 refuses longer input): hash first, then bcrypt.
    return base64.b64encode(hashlib.sha256(secret.encode()).digest())


def hash_secret(secret: str, rounds: int = 12) -> str:
    return bcrypt.hashpw(_prehash(secret), bcrypt.gensalt(rounds)).decode()


class SecretChecker:
    """bcrypt checks, remembered per stored hash so a Basic-auth client pays the cost once.

    The memo holds a SHA-256 of the secret next to the stored hash it was checked against. A new
    hash (secret rotated) or a revoked key (the caller no longer finds the record) never matches.
    """

    def __init__(self, max_entries: int = 10_000):
        self._verified: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self._max = max_entries

    def check(self, secret: str, stored_hash: str) -> bool:
        digest = hashlib.sha256(secret.encode()).digest()
        known = self._verified.get(stored_hash)
        if known is not None:
            return hmac.compare_digest(known, digest)
        try:
            ok = bcrypt.checkpw(_prehash(secret), stored_hash.encode())
        except ValueError:
            return False
        if ok:
            with self._lock:
                if len(self._verified) >= self._max:
                    self._verified.clear()
                self._verified[stored_hash] = digest
        return ok
