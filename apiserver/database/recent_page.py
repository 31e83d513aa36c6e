"""Owns reading the first pages of a listing ordered newest first (``-last_update``, ``-created``) by
touching about a page of documents instead of every document the filter matches.

Why: SecantusDB answers a sorted ``find`` by collecting every match and sorting it in Python, and a
``hint`` makes it decode the whole collection; ``limit`` never stops it early. What it does fast is
an index range scan whose filter is exactly equality fields followed by one range on the next key of
a compound index (``{company: c, project: p, last_update: {$gte: t}}`` on
``(company, project, -last_update)``); an aggregation's first ``$match`` is read the same way.

So the newest page is read in time slices going back from now, each wider than the last by what the
matches so far say is missing (``_next_width``): per (company, project) pair the filter allows, a
range scan of the slice, then the request's own filter and order over just that slice. Slices are
read newest first and every matching document of a slice is newer than every one of the slices
after it, so once the slices hold ``skip + limit`` matches, the page among them is the page of the
plain query. When the slices run out before holding the page (a filter that few documents match,
documents without the key) or the page is deep, the caller reads the plain query instead. On
MongoDB the plain query is served by the same indexes and stops at the limit, so this is used only
on a database that sorts in Python.

After a quiet spell (nothing updated for hours: a weekend, a model registry) the slices going back
from now are empty until one reaches the newest keys, and that one holds everything from them down
to its lower end: up to as long again as the quiet spell (x2 per empty slice). So each process
remembers, per query and depth, the key of the last page's oldest document (``_hints``): the page's
documents keep their keys or move newer (the keys only grow), so the range from that key on still
holds the page. After an empty first slice the next one goes straight down to that key, and no
slice reads past it while it has not been read. The hint only bounds a slice; the slices stay
contiguous, so a stale hint (documents deleted or no longer matching) costs one more slice, never a
wrong page. A process without a hint of its own reads the one stored in the database
(``listing_hints``, written at most every ``HINT_STORE_EVERY`` per process and query), so a
restarted server or another worker does not start cold; only a query no process has paged before,
or a page whose first slice suffices, goes without.

A document whose key moves from an unread slice into a read one while the slices are being read
(it was updated during the request) can be missing from that one answer, as it could be from a
page read a moment earlier.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timedelta
from typing import Any

from pymongo.errors import PyMongoError

from apiserver.database.connection import database_kind
from apiserver.database.model.base import utcnow
from apiserver.database.model.listing import ListingHint

# Keys the newest-first reading serves: descending dates that every write sets.
DATE_KEYS = ("last_update", "created")
# Equality fields a slice may pin, in index order after the date key's company prefix; when the
# query pins several, the earlier one's index is used.
SLICE_FIELDS = ("company", "project", "type")
FIRST_SLICE = timedelta(minutes=10)
MAX_GROWTH = 16
# Past this width the last slice takes every older key. The slices never read more than the plain
# query would: they are ranges of its matches.
MAX_WIDTH = timedelta(days=365 * 50)
MAX_DEPTH = 2_000

log = logging.getLogger(__name__)

# Hints kept per process (queries are many: one per filter a user sets); the whole map is
# dropped when it fills, which costs each query one slower page.
MAX_HINTS = 4096

HINT_STORE_EVERY = timedelta(minutes=10)
HINT_TTL = timedelta(days=30)

_sorts_in_python: dict[int, bool] = {}
_index_keys: dict[tuple[int, str, str], list[list[str]]] = {}
# (client, database, digest of the query) -> (the hint, when this process last stored or read it)
_hints: dict[tuple[int, str, str], tuple[datetime, datetime | None]] = {}


def sorts_in_python(coll: Any) -> bool:
    """Whether the collection's database answers a sorted find by sorting every match (SecantusDB)."""
    client = coll.database.client
    key = id(client)
    if key not in _sorts_in_python:
        _sorts_in_python[key] = database_kind(coll.database) == "secantusdb"
    return _sorts_in_python[key]


def index_keys(coll: Any) -> list[list[str]]:
    """The field names of the collection's indexes (remembered once the collection has any)."""
    key = (id(coll.database.client), coll.database.name, coll.name)
    if key not in _index_keys:
        keys = [[f for f, _ in spec["key"]] for spec in coll.index_information().values()]
        if len(keys) <= 1:  # only _id: indexes not made yet
            return keys
        _index_keys[key] = keys
    return _index_keys[key]


