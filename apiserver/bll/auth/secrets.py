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
    """bcrypt checks, remembering only secrets proven right, so a Basic-auth client pays the cost once.

    The memo holds, per stored hash, a SHA-256 of the one secret that bcrypt accepted for it. Only
    that exact secret is answered from memory; any other secret (a guess) costs a full bcrypt
    check, as it did before a first good sign-in, so guessing gets no cheaper and timing says
    nothing. A new hash (secret rotated) or a revoked key (no record found) never matches.
    ``check_unknown`` spends the same bcrypt time for an account that does not exist.
    """

    def __init__(self, rounds: int = 12, max_entries: int = 10_000):
        self._verified: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self._max = max_entries
        self._dummy_hash = hash_secret(secrets.token_urlsafe(16), rounds)

    def check(self, secret: str, stored_hash: str) -> bool:
        digest = hashlib.sha256(secret.encode()).digest()
        known = self._verified.get(stored_hash)
        if known is not None and hmac.compare_digest(known, digest):
            return True
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

    def check_unknown(self, secret: str) -> bool:
        """As long as a wrong secret for a real account; always False."""
        bcrypt.checkpw(_prehash(secret), self._dummy_hash.encode())
        return False
