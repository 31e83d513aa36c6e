"""Owns JSON Schemas that users store (a model's input and output schemas) and running them safely.

- References stay inside the schema: a ``$ref`` is ``#``, a JSON pointer ``#/...`` that exists in
  the same schema, or ``#name`` declared by an ``$id: "#name"``. Remote (``http://``), ``file://``
  and any other reference is refused when the schema is stored (400 naming the field), and the
  validator's reference registry refuses to retrieve anything, so nothing is ever fetched.
- A nested ``$id`` may only be a fragment: a base URI there would turn a local-looking ``$ref``
  into a remote one. The root may carry any ``$id`` (its own name; references resolve to it).
- ``pattern`` and ``patternProperties`` (and ``additionalProperties``, which consults them) run in
  RE2 through ``apiserver.bll.patterns``: linear time, whatever the pattern. A pattern RE2 cannot
  compile is refused when the schema is stored.
- A stored schema is at most ``registry.max_schema_bytes`` serialized and ``MAX_DEPTH`` levels deep.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import lru_cache
from typing import Any
from urllib.parse import unquote

from jsonschema import Draft7Validator, validators
from jsonschema.exceptions import SchemaError, ValidationError
from referencing import Registry
from referencing.exceptions import NoSuchResource

from apiserver.apierrors import errors
from apiserver.bll.patterns import compile_pattern

MAX_DEPTH = 64
# Draft 7 keywords whose values are schemas (the rest hold data: enum, const, default, ...).
_ONE = ("additionalItems", "additionalProperties", "contains", "propertyNames", "not", "if", "then", "else", "items")
_MANY = ("allOf", "anyOf", "oneOf", "items")
_NAMED = ("properties", "patternProperties", "definitions", "dependencies")


def _bad(message: str, field: str, rule: str) -> errors.bad_request.ValidationError:
    return errors.bad_request.ValidationError(message, error_data={"field": field, "rule": rule})


def _refuse_retrieval(uri: str):
    raise NoSuchResource(ref=uri)


# Remote, file and any other retrieval is refused: a $ref that is not inside the schema resolves to nothing.
NO_RETRIEVAL = Registry(retrieve=_refuse_retrieval)


@lru_cache(maxsize=1024)
def _program(pattern: str) -> Any:
    return compile_pattern(pattern, "pattern")


def _re2_pattern(validator, pattern, instance, schema):
    if validator.is_type(instance, "string") and not _program(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _re2_pattern_properties(validator, pattern_properties, instance, schema):
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in pattern_properties.items():
        program = _program(pattern)
        for key, value in instance.items():
            if program.search(key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _re2_additional_properties(validator, additional, instance, schema):
    """jsonschema's additionalProperties, with patternProperties matched in RE2 (its own uses ``re``)."""
    if not validator.is_type(instance, "object"):
        return
    known = schema.get("properties", {})
    programs = [_program(p) for p in schema.get("patternProperties", {})]
    extras = [k for k in instance if k not in known and not any(p.search(k) for p in programs)]
    if validator.is_type(additional, "object"):
        for extra in extras:
            yield from validator.descend(instance[extra], additional, path=extra)
    elif not additional and extras:
        joined = ", ".join(repr(each) for each in sorted(extras, key=str))
        if "patternProperties" in schema:
            verb = "does" if len(extras) == 1 else "do"
            patterns = ", ".join(repr(each) for each in sorted(schema["patternProperties"]))
            yield ValidationError(f"{joined} {verb} not match any of the regexes: {patterns}")
        else:
            yield ValidationError(f"Additional properties are not allowed ({joined} "
                                  f"{'was' if len(extras) == 1 else 'were'} unexpected)")


StoredSchemaValidator = validators.extend(Draft7Validator, {
    "pattern": _re2_pattern, "patternProperties": _re2_pattern_properties,
    "additionalProperties": _re2_additional_properties})


def validator_for(schema: dict[str, Any]) -> Draft7Validator:
    """A Draft 7 validator of a stored schema that runs patterns in RE2 and fetches nothing."""
    return StoredSchemaValidator(schema, registry=NO_RETRIEVAL)


def _depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_DEPTH:
            break
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        stack.extend((child, depth + 1) for child in children)
    return deepest


def _subschemas(schema: Any) -> Iterator[tuple[tuple[str, ...], dict[str, Any]]]:
    """(path, subschema) for the schema and every schema inside it, by the keywords that hold schemas."""
    stack: list[tuple[tuple[str, ...], Any]] = [((), schema)]
    while stack:
        path, node = stack.pop()
        if not isinstance(node, dict):
            continue
        yield path, node
        for kw in _ONE:
            if isinstance(node.get(kw), dict):
                stack.append(((*path, kw), node[kw]))
        for kw in _MANY:
            if isinstance(node.get(kw), list):
                stack.extend(((*path, kw, str(i)), sub) for i, sub in enumerate(node[kw]))
        for kw in _NAMED:
            if isinstance(node.get(kw), dict):
                stack.extend(((*path, kw, str(name)), sub) for name, sub in node[kw].items())


def _pointer_exists(root: Any, pointer: str) -> bool:
    node = root
    for token in unquote(pointer).split("/")[1:]:
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            return False
    return True


def check_stored_schema(schema: Any, field: str, max_bytes: int) -> None:
    """Refuse (400 naming the field and the rule) a schema that is not safe to store and run."""
    if _depth(schema) > MAX_DEPTH:
        raise _bad(f"{field} is nested more than {MAX_DEPTH} levels deep", field, "maxDepth")
    size = len(json.dumps(schema, separators=(",", ":"), ensure_ascii=False).encode())
    if size > max_bytes:
        raise _bad(f"{field} is {size} bytes; a stored schema is at most {max_bytes} bytes", field, "maxBytes")
    try:
        Draft7Validator.check_schema(schema)
    except SchemaError as exc:
        inner = ".".join(map(str, exc.absolute_path))
        raise _bad(f"{field} is not a valid JSON Schema: {exc.message}", f"{field}.{inner}" if inner else field,
                   "jsonSchema") from None
    subschemas = list(_subschemas(schema))
    anchors = {sub["$id"][1:] for _, sub in subschemas if isinstance(sub.get("$id"), str)
               and sub["$id"].startswith("#")}
    for path, sub in subschemas:
        where = ".".join((field, *path))
        ident = sub.get("$id")
        if path and isinstance(ident, str) and not ident.startswith("#"):
            raise _bad(f"field '{where}.$id': a nested $id may only be a fragment (#name); a base URI "
                       "would make references inside it remote", f"{where}.$id", "ref")
        ref = sub.get("$ref")
        if isinstance(ref, str):
            _check_ref(schema, ref, anchors, f"{where}.$ref")
        if isinstance(sub.get("pattern"), str):
            compile_pattern(sub["pattern"], f"{where}.pattern")
        for pattern in sub.get("patternProperties") or {}:
            compile_pattern(pattern, f"{where}.patternProperties.{pattern}")


def _check_ref(root: Any, ref: str, anchors: set[str], where: str) -> None:
    if not ref.startswith("#"):
        raise _bad(f"field '{where}': only references inside the schema (#/...) are allowed; {ref!r} "
                   "would be fetched from outside, which the server never does", where, "ref")
    if ref == "#" or (ref.startswith("#/") and _pointer_exists(root, ref[1:])) or ref[1:] in anchors:
        return
    raise _bad(f"field '{where}': {ref!r} points at nothing in the schema", where, "ref")
