"""Owns who the members are (config, overridden per company at run time) and calling them over HTTP.

Members declared in config (``pipeline.member_ports`` / ``member_urls``) are the operator's and
shared by every company. ``members.register`` records a URL for the registering company only, and
readiness is recorded per company too: a pipeline calls the URL its own company registered, else
the config URL, so one company's admin can never point another company's pipelines anywhere.

Every call goes through the guarded outbound client (config members' hosts are allowed for calls
to them; registered URLs get only ``outbound.allow_hosts``), has a connect and a read timeout and
is written to the pipeline log with its answer and duration; a call never raises: a fault comes
back as an answer of None with a short summary.
"""

from __future__ import annotations

import functools
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlparse

from apiserver.apierrors import errors
from apiserver.bll.outbound import AddressPolicy, OutboundClient, OutboundError
from apiserver.bll.registry.secrets import masked_url
from apiserver.config.settings import PipelineSettings
from apiserver.database.model.base import new_id, utcnow
from apiserver.database.model.pipeline import PipelineLog, PipelineMember
from apiserver.database.store import store_of

# The reference protocol's container ids; operators add more through config or members.register.
REFERENCE_IDS = ("labelling", "bms", "vis2code", "backbone_nas", "neck_nas", "code_gen", "cloud_deploy",
                 "ondevice_deploy")
MEMBER_WORDS = ("ready", "started", "running", "stopped", "failed", "completed")


@dataclass(frozen=True)
class CallResult:
    answer: str | None  # the member's plain-text word, stripped; None when it did not answer
    error: str | None = None


def _key(company: str, container_id: str) -> str:
    return f"{company}:{container_id}"


