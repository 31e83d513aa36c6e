"""Owns the JSON-lines log format (``apiserver.log_format: json``): one JSON object per record, with the
request's id, endpoint, company and user when the record is written while a request is served."""

from __future__ import annotations

import logging
import time

import orjson
from flask import g, has_request_context

# Fields a record may carry from ``log.info(..., extra={...})`` (the request line's duration and status).
EXTRA_FIELDS = ("duration_ms", "status", "method", "path")


class JsonLinesFormatter(logging.Formatter):
    # Every record of one second shares its date and time: formatted once (a request line is written
    # for every request, so this is on the hot path).
    _second = -1
    _second_text = ""

    def _time(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._second_text}.{int((created - second) * 1000):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        entry: dict = {"time": self._time(record.created), "level": record.levelname, "logger": record.name,
                       "pid": record.process, "message": record.getMessage()}
        if has_request_context():
            seen = vars(g._get_current_object())  # one look-up, not one through the proxy per field
            identity = seen.get("identity")
            entry.update(request_id=seen.get("request_id"), endpoint=seen.get("endpoint"),
                         company=identity.company if identity else None, user=identity.user if identity else None)
        fields = record.__dict__
        for name in EXTRA_FIELDS:
            if name in fields:
                entry[name] = fields[name]
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(entry, default=str).decode()
