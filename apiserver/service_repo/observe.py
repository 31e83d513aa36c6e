"""Owns what the server records of each request: its id (``X-Request-Id``, taken from the client when
sane), and on the way out its Prometheus counts and latency and, in JSON log mode, its log line."""

from __future__ import annotations

import logging
import re
import time
from uuid import uuid4

from flask import Flask, Response, g, has_request_context, request

from apiserver import metrics

REQUEST_ID_HEADER = "X-Request-Id"
# An incoming id is kept when it is short and plain (it goes into logs and headers as is).
SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
request_log = logging.getLogger("apiserver.request")


def request_id() -> str:
    """This request's id (the dispatcher's call id), or a new one outside a request."""
    if has_request_context():
        found = g.get("request_id")
        if found is None:
            found = g.request_id = _incoming_or_new()
        return found
    return uuid4().hex


def _incoming_or_new() -> str:
    incoming = request.headers.get(REQUEST_ID_HEADER, "")
    return incoming if SANE_REQUEST_ID.match(incoming) else uuid4().hex


class RequestObserver:
    """Hooks on a Flask app: ``metrics`` counts requests by endpoint and status and times them;
    ``log_requests`` writes one log record per request (the JSON log mode's access log)."""

    def __init__(self, metrics_enabled: bool = True, log_requests: bool = False):
        self.metrics_enabled = metrics_enabled
        self.log_requests = log_requests

    def register(self, app: Flask) -> None:
        app.before_request(self._before)
        app.after_request(self._after)

    @staticmethod
    def _before() -> None:
        seen = vars(g._get_current_object())  # one look-up, not one through the proxy per field
        seen["started"] = time.perf_counter()
        seen["request_id"] = _incoming_or_new()

    def _after(self, response: Response) -> Response:
        seen = vars(g._get_current_object())  # one look-up, not one through the proxy per field
        response.headers[REQUEST_ID_HEADER] = seen.get("request_id") or request_id()
        seconds = time.perf_counter() - seen.get("started", time.perf_counter())
        endpoint = seen.get("endpoint") or _static_or_unknown()
        if self.metrics_enabled:
            metrics.observe_request(endpoint, response.status_code, seconds)
        if self.log_requests and request_log.isEnabledFor(logging.INFO):
            seen["endpoint"] = endpoint
            req = request._get_current_object()
            # made here rather than by request_log.info(): no walk up the stack for the caller's line
            record = request_log.makeRecord(request_log.name, logging.INFO, __file__, 0, "%s %s %d",
                                            (req.method, req.path, response.status_code), None)
            record.duration_ms, record.status = round(seconds * 1000, 3), response.status_code
            record.method, record.path = req.method, req.path
            request_log.handle(record)
        return response


def _static_or_unknown() -> str:
    """The label of a request no endpoint answered: a web app or console file, or nothing known."""
    rule = request.url_rule
    if rule is not None and not rule.endpoint.startswith(("rpc", "rest:")):
        return rule.endpoint  # the web app's and console's own routes: a handful of names
    return metrics.UNKNOWN_ENDPOINT
