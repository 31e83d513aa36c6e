"""Owns reading JSON Schema errors: the one error to report and the field it is about."""

from __future__ import annotations

from itertools import chain
from typing import Any

from jsonschema import Draft7Validator
from jsonschema.exceptions import ValidationError, best_match


def first_error(validator: Draft7Validator, value: Any) -> ValidationError | None:
    """The most relevant error, or None when ``value`` is valid.

    One pass over ``value``, valid or not: the errors of that pass go to ``best_match`` (a second
    pass would double the cost of every invalid value, whatever its schema makes that cost).
    """
    found = validator.iter_errors(value)
    first = next(found, None)
    if first is None:
        return None
    return best_match(chain((first,), found))


def error_field(error: ValidationError) -> str:
    """The dotted path of the field an error is about: for ``required`` the first missing key, for
    ``additionalProperties`` the first key that is not allowed, for ``dependencies`` the key another
    one needs."""
    path = [str(p) for p in error.absolute_path]
    if isinstance(error.instance, dict):
        if error.validator == "required":
            path += [k for k in error.validator_value if k not in error.instance][:1]
        elif error.validator == "additionalProperties":
            allowed = set(error.schema.get("properties") or {})
            path += sorted(set(error.instance) - allowed)[:1]
        elif error.validator == "dependencies":  # the key that needs another: name the missing one
            for key, needed in error.validator_value.items():
                if key in error.instance and isinstance(needed, list):
                    missing = [k for k in needed if k not in error.instance]
                    if missing:
                        path.append(missing[0])
                        break
    return ".".join(path)