def pinned_values(cond: Any) -> list[Any] | None:
    """The values an equality or ``$in`` condition allows, else None."""
    if isinstance(cond, dict):
        if (
            set(cond) == {"$in"}
            and isinstance(cond["$in"], list)
            and cond["$in"]
            and not any(isinstance(v, (dict, list)) or v is None for v in cond["$in"])
        ):
            return list(dict.fromkeys(cond["$in"]))
        return None
    if isinstance(cond, (list, type(None))):
        return None
    return [cond]


def slice_prefixes(query: dict[str, Any], index_keys: list[list[str]], key: str) -> list[dict[str, Any]] | None:
    """The equality prefixes (``{company: c, project: p}``) whose ranges on ``key`` together hold every
    document ``query`` can match, each backed by a declared index ``(fields..., key)``; None if the
    query does not pin the fields such an index needs."""
    best: list[str] | None = None

    def rank(fields: list[str]) -> tuple[int, int]:
        return len(fields), -max(SLICE_FIELDS.index(f) for f in fields)

    for keys in index_keys:
        fields = keys[:-1]
        if keys[-1:] != [key] or not fields or any(f not in SLICE_FIELDS for f in fields):
            continue
        if all(pinned_values(query.get(f)) is not None for f in fields) and (best is None or rank(fields) > rank(best)):
            best = fields
    if best is None:
        return None
    prefixes: list[dict[str, Any]] = [{}]
    for field in best:
        prefixes = [{**p, field: v} for p in prefixes for v in pinned_values(query[field])]
    return prefixes if len(prefixes) <= 50 else None


def find_newest(
    coll: Any, query: dict[str, Any], sort: list[tuple[str, int]], skip: int, limit: int, proj: dict[str, int] | None
) -> list[dict[str, Any]] | None:
    """The page ``find(query, proj).sort(sort).skip(skip).limit(limit)`` read slice by slice (see the
    module doc), or None when that shape does not apply or the slices run out before the page."""
    key = sort[0][0]
    need = skip + limit
    if (
        sort != [(key, -1), ("_id", 1)]
        or key not in DATE_KEYS
        or need > MAX_DEPTH
        or limit <= 0
        or "_id" in query
        or not sorts_in_python(coll)
    ):
        return None
    prefixes = slice_prefixes(query, index_keys(coll), key)
    if prefixes is None:
        return None
    read_proj, extra = _with_sort_keys(proj, key)
    hint_key = _hint_key(coll, prefixes, query, key, need)
    hint = _hints.get(hint_key, (None, None))[0]
    looked_up = hint is not None
    found: list[dict[str, Any]] = []
    seen: set[Any] = set()
    upper = None
    width = FIRST_SLICE
    now = utcnow()
    while True:
        if upper is not None and not looked_up:  # the first slice fell short: ask the other processes
            hint, looked_up = _stored_hint(coll, hint_key), True
        if (
            upper is not None
            and hint is not None
            and hint < upper
            and (not found or width > MAX_WIDTH or hint > now - width)
        ):
            lower, bounds = hint, {"$gte": hint, "$lt": upper}  # no further back than the last page reached
            width, hint = now - hint, None
        elif width > MAX_WIDTH:
            if upper is None:
                return None
            lower, bounds = None, {"$lt": upper}  # the rest in one slice: every older key
        else:
            lower = now - width
            bounds = {"$gte": lower} if upper is None else {"$gte": lower, "$lt": upper}
        try:
            batch = _slice_page(coll, prefixes, key, bounds, query, need - len(found), read_proj)
        except TypeError:  # _ids of different types: their order is the database's to decide
            return None
        found += [d for d in batch if d["_id"] not in seen]
        seen.update(d["_id"] for d in batch)
        if len(found) >= need:
            _remember(coll, hint_key, found[need - 1].get(key), store=upper is not None)
            page = found[skip:need]
            for doc in page:
                for field in extra:
                    doc.pop(field, None)
            return page
        if lower is None:
            return None
        upper = lower
        width = _next_width(now, width, lower, found[0].get(key) if found else None, len(found), need)


