"""Owns JWT tokens: issuing them at login and verifying them on every call without the database."""

from __future__ import annotations

import time

import jwt

from apiserver.apierrors import errors
from apiserver.bll.auth.identity import Identity

ALGORITHM = "HS256"
_IDENTITY_KEYS = ("user", "company", "role", "user_name", "company_name")


class TokenService:
    def __init__(self, secret: str, default_expiration_sec: int, max_expiration_sec: int,
                 api_version: str, server_version: str):
        if len(secret) < 32:
            raise ValueError("the token secret must be at least 32 characters")
        self._secret = secret
        self.default_expiration_sec = default_expiration_sec
        self.max_expiration_sec = max_expiration_sec
        self.api_version = api_version
        self.server_version = server_version
        # token -> (identity, exp). A client sends the same token on every call; checking its
        # signature once per process is enough. Bounded; expiry is checked on every hit.
        self._verified: dict[str, tuple[Identity, int]] = {}
        self._max_cached = 10_000

    def issue(self, identity: Identity, expiration_sec: int | None = None) -> str:
        lifetime = self.default_expiration_sec if expiration_sec is None else expiration_sec
        if lifetime <= 0 or lifetime > self.max_expiration_sec:
            raise errors.bad_request.ValidationError(
                f"expiration_sec must be between 1 and {self.max_expiration_sec}", field="expiration_sec")
        now = int(time.time())
        claims = {
            "identity": identity.to_dict(), "iat": now, "exp": now + lifetime,
            "api_version": self.api_version, "server_version": self.server_version,
            "env": "<unknown>", "auth_type": "Bearer",
        }
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def verify(self, token: str) -> Identity:
        """The token's identity; any fault is 401/30 (expired tokens say so, so clients log in)."""
        hit = self._verified.get(token)
        if hit is not None:
            if hit[1] > time.time():
                return hit[0]
            self._verified.pop(token, None)
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
        identity = Identity(**{k: ident.get(k, "") for k in _IDENTITY_KEYS})
        if len(self._verified) >= self._max_cached:
            self._verified.clear()
        self._verified[token] = (identity, int(claims["exp"]))
        return identity
