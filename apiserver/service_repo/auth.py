"""Owns reading credentials off a request: Bearer tokens and HTTP Basic key pairs."""

from __future__ import annotations

import base64
import binascii

from apiserver.apierrors import errors
from apiserver.bll.auth.identity import SUPER_ROLES, Identity
from apiserver.bll.auth.tokens import TokenService
from apiserver.bll.auth.users import AuthBLL
from apiserver.schema.loader import EndpointSpec


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
            return self.users.authenticate_key(key, secret, address)
        raise errors.unauthorized.BadAuthType("use Bearer or Basic")

    @staticmethod
    def check_role(spec: EndpointSpec, identity: Identity) -> None:
        if identity.role in SUPER_ROLES:
            return
        if spec.allow_roles is not None and identity.role not in spec.allow_roles:
            raise errors.forbidden.RoleNotAllowed(role=identity.role, endpoint=spec.name)
        if identity.role == "guest" and not spec.read_only:
            raise errors.forbidden.RoleNotAllowed("guests may only read", role=identity.role, endpoint=spec.name)
