"""Owns ClearML's answer to a batch operation (``*_many``): what succeeded and, per id, why not."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from apiserver.apierrors import APIError


def run_batch(ids: Iterable[str], operation: Callable[[str], dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Run ``operation(id)`` for every id; an APIError fails that id only, any other error fails all."""
    succeeded: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    for item in dict.fromkeys(ids):  # each id once, in order
        try:
            succeeded.append({"id": item, **operation(item)})
        except APIError as exc:
            failed.append({"id": item, "error": {"codes": [exc.code, exc.subcode], "msg": exc.message,
                                                 "data": exc.error_data or {}}})
    return {"succeeded": succeeded, "failed": failed}
