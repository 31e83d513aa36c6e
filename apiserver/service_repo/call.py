"""Owns the call object a handler receives: validated data, identity and versions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from apiserver.bll.auth.identity import Identity
from apiserver.schema.loader import parse_version


@dataclass
class Call:
    """One request on its way through a handler."""

    id: str
    trx: str
    endpoint: str
    requested_version: str
    actual_version: str
    data: dict[str, Any]
    identity: Identity | None = None
    # json-lines batch endpoints: the validated items, in order
    batched_data: list[dict[str, Any]] | None = None
    remote_addr: str | None = None
    # The raw Authorization header value (auth.login reads the Basic pair from it).
    authorization: str | None = None
    # The browser session cookie's token, if the request carried one.
    cookie_token: str | None = None
    # Whether the client reached us over HTTPS (directly or through a trusted proxy).
    secure_transport: bool = False
    # Cookies the answer sets: (name, value or None to delete, attributes).
    set_cookies: list[tuple[str, str | None, dict[str, Any]]] = field(default_factory=list)
    # The Host header the request came to (URLs this server handed out name it).
    host: str | None = None
    # Stream endpoints (http style "stream") read the body and headers themselves.
    stream: BinaryIO | None = None
    headers: Mapping[str, str] | None = None
    environ: dict[str, Any] | None = None

    def requested_before(self, version: tuple[int, int]) -> bool:
        """Whether the client asked for an API version before ``version`` (a client that knew no later)."""
        requested = parse_version(self.requested_version or "")
        return requested is not None and requested < version

    @property
    def auth_scheme(self) -> str:
        """``basic``, ``bearer`` or "" (no credentials), lower case."""
        return (self.authorization or "").strip().partition(" ")[0].lower()

    @property
    def company(self) -> str:
        return self.identity.company if self.identity else ""

    @property
    def user(self) -> str:
        return self.identity.user if self.identity else ""
