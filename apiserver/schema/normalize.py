"""Owns the rules every request schema shares beyond JSON Schema itself: nulls as absent, one value
as a one-item list, default integer bounds, integral floats read as integers, and object keys no database can store.

ClearML's clients send null for every optional argument they leave unset, and ClearML takes it as
absent: a null the schema refuses is dropped before the rest is checked; a null the schema accepts
is kept, and a required field stays required.

JSON Schema counts ``487.0`` as an ``integer``; Python and pymongo do not (``skip must be an
integer``), so after validation every integral float where the schema declares an integer becomes
an ``int``, whatever the endpoint. An integer with no declared bounds gets the signed 64-bit range
(what BSON stores), or a smaller one where the name says it is multiplied or added to a date (a
page, a size, a count, a timeout), so no page times page size and no "now plus timeout" overflows.
A key holding a NUL byte cannot be a BSON key: it is refused with a 400 naming the field. ``.`` and
``$`` inside stored objects are legal keys for MongoDB 5+ and SecantusDB and kept as given; the
task sections whose keys become field paths escape them (``bll/tasks/fields.py``).
"""

from __future__ import annotations

import re
from typing import Any

from apiserver.apierrors import errors
from apiserver.schema.validation import error_field, first_error

MAX_DROPPED_NULLS = 200


def drop_refused_nulls(validator: Any, data: dict[str, Any]) -> Any:
    """Drop (in place) every object key whose null value the schema refuses, and make a lone value
    of a top-level field declared as a list a one-item list; the first remaining validation error,
    or None."""
    err = first_error(validator, data)
    for _ in range(MAX_DROPPED_NULLS):
        if err is None or not (_drop_refused_null(data, err) or _wrap_refused_scalar(data, err)):
            break
        err = first_error(validator, data)
    return err


def _drop_refused_null(data: dict, err: Any) -> bool:
    """Remove the object key whose null value ``err`` refuses; False when ``err`` is about something else."""
    if err.instance is not None or err.validator not in ("type", "enum", "format", "minLength", "$ref") \
            or not err.absolute_path:
        return False
    *parents, key = list(err.absolute_path)
    holder: Any = data
    for part in parents:
        holder = holder[part]
    if not isinstance(holder, dict) or key not in holder or holder[key] is not None:
        return False
    del holder[key]
    return True



def _wrap_refused_scalar(data: dict, err: Any) -> bool:
    """ClearML takes one value where a request field is a list (``id: "x"``, a date filter as one
    ``">=2024-01-01"``): a top-level scalar the schema refuses for not being an array is wrapped."""
    if err.validator != "type" or len(err.absolute_path) != 1 or isinstance(err.instance, (list, dict)) \
            or err.instance is None:
        return False
    declared = err.validator_value if isinstance(err.validator_value, list) else [err.validator_value]
    key = err.absolute_path[0]
    if "array" not in declared or key not in data or data[key] is not err.instance:
        return False
    data[key] = [err.instance]
    return True


INT64 = (-(2**63), 2**63 - 1)
INT32 = (-(2**31), 2**31 - 1)
# Milliseconds since the epoch that still make a date (year 1 to year 9999).
TIMESTAMP_MS = (-62_135_596_800_000, 253_402_300_799_999)
# Integers that are multiplied (page * page_size) or added to now (timeouts): 32-bit.
_SMALL_INTEGER = re.compile(r"^(page|count|limit|samples|interval|expiry|timeout|last_seen)$"
                            r"|_(size|sec|timeout|count)$")
_TIMESTAMP = re.compile(r"(^|_)timestamp$")
_COMBINATORS = ("allOf", "anyOf", "oneOf")


def _is_integer_schema(node: dict[str, Any]) -> bool:
    kind = node.get("type")
    return kind == "integer" or (isinstance(kind, list) and "integer" in kind)


def default_integer_range(name: str | None) -> tuple[int, int]:
    if name and _TIMESTAMP.search(name):
        return TIMESTAMP_MS
    if name and _SMALL_INTEGER.search(name):
        return INT32
    return INT64


