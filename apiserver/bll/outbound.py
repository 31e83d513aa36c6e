"""Owns every HTTP call the server itself makes: one guarded client that reaches only allowed addresses.

The rules (issue 11, server-side request forgery):

- A destination's addresses are checked after DNS resolution, at connect time, and the socket
  connects to the very address that was checked: there is no second lookup for a rebinding DNS
  server to answer differently. Host header, TLS SNI and certificate checks keep the URL's name.
- Loopback, link-local (169.254.0.0/16 with the cloud metadata address, fe80::/10), private
  (10/8, 172.16/12, 192.168/16, fc00::/7), shared (100.64/10), multicast, unspecified and reserved
  addresses are refused unless ``outbound.allow_hosts`` names the host: a host name (exactly as in
  the URL), an IP address or a CIDR range.
- Redirects are never followed: a 3xx is an error (a redirect would be a second, unchecked URL).
- Connect and read timeouts, a total deadline for the answer, and ``outbound.max_response_bytes``:
  an answer is read in pieces and reading stops past the cap.
- Proxy environment variables are ignored: through a proxy the checked address would be the proxy's.
- Errors are short summaries ("HTTP 500 from the registry", "refused: 127.0.0.1 is a loopback
  address") that never carry the upstream's body, so no caller can use the server to read a page.
"""

from __future__ import annotations

import base64
import ipaddress
import json as jsonlib
import re
import socket
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlencode, urlsplit, urlunsplit

import certifi
import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    MaxRetryError,
    NameResolutionError,
    NewConnectionError,
    ReadTimeoutError,
    SSLError,
)
from urllib3.util.timeout import _DEFAULT_TIMEOUT

from apiserver.config.settings import OutboundSettings

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_HOST_NAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62}))*\.?$")
_READ_PIECE = 64 * 1024


class OutboundError(Exception):
    """A call failed. ``str(error)`` is a short summary that is safe to show a caller."""


class OutboundRefused(OutboundError):
    """The destination is not an address the server may call."""


def refused_kind(addr: Address) -> str | None:
    """Why an address is not called without an allowlist entry ("a loopback address"), or None."""
    if isinstance(addr, ipaddress.IPv6Address):
        # An IPv4 address wrapped in IPv6 is judged as the IPv4 address it reaches.
        teredo = addr.teredo[1] if addr.teredo else None
        for inner in (addr.ipv4_mapped, addr.sixtofour, teredo):
            if inner is not None and (kind := refused_kind(inner)):
                return kind
    for attr, kind in (("is_loopback", "a loopback"), ("is_link_local", "a link-local"),
                       ("is_multicast", "a multicast"), ("is_unspecified", "an unspecified"),
                       ("is_reserved", "a reserved"), ("is_private", "a private")):
        if getattr(addr, attr):
            return f"{kind} address"
    return None if addr.is_global else "a non-public address"


def _address(text: str) -> Address:
    return ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone id


class AddressPolicy:
    """Which addresses may be called: public ones, and whatever ``allow_hosts`` names."""

    def __init__(self, allow_hosts: list[str] | tuple[str, ...] = ()):
        self.names: frozenset[str] = frozenset()
        self.networks: tuple[Network, ...] = ()
        names, networks = set(), []
        for entry in allow_hosts or ():
            text = str(entry).strip()
            try:
                networks.append(ipaddress.ip_network(text.strip("[]"), strict=False))
                continue
            except ValueError:
                pass
            if not _HOST_NAME.match(text):
                raise ValueError(f"outbound.allow_hosts: {entry!r} is not a host name, an IP address or a CIDR range")
            names.add(text.lower().rstrip("."))
        self.names, self.networks = frozenset(names), tuple(networks)

    def also_allowing(self, hosts: list[str] | set[str]) -> AddressPolicy:
        """This policy with more entries (the operator's own member hosts, say)."""
        return AddressPolicy([*self.names, *map(str, self.networks), *hosts])

    def _named(self, host: str) -> bool:
        return host.lower().strip("[]").rstrip(".") in self.names

    def refusal(self, host: str, addr: Address) -> str | None:
        """None when ``host`` (resolved to ``addr``) may be called, else the refusal's summary."""
        if self._named(host) or any(addr.version == net.version and addr in net for net in self.networks):
            return None
        kind = refused_kind(addr)
        if kind is None:
            return None
        try:
            literal = _address(host.strip("[]")) == addr
        except ValueError:
            literal = False
        if literal:
            return f"refused: {host.strip('[]')} is {kind}"
        return f"refused: {host} resolves to {addr}, {kind}"

    def literal_refusal(self, url: str) -> str | None:
        """The refusal for a URL whose host is an IP address, without any DNS lookup (for a 400 when
        the URL is stored; names are resolved, and checked, when they are called)."""
        try:
            host = urlsplit(url).hostname
            addr = _address(host) if host else None
        except ValueError:
            return None
        return self.refusal(host, addr) if addr is not None else None

    def base_url_problem(self, url: str) -> tuple[str, str] | None:
        """(what is wrong, rule) with a base URL the server will call, or None. Checked when a URL is
        stored, so the caller gets a 400 then rather than a failed call later."""
        try:
            parts = urlsplit(url)
        except ValueError:
            return "is not a URL", "format"
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return "must be http(s)://host[:port][/path]", "format"
        refusal = self.literal_refusal(url)
        if refusal:
            return f"{refusal} (outbound.allow_hosts does not name it)", "outbound"
        if parts.fragment or url.endswith("#"):
            return "must not have a #fragment: it would cut off the path the server adds", "format"
        return None


