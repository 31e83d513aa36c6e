"""Owns ClearML's metadata of models and queues: items ``{key, type, value}`` by key, stored under
escaped keys (a key may hold '.' or '$'), added, replaced and deleted in one update each."""

from __future__ import annotations

from typing import Any

from apiserver.bll.tasks.fields import escape_key, unescape_key
from apiserver.database.model.base import utcnow


def stored(items: list[dict[str, Any]] | dict[str, Any] | None) -> dict[str, Any]:
    """API metadata (a list of items, or a dict by key) as stored: by escaped key."""
    if not items:
        return {}
    values = items.values() if isinstance(items, dict) else items
    return {escape_key(str(i["key"])): {"key": i["key"], "type": i.get("type"), "value": i.get("value")}
            for i in values if isinstance(i, dict) and i.get("key") is not None}


def shown(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` (changed in place) with its metadata keys as the API shows them."""
    if isinstance(doc.get("metadata"), dict):
        doc["metadata"] = {unescape_key(k): v for k, v in doc["metadata"].items()}
    return doc


def add_or_update(coll: Any, object_id: str, items: list[dict[str, Any]], replace: bool) -> int:
    values = stored(items)
    if replace:
        update = {"$set": {"metadata": values, "last_update": utcnow()}}
    else:
        update = {"$set": {**{f"metadata.{k}": v for k, v in values.items()}, "last_update": utcnow()}}
    return coll.update_one({"_id": object_id}, update).modified_count


def delete(coll: Any, object_id: str, keys: list[str]) -> int:
    if not keys:
        return 0
    update = {"$unset": {f"metadata.{escape_key(k)}": "" for k in keys}, "$set": {"last_update": utcnow()}}
    return coll.update_one({"_id": object_id}, update).modified_count
