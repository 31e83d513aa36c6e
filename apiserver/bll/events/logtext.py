"""Owns a console log as text (``events.download_task_log``): each line by a ``line_format`` of the
line's plain fields, or as a JSON line."""

from __future__ import annotations

import json
import string
import time
from collections.abc import Iterable, Iterator
from typing import Any

from apiserver.apierrors import errors

DEFAULT_FORMAT = "{asctime} {worker} {level} {msg}"
_LINE_FIELDS = {"asctime", "worker", "level", "msg", "timestamp", "iter"}


def check_line_format(line_format: str) -> None:
    """Only the plain line fields: no attribute or index lookups, conversions or nested fields."""
    try:
        parts = list(string.Formatter().parse(line_format))
    except ValueError:
        parts = None
    if parts is None or any(name is not None and (name not in _LINE_FIELDS or conv or "{" in (spec or ""))
                            for _text, name, spec, conv in parts):
        raise errors.bad_request.ValidationError(
            f"field 'line_format': use only the fields {{{'}, {'.join(sorted(_LINE_FIELDS))}}} (rule: lineFormat)",
            error_data={"field": "line_format", "rule": "lineFormat"})


def log_text(lines: Iterable[dict[str, Any]], as_json: bool, line_format: str) -> Iterator[str]:
    """The lines as text, one per line (checked ``line_format``), or as JSON lines."""
    for line in lines:
        if as_json:
            yield json.dumps(line) + "\n"
            continue
        fields = {"asctime": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(line["timestamp"] / 1000)),
                  "worker": line.get("worker", ""), "level": line.get("level", ""), "msg": line.get("msg", ""),
                  "timestamp": line["timestamp"], "iter": line.get("iter", "")}
        text = line_format.format(**fields)
        yield text if text.endswith("\n") else text + "\n"
