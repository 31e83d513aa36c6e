"""Owns reading and writing the collections: one ``Store`` per collection, the only way the rules in
``bll/`` reach stored documents.

The rules say what a query means (a filter in MongoDB's language, a sort, a page); the store says how
it is read fast on each engine. Plain reads and writes pass through as pymongo's (the same names,
arguments and results). What the embedded SecantusDB 0.7 would answer by scanning is read another way
here, and only here:

- ``indexed_head``/``aggregate_indexed``/``scan``/``count``: a filter as the first stages of an
  aggregation that SecantusDB serves from an index (its planner uses an index only for a first
  ``$match`` of equalities and one ``$in`` on the keys of a compound index, the company first);
- ``find_page``: one page in order, with ClearML's rule that an ascending first key puts empty values
  last, newest-first pages read in time slices (``database/recent_page.py``);
- ``update_and_read``: an update and a read by ``_id`` instead of ``find_one_and_update``
  (``database/writes.py``).

MongoDB gets the plain query in each case. Every stored document has a declared shape: the
mongoengine ``Document`` a store is made from (``database/model/``), whose ``meta`` declares the
collection's indexes.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from pymongo import UpdateOne
from pymongo.collation import Collation

from apiserver.database import recent_page
from apiserver.database.writes import update_and_read

_STORES: dict[type, Store] = {}


def store_of(document: type) -> Store:
    """The store of a mongoengine ``Document`` class's collection."""
    found = _STORES.get(document)
    if found is None:
        found = _STORES[document] = Store(document)
    return found


def combine(*conds: dict[str, Any]) -> dict[str, Any]:
    """AND of conditions as one flat filter document; ``$and`` only where two conditions share a key.

    Flat documents matter: SecantusDB's planner uses no index for an explicit ``$and``.
    """
    merged: dict[str, Any] = {}
    extra: list[dict[str, Any]] = []
    for cond in conds:
        if not cond:
            continue
        parts = cond["$and"] if set(cond) == {"$and"} else [cond]
        for part in parts:
            if any(key in merged for key in part):
                extra.append(part)
            else:
                merged.update(part)
    if extra:
        merged["$and"] = extra
    return merged


def _plain_range(cond: Any) -> bool:
    """A condition of only bounds ($gt, $gte, $lt, $lte) on plain values: an index range."""
    return isinstance(cond, dict) and bool(cond) and set(cond) <= {"$gt", "$gte", "$lt", "$lte"} and all(
        isinstance(v, (datetime, int, float, str)) and not isinstance(v, bool) for v in cond.values())


