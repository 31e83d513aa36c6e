"""Owns which names hold secrets: request fields refused in a query string (the dispatcher) and
connector settings stored encrypted and answered masked (the registry) follow the same rule."""

from __future__ import annotations

import re

_SECRET_LAST_WORDS = ("token", "secret", "password", "passwd")  # as a word's ending: dbpassword, authtoken
_SECRET_WORDS = frozenset({"pat", "pwd", "apikey", "credential", "credentials"})
_SECRET_PAIRS = frozenset({("api", "key"), ("access", "key"), ("secret", "key"), ("private", "key"),
                           ("auth", "key"), ("account", "key"), ("signing", "key")})


def secret_name(key: str, declared: tuple[str, ...] | frozenset[str] = ()) -> bool:
    """Whether a name (a request field, a connector setting) holds a secret: declared one (``declared``,
    e.g. by a connector class), or named like one (``password``, ``apiKey``, ``db_token``)."""
    if key in declared:
        return True
    words = [w for w in re.split(r"[^a-z0-9]+", re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", key).lower()) if w]
    if not words:
        return False
    last = words[-1]
    return (last in _SECRET_WORDS or last.endswith(_SECRET_LAST_WORDS)
            or (len(words) > 1 and (words[-2], last) in _SECRET_PAIRS))
