"""Owns the rule every company-scoped record shares: a caller reads its own company's records and
public ones (company ``""``), and changes only its own.

Another company's record looks missing (the kind's own "invalid id" error), never forbidden, so ids
tell nothing across companies; a public record is read-only (403/21).
"""

from __future__ import annotations

from typing import Any

from apiserver.apierrors import APIError, errors


def readable(coll: Any, company: str, object_id: str, missing: type[APIError], proj: dict | None = None
             ) -> dict[str, Any]:
    doc = coll.find_one({"_id": object_id, "company": {"$in": [company, ""]}}, proj)
    if doc is None:
        raise missing(id=object_id)
    return doc


def readable_many(coll: Any, company: str, object_ids: list[str], proj: dict | None = None) -> dict[str, dict]:
    """The readable records among these ids, by id (the batch form of ``readable``; missing ones left out)."""
    return {d["_id"]: d for d in coll.find({"_id": {"$in": list(object_ids)}, "company": {"$in": [company, ""]}},
                                           proj)}


def writable_ids(coll: Any, company: str, object_ids: list[str]) -> set[str]:
    """Which of these ids name records the caller may change (the batch form of ``writable``)."""
    return {d["_id"] for d in coll.find({"_id": {"$in": list(object_ids)}, "company": company}, {"_id": 1})}


def writable(coll: Any, company: str, object_id: str, missing: type[APIError], kind: str) -> dict[str, Any]:
    doc = readable(coll, company, object_id, missing)
    if doc.get("company") != company:
        raise errors.forbidden.NoWritePermission(f"public {kind} are read-only", id=object_id)
    return doc
