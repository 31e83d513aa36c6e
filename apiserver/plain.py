"""Owns turning parsed HOCON (ConfigTree, OrderedDict) into plain JSON-like dicts and lists."""

from __future__ import annotations

from typing import Any


def to_plain(value: Any) -> Any:
    """A deep copy with every mapping as a dict and every list as a list."""
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_plain(v) for v in value]
    return value
