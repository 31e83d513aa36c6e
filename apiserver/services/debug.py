"""Handlers of the debug service: wiring checks for clients."""

from __future__ import annotations

from apiserver.service_repo import Call, endpoint


@endpoint("debug.ping")
def ping(call: Call) -> dict:
    return {"msg": "ping"}


@endpoint("debug.echo")
def echo(call: Call) -> dict:
    text = call.data.get("text", "")
    if call.data.get("upper"):
        text = text.upper()
    return {"text": text, "count": call.data.get("count", 0), "user": call.user, "company": call.company,
            "requested_version": call.requested_version, "actual_version": call.actual_version}
