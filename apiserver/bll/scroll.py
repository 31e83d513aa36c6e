"""Owns the scroll_id token: the position a paged read has reached, as base64url-encoded JSON.

Stateless, so a token never expires and any server process continues it; each reader says which
positions it accepts (``decode`` only checks that the token is one of ours in form)."""

from __future__ import annotations

import base64
import json
from typing import Any

from apiserver.apierrors import errors


def encode(position: Any) -> str:
    """The token of a position (anything JSON holds)."""
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode()


def decode(scroll_id: str) -> Any:
    """The position a token holds; a token that is not base64url JSON is InvalidScrollId (400)."""
    try:
        return json.loads(base64.urlsafe_b64decode(scroll_id.encode()))
    except (ValueError, TypeError):
        raise errors.bad_request.InvalidScrollId(scroll_id=scroll_id) from None
