"""Owns the query pieces every listing shares: checked regexes, paging and ordering."""

from __future__ import annotations

import re
from typing import Any

from apiserver.apierrors import errors

MAX_PAGE_SIZE = 500


def regex(pattern: str, field: str, ignore_case: bool = False) -> dict[str, Any]:
    """A ``$regex`` condition, after checking the pattern compiles (a bad one is 400/21, not a 500).

    The string form ``{"$regex": ...}`` is used, never a compiled BSON regex: that is the form every
    MongoDB-protocol server here is tested with (see tests/test_database_conformance.py).
    """
    try:
        re.compile(pattern)
    except re.error as exc:
        raise errors.bad_request.InvalidRegexError(f"{exc}", field=field, pattern=pattern) from None
    cond: dict[str, Any] = {"$regex": pattern}
    if ignore_case:
        cond["$options"] = "i"
    return cond


def page_bounds(page: int | None, page_size: int | None, default_size: int = MAX_PAGE_SIZE) -> tuple[int, int]:
    """(skip, limit) for ClearML paging: ``page`` needs ``page_size``; sizes are capped at 500."""
    size = min(page_size or default_size, MAX_PAGE_SIZE)
    return (page or 0) * size, size
