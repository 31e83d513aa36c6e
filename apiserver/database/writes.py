"""Write patterns that stay O(1) on both engines.

pymongo's ``find_one_and_update`` (findAndModify) is O(collection) on the embedded SecantusDB 0.7:
after finding the document it re-applies the write under ``{_id: <id>, $and: [<filter>]}``, and its
planner serves no filter with a top-level operator from an index, so every call scans the whole
collection (130 ms at 20,000 documents, ~0.65 s at 100,000: BENCHMARKS.md). The same holds for any
``update_*``/``find`` whose filter has a top-level ``$or``/``$and``. Collections that grow with the
data (tasks, the scalar series lists, sign-in failures) are therefore written with ``update_one`` under
a plain filter that names the ``_id``, and read back by ``_id``: two primary-key lookups.
``tests/test_company_scoping.py`` keeps ``find_one_and_*`` out of the code but for small collections.
"""

from __future__ import annotations

from typing import Any


def update_and_read(coll: Any, flt: dict[str, Any], update: dict[str, Any], projection: dict | None = None,
                    *, upsert: bool = False) -> dict[str, Any] | None:
    """Apply ``update`` to the document ``flt`` matches (it names an ``_id`` and, beside it, only field
    conditions) and return it as read right after, or None when nothing matched.

    Unlike find_one_and_update, the document read back may already hold a later writer's change too:
    callers use it for fields only they write or for counters they compare with ``>=``."""
    if "_id" not in flt or any(key.startswith("$") for key in flt):
        raise ValueError(f"update_and_read needs an _id and plain field conditions, not {sorted(flt)}")
    result = coll.update_one(flt, update, upsert=upsert)
    if result.upserted_id is not None:
        return coll.find_one({"_id": result.upserted_id}, projection)
    if not result.matched_count:
        return None
    return coll.find_one({"_id": flt["_id"]}, projection)
