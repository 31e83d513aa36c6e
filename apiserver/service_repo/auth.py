"""Owns reading credentials off a request: Bearer tokens, HTTP Basic pairs and the browser's session cookie.

The session cookie (set by ``auth.login`` for a password sign-in, see ``SessionCookie``) is the only
credential a browser sends by itself, so a request authenticated by the cookie alone must prove it
comes from our own pages (CSRF): with a body, a JSON content type (a cross-site form cannot send
one, and a cross-site script cannot without a CORS preflight we never approve); and either the
``X-Clearml-Client`` header (which only script can set) or the browser's own word that the request
is same-origin (``Sec-Fetch-Site: same-origin``, else an ``Origin`` equal to ours). The ClearML web
app's boot calls carry no client header, so the fetch-metadata check is what they pass. The cookie
is ``SameSite=Strict`` besides, so a cross-site request does not even carry it. A plain GET or HEAD
of a read-only endpoint (a debug image in an ``<img src>``) is exempt: it changes nothing, and a
page elsewhere cannot read its answer.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from apiserver.apierrors import errors
from apiserver.bll.auth.identity import SUPER_ROLES, Identity
from apiserver.bll.auth.tokens import TokenService
from apiserver.bll.auth.users import AuthBLL
from apiserver.schema.loader import EndpointSpec

CLIENT_HEADER = "X-Clearml-Client"
# An admin acting as another user of its company (ClearML's header; older clients send X-Trains-).
IMPERSONATE_HEADER = "X-ClearML-Impersonate-As"
LEGACY_IMPERSONATE_HEADER = "X-Trains-Impersonate-As"
JSON_TYPES = ("application/json", "application/json-lines")


def parse_basic(header: str) -> tuple[str, str]:
    """The (key, secret) of a ``Basic`` header value, or 401/21."""
    try:
        raw = base64.b64decode(header.split(None, 1)[1].strip(), validate=True).decode("utf-8")
    except (IndexError, binascii.Error, UnicodeDecodeError, ValueError):
        raise errors.unauthorized.MalformedCredentials("Basic credentials are not base64 'key:secret'") from None
    key, sep, secret = raw.partition(":")
    if not sep or not key or not secret:
        raise errors.unauthorized.MalformedCredentials("Basic credentials are not 'key:secret'")
    return key, secret


@dataclass(frozen=True)
class SessionCookie:
    """The browser session cookie's name and attributes (config ``auth.session_cookie``)."""

    name: str
    secure: bool
    max_age_sec: int

    def attributes(self, secure: bool | None = None) -> dict:
        return {"httponly": True, "samesite": "Strict", "secure": self.secure if secure is None else secure,
                "path": "/"}


@dataclass(frozen=True)
class RequestCredentials:
    """What a request carries that can identify its caller."""

    authorization: str | None = None
    cookie_token: str | None = None
    client_header: str | None = None
    content_type: str | None = None
    has_body: bool = False
    address: str | None = None
    fetch_site: str | None = None  # Sec-Fetch-Site
    origin: str | None = None  # Origin
    own_origin: str | None = None  # scheme://host of this request, as the browser addressed it
    safe_read: bool = False  # a GET or HEAD without a body, of a read-only endpoint


def _same_origin(creds: RequestCredentials) -> bool:
    site = (creds.fetch_site or "").strip().lower()
    if site:
        return site == "same-origin"
    return bool(creds.origin) and creds.origin.rstrip("/") == (creds.own_origin or "").rstrip("/")


class Authenticator:
    def __init__(self, tokens: TokenService, users: AuthBLL):
        self.tokens = tokens
        self.users = users

    def identify(self, header: str | None, address: str | None = None) -> Identity:
        """The caller's identity from an ``Authorization`` header value, or a 401 error."""
        if not header:
            raise errors.unauthorized.NoCredentials("send 'Authorization: Bearer <token>' (see auth.login)")
        scheme, _, rest = header.strip().partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer":
            token = rest.strip()
            if not token:
                raise errors.unauthorized.MalformedCredentials("empty bearer token")
            return self.tokens.verify(token)
        if scheme == "basic":
            key, secret = parse_basic(header)
            return self.users.authenticate_basic(key, secret, address)
        raise errors.unauthorized.BadAuthType("use Bearer or Basic")

    def identify_request(self, creds: RequestCredentials) -> Identity:
        """The identity of a request: its Authorization header, else its session cookie (CSRF-checked)."""
        if creds.authorization or not creds.cookie_token:
            return self.identify(creds.authorization, creds.address)
        ctype = (creds.content_type or "").split(";")[0].strip().lower()
        if creds.has_body and ctype not in JSON_TYPES:
            raise errors.unauthorized.NoCredentials(
                "a request signed in by the session cookie must send its body as application/json")
        if not ((creds.client_header or "").strip() or creds.safe_read or _same_origin(creds)):
            raise errors.unauthorized.NoCredentials(
                f"a request signed in by the session cookie must carry the {CLIENT_HEADER} header "
                "or come from this server's own pages")
        return self.tokens.verify(creds.cookie_token)

    @staticmethod
    def check_role(spec: EndpointSpec, identity: Identity) -> None:
        if identity.role in SUPER_ROLES:
            return
        if spec.allow_roles is not None and identity.role not in spec.allow_roles:
            raise errors.forbidden.RoleNotAllowed(role=identity.role, endpoint=spec.name)
        if identity.role == "guest" and not spec.read_only:
            raise errors.forbidden.RoleNotAllowed("guests may only read", role=identity.role, endpoint=spec.name)