def _next_width(now: datetime, width: timedelta, lower: datetime, newest: Any, found: int, need: int) -> timedelta:
    """How far back from now the next slice reaches.

    Nothing found yet: twice as far. An empty slice tells nothing of where the keys start, and the
    first slice that reaches them reads everything between them and its lower end; doubling keeps
    that to as long again as the quiet spell before them, for one cheap empty read per doubling.
    Some found: the span they were found in (from the newest of them down to ``lower``), widened by
    what they say is missing (x2..x16): the time before the newest key, a quiet spell, holds none.
    """
    if not found:
        return width * 2
    growth = max(2.0, min(MAX_GROWTH, 1.5 * need / found))
    top = newest if _usable(newest) and lower < newest <= now else now
    return (now - top) + max(top - lower, FIRST_SLICE) * growth


def forget_hints() -> None:
    """Drop this process's hints, as a new process starts without them."""
    _hints.clear()


def _hint_key(
    coll: Any, prefixes: list[dict[str, Any]], query: dict[str, Any], key: str, need: int
) -> tuple[int, str, str]:
    """This process's key of a query's hint; its last part, a digest of the query, is the stored hint's id."""
    digest = hashlib.sha256(repr((coll.name, key, need, prefixes, query)).encode()).hexdigest()
    return id(coll.database.client), coll.database.name, digest


def _hints_of(coll: Any) -> Any:
    return coll.database[ListingHint._get_collection_name()]


def _stored_hint(coll: Any, hint_key: tuple[int, str, str]) -> datetime | None:
    doc = _hints_of(coll).find_one({"_id": hint_key[2]}, {"k": 1})
    hint = (doc or {}).get("k")
    if not _usable(hint):
        return None
    _hints[hint_key] = hint, utcnow()  # as if this process had stored it
    return hint


def _usable(key: Any) -> bool:
    return isinstance(key, datetime) and key.tzinfo is None  # compared with utcnow()'s naive times


def _remember(coll: Any, hint_key: tuple, oldest: Any, store: bool) -> None:
    """Keep the key of a page's oldest document for the next read of the same page; with ``store``
    (the page took more than the first slice), in the database too, when it changed, at most every
    HINT_STORE_EVERY per process."""
    if not _usable(oldest):
        return
    if len(_hints) >= MAX_HINTS and hint_key not in _hints:
        _hints.clear()
    kept, last = _hints.get(hint_key, (None, None))
    now = utcnow()
    if not store or (last is not None and (kept == oldest or now - last < HINT_STORE_EVERY)):
        _hints[hint_key] = oldest, last
        return
    _hints[hint_key] = oldest, now
    try:
        _hints_of(coll).update_one(
            {"_id": hint_key[2]}, {"$set": {"k": oldest, "expires": now + HINT_TTL}}, upsert=True
        )
    except PyMongoError as exc:  # a hint only saves reads: the page is answered without it
        log.warning("could not store a listing hint: %s", exc)


def _slice_page(
    coll: Any,
    prefixes: list[dict[str, Any]],
    key: str,
    bounds: dict[str, Any],
    query: dict[str, Any],
    limit: int,
    proj: dict[str, int] | None,
) -> list[dict[str, Any]]:
    """The first ``limit`` documents of one slice matching ``query``, newest first.

    An aggregation per prefix: its first ``$match`` (prefix and key range alone) is the shape
    SecantusDB serves by an index range scan, and the request's filter, which may hold ``$and`` or
    ``$or`` (its ``find`` uses no index for those), runs as a second stage over that slice only.
    """
    docs: list[dict[str, Any]] = []
    for prefix in prefixes:
        pipeline: list[dict[str, Any]] = [
            {"$match": {**prefix, key: bounds}},
            {"$match": query},
            {"$sort": {key: -1, "_id": 1}},
            {"$limit": limit},
        ]
        if proj:
            pipeline.append({"$project": proj})
        docs += coll.aggregate(pipeline)
    if len(prefixes) > 1:
        docs.sort(key=lambda d: d["_id"])
        docs.sort(key=lambda d: d[key], reverse=True)
    return docs[:limit]


def _with_sort_keys(proj: dict[str, int] | None, key: str) -> tuple[dict[str, int] | None, list[str]]:
    """``proj`` widened to keep the sort keys the slices are merged by, and the fields it added."""
    if not proj:
        return proj, []
    if any(proj.values()):  # an inclusion projection
        extra = [f for f, keep in ((key, proj.get(key)), ("_id", proj.get("_id", 1))) if not keep]
        return {**proj, **{f: 1 for f in extra}}, extra
    extra = [f for f in (key, "_id") if f in proj]
    return {f: v for f, v in proj.items() if f not in extra} or None, extra
