"""Owns the two shapes of a task: as stored (escaped keys, artifacts by hash) and as the API shows it."""

from __future__ import annotations

import hashlib
from typing import Any

from apiserver.bll.query import FIELD_IDS, api_id
from apiserver.database.model.base import date_fields, utcnow
from apiserver.database.model.task import Task

# API field -> stored field, for filters, projections and sort keys.
FIELD_MAP = FIELD_IDS  # API field -> stored field (bll.query owns it)
DATE_FIELDS = date_fields(Task)  # the task document declares them
USER_KEYED_SECTIONS = ("hyperparams", "configuration")


def escape_key(key: str) -> str:
    return key.replace("%", "%25").replace(".", "%2E").replace("$", "%24")


def unescape_key(key: str) -> str:
    return key.replace("%24", "$").replace("%2E", ".").replace("%25", "%")


def _map_keys(value: Any, fn, depth: int) -> Any:
    if depth == 0 or not isinstance(value, dict):
        return value
    return {fn(k): _map_keys(v, fn, depth - 1) for k, v in value.items()}


def metric_hash(name: str) -> str:
    """The key a metric or variant name is stored under in ``last_metrics``."""
    return hashlib.md5(name.encode()).hexdigest()  # noqa: S324 - a field key, not a secret


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
    if isinstance(out.get("last_metrics"), dict):  # given whole (an import)
        out["last_metrics"] = last_metrics_to_storage(out["last_metrics"])
    return out


def last_metrics_to_storage(last_metrics: dict[str, Any]) -> dict[str, Any]:
    """``last_metrics`` as the API shows them (an import), as stored: ``last_metrics_to_api`` undone, so
    that events recorded on them later keep the extremes' iterations, the first value and the mean."""
    return {metric: {variant: _series_to_storage(series) for variant, series in variants.items()}
            if isinstance(variants, dict) else variants for metric, variants in last_metrics.items()}


def last_metrics_to_api(last_metrics: dict[str, Any]) -> dict[str, Any]:
    """Stored ``last_metrics`` (of a task or a model) as ClearML shows them: the pairs that
    ``base.metrics_update`` keeps for atomic ``$min``/``$max`` become ``min_value_iteration``,
    ``max_value_iteration``, ``first_value`` and ``first_value_iteration``, the sum ``mean_value``."""
    return {metric: {variant: _series_to_api(series) for variant, series in variants.items()}
            if isinstance(variants, dict) else variants for metric, variants in last_metrics.items()}


def _series_to_api(series: Any) -> Any:
    if not isinstance(series, dict):
        return series
    out = dict(series)
    low, high, first, total = (out.pop(k, None) for k in ("min_at", "max_at", "first_at", "total"))
    if isinstance(low, list) and len(low) == 2:
        out["min_value_iteration"] = low[1]
    if isinstance(high, list) and len(high) == 2:
        out["max_value_iteration"] = -high[1]
    if isinstance(first, list) and len(first) == 2:
        out["first_value_iteration"], out["first_value"] = first
    if isinstance(total, (int, float)) and out.get("count"):
        out["mean_value"] = total / out["count"]
    return out


def _series_to_storage(series: Any) -> Any:
    if not isinstance(series, dict):
        return series
    out = dict(series)
    low_at, high_at = out.pop("min_value_iteration", None), out.pop("max_value_iteration", None)
    first, first_at, mean = out.pop("first_value", None), out.pop("first_value_iteration", None), \
        out.pop("mean_value", None)
    if _numbers(low_at, out.get("min_value")):
        out["min_at"] = [out["min_value"], low_at]
    if _numbers(high_at, out.get("max_value")):
        out["max_at"] = [out["max_value"], -high_at]
    if _numbers(first, first_at):
        out["first_at"] = [first_at, first]
    if _numbers(mean, out.get("count")):
        out["total"] = mean * out["count"]
    return out


def _numbers(*values: Any) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def to_api(doc: dict[str, Any]) -> dict[str, Any]:
    """A stored task document as the API returns it."""
    out = api_id(doc)
    out.pop("company_origin", None)
    if isinstance(out.get("last_metrics"), dict):
        out["last_metrics"] = last_metrics_to_api(out["last_metrics"])
    if isinstance(out.get("hyperparams"), dict):
        out["hyperparams"] = _map_keys(out["hyperparams"], unescape_key, 2)
    if isinstance(out.get("configuration"), dict):
        out["configuration"] = _map_keys(out["configuration"], unescape_key, 1)
    execution = out.get("execution")
    if isinstance(execution, dict) and isinstance(execution.get("artifacts"), dict):
        # by key and type, as ClearML lists them
        out["execution"] = {**execution, "artifacts": sorted(
            execution["artifacts"].values(), key=lambda a: (str(a.get("key")), str(a.get("type"))))}
    return out


