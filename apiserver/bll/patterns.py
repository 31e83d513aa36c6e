"""Owns regexes that come from requests: they only ever run in RE2, a linear-time engine.

A backtracking engine (Python's ``re``, MongoDB's PCRE, SecantusDB's matcher, which is Python's
``re``) can take exponential time on a pattern such as ``(a+)+$``, so a request's pattern never
reaches one. The rules, one place for every listing, stored schema and filter:

- a pattern is at most ``MAX_PATTERN_LENGTH`` characters and must compile in RE2 (no
  back-references, no look-around): else 400 naming the field;
- a pattern that is only a literal, optionally anchored (``^name$``, ``abc``), becomes an equality
  or an escaped ``$regex`` that any engine runs in linear time (``db_condition``);
- any other pattern is matched by RE2 in the server over the stored values (``matcher``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import re2

from apiserver.apierrors import errors

MAX_PATTERN_LENGTH = 512
# RE2 refuses to build programs larger than this (bytes of memory), so no pattern costs more.
_MAX_MEM = 8 << 20
_META = set(".^$*+?{}[]\\|()")


def _options(ignore_case: bool) -> re2.Options:
    opts = re2.Options()
    opts.log_errors = False
    opts.max_mem = _MAX_MEM
    opts.case_sensitive = not ignore_case
    return opts


def compile_pattern(pattern: Any, field: str, ignore_case: bool = False) -> Any:
    """The RE2 program of a request's pattern, or 400/InvalidRegexError naming ``field``."""
    if not isinstance(pattern, str):
        raise errors.bad_request.ValidationError(f"field '{field}' must be a string pattern",
                                                 error_data={"field": field, "rule": "type"})
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise errors.bad_request.InvalidRegexError(
            f"field '{field}': a pattern is at most {MAX_PATTERN_LENGTH} characters",
            error_data={"field": field, "rule": "maxLength"})
    try:
        return re2.compile(pattern, _options(ignore_case))
    except re2.error as exc:
        reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise errors.bad_request.InvalidRegexError(
            f"field '{field}': not a supported regular expression ({reason}); back-references and "
            "look-around are not supported", error_data={"field": field, "rule": "pattern"}) from None


@dataclass(frozen=True)
class Literal:
    """A pattern that is plain text with optional ``^``/``$`` anchors."""

    text: str
    at_start: bool
    at_end: bool


def literal_of(pattern: str) -> Literal | None:
    """The literal a pattern stands for, or None when it uses any regex feature."""
    at_start = pattern.startswith("^")
    body = pattern[1:] if at_start else pattern
    at_end = body.endswith("$") and not body.endswith("\\$")
    if at_end:
        body = body[:-1]
    text, i = [], 0
    while i < len(body):
        char = body[i]
        if char == "\\":
            if i + 1 >= len(body) or body[i + 1].isalnum():  # \d, \w, \b, ... are classes, not literals
                return None
            text.append(body[i + 1])
            i += 2
            continue
        if char in _META:
            return None
        text.append(char)
        i += 1
    return Literal("".join(text), at_start, at_end)


def db_condition(pattern: str, field: str, ignore_case: bool = False) -> Any | None:
    """A database condition equal to the pattern that is safe in any engine, or None.

    Literal patterns qualify: ``^x$`` is an equality (indexed) when case matters, any other literal
    an escaped ``$regex`` (linear in every engine). Call after ``compile_pattern``.
    """
    lit = literal_of(pattern)
    if lit is None:
        return None
    if lit.at_start and lit.at_end and not ignore_case:
        return lit.text
    escaped = ("^" if lit.at_start else "") + re.escape(lit.text) + ("$" if lit.at_end else "")
    cond: dict[str, Any] = {"$regex": escaped}
    if ignore_case:
        cond["$options"] = "i"
    return cond


def _values(doc: dict[str, Any], path: str) -> list[Any]:
    """Every value at a dotted path (through lists), as MongoDB would match them."""
    current: list[Any] = [doc]
    for part in path.split("."):
        nxt: list[Any] = []
        for item in current:
            if isinstance(item, dict) and part in item:
                value = item[part]
                nxt.extend(value if isinstance(value, list) else [value])
        current = nxt
    return current


@dataclass(frozen=True)
class Matcher:
    """RE2 programs over stored fields, ANDed (``all_fields``) or ORed within one request field."""

    fields: tuple[str, ...]
    program: Any
    any_field: bool = True

    def __call__(self, doc: dict[str, Any]) -> bool:
        hits = (any(isinstance(v, str) and self.program.search(v) for v in _values(doc, f)) for f in self.fields)
        return any(hits) if self.any_field else all(hits)


def matcher(pattern: str, field: str, stored_fields: list[str] | tuple[str, ...], ignore_case: bool = False,
            any_field: bool = True) -> tuple[dict[str, Any], Matcher | None]:
    """(database condition, in-server matcher) for a pattern over ``stored_fields``.

    Exactly one of the two is non-empty: a literal pattern goes to the database, anything else is
    matched here by RE2.
    """
    program = compile_pattern(pattern, field, ignore_case)
    cond = db_condition(pattern, field, ignore_case)
    if cond is not None:
        parts = [{f: cond} for f in stored_fields]
        if len(parts) == 1:
            return parts[0], None
        return {"$or" if any_field else "$and": parts}, None
    return {}, Matcher(tuple(stored_fields), program, any_field)