def bound_integers(schema: Any, name: str | None = None) -> Any:
    """Give every ``integer`` of ``schema`` (in place) the bounds it does not declare; returns it."""
    if isinstance(schema, list):
        for item in schema:
            bound_integers(item, name)
        return schema
    if not isinstance(schema, dict):
        return schema
    if _is_integer_schema(schema):
        low, high = default_integer_range(name)
        if "minimum" not in schema and "exclusiveMinimum" not in schema:
            schema["minimum"] = low
        if "maximum" not in schema and "exclusiveMaximum" not in schema:
            schema["maximum"] = high
    for key, value in schema.items():
        if key in ("properties", "patternProperties", "definitions"):
            for prop, sub in (value or {}).items():
                bound_integers(sub, prop if key != "patternProperties" else name)
        elif key in ("items", "additionalItems", "additionalProperties", "not", "contains", *_COMBINATORS):
            bound_integers(value, name)
    return schema


def declares_integers(schema: Any) -> bool:
    if isinstance(schema, dict):
        return _is_integer_schema(schema) or any(declares_integers(v) for v in schema.values())
    if isinstance(schema, list):
        return any(declares_integers(v) for v in schema)
    return False


def _expand(schema: Any, root: dict[str, Any], seen: int = 0) -> list[dict[str, Any]]:
    """``schema`` and every schema it stands for at the same place ($ref, allOf, anyOf, oneOf)."""
    if not isinstance(schema, dict) or seen > 32:
        return []
    out = [schema]
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/definitions/"):
        out += _expand((root.get("definitions") or {}).get(ref.rsplit("/", 1)[1]), root, seen + 1)
    for key in _COMBINATORS:
        for sub in schema.get(key) or []:
            out += _expand(sub, root, seen + 1)
    return out


def integers_from_floats(schema: dict[str, Any], value: Any, root: dict[str, Any] | None = None) -> Any:
    """``value`` (already valid against ``schema``) with integral floats made ints wherever the
    schema declares an integer; containers are changed in place."""
    root = root if root is not None else schema
    schemas = _expand(schema, root)
    if not schemas:
        return value
    if isinstance(value, float):
        if value.is_integer() and any(_is_integer_schema(s) for s in schemas):
            return int(value)
        return value
    if isinstance(value, dict):
        for key, sub in value.items():
            children = []
            for s in schemas:
                props = s.get("properties") or {}
                if key in props:
                    children.append(props[key])
                    continue
                matched = [p for pattern, p in (s.get("patternProperties") or {}).items() if re.search(pattern, key)]
                children += matched
                if not matched and isinstance(s.get("additionalProperties"), dict):
                    children.append(s["additionalProperties"])
            for child in children:
                sub = integers_from_floats(child, sub, root)
            value[key] = sub
    elif isinstance(value, list):
        for i, sub in enumerate(value):
            for s in schemas:
                items = s.get("items")
                child = items if not isinstance(items, list) else \
                    items[i] if i < len(items) else s.get("additionalItems")
                if isinstance(child, dict):
                    sub = integers_from_floats(child, sub, root)
            value[i] = sub
    return value


def unstorable_key(value: Any, path: str = "") -> str | None:
    """The dotted path of the first key in ``value`` that BSON cannot hold (a NUL byte), or None."""
    if isinstance(value, dict):
        for key, sub in value.items():
            here = f"{path}.{key}" if path else str(key)
            if "\x00" in str(key):
                return here.replace("\x00", "\\u0000")
            found = unstorable_key(sub, here)
            if found is not None:
                return found
    elif isinstance(value, list):
        for i, sub in enumerate(value):
            found = unstorable_key(sub, f"{path}.{i}" if path else str(i))
            if found is not None:
                return found
    return None


def validated_request(spec: Any, data: dict, prefix: str = "") -> dict:
    """``data`` checked against an endpoint's request schema with the rules above (nulls as absent,
    no NUL in keys, integral floats as integers), or the 400 that names the field and the rule.
    ``spec`` is a loader ``EndpointSpec``; ``prefix`` names where ``data`` sits in a larger body."""
    err = drop_refused_nulls(spec.request_validator, data)
    if err is None:
        bad_key = unstorable_key(data)
        if bad_key is not None:
            raise errors.bad_request.ValidationError(
                f"field '{prefix + bad_key}': keys may not contain a NUL byte (rule: keyCharacters)",
                error_data={"field": prefix + bad_key, "rule": "keyCharacters"})
        return integers_from_floats(spec.request_schema, data) if spec.has_integers else data
    field = prefix + error_field(err)
    if err.validator == "required":
        raise errors.bad_request.MissingRequiredFields(f"field '{field}' is required",
                                                      error_data={"field": field, "rule": err.validator})
    raise errors.bad_request.ValidationError(
        f"field '{field or '<body>'}': {err.message} (rule: {err.validator})",
        error_data={"field": field, "rule": err.validator})
