"""Owns the call object a handler receives: validated data, identity and versions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from apiserver.bll.auth.identity import Identity


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
    extra: dict[str, Any] = field(default_factory=dict)

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