class MemberRegistry:
    def __init__(self, settings: PipelineSettings, policy: AddressPolicy | None = None):
        host = settings.member_host
        self._config_urls = {cid: f"http://{host}:{port}" for cid, port in settings.member_ports.items()}
        self._config_urls.update(settings.member_urls)
        self.policy = policy or AddressPolicy()

    @property
    def store(self):
        return store_of(PipelineMember)

    def config_hosts(self) -> set[str]:
        """Hosts of the operator's members (config), allowed for calls to those members."""
        return {h for h in (urlparse(u).hostname for u in self._config_urls.values()) if h}

    def known_ids(self, company: str | None) -> set[str]:
        """Reference, config and the company's registered ids (every company's when ``company`` is None:
        an unauthenticated status report names no company)."""
        flt: dict[str, Any] = {"url": {"$exists": True}}
        if company is not None:
            flt["company"] = company
        registered = {m["container_id"] for m in self.store.find(flt, {"container_id": 1}) if m.get("container_id")}
        return set(REFERENCE_IDS) | set(self._config_urls) | registered

    def check_id(self, container_id: str, company: str | None, field: str = "container_id",
                 list_known: bool = True) -> None:
        """400 for an unknown member id; the known ids are listed only to a signed-in caller."""
        known = self.known_ids(company)
        if container_id not in known:
            listing = f"; known: {sorted(known)}" if list_known else ""
            raise errors.bad_request.InvalidMemberId(f"unknown container id {container_id!r}{listing}",
                                                     error_data={"field": field, "rule": "enum"})

    def resolve(self, container_id: str, company: str) -> tuple[str, bool]:
        """(the URL a pipeline of ``company`` calls, whether it is the operator's config URL)."""
        doc = self.store.find_one({"_id": _key(company, container_id)}, {"url": 1})
        if doc and doc.get("url"):  # a readiness record has no url
            return doc["url"].rstrip("/"), False
        url = self._config_urls.get(container_id)
        if not url:
            raise errors.bad_request.InvalidMemberId(f"no URL is known for member {container_id!r}",
                                                     error_data={"field": "container_id", "rule": "registered"})
        return url.rstrip("/"), True

    def url(self, container_id: str, company: str) -> str:
        return self.resolve(container_id, company)[0]

    def register(self, company: str, container_id: str, url: str, user: str) -> None:
        problem = self.policy.base_url_problem(url)
        if problem:
            raise errors.bad_request.ValidationError(f"url {problem[0]}",
                                                     error_data={"field": "url", "rule": problem[1]})
        self.store.update_one(
            {"_id": _key(company, container_id)},
            {"$set": {"company": company, "container_id": container_id, "url": url.rstrip("/"),
                      "registered_by": user, "registered": utcnow()}}, upsert=True)

    def unregister(self, company: str, container_id: str) -> None:
        """Forget the URL ``company`` registered for a member, and its readiness with it (it was that
        URL's): a config member falls back to its config URL, any other id is no longer known."""
        gone = self.store.delete_one({"_id": _key(company, container_id), "url": {"$exists": True}})
        if not gone.deleted_count:
            where = "config members are the operator's, changed in config" if container_id in self._config_urls \
                else "nothing to remove"
            raise errors.bad_request.InvalidMemberId(
                f"{container_id!r} has no URL registered by this workspace ({where})",
                error_data={"field": "container_id", "rule": "registered"})

    def all(self, company: str) -> list[dict[str, Any]]:
        stored = {m["container_id"]: m for m in self.store.find({"company": company}) if m.get("container_id")}
        out = []
        for cid in sorted(self.known_ids(company)):
            doc = stored.get(cid, {})
            url = doc.get("url") or self._config_urls.get(cid)
            out.append({"container_id": cid, "url": masked_url(url) if url else None,
                        "source": "registered" if doc.get("url") else "config",
                        "ready": None if doc.get("ready") is None else bool(doc["ready"]),
                        "last_check": doc.get("last_check"), "last_answer": doc.get("last_answer")})
        return out

    def record_readiness(self, container_id: str, company: str, result: CallResult) -> bool:
        ready = result.answer == "ready"
        self.store.update_one(
            {"_id": _key(company, container_id)},
            {"$set": {"company": company, "container_id": container_id, "ready": int(ready),
                      "last_check": utcnow(), "last_answer": result.answer or result.error}}, upsert=True)
        return ready

    def addresses_of(self, container_id: str, company: str) -> set[str]:
        """The IP addresses the member's host name (as ``company`` calls it) resolves to (empty if unknown)."""
        try:
            host = urlparse(self.url(container_id, company)).hostname
            return {info[4][0] for info in socket.getaddrinfo(host, None)} if host else set()
        except (errors.bad_request.InvalidMemberId, OSError):
            return set()


class MemberClient:
    """Calls members through the guarded outbound clients; pooled, so a heartbeat reuses connections."""

    def __init__(self, registry: MemberRegistry, strict: OutboundClient, trusted: OutboundClient | None = None):
        self.registry = registry
        self.strict = strict  # registered URLs: outbound.allow_hosts only
        self.trusted = trusted or strict  # the operator's config URLs: their hosts allowed too

    @property
    def longest_call_sec(self) -> float:
        """How long one call can take at most before its timeouts end it."""
        return max(sum(c.timeout) for c in (self.strict, self.trusted))

    def call(self, container_id: str, command: str, user_id: str, project_id: str,
             pipeline: dict[str, Any] | None = None, company: str | None = None) -> CallResult:
        """GET <member>/<command>?user_id=&project_id= ; logged; never raises."""
        params = {"user_id": user_id, "project_id": project_id}
        company = company or (pipeline or {}).get("company") or ""
        started = time.monotonic()
        try:
            url, from_config = self.registry.resolve(container_id, company)
            client = self.trusted if from_config else self.strict
            resp = client.request("GET", f"{url}/{command}", what=f"member {container_id}", params=params)
            answer = resp.text.strip().strip('"').lower() if resp.status == 200 else None
            result = CallResult(answer, None if answer is not None else f"HTTP {resp.status}")
        except OutboundError as exc:
            result = CallResult(None, str(exc)[:500])
        except errors.bad_request.InvalidMemberId as exc:
            result = CallResult(None, f"InvalidMemberId: {exc}"[:500])
        log_call(pipeline, "to_member", container_id, command, params, result,
                 int((time.monotonic() - started) * 1000), project_id)
        return result


