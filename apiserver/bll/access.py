"""Owns the rule every company-scoped record shares: a caller reads its own company's records and
public ones (company ``""``), and changes only its own.

Another company's record looks missing (the kind's own "invalid id" error), never forbidden, so ids
tell nothing across companies; a public record is read-only (403/21).

Reads by id (``by_id``) ask the database for the id alone and check the company and any other
condition here, on the record as read: the same answer as a filter on both. An ``_id``-only filter
is a primary-key lookup on every engine, while the embedded one (SecantusDB) plans ``_id`` plus
other fields the slow way, about 1 ms more per read (BENCHMARKS.md). Writes keep the company in
their filter, so a record that changed company meanwhile is not written.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from apiserver.apierrors import APIError, errors


def _with(proj: dict | None, fields: Iterable[str]) -> tuple[dict | None, list[str]]:
    """The projection widened to return ``fields`` too, and which of them the caller did not ask for."""
    if not proj:
        return proj, []
    plain = [v for k, v in proj.items() if k != "_id" and not isinstance(v, dict)]  # not $slice & co
    if not (any(plain) if plain else proj.get("_id")):  # an exclusion: the fields come anyway
        return proj, []
    extra = [f for f in fields if f not in proj]
    return {**proj, **dict.fromkeys(extra, 1)}, extra


def by_id(coll: Any, object_id: Any, companies: Iterable[str], proj: dict | None = None,
          **equal: Any) -> dict[str, Any] | None:
    """The record with this id when its company is one of ``companies`` and each ``equal`` field has
    that value (None: missing or null, as in a query), else None."""
    proj, extra = _with(proj, ["company", *equal])
    return _kept(coll.find_one({"_id": object_id}, proj), set(companies), equal, extra)


def _kept(doc: dict[str, Any] | None, companies: set[str], equal: dict[str, Any], extra: list[str]
          ) -> dict[str, Any] | None:
    """``doc`` without the ``extra`` fields read for the check, if its company and ``equal`` fields
    pass, else None."""
    if doc is None or doc.get("company") not in companies or any(doc.get(f) != v for f, v in equal.items()):
        return None
    for field in extra:
        doc.pop(field, None)
    return doc


def readable(coll: Any, company: str, object_id: str, missing: type[APIError], proj: dict | None = None
             ) -> dict[str, Any]:
    doc = by_id(coll, object_id, (company, ""), proj)
    if doc is None:
        raise missing(id=object_id)
    return doc


def _many(coll: Any, companies: set[str], object_ids: list[str], proj: dict | None, **equal: Any
          ) -> dict[str, dict]:
    """The records among these ids whose company is one of ``companies`` and whose ``equal`` fields
    have those values (as ``by_id``), by id."""
    proj, extra = _with(proj, ["company", *equal])
    kept = (_kept(doc, companies, equal, extra) for doc in coll.find({"_id": {"$in": list(object_ids)}}, proj))
    return {doc["_id"]: doc for doc in kept if doc is not None}


def readable_many(coll: Any, company: str, object_ids: list[str], proj: dict | None = None) -> dict[str, dict]:
    """The readable records among these ids, by id (the batch form of ``readable``; missing ones left out)."""
    return _many(coll, {company, ""}, object_ids, proj)


def writable_many(coll: Any, company: str, object_ids: list[str], proj: dict | None = None) -> dict[str, dict]:
    """The records among these ids that the caller may change, by id (the batch form of ``writable``)."""
    return _many(coll, {company}, object_ids, proj)


def writable_ids(coll: Any, company: str, object_ids: list[str]) -> set[str]:
    """Which of these ids name records the caller may change."""
    return set(writable_many(coll, company, object_ids, {"_id": 1}))


def writable(coll: Any, company: str, object_id: str, missing: type[APIError], kind: str,
             public_missing: bool = False) -> dict[str, Any]:
    """The caller's own record; a public one is 403/21, or with ``public_missing`` (ClearML's models)
    the kind's "invalid id" like any record the caller cannot change."""
    doc = readable(coll, company, object_id, missing)
    if doc.get("company") != company:
        if public_missing:
            raise missing(f"public {kind} are read-only", id=object_id)
        raise errors.forbidden.NoWritePermission(f"public {kind} are read-only", id=object_id)
    return doc


def set_public(coll: Any, company: str, ids: list[str], public: bool, missing: type[APIError]) -> int:
    """``make_public`` (``public``) or ``make_private``, as in ClearML: every id must name one of the
    caller's company's own records, or to make private a public record that company published; else
    the kind's "invalid id" naming the others, and nothing changes. Returns how many changed."""
    if public:
        found = writable_ids(coll, company, ids)
    else:  # public records this company published
        found = set(_many(coll, {""}, ids, {"_id": 1}, company_origin=company))
    if set(ids) - found:
        raise missing(ids=sorted(set(ids) - found)[:20])
    # the update keeps the same conditions, so a record that changed hands meanwhile is not written
    flt: dict[str, Any] = {"_id": {"$in": list(ids)}, "company": company} if public else \
        {"_id": {"$in": list(ids)}, "company": "", "company_origin": company}
    update = {"$set": {"company": "", "company_origin": company}} if public else \
        {"$set": {"company": company}, "$unset": {"company_origin": ""}}
    return coll.update_many(flt, update).modified_count