class _GuardedConnection:
    """urllib3 connection whose socket goes only to addresses the policy allows."""

    policy: AddressPolicy

    def _new_conn(self) -> socket.socket:
        host = self._dns_host.strip("[]")
        try:
            infos = socket.getaddrinfo(host, self.port, 0, socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc
        refusal, error = None, None
        for family, kind, proto, _, sockaddr in infos:
            refusal_here = self.policy.refusal(self.host, _address(sockaddr[0]))
            if refusal_here:
                refusal = refusal or refusal_here
                continue
            sock = socket.socket(family, kind, proto)
            try:
                for option in self.socket_options or ():
                    sock.setsockopt(*option)
                if self.timeout is not _DEFAULT_TIMEOUT:
                    sock.settimeout(self.timeout)
                if self.source_address:
                    sock.bind(self.source_address)
                sock.connect(sockaddr)  # the checked address itself: no second lookup
                return sock
            except TimeoutError as exc:
                sock.close()
                raise ConnectTimeoutError(self, f"connect to {self.host} timed out") from exc
            except OSError as exc:
                sock.close()
                error = exc
        if error is None and refusal:
            raise OutboundRefused(refusal)
        raise NewConnectionError(self, f"Failed to establish a new connection: {error}")


def _pool_manager(policy: AddressPolicy, hosts: int, per_host: int) -> urllib3.PoolManager:
    http_conn = type("GuardedHTTPConnection", (_GuardedConnection, HTTPConnection), {"policy": policy})
    https_conn = type("GuardedHTTPSConnection", (_GuardedConnection, HTTPSConnection), {"policy": policy})
    manager = urllib3.PoolManager(num_pools=hosts, maxsize=per_host, block=False, retries=False,
                                  cert_reqs="CERT_REQUIRED", ca_certs=certifi.where())
    manager.pool_classes_by_scheme = {
        "http": type("GuardedHTTPConnectionPool", (HTTPConnectionPool,), {"ConnectionCls": http_conn}),
        "https": type("GuardedHTTPSConnectionPool", (HTTPSConnectionPool,), {"ConnectionCls": https_conn}),
    }
    return manager


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body as JSON; ValueError when it is not."""
        return jsonlib.loads(self.body)


class OutboundClient:
    """The one HTTP client for calls the server makes; thread-safe, pooled per host."""

    def __init__(self, policy: AddressPolicy, max_response_bytes: int = 10 << 20,
                 timeout: tuple[float, float] = (3.0, 30.0), hosts: int = 32, per_host: int = 10):
        self.policy = policy
        self.max_response_bytes = int(max_response_bytes)
        self.timeout = timeout
        self._pool = _pool_manager(policy, hosts, per_host)

    @classmethod
    def from_settings(cls, settings: OutboundSettings, **kwargs: Any) -> OutboundClient:
        """The client for the ``outbound.*`` settings; ``kwargs`` override the pool size or timeouts."""
        kwargs.setdefault("timeout", settings.timeout)
        return cls(AddressPolicy(list(settings.allow_hosts)), settings.max_response_bytes, **kwargs)

    def request(self, method: str, url: str, *, what: str, params: dict[str, Any] | None = None,
                json: Any = None, headers: dict[str, str] | None = None,
                timeout: tuple[float, float] | None = None) -> Answer:
        """Call ``url``; any status but a 3xx comes back as an Answer. ``what`` names the upstream in
        errors ("the registry"). Raises OutboundError (OutboundRefused) with a short summary."""
        connect, read = timeout or self.timeout
        try:
            url, hdrs = _split_credentials(url)
            parts = urlsplit(url)
        except ValueError:  # e.g. an unclosed IPv6 bracket in a stored URL
            raise OutboundError(f"the URL of {what} is not usable") from None
        hdrs.update({"Accept-Encoding": "identity", "User-Agent": "apiserver"})
        hdrs.update(headers or {})
        query = "&".join(q for q in (parts.query, urlencode(params or {})) if q)
        url = urlunsplit(parts._replace(query=query, fragment=""))  # a fragment is never sent, nor hides a path
        body = None
        if json is not None:
            body = jsonlib.dumps(json).encode()
            hdrs["Content-Type"] = "application/json"
        deadline = time.monotonic() + connect + read
        try:
            resp = self._pool.urlopen(method, url, body=body, headers=hdrs, redirect=False, retries=False,
                                      preload_content=False, timeout=urllib3.Timeout(connect=connect, read=read))
        except OutboundError:
            raise
        except MaxRetryError as exc:  # not raised with retries=False; mapped the same way if it ever is
            raise OutboundError(_summary(exc.reason, what, connect, read)) from None
        except (HTTPError, OSError, ValueError) as exc:
            raise OutboundError(_summary(exc, what, connect, read)) from None
        complete = False
        try:
            if 300 <= resp.status < 400:
                raise OutboundError(f"HTTP {resp.status} from {what}: redirects are not followed")
            answer = Answer(resp.status, self._read(resp, what, deadline), dict(resp.headers))
            complete = True
            return answer
        finally:
            if complete:
                resp.release_conn()  # read to the end: the connection goes back to the pool
            else:
                resp.close()  # a partly read answer's connection is dropped, never reused

    def _read(self, resp: urllib3.BaseHTTPResponse, what: str, deadline: float) -> bytes:
        cap = self.max_response_bytes
        declared = resp.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > cap:
            raise OutboundError(f"the answer of {what} is over {cap} bytes")
        pieces, size = [], 0
        try:
            while True:
                piece = resp.read1(_READ_PIECE)
                if not piece:
                    break
                size += len(piece)
                if size > cap:
                    raise OutboundError(f"the answer of {what} is over {cap} bytes")
                if time.monotonic() > deadline:
                    raise OutboundError(f"{what} did not finish its answer in time")
                pieces.append(piece)
        except (HTTPError, OSError) as exc:
            raise OutboundError(_summary(exc, what, 0, 0)) from None
        return b"".join(pieces)


def _split_credentials(url: str) -> tuple[str, dict[str, str]]:
    """The URL without ``user:password@`` and the Basic header those make (as requests sends them)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, {}
    netloc = parts.netloc.rpartition("@")[2]
    pair = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}".encode()
    return urlunsplit(parts._replace(netloc=netloc)), {"Authorization": "Basic " + base64.b64encode(pair).decode()}


def _summary(exc: BaseException, what: str, connect: float, read: float) -> str:
    if isinstance(exc, OutboundError):
        return str(exc)
    # Subclasses first: NameResolutionError < NewConnectionError < ConnectTimeoutError in urllib3.
    if isinstance(exc, NameResolutionError):
        return f"the host of {what} cannot be resolved"
    if isinstance(exc, NewConnectionError):
        return f"could not connect to {what}"
    if isinstance(exc, ConnectTimeoutError):
        return f"{what} did not accept a connection within {connect:g}s"
    if isinstance(exc, ReadTimeoutError | TimeoutError):
        return f"{what} did not answer within {read:g}s" if read else f"{what} stopped answering"
    if isinstance(exc, SSLError):
        return f"TLS with {what} failed"
    if isinstance(exc, ValueError):
        return f"the URL of {what} is not usable"
    return f"the connection to {what} failed"