def storage_path(api_path: str) -> str:
    """A dotted API path (for only_fields / order_by) as the stored path."""
    if api_path in FIELD_MAP:
        return FIELD_MAP[api_path]
    for old, new in (("execution.parameters", "hyperparams.Args"), ("execution.model_desc", "configuration")):
        if api_path == old or api_path.startswith(old + "."):
            api_path = new + api_path[len(old):]
    parts = api_path.split(".")
    if parts[0] in USER_KEYED_SECTIONS:
        # the web app sends section and parameter names with their '.' already escaped ('%2E'), as
        # ClearML's server expects: unescaped first, so each is escaped once
        depth = 3 if parts[0] == "hyperparams" else 2
        parts = [parts[0]] + [escape_key(unescape_key(p)) if i < depth else p
                              for i, p in enumerate(parts[1:], start=1)]
    return ".".join(parts)


def dotted_changes(prefix: str, value: Any) -> dict[str, Any]:
    """``{"a": {"b": 1}}`` under ``prefix`` as ``{"prefix.a.b": 1}`` (for the `fields` answer)."""
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, sub in value.items():
            out.update(dotted_changes(f"{prefix}.{key}", sub))
        return out
    return {prefix: value}


# Clients before API 2.9 know no hyperparams/configuration sections: they send and read the flat
# execution.parameters ({name: value}) and execution.model_desc. As ClearML: what they send becomes
# items of type "legacy" (parameters in section "Args", or "TF_DEFINE" for "TF_DEFINE/x" names), and
# they read back the legacy items; newer clients see those items in their sections.
LEGACY_PARAMS_BEFORE = (2, 9)
LEGACY_TYPE = "legacy"
LEGACY_SECTIONS = (("parameters", "hyperparams", "Args"), ("model_desc", "configuration", None))
TF_DEFINE = "TF_DEFINE"


def _without_legacy(items: dict[str, Any], sectioned: bool) -> dict[str, Any]:
    if sectioned:
        kept = {sec: _without_legacy(params or {}, False) for sec, params in items.items()}
        return {sec: params for sec, params in kept.items() if params}
    return {k: v for k, v in items.items() if not (isinstance(v, dict) and v.get("type") == LEGACY_TYPE)}


def legacy_to_sections(fields: dict[str, Any], previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """``fields`` (API shape, changed in place) with execution.parameters / model_desc moved into
    hyperparams / configuration items; with no new section given, the ``previous`` task's section
    keeps its other items and loses its earlier legacy ones."""
    execution = fields.get("execution")
    if not isinstance(execution, dict):
        return fields
    for old, new, section in LEGACY_SECTIONS:
        if old not in execution:
            continue
        legacy = execution.pop(old)
        if not isinstance(legacy, dict):
            continue
        if fields.get(new):
            items = fields[new]
        else:
            items = _without_legacy((previous or {}).get(new) or {}, section is not None)
            if not legacy and not items and not (previous or {}).get(new):
                continue
        for full_name, value in legacy.items():
            item = {"name": full_name, "type": LEGACY_TYPE, "value": str(value)}
            if section is None:
                items[full_name] = item
                continue
            sec, _, name = full_name.partition("/")
            sec, name = (sec, name) if sec == TF_DEFINE and name else (section, full_name)
            items.setdefault(sec, {})[name] = {**item, "name": name, "section": sec}
        fields[new] = items
    return fields


def legacy_view(task: dict[str, Any]) -> dict[str, Any]:
    """An API-shaped task as a pre-2.9 client reads it: its legacy items also as execution.parameters
    and execution.model_desc."""
    for old, new, section in LEGACY_SECTIONS:
        items = task.get(new) or {}
        flat = [p for params in items.values() for p in (params or {}).values()] if section else list(items.values())
        legacy = {(f"{p['section']}/{p['name']}" if section and p.get("section") == TF_DEFINE else p["name"]):
                  p.get("value") for p in flat if isinstance(p, dict) and p.get("type") == LEGACY_TYPE}
        if legacy:
            task.setdefault("execution", {})[old] = legacy
    return task


# ClearML's name for the input-model link an old client's ``execution.model`` stands for.
LEGACY_INPUT_MODEL = "Input Model"


def legacy_input_models(fields: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The ``models.input`` list that ``execution.model`` in these API fields stands for (clients
    before 2.13 name a task's input model there, and ClearML links it), or None when the fields name
    no such model or give ``models.input`` themselves. The legacy field itself stays as given."""
    execution = fields.get("execution")
    if not isinstance(execution, dict) or "model" not in execution or (fields.get("models") or {}).get("input"):
        return None
    model = execution["model"]
    return [{"name": LEGACY_INPUT_MODEL, "model": model, "updated": utcnow()}] if model else []
