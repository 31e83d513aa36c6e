"""Owns the query pieces every listing shares: ClearML's filter language, projections, ordering, paging.

The filter language (``get_all`` of tasks, projects, queues, models):

- list fields (``id``, ``user``, ``tags``, ``status``, ...) match any listed value; ``null`` in the
  list matches a missing or empty value; a ``-x`` entry excludes ``x`` (for tag-like fields);
- pattern fields (``name``) are regular expressions run only by RE2 (``bll/patterns.py``): a literal
  pattern becomes a database condition, any other is matched in the server over the filtered set;
- date fields take ``">=2024-01-01"`` style strings (``>``, ``>=``, ``<``, ``<=``; ISO dates or
  epoch seconds) or a two-item ``[from, to]`` range;
- ``_any_`` / ``_all_`` take ``{fields, pattern}``: a case-insensitive pattern over several fields, or
  ``{fields, datetime}``: date constraints on any (all) of several date fields.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from apiserver.apierrors import errors
from apiserver.bll import scroll
from apiserver.bll.patterns import Matcher, matcher
from apiserver.database.store import Store, combine  # noqa: F401 - combine: part of the filter language

MAX_PAGE_SIZE = 500
HIDDEN_TAG = "hidden"
FIELD_IDS = {"id": "_id"}


def page_bounds(page: int | None, page_size: int | None, default_size: int = MAX_PAGE_SIZE) -> tuple[int, int]:
    """(skip, limit) for ClearML paging; sizes are capped at 500."""
    size = min(page_size or default_size, MAX_PAGE_SIZE)
    return (page or 0) * size, size


# A refreshed scroll re-reads from the start as many items as were read, at most this many.
MAX_SCROLL_REFRESH = 10_000


def _count_field(data: dict[str, Any], key: str) -> int | None:
    """A paging number as an int. An API version that does not declare the field lets it through
    unchecked (ClearML's schemas allow extra fields), so it is checked here: never a 500."""
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value > 2**31:
        raise errors.bad_request.ValidationError(f"field '{key}': a whole number from 0 (rule: type)",
                                                 error_data={"field": key, "rule": "type"})
    return value


def _scroll_position(scroll_id: Any) -> int:
    """How many items a listing's ``scroll_id`` says were read (the token: ``bll/scroll.py``)."""
    if not isinstance(scroll_id, str):
        raise errors.bad_request.InvalidScrollId(scroll_id=str(scroll_id)[:100])
    position = scroll.decode(scroll_id)
    listed = position.get("listed") if isinstance(position, dict) else None
    if not isinstance(listed, int) or listed < 0:
        raise errors.bad_request.InvalidScrollId(scroll_id=scroll_id)
    return listed


def scrolls(data: dict[str, Any]) -> bool:
    """Whether a listing pages by scroll (``scroll_id``, even null on the first call, or ``size``)."""
    return "scroll_id" in data or data.get("size") is not None


def page_window(data: dict[str, Any], default_size: int = MAX_PAGE_SIZE) -> tuple[int, int]:
    """(skip, limit) of a ``get_all`` request: ``page``/``page_size``, or ClearML's scroll paging.

    A scroll continues after the items its ``scroll_id`` says were read, ``size`` at a time;
    ``refresh_scroll`` reads again from the start as many items as were read (at least ``size``),
    so a table can refresh what it shows without losing its place.
    """
    if not scrolls(data):
        return page_bounds(_count_field(data, "page"), _count_field(data, "page_size"), default_size)
    size = min(_count_field(data, "size") or default_size, MAX_PAGE_SIZE)
    listed = _scroll_position(data["scroll_id"]) if data.get("scroll_id") else 0
    if data.get("refresh_scroll"):
        return 0, min(max(listed, size), MAX_SCROLL_REFRESH)
    return listed, size


def scroll_answer(data: dict[str, Any], returned: int) -> dict[str, Any]:
    """The ``scroll_id`` a scrolled listing answers (nothing for page paging): it records how many
    items the caller has now read. Stateless, so it never expires and any server process takes it."""
    if not scrolls(data):
        return {}
    skip, _ = page_window(data)
    listed = skip + returned
    return {"scroll_id": scroll.encode({"listed": listed})}


LIST_OPS = ("__$not", "__$all", "__$any", "__$and", "__$or", "__$nop")
_JOINS = {"__$all": "$and", "__$and": "$and", "__$any": "$or", "__$or": "$or"}


def list_filter(field: str, values: Iterable[Any] | Any, allow_exclude: bool = True) -> dict[str, Any]:
    """The condition for a list-valued filter, as ClearML reads it: values are included (any of
    them), ``null`` matches a missing or empty value, ``-x`` (while no operator was seen) and
    ``__$not x`` exclude x. ``__$all``/``__$and`` make the values after them all required,
    ``__$any``/``__$or`` any one (the default), ``__$nop`` returns to the default; the included,
    required and excluded values are then joined by the first operator given (and when none):
    ``["__$any", "__$not", "a", "b"]`` is "not a, or b"; ``["a", "__$and", "__$not", "b"]`` "a and
    not b"."""
    if not isinstance(values, (list, tuple)):
        values = [values]
    include: list[Any] = []
    require: list[Any] = []
    exclude: list[Any] = []
    join, context, negate, legacy, want_empty = None, "$or", False, allow_exclude, False
    for value in values:
        if value is None:
            want_empty, negate = True, False
        elif value == "__$nop":
            context, negate, legacy = "$or", False, allow_exclude
        elif value == "__$not":
            negate = True
        elif value in _JOINS:
            context, legacy = _JOINS[value], False
            join = join or context
        else:
            join = join or "$and"
            if negate:
                exclude.append(value)
            elif legacy and isinstance(value, str) and value.startswith("-") and len(value) > 1:
                exclude.append(value[1:])
            elif context == "$and":
                require.append(value)
            else:
                include.append(value)
            negate = False
    conds = [cond for cond, given in (({field: {"$in": include}}, include), ({field: {"$all": require}}, require),
                                      ({field: {"$nin": exclude}}, exclude)) if given]
    result = conds[0] if len(conds) == 1 else {join or "$and": conds} if conds else {}
    if want_empty:
        result = {"$or": ([result] if result else []) + _empty(field)}
    return result


def _empty(field: str) -> list[dict[str, Any]]:
    """What ``null`` among a filter's values matches, one of: a missing or null field, an empty
    string, an empty list."""
    return [{field: None}, {field: ""}, {field: {"$size": 0}}]


def field_filter(field: str, spec: dict[str, Any] | None) -> dict[str, Any]:
    """ClearML's ``filters`` entry for a list field: ``{any: {include, exclude}, all: {include, exclude},
    op}``. ``any``: one included value, or not every excluded value, is enough (its parts joined by or);
    ``all``: every included value and no excluded one (joined by and); ``op`` (``and`` by default)
    joins the two. ``null`` among the values stands for an empty list; a null ``spec`` filters nothing
    (the schema declares the shape, so nothing else reaches here)."""
    if spec is None:
        return {}
    parts: list[dict[str, Any]] = []
    for mode in ("any", "all"):
        terms = spec.get(mode) or {}
        conds: list[dict[str, Any]] = []
        for include in (True, False):
            values = terms.get("include" if include else "exclude") or []
            if None in values:
                conds.append({"$or" if include else "$nor": _empty(field)})
            values = sorted({v for v in values if v is not None})
            if not values:
                continue
            if mode == "any":
                conds.append({field: {"$in": values}} if include else {"$nor": [{field: {"$all": values}}]})
            else:
                conds.append({field: {"$all": values}} if include else {field: {"$nin": values}})
        if conds:
            parts.append(conds[0] if len(conds) == 1 else {"$or" if mode == "any" else "$and": conds})
    if not parts:
        return {}
    return parts[0] if len(parts) == 1 else {"$or" if spec.get("op") == "or" else "$and": parts}


_DATE_OPS = {">": "$gt", ">=": "$gte", "<": "$lt", "<=": "$lte"}
_DATE_RE = re.compile(r"^(>=|>|<=|<)?\s*(.*)$", re.DOTALL)  # a newline in a value is a bad date, not a crash


def parse_date(text: Any, field: str) -> datetime:
    """ISO 8601 (date or date-time) or epoch seconds, as naive UTC."""
    try:
        if isinstance(text, (int, float)) or re.fullmatch(r"\d+(\.\d+)?", str(text).strip()):
            return datetime.fromtimestamp(float(text), tz=UTC).replace(tzinfo=None)
        value = datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        raise errors.bad_request.ValidationError(f"'{text}' is not an ISO date or epoch seconds",
                                                 error_data={"field": field, "rule": "format"}) from None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def date_filter(field: str, constraints: list[Any] | str) -> dict[str, Any]:
    """``[">=2024-01-01", "<1700000000"]`` or a two-item ``[from, to]`` range (either may be null)."""
    if isinstance(constraints, str):
        constraints = [constraints]
    cond: dict[str, Any] = {}
    plain = [c for c in constraints if c is None or not _DATE_RE.match(str(c)).group(1)]
    if len(constraints) == 2 and len(plain) == 2:
        lo, hi = constraints
        if lo is not None:
            cond["$gte"] = parse_date(lo, field)
        if hi is not None:
            cond["$lte"] = parse_date(hi, field)
    else:
        for item in constraints:
            if item is None:
                continue
            op, value = _DATE_RE.match(str(item)).groups()
            cond[_DATE_OPS.get(op or ">=", "$gte")] = parse_date(value, field)
    if "$gt" in cond and "$lt" in cond and cond["$gt"] >= cond["$lt"]:
        raise errors.bad_request.ImpossibleTimeRange(field=field)
    return {field: cond} if cond else {}


def multi_field_pattern(spec: dict[str, Any], mode: str, field_map: dict[str, str] | None = None
                        ) -> tuple[dict[str, Any], Matcher | None]:
    """``_any_``/``_all_``: a case-insensitive pattern over several fields."""
    pattern, fields = spec.get("pattern"), spec.get("fields") or []
    if not pattern or not fields:
        return {}, None
    field_map = field_map or {}
    fields = [field_path(field_map.get(f, f), f"{mode}.fields") for f in fields]
    return matcher(pattern, f"{mode}.pattern", fields, ignore_case=True,
                   any_field=mode == "_any_")


def search_text(text: str, fields: Iterable[str]) -> dict[str, Any]:
    """Free text: the literal text, case-insensitive, in any of ``fields`` (no text index needed)."""
    cond = {"$regex": re.escape(text), "$options": "i"}
    return {"$or": [{f: cond} for f in fields]}


def distinct_values(store: Store, company: str, projects: list[str] | None, field: str,
                    unwind: bool = False, match: dict[str, Any] | None = None) -> list[Any]:
    """The distinct non-empty values of ``field`` among the company's and public documents of
    ``projects`` (all when none) that also ``match``, sorted; ``unwind`` for list fields (tags)."""
    match = {**(match or {}), "company": {"$in": [company, ""]}}
    if projects:
        match["project"] = {"$in": projects}
    pipeline: list[dict[str, Any]] = [{"$match": match}]
    if unwind:
        pipeline.append({"$unwind": f"${field}"})
    pipeline.append({"$group": {"_id": f"${field}"}})
    return sorted(row["_id"] for row in store.aggregate_indexed(pipeline) if row["_id"])


def api_id(doc: dict[str, Any]) -> dict[str, Any]:
    """A stored document as the API shows it: ``_id`` is called ``id``."""
    out = dict(doc)
    if "_id" in out:
        out["id"] = out.pop("_id")
    return out


def _given(value: Any) -> bool:
    return value not in (None, "", [])


# Most documents the in-server pattern matching reads for one request (their ids and the matched
# fields only); past it the request is refused rather than left running.
MAX_PATTERN_SCAN = 200_000
PATTERN_SCAN_MS = 10_000


def listing_filter(data: dict[str, Any], scope: dict[str, Any], *, store: Store,
                   patterns: tuple[str, ...] = ("name",),
                   lists: tuple[str, ...] = ("tags", "system_tags"),
                   excludable: tuple[str, ...] = ("tags", "system_tags"), dates: tuple[str, ...] = (),
                   text: tuple[str, ...] = ("name",), path=lambda field: FIELD_IDS.get(field, field)
                   ) -> dict[str, Any]:
    """One filter document for a ``get_all`` request in ClearML's language (see the module doc).

    ``scope`` is the company condition; ``patterns`` are regex fields, ``lists`` list fields (of which
    ``excludable`` take ``-x``), ``dates`` date-constraint fields, ``text`` the fields ``search_text``
    looks in; ``path`` maps an API field to its stored name. Objects with the ``hidden`` system tag
    are left out unless ``search_hidden`` or ``id`` is given. A pattern that is not a plain literal
    is matched by RE2 over ``store`` and comes back as an ``_id`` condition.
    """
    conds: list[dict[str, Any]] = [scope]
    matchers: list[Matcher] = []

    def add(cond: dict[str, Any], match: Matcher | None) -> None:
        conds.append(cond)
        if match is not None:
            matchers.append(match)

    if _given(data.get("id")):
        conds.append(list_filter("_id", data["id"], allow_exclude=False))
    for f in patterns:
        if _given(data.get(f)):
            add(*matcher(data[f], f, [path(f)]))
    conds += [list_filter(path(f), data[f], allow_exclude=f in excludable) for f in lists if _given(data.get(f))]
    conds += [field_filter(path(f), spec) for f, spec in (data.get("filters") or {}).items() if f in lists]
    conds += [date_filter(path(f), data[f]) for f in dates if _given(data.get(f))]
    if data.get("search_text"):
        conds.append(search_text(data["search_text"], [path(f) for f in text]))
    for mode in ("_any_", "_all_"):
        spec = data.get(mode)
        if spec and spec.get("pattern") is None and spec.get("datetime") is not None:
            # ClearML's date form: the date constraints on any (all) of the named date fields
            found = [date_filter(path(f), spec["datetime"]) for f in spec.get("fields") or [] if f in dates]
            found = [c for c in found if c]
            if found:
                conds.append(found[0] if len(found) == 1 else {"$or" if mode == "_any_" else "$and": found})
        elif spec:
            add(*multi_field_pattern(spec, mode, {f: path(f) for f in spec.get("fields") or []}))
    if not data.get("search_hidden") and not _given(data.get("id")):
        conds.append({"system_tags": {"$ne": HIDDEN_TAG}})
    query = combine(*conds)
    if matchers:
        query = combine(query, {"_id": {"$in": matching_ids(store, query, matchers)}})
    return query


def matching_ids(store: Store, query: dict[str, Any], matchers: list[Matcher]) -> list[Any]:
    """Ids of the documents ``query`` selects whose fields the RE2 ``matchers`` all accept.

    Reads only ids and the matched fields, bounded in count and time, so a pattern costs a linear
    pass over the candidates and never a backtracking engine's worst case.
    """
    fields = {f for m in matchers for f in m.fields}
    cursor = store.scan(query, {f: 1 for f in fields} | {"_id": 1}, maxTimeMS=PATTERN_SCAN_MS)
    ids = []
    for n, doc in enumerate(cursor):
        if n >= MAX_PATTERN_SCAN:
            raise errors.bad_request.ValidationError(
                f"a regular expression may search at most {MAX_PATTERN_SCAN} objects; narrow the request "
                "with other filters or use a literal name", error_data={"field": "name", "rule": "maxScan"})
        if all(m(doc) for m in matchers):
            ids.append(doc["_id"])
    return ids


def field_path(path: str, field: str) -> str:
    """``path`` if it can name a stored field (dotted, no empty part, no NUL, no part starting with
    ``$``), else a 400 naming the request ``field`` it came from."""
    if "\x00" in path or any(not part or part.startswith("$") for part in path.split(".")):
        raise errors.bad_request.ValidationError(
            f"field '{field}': {path!r} is not a field path (rule: fieldPath)",
            error_data={"field": field, "rule": "fieldPath"})
    return path


def projection(only_fields: list[str] | None, field_map: dict[str, str] | None = None,
               always: Iterable[str] = ("_id",), field: str = "only_fields") -> dict[str, int] | None:
    """A MongoDB projection from ``only_fields`` (dotted paths; ``-field`` excludes; ``*`` is every
    field and ``a.*`` all of ``a``, as the ClearML web app asks)."""
    if not only_fields or "*" in only_fields:
        return None
    only_fields = [f[:-2] if f.endswith(".*") else f for f in only_fields]
    only_fields = [field_path(f[1:] if f.startswith("-") else f, field) and f for f in only_fields]
    field_map = field_map or {}
    include = [field_map.get(f, f) for f in only_fields if not f.startswith("-")]
    exclude = [field_map.get(f[1:], f[1:]) for f in only_fields if f.startswith("-")]
    if include:
        proj = {f: 1 for f in prune_nested(include)}
        for key in always:
            proj.setdefault(key, 1)
        return proj
    return {f: 0 for f in prune_nested(exclude)}


def prune_nested(paths: list[str]) -> list[str]:
    """Drop ``a.b`` when ``a`` is also listed: MongoDB refuses a projection with both (path collision)."""
    kept = []
    for path in sorted(set(paths), key=len):
        if not any(path.startswith(p + ".") for p in kept):
            kept.append(path)
    return kept


def order_by(keys: list[str] | str | None, field_map: dict[str, str] | None = None,
             default: tuple[tuple[str, int], ...] = (), field: str = "order_by") -> list[tuple[str, int]]:
    """Sort keys from ``["-last_update", "name"]``; ``_id`` is added last as a tie-break.

    As in ClearML, a key naming no field of the listed objects orders nothing (every object lacks
    it: the next keys decide), and one ``-`` or ``+`` is a direction (``--name`` names a field
    '-name', so it orders nothing either); a key that cannot name a field at all is a 400."""
    if isinstance(keys, str):
        keys = [keys]
    field_map = field_map or {}
    result: list[tuple[str, int]] = []
    for key in keys or []:
        if not key or key.startswith("@"):
            continue
        direction = -1 if key.startswith("-") else 1
        name = key[1:] if key[0] in "-+" else key
        if not name:
            continue
        field_path(name, field)
        result.append((field_map.get(name, name), direction))
    result = result or list(default)
    if all(name != "_id" for name, _ in result):
        result.append(("_id", 1))
    return result
