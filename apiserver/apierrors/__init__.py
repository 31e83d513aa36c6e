"""Owns the server's one error table: typed exceptions generated from ``errors.conf``.

``errors.bad_request.InvalidTaskId("not found", id=task_id)`` carries HTTP code 400, subcode 101
and the message ``invalid task id (not found): id=...``; the dispatcher turns any ``APIError``
into the ClearML envelope or the REST body.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from pyhocon import ConfigFactory

_TABLE = Path(__file__).with_name("errors.conf")


class APIError(Exception):
    """An error the client caused or must know about; never a stack trace on the wire."""

    code: int = 500
    subcode: int = 0
    base_message: str = "error"
    group: str = "server_error"
    name: str = "internal_error"

    def __init__(self, extra_message: str | None = None, error_data: dict | None = None,
                 headers: dict[str, str] | None = None, **details: Any):
        self.extra_message = extra_message
        self.details = details
        self.error_data = dict(error_data or {})
        if "field" in details:  # a rule that names the field it is about says so where clients look
            self.error_data.setdefault("field", details["field"])
        self.headers = headers or {}  # HTTP headers the answer carries (e.g. Retry-After)
        super().__init__(self.message)

    @property
    def message(self) -> str:
        msg = self.base_message
        if self.extra_message:
            msg = f"{msg} ({self.extra_message})"
        if self.details:
            msg += ": " + ", ".join(f"{k}={v}" for k, v in self.details.items())
        return msg


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def _build() -> tuple[SimpleNamespace, dict[tuple[int, int], type[APIError]]]:
    table = ConfigFactory.parse_file(str(_TABLE)).as_plain_ordered_dict()
    groups = {}
    by_code: dict[tuple[int, int], type[APIError]] = {}
    for group, spec in table.items():
        code = int(spec["code"])
        classes = {}
        for name, (subcode, message) in spec["errors"].items():
            cls = type(_camel(name), (APIError,), {
                "code": code, "subcode": int(subcode), "base_message": message,
                "group": group, "name": name, "__module__": __name__,
            })
            if (code, int(subcode)) in by_code:
                raise RuntimeError(f"{_TABLE}: {group}.{name} reuses code {code}/{subcode}")
            by_code[(code, int(subcode))] = cls
            classes[_camel(name)] = cls
        groups[group] = SimpleNamespace(**classes)
    return SimpleNamespace(**groups), by_code


errors, ERRORS_BY_CODE = _build()

__all__ = ["APIError", "errors", "ERRORS_BY_CODE"]
