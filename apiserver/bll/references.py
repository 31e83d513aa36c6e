"""Owns references in ``only_fields``: a listing asked for ``project.name`` (a field of the object a
reference field points at) answers the reference as an object, ``{id, name}``, read with one query
per reference field, as ClearML does."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from apiserver.bll.query import field_path

# What the ``*_ex`` listings answer with its name when only_fields names it plainly: ClearML's web
# app takes an entity whose ``company`` has no ``id`` for a read-only example.
EX_OBJECTS = ("company",)


def split_references(only_fields: list[str] | None, refs: dict[str, Any], ex: bool = False
                     ) -> tuple[list[str] | None, dict[str, set[str]]]:
    """``only_fields`` with ``project.name``-style entries (a field of the object a reference field
    points at) replaced by the reference field itself, and what to read of each referenced object.

    ``refs`` maps an API reference path (``project``, ``models.output.model``) to the collection of
    the objects it holds ids of. ClearML answers such a field as an object, ``{id, name}``. ``ex``:
    the ``*_ex`` listings answer every reference field as an object, ``{id}`` at least (ClearML's
    join expands the ids it does not read), and the ``EX_OBJECTS`` named plainly with their names.
    """
    wanted: dict[str, set[str]] = {ref: set() for ref in refs} if ex else {}
    if not only_fields:
        return only_fields, wanted
    plain: list[str] = []
    for field in only_fields:
        ref = next((r for r in sorted(refs, key=len, reverse=True)
                    if not field.startswith("-") and field.startswith(r + ".")), None)
        if ref is None:
            if ex and field in EX_OBJECTS and field in refs:
                wanted[field].add("name")
            plain.append(field)
            continue
        sub = field[len(ref) + 1:]
        wanted.setdefault(ref, set()).add(field_path(sub, "only_fields").split(".")[0])
        plain.append(ref)
    return list(dict.fromkeys(plain)), wanted


def _holders(value: Any, parts: list[str]) -> Iterable[tuple[dict[str, Any], str]]:
    """Every (dict, key) pair at dotted ``parts`` below ``value``, through lists."""
    if isinstance(value, list):
        for item in value:
            yield from _holders(item, parts)
    elif isinstance(value, dict) and parts:
        if len(parts) == 1:
            if value.get(parts[0]) is not None:
                yield value, parts[0]
        else:
            yield from _holders(value.get(parts[0]), parts[1:])


def dereference(docs: list[dict[str, Any]], wanted: dict[str, set[str]], refs: dict[str, Any],
                company: str) -> list[dict[str, Any]]:
    """Replace (in place) each wanted reference id with ``{id, <fields>}`` of the object it names,
    read with one query per reference field; a missing object gives ``{id}`` only."""
    for ref, fields in wanted.items():
        parts = ref.split(".")
        holders = [h for doc in docs for h in _holders(doc, parts)]
        ids = list({holder[key] for holder, key in holders if isinstance(holder[key], str)})
        extra = sorted(fields - {"id"})
        found: dict[str, dict[str, Any]] = {}
        if ids and extra and refs[ref] is not None:
            scope = {"_id": {"$in": ids}, "company": {"$in": [company, ""]}} if ref != "company" else \
                {"_id": {"$in": ids}}
            found = {d["_id"]: d for d in refs[ref].find(scope, {f: 1 for f in extra})}
        for holder, key in holders:
            if isinstance(holder[key], str):
                target = found.get(holder[key], {})
                holder[key] = {"id": holder[key], **{f: target[f] for f in extra if f in target}}
    return docs
