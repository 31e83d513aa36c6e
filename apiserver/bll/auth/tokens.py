"""Owns JWT tokens: issuing them at sign-in and verifying them on every call.

A token carries the identity it was issued to, the access key it was signed in with and the
user's ``token_version``. Its signature is checked once per process; what it depends on (the key
not revoked, the version and role unchanged) is re-checked through ``still_valid`` at most every
``recheck_sec`` per token, so revoking a key or changing a role ends its tokens within that time
everywhere (at once in the process that made the change) without a database read per request.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import jwt

from apiserver.apierrors import errors
from apiserver.bll.auth.identity import Identity

ALGORITHM = "HS256"
_IDENTITY_KEYS = ("user", "company", "role", "user_name", "company_name")

# Given an identity from a token: None when it still holds, else why not.
ValidityCheck = Callable[[Identity], "str | None"]


class TokenService:
    def __init__(self, secret: str, default_expiration_sec: int, max_expiration_sec: int,
                 api_version: str, server_version: str, still_valid: ValidityCheck | None = None,
                 recheck_sec: float = 2.0):
        if len(secret) < 32:
            raise ValueError("the token secret must be at least 32 characters")
        self._secret = secret
        self.default_expiration_sec = default_expiration_sec
        self.max_expiration_sec = max_expiration_sec
        self.api_version = api_version
        self.server_version = server_version
        self.still_valid = still_valid
        self.recheck_sec = recheck_sec
        # token -> [identity, exp, last check]. A client sends the same token on every call; its
        # signature is checked once per process. Bounded; expiry is checked on every hit.
        self._verified: dict[str, list] = {}
        self._max_cached = 10_000
        self._lock = threading.Lock()

    def issue(self, identity: Identity, expiration_sec: int | None = None) -> str:
        lifetime = self.default_expiration_sec if expiration_sec is None else expiration_sec
        if lifetime <= 0 or lifetime > self.max_expiration_sec:
            raise errors.bad_request.ValidationError(
                f"expiration_sec must be between 1 and {self.max_expiration_sec}",
                error_data={"field": "expiration_sec", "rule": "maximum"})
        now = int(time.time())
        claims = {
            "identity": {k: getattr(identity, k) for k in _IDENTITY_KEYS}, "iat": now, "exp": now + lifetime,
            "cred": identity.credential, "uv": identity.token_version,
            "api_version": self.api_version, "server_version": self.server_version,
            "env": "<unknown>", "auth_type": "Bearer",
        }
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def issue_at_sign_in(self, identity: Identity, scheme: str, expiration_sec: int | None = None) -> str:
        """A token for ``auth.login``: only from credentials (Basic), never from a token, so a stolen
        token cannot renew itself; its lifetime is capped from this sign-in."""
        if scheme != "basic":
            raise errors.unauthorized.BadAuthType(
                "auth.login needs HTTP Basic access_key:secret_key; a token cannot be renewed with itself")
        return self.issue(identity, expiration_sec)

    def forget_checks(self) -> None:
        """Re-check every cached token on its next use (a key or a role changed in this process)."""
        with self._lock:
            for entry in self._verified.values():
                entry[2] = 0.0

    def verify(self, token: str) -> Identity:
        """The token's identity; any fault is 401 (expired or revoked tokens say so, so clients sign in)."""
        now = time.time()
        hit = self._verified.get(token)
        if hit is not None and hit[1] <= now:
            self._verified.pop(token, None)
            hit = None
        if hit is None:
            identity, exp = self._decode(token)
            hit = [identity, exp, 0.0]
            with self._lock:
                if len(self._verified) >= self._max_cached:
                    self._verified.clear()
                self._verified[token] = hit
        if self.still_valid is not None and now - hit[2] >= self.recheck_sec:
            # A token checked before is re-checked by one request: those arriving meanwhile go on with the
            # last check. One never checked (or since forget_checks) is checked by every request.
            with self._lock:
                last = hit[2]
                due = now - last >= self.recheck_sec
                if due and last:
                    hit[2] = now
            if due:
                try:
                    problem = self.still_valid(hit[0])
                except BaseException:
                    hit[2] = last
                    raise
                if problem:
                    self._verified.pop(token, None)
                    raise errors.unauthorized.TokenRevoked(problem)
                hit[2] = max(hit[2], now)
        return hit[0]

    def _decode(self, token: str) -> tuple[Identity, int]:
        try:
            claims = jwt.decode(token, self._secret, algorithms=[ALGORITHM],
                                options={"require": ["exp", "iat"]})
        except jwt.ExpiredSignatureError:
            raise errors.unauthorized.InvalidToken("token expired") from None
        except jwt.PyJWTError as exc:
            raise errors.unauthorized.InvalidToken(type(exc).__name__) from None
        ident = claims.get("identity")
        if not isinstance(ident, dict) or not all(isinstance(ident.get(k, ""), str) for k in _IDENTITY_KEYS) \
                or not ident.get("user") or not ident.get("role"):
            raise errors.unauthorized.InvalidToken("token carries no identity")
        cred, version = claims.get("cred", ""), claims.get("uv", 0)
        if not isinstance(cred, str) or not isinstance(version, int) or isinstance(version, bool):
            raise errors.unauthorized.InvalidToken("token carries a malformed credential reference")
        identity = Identity(**{k: ident.get(k, "") for k in _IDENTITY_KEYS}, credential=cred, token_version=version)
        return identity, int(claims["exp"])
