"""Owns who the members are (config, overridden at run time) and calling them over HTTP.

Every call has a connect and a read timeout and is written to the pipeline log with its answer
and duration; a call never raises: a fault comes back as an answer of None with the error text.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import requests

from apiserver.apierrors import errors
from apiserver.database.model.base import new_id, utcnow
from apiserver.database.model.pipeline import PipelineLog, PipelineMember

# The reference protocol's container ids; operators add more through config or members.register.
REFERENCE_IDS = ("labelling", "bms", "vis2code", "backbone_nas", "neck_nas", "code_gen", "cloud_deploy",
                 "ondevice_deploy")
MEMBER_WORDS = ("ready", "started", "running", "stopped", "failed", "completed")


@dataclass(frozen=True)
class CallResult:
    answer: str | None  # the member's plain-text word, stripped; None when it did not answer
    error: str | None = None


class MemberRegistry:
    def __init__(self, config: dict[str, Any]):
        host = config.get("member_host", "127.0.0.1")
        self._config_urls = {cid: f"http://{host}:{port}" for cid, port in (config.get("member_ports") or {}).items()}
        self._config_urls.update(config.get("member_urls") or {})

    def known_ids(self) -> set[str]:
        registered = {m["_id"] for m in PipelineMember._get_collection().find({"url": {"$exists": True}}, {"_id": 1})}
        return set(REFERENCE_IDS) | set(self._config_urls) | registered

    def check_id(self, container_id: str, field: str = "container_id") -> None:
        if container_id not in self.known_ids():
            raise errors.bad_request.InvalidMemberId(
                f"unknown container id {container_id!r}; known: {sorted(self.known_ids())}",
                error_data={"field": field, "rule": "enum"})

    def url(self, container_id: str) -> str:
        doc = PipelineMember._get_collection().find_one({"_id": container_id}, {"url": 1})
        url = (doc or {}).get("url") or self._config_urls.get(container_id)  # a readiness record has no url
        if not url:
            raise errors.bad_request.InvalidMemberId(f"no URL is known for member {container_id!r}",
                                                     error_data={"field": "container_id", "rule": "registered"})
        return url.rstrip("/")

    def register(self, container_id: str, url: str, user: str) -> None:
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise errors.bad_request.ValidationError("url must be http(s)://host[:port]",
                                                     error_data={"field": "url", "rule": "format"})
        PipelineMember._get_collection().update_one(
            {"_id": container_id}, {"$set": {"url": url.rstrip("/"), "registered_by": user,
                                             "registered": utcnow()}}, upsert=True)

    def all(self) -> list[dict[str, Any]]:
        stored = {m["_id"]: m for m in PipelineMember._get_collection().find()}
        out = []
        for cid in sorted(self.known_ids()):
            doc = stored.get(cid, {})
            url = doc.get("url") or self._config_urls.get(cid)
            out.append({"container_id": cid, "url": url, "source": "registered" if doc.get("url") else "config",
                        "ready": None if doc.get("ready") is None else bool(doc["ready"]),
                        "last_check": doc.get("last_check"), "last_answer": doc.get("last_answer")})
        return out

    def record_readiness(self, container_id: str, result: CallResult) -> bool:
        ready = result.answer == "ready"
        PipelineMember._get_collection().update_one(
            {"_id": container_id}, {"$set": {"ready": int(ready), "last_check": utcnow(),
                                             "last_answer": result.answer or result.error}}, upsert=True)
        return ready

    def addresses_of(self, container_id: str) -> set[str]:
        """The IP addresses the member's registered host name resolves to (empty if unknown)."""
        try:
            host = urlparse(self.url(container_id)).hostname
            return {info[4][0] for info in socket.getaddrinfo(host, None)} if host else set()
        except (errors.bad_request.InvalidMemberId, OSError):
            return set()


class MemberClient:
    def __init__(self, registry: MemberRegistry, connect_timeout: float, read_timeout: float,
                 max_connections: int = 64):
        self.registry = registry
        self.timeout = (connect_timeout, read_timeout)
        self.session = requests.Session()
        # Keep one connection per concurrent caller (the default keeps 10 per host and churns).
        adapter = requests.adapters.HTTPAdapter(pool_connections=16, pool_maxsize=max_connections, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def call(self, container_id: str, command: str, user_id: str, project_id: str,
             pipeline: dict[str, Any] | None = None) -> CallResult:
        """GET <member>/<command>?user_id=&project_id= ; logged; never raises."""
        params = {"user_id": user_id, "project_id": project_id}
        started = time.monotonic()
        try:
            url = f"{self.registry.url(container_id)}/{command}"
            resp = self.session.get(url, params=params, timeout=self.timeout)
            answer = resp.text.strip().strip('"').lower() if resp.status_code == 200 else None
            result = CallResult(answer, None if answer is not None else f"HTTP {resp.status_code}")
        except (requests.RequestException, errors.bad_request.InvalidMemberId) as exc:
            result = CallResult(None, f"{type(exc).__name__}: {exc}"[:500])
        log_call(pipeline, "to_member", container_id, command, params, result,
                 int((time.monotonic() - started) * 1000), project_id)
        return result


class CallLog:
    """Log entries of member calls, written in batches: one insert per heartbeat cycle, not per call.

    ``flush`` runs at the end of every cycle and command and before the log is read; at most a
    cycle's worth of entries waits in memory.
    """

    def __init__(self, max_pending: int = 2000):
        self._pending: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._max = max_pending

    def add(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._pending.append(entry)
            full = len(self._pending) >= self._max
        if full:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            batch, self._pending = self._pending, []
        if batch:
            PipelineLog._get_collection().insert_many(batch, ordered=False)


CALL_LOG = CallLog()


def log_call(pipeline: dict[str, Any] | None, direction: str, container_id: str | None, call: str,
             params: dict[str, Any], result: CallResult | None, duration_ms: int | None = None,
             project_id: str | None = None, note: str | None = None) -> None:
    CALL_LOG.add({
        "_id": new_id(), "company": (pipeline or {}).get("company"), "pipeline": (pipeline or {}).get("_id"),
        "project_id": project_id or (pipeline or {}).get("project_id"), "time": utcnow(), "direction": direction,
        "container_id": container_id, "call": call, "params": params,
        "answer": result.answer if result else None, "error": (result.error if result else None) or note,
        "duration_ms": duration_ms})
