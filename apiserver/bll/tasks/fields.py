"""Owns the two shapes of a task: as stored (escaped keys, artifacts by hash) and as the API shows it."""

from __future__ import annotations

import hashlib
from typing import Any

from apiserver.bll.query import api_id

# API field -> stored field, for filters, projections and sort keys.
FIELD_MAP = {"id": "_id"}
DATE_FIELDS = ("created", "started", "completed", "published", "last_update", "status_changed", "last_worker_report")
USER_KEYED_SECTIONS = ("hyperparams", "configuration")


def escape_key(key: str) -> str:
    return key.replace("%", "%25").replace(".", "%2E").replace("$", "%24")


def unescape_key(key: str) -> str:
    return key.replace("%24", "$").replace("%2E", ".").replace("%25", "%")


def _map_keys(value: Any, fn, depth: int) -> Any:
    if depth == 0 or not isinstance(value, dict):
        return value
    return {fn(k): _map_keys(v, fn, depth - 1) for k, v in value.items()}


def artifact_id(artifact: dict[str, Any]) -> str:
    raw = f"{artifact.get('mode', 'output')}\x00{artifact['key']}"
    return hashlib.md5(raw.encode()).hexdigest()  # noqa: S324 - a key, not a secret


def to_storage(fields: dict[str, Any]) -> dict[str, Any]:
    """API section values to their stored shape (only the sections present are converted)."""
    out = dict(fields)
    # hyperparams: section -> name -> param; configuration: name -> item
    if "hyperparams" in out and out["hyperparams"] is not None:
        out["hyperparams"] = _map_keys(out["hyperparams"], escape_key, 2)
    if "configuration" in out and out["configuration"] is not None:
        out["configuration"] = _map_keys(out["configuration"], escape_key, 1)
    execution = out.get("execution")
    if isinstance(execution, dict) and isinstance(execution.get("artifacts"), list):
        out["execution"] = {**execution, "artifacts": {artifact_id(a): a for a in execution["artifacts"]}}
    return out


def to_api(doc: dict[str, Any]) -> dict[str, Any]:
    """A stored task document as the API returns it."""
    out = api_id(doc)
    out.pop("company_origin", None)
    if isinstance(out.get("hyperparams"), dict):
        out["hyperparams"] = _map_keys(out["hyperparams"], unescape_key, 2)
    if isinstance(out.get("configuration"), dict):
        out["configuration"] = _map_keys(out["configuration"], unescape_key, 1)
    execution = out.get("execution")
    if isinstance(execution, dict) and isinstance(execution.get("artifacts"), dict):
        out["execution"] = {**execution, "artifacts": list(execution["artifacts"].values())}
    return out


def storage_path(api_path: str) -> str:
    """A dotted API path (for only_fields / order_by) as the stored path."""
    if api_path in FIELD_MAP:
        return FIELD_MAP[api_path]
    parts = api_path.split(".")
    if parts[0] in USER_KEYED_SECTIONS:
        depth = 3 if parts[0] == "hyperparams" else 2
        parts = [parts[0]] + [escape_key(p) if i < depth else p for i, p in enumerate(parts[1:], start=1)]
    return ".".join(parts)


def dotted_changes(prefix: str, value: Any) -> dict[str, Any]:
    """``{"a": {"b": 1}}`` under ``prefix`` as ``{"prefix.a.b": 1}`` (for the `fields` answer)."""
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, sub in value.items():
            out.update(dotted_changes(f"{prefix}.{key}", sub))
        return out
    return {prefix: value}