class Store:
    """One collection, read and written as its engine reads it fast."""

    def __init__(self, document: type | None = None, *, collection: Any = None):
        """The store of a ``Document`` class's collection, or (tools and tests) of a pymongo collection."""
        if (document is None) == (collection is None):
            raise ValueError("a store is made from a document class or from a collection")
        self.document = document
        self._collection = collection

    @property
    def coll(self) -> Any:
        """The pymongo collection (mongoengine's connection of the document's alias)."""
        return self._collection if self._collection is not None else self.document._get_collection()

    @property
    def name(self) -> str:
        return self.coll.name

    # -- plain reads and writes, as pymongo's ---------------------------------------------------

    def find(self, *args: Any, **kwargs: Any) -> Any:
        return self.coll.find(*args, **kwargs)

    def find_one(self, *args: Any, **kwargs: Any) -> Any:
        return self.coll.find_one(*args, **kwargs)

    def count_documents(self, *args: Any, **kwargs: Any) -> int:
        return self.coll.count_documents(*args, **kwargs)

    def distinct(self, *args: Any, **kwargs: Any) -> list[Any]:
        return self.coll.distinct(*args, **kwargs)

    def aggregate(self, pipeline: list[dict[str, Any]], **kwargs: Any) -> Any:
        """The pipeline as given (``aggregate_indexed`` reads its first ``$match`` by an index)."""
        return self.coll.aggregate(pipeline, **kwargs)

    def insert_one(self, *args: Any, **kwargs: Any) -> Any:
        return self.coll.insert_one(*args, **kwargs)

    def insert_many(self, *args: Any, **kwargs: Any) -> Any:
        return self.coll.insert_many(*args, **kwargs)

    def update_one(self, *args: Any, **kwargs: Any) -> Any:
        return self.coll.update_one(*args, **kwargs)

    def update_many(self, *args: Any, **kwargs: Any) -> Any:
        return self.coll.update_many(*args, **kwargs)

    def replace_one(self, *args: Any, **kwargs: Any) -> Any:
        return self.coll.replace_one(*args, **kwargs)

    def delete_one(self, *args: Any, **kwargs: Any) -> Any:
        return self.coll.delete_one(*args, **kwargs)

    def delete_many(self, *args: Any, **kwargs: Any) -> Any:
        return self.coll.delete_many(*args, **kwargs)

    def find_one_and_update(self, *args: Any, **kwargs: Any) -> Any:
        """Small collections only (a scan on SecantusDB: ``update_and_read`` for the others)."""
        # small collection: each caller's line says so (tests/test_database_conformance.py checks them)
        return self.coll.find_one_and_update(*args, **kwargs)

    def find_one_and_delete(self, *args: Any, **kwargs: Any) -> Any:
        """Small collections only, as ``find_one_and_update``."""
        # small collection: each caller's line says so (tests/test_database_conformance.py checks them)
        return self.coll.find_one_and_delete(*args, **kwargs)

    def create_index(self, *args: Any, **kwargs: Any) -> Any:
        return self.coll.create_index(*args, **kwargs)

    def ensure_index(self, keys: list[tuple[str, int]], name: str, **options: Any) -> None:
        """Create the index ``name`` unless the collection has an index of that name (made by an earlier
        version with other options, say: asking again with other options is refused)."""
        if name not in self.coll.index_information():
            self.coll.create_index(keys, name=name, **options)

    def update_each(self, updates: Iterable[tuple[dict[str, Any], dict[str, Any]]], upsert: bool = False) -> None:
        """One unordered bulk write of ``(filter, update)`` pairs, each an ``update_one``."""
        ops = [UpdateOne(flt, update, upsert=upsert) for flt, update in updates]
        if ops:
            self.coll.bulk_write(ops, ordered=False)

    def update_and_read(self, flt: dict[str, Any], update: dict[str, Any], projection: dict | None = None,
                        *, upsert: bool = False) -> dict[str, Any] | None:
        """``update_one`` then a read by ``_id`` (``database/writes.py``)."""
        return update_and_read(self.coll, flt, update, projection, upsert=upsert)

    # -- reads that the engine serves from an index -------------------------------------------

    def sorts_in_python(self) -> bool:
        """Whether the engine answers a sorted find by sorting every match (SecantusDB)."""
        return recent_page.sorts_in_python(self.coll)

    def indexed_head(self, match: dict[str, Any]) -> list[dict[str, Any]]:
        """``match`` as the first stages of an aggregation that SecantusDB serves from an index.

        Its planner uses an index only for a first ``$match`` of equalities and one ``$in`` on the keys
        of a compound index, the company first; one more condition (the hidden-tag ``$ne``, an archived
        state, ``$nin``) or a company ``$in`` (own and public) and it decodes every document of the
        company or the collection. So the condition on the company becomes an equality when no public
        document is in scope, the next key of an index led by the company that ``match`` pins (or else
        bounds: ``created >= a date``) goes with it, and the rest is a second ``$match`` over what that
        range holds: a 300-task project is read in 9 ms where a company with 30,000 more tasks cost
        1.1 s (BENCHMARKS.md). MongoDB plans the plain ``$match`` well; it gets it unchanged. Ids the
        match names are its head whatever else it holds (the primary index; a ``find`` of ids with the
        company ``$in`` decodes the whole collection)."""
        coll = self.coll
        company = match.get("company")
        if not recent_page.sorts_in_python(coll):
            return [{"$match": match}]
        if recent_page.pinned_values(match.get("_id")) is not None:
            rest = {k: v for k, v in match.items() if k != "_id"}
            return [{"$match": {"_id": match["_id"]}}] + ([{"$match": rest}] if rest else [])
        if company is None:
            return [{"$match": match}]
        led = [keys[1] for keys in recent_page.index_keys(coll) if keys[:1] == ["company"] and len(keys) > 1]
        key = next((k for k in led if k in match and recent_page.pinned_values(match[k]) is not None), None) \
            or next((k for k in led if k in match and _plain_range(match[k])), None)  # e.g. created >= a date
        pinned = {key: match[key]} if key else {}
        companies = recent_page.pinned_values(company)
        if companies is None or len(companies) > 2:
            return [{"$match": match}]
        own = [c for c in companies if c != ""]
        if len(own) != 1:
            return [{"$match": match}]
        if len(companies) == 2 and coll.find_one({"company": "", **pinned}, {"_id": 1}) is not None:
            return [{"$match": match}]  # public documents in scope: the plain match, correct if slower
        rest = {k: v for k, v in match.items() if k != "company" and k != key}
        return [{"$match": {"company": own[0], **pinned}}] + ([{"$match": rest}] if rest else [])

    def aggregate_indexed(self, pipeline: list[dict[str, Any]], **kwargs: Any) -> Any:
        """``aggregate(pipeline, **kwargs)`` with its first ``$match`` read through ``indexed_head``."""
        if pipeline and set(pipeline[0]) == {"$match"}:
            pipeline = self.indexed_head(pipeline[0]["$match"]) + pipeline[1:]
        return self.coll.aggregate(pipeline, **kwargs)

    def scan(self, match: dict[str, Any], proj: dict[str, Any] | None = None, limit: int = 0, **kwargs: Any) -> Any:
        """``find(match, proj).limit(limit)`` (no order) read through ``indexed_head``."""
        stages = [{"$match": match}] + ([{"$limit": limit}] if limit else []) + ([{"$project": proj}] if proj else [])
        return self.aggregate_indexed(stages, **kwargs)

    def count(self, match: dict[str, Any], limit: int = 0) -> int:
        """``count_documents(match, limit=limit)`` read through ``indexed_head``."""
        stages = [{"$match": match}] + ([{"$limit": limit}] if limit else []) + [{"$count": "n"}]
        return next(iter(self.aggregate_indexed(stages)), {"n": 0})["n"]

    def index_hint(self, fields: Iterable[str]) -> list[tuple[str, int]] | None:
        """The key pattern of the document's declared index that serves the first of ``fields`` present.

        ``fields`` are stored field names, most selective first. Only indexes declared on the model are
        ever named, so a hint cannot point at a missing index. A company-scoped index (company first,
        then the field) is preferred; ``_id`` gets no hint: ``find_page`` reads pinned ids through the
        primary index itself.
        """
        specs = [spec["fields"] for spec in self.document._meta.get("index_specs", [])] if self.document else []
        for name in fields:
            if name == "_id":
                return None  # find_page reads ids by their own index (a hint on it decodes every document)
            for keys in specs:
                names = [k for k, _ in keys]
                if names[:2] == ["company", name] or names[:1] == [name]:
                    return list(keys)
        return None

    def find_page(self, query: dict[str, Any], sort: list[tuple[str, int]], skip: int, limit: int,
                  proj: dict[str, int] | None = None, hint: list[tuple[str, int]] | None = None,
                  collation: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """One page of ``find`` in ``sort`` order, with ClearML's rule that an ascending first key puts
        documents whose value is null, missing or empty last.

        MongoDB sorts nulls first; rather than sort on a computed field (no index), this reads the
        filled part and then the empty part, each with an indexed query.

        On SecantusDB each read is an aggregation through ``indexed_head`` (a hint would decode the
        whole index): a query naming its ids (``get_by_id_ex``, the SDK's lookups) reads them by the
        primary index (0.6 ms against 0.7-0.8 s at 30,000 tasks), others the range their index pins.

        ``collation`` (a MongoDB collation, e.g. ``numericOrdering``) reads the page with it in one plain
        sorted query instead (both engines take it).
        """
        coll = self.coll
        if collation:  # e.g. numbers in strings ordered as numbers: one plain sorted read with it
            cursor = coll.find(query, proj).sort(sort).collation(Collation(**collation)).skip(skip)
            return list(cursor.limit(limit) if limit else cursor)
        if recent_page.sorts_in_python(coll):
            def page(flt: dict[str, Any], order: list[tuple[str, int]], skip: int, limit: int) -> list[dict[str, Any]]:
                stages = [{"$match": flt}, {"$sort": dict(order)}, {"$skip": skip}] + \
                    ([{"$limit": limit}] if limit else [])
                return list(self.aggregate_indexed(stages + ([{"$project": proj}] if proj else [])))

            def total(flt: dict[str, Any]) -> int:
                return self.count(flt)
        else:
            def page(flt: dict[str, Any], order: list[tuple[str, int]], skip: int, limit: int) -> list[dict[str, Any]]:
                cursor = coll.find(flt, proj).sort(order)
                return list((cursor.hint(hint) if hint else cursor).skip(skip).limit(limit))

            def total(flt: dict[str, Any]) -> int:
                return coll.count_documents(flt, **({"hint": hint} if hint else {}))

        first, direction = sort[0]
        if direction != 1 or first == "_id":
            newest = recent_page.find_newest(coll, query, sort, skip, limit, proj)
            return newest if newest is not None else page(query, sort, skip, limit)
        filled_q = combine(query, {first: {"$nin": [None, ""]}})
        docs = page(filled_q, sort, skip, limit)
        if len(docs) == limit:
            return docs
        filled_total = skip + len(docs) if docs or not skip else total(filled_q)
        empty_q = combine(query, {"$or": [{first: None}, {first: ""}]})
        return docs + page(empty_q, sort[1:] or [("_id", 1)], max(0, skip - filled_total), limit - len(docs))
