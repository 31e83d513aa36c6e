"""Owns the JSON-lines log format (``apiserver.log_format: json``): one JSON object per record, with the
request's id, endpoint, company and user when the record is written while a request is served."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import orjson
from flask import g, has_request_context

# Fields a record may carry from ``log.info(..., extra={...})`` (the request line's duration and status).
EXTRA_FIELDS = ("duration_ms", "status", "method", "path")


class JsonLinesFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "pid": record.process,
            "message": record.getMessage(),
        }
        if has_request_context():
            identity = g.get("identity")
            entry.update(request_id=g.get("request_id"), endpoint=g.get("endpoint"),
                         company=identity.company if identity else None, user=identity.user if identity else None)
        for name in EXTRA_FIELDS:
            if hasattr(record, name):
                entry[name] = getattr(record, name)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(entry, default=str).decode()