T = TypeVar("T")


class LogBatch:
    """Call-log entries written together: at the end of the batch, or whenever ``max_pending`` wait."""

    def __init__(self, max_pending: int):
        self._pending: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._max = max_pending

    def add(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._pending.append(entry)
            full = len(self._pending) >= self._max
        if full:
            self.write()

    def write(self) -> None:
        with self._lock:
            entries, self._pending = self._pending, []
        if entries:
            store_of(PipelineLog).insert_many(entries, ordered=False)


class CallLog:
    """The log of member calls. An entry logged inside ``batch()`` is written when the batch ends
    (a command, a report, a heartbeat cycle: one insert, not one per call); one logged outside any
    batch is written at once. No caller flushes by hand, so no entry is left behind."""

    def __init__(self, max_pending: int = 2000):
        self._max = max_pending
        self._local = threading.local()

    def new_batch(self) -> LogBatch:
        """A batch several threads share (``batch(shared)``); its owner calls ``write`` once all are done."""
        return LogBatch(self._max)

    @contextmanager
    def batch(self, shared: LogBatch | None = None) -> Iterator[None]:
        """This thread's entries go to ``shared``, or to a batch of its own written when the outermost
        ``batch()`` of the thread ends, error or not."""
        outer = getattr(self._local, "batch", None)
        own = shared is None and outer is None
        self._local.batch = shared or outer or LogBatch(self._max)
        try:
            yield
        finally:
            current, self._local.batch = self._local.batch, outer
            if own:
                current.write()

    def batched(self, fn: Callable[..., T], shared: LogBatch | None = None) -> Callable[..., T]:
        """``fn`` running inside ``batch(shared)`` (as a decorator: in a batch of its own)."""
        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> T:
            with self.batch(shared):
                return fn(*args, **kwargs)
        return run

    def add(self, entry: dict[str, Any]) -> None:
        current = getattr(self._local, "batch", None)
        if current is None:
            store_of(PipelineLog).insert_one(entry)
        else:
            current.add(entry)


CALL_LOG = CallLog()


def note_ignored_report(pipeline: dict[str, Any] | None, container_id: str, params: dict[str, Any], note: str) -> None:
    """Record a member report the leader ignores: one record per pipeline and member, overwritten
    with the latest report and counted, so that open ``/status_report`` calls cannot grow the log."""
    store_of(PipelineLog).update_one(
        {"_id": f"ignored-report:{(pipeline or {}).get('_id') or '-'}:{container_id}"},
        {"$set": {"company": (pipeline or {}).get("company"), "pipeline": (pipeline or {}).get("_id"),
                  "project_id": (pipeline or {}).get("project_id"), "time": utcnow(), "direction": "from_member",
                  "container_id": container_id, "call": "status_report", "params": params, "answer": None,
                  "error": note, "duration_ms": None},
         "$inc": {"count": 1}}, upsert=True)


def log_call(pipeline: dict[str, Any] | None, direction: str, container_id: str | None, call: str,
             params: dict[str, Any], result: CallResult | None, duration_ms: int | None = None,
             project_id: str | None = None, note: str | None = None) -> None:
    CALL_LOG.add({
        "_id": new_id(), "company": (pipeline or {}).get("company"), "pipeline": (pipeline or {}).get("_id"),
        "project_id": project_id or (pipeline or {}).get("project_id"), "time": utcnow(), "direction": direction,
        "container_id": container_id, "call": call, "params": params,
        "answer": result.answer if result else None, "error": (result.error if result else None) or note,
        "duration_ms": duration_ms})
