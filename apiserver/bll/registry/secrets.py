"""Owns the secrets in connector init dicts: which values are secret, how they are shown, how they are kept.

- A value is secret when its connector class declares its key (``SECRET_KEYS``) or its key's name
  says so (``*_pat``, ``*token``, ``*secret``, ``*password``, ``api_key``, ``apiKey``, ``access_key``
  ...); a URL with a password (``https://user:pass@host``) or a secret-named query parameter
  (``?api_key=...``) holds one too.
- Answers show a secret as ``********`` (a URL keeps everything but the password and such parameters).
- At rest a secret value is sealed with AES-GCM: ``{"sealed": "v1:<base64 nonce+ciphertext>",
  "shown": <its masked form>}``, bound to the deployment key and its place in the dict, so a sealed
  value cannot be moved to another deployment or field. It is opened only to build a connector.
- The key is ``registry.secrets_key`` (any string; HKDF-SHA256 makes the AES key of it), else one
  generated once per deployment and kept in the database. The generated key protects dumps, backups
  and logs of the deployments collection, not a stolen database: set your own from a secret store.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from apiserver.apierrors import errors
from apiserver.bll.secret_names import secret_name

MASK = "********"
_VERSION = "v1"
def masked_url(value: str) -> str:
    """``value`` with a URL's password and secret-named query values masked; other text unchanged."""
    try:
        parts = urlsplit(value)
    except ValueError:
        return value
    if not (parts.scheme and parts.netloc):
        return value
    netloc, query = parts.netloc, parts.query
    if parts.password:
        userinfo, _, hostport = netloc.rpartition("@")
        netloc = f"{userinfo.partition(':')[0]}:{MASK}@{hostport}"
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(secret_name(k) for k, _ in pairs):
            query = urlencode([(k, MASK if secret_name(k) and v else v) for k, v in pairs], safe="*")
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def shown(value: Any, key: str = "", declared: tuple[str, ...] = ()) -> Any:
    """What an answer shows of an init value (stored plainly or sealed)."""
    if _is_sealed(value):
        return value["shown"]
    if secret_name(key, declared) and value not in (None, ""):
        return MASK
    if isinstance(value, str):
        return masked_url(value)
    if isinstance(value, dict):
        return {k: shown(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [shown(v, key) for v in value]
    return value


def _is_sealed(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"sealed", "shown"} and isinstance(value["sealed"], str)


class SecretBox:
    """Seals and opens secret init values with AES-GCM."""

    def __init__(self, key_material: str):
        if not key_material:
            raise ValueError("registry.secrets_key is empty")
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                   info=b"apiserver registry secrets v1").derive(key_material.encode())
        self._aead = AESGCM(key)

    @staticmethod
    def generate_key() -> str:
        return secrets.token_urlsafe(32)

    def seal_init(self, init: dict[str, Any], declared: tuple[str, ...], context: str) -> dict[str, Any]:
        """The init dict as it is stored: every secret value sealed, the rest as it is."""
        return {k: self._seal_value(v, k, declared, f"{context}.{k}") for k, v in init.items()}

    def _seal_value(self, value: Any, key: str, declared: tuple[str, ...], where: str) -> Any:
        if _is_sealed(value):  # would be taken for a sealed secret when the connector is built
            field = where.partition("/")[2]
            raise errors.bad_request.ValidationError(
                f"field '{field}' has the shape the server keeps sealed secrets in ({{sealed, shown}})",
                error_data={"field": field, "rule": "format"})
        if secret_name(key, declared) and value not in (None, ""):
            return self._seal(value, MASK, where)
        if isinstance(value, str):
            masked = masked_url(value)
            return value if masked == value else self._seal(value, masked, where)
        if isinstance(value, dict):
            return {k: self._seal_value(v, k, (), f"{where}.{k}") for k, v in value.items()}
        if isinstance(value, list):
            return [self._seal_value(v, key, (), f"{where}.{i}") for i, v in enumerate(value)]
        return value

    def _seal(self, value: Any, masked: Any, where: str) -> dict[str, str]:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, json.dumps(value).encode(), where.encode())
        return {"sealed": f"{_VERSION}:{base64.b64encode(nonce + sealed).decode()}", "shown": masked}

    def open_init(self, stored: dict[str, Any], context: str) -> dict[str, Any]:
        """The init dict a connector is built with (sealed values opened; plain ones as stored)."""
        return {k: self._open_value(v, f"{context}.{k}") for k, v in stored.items()}

    def _open_value(self, value: Any, where: str) -> Any:
        if _is_sealed(value):
            version, _, payload = value["sealed"].partition(":")
            try:
                if version != _VERSION:
                    raise ValueError(version)
                raw = base64.b64decode(payload)
                return json.loads(self._aead.decrypt(raw[:12], raw[12:], where.encode()))
            except (InvalidTag, ValueError):
                raise errors.server_error.ConfigError(
                    f"a secret of this deployment ({where}) cannot be opened with the current "
                    "registry.secrets_key (was the key changed?); create the deployment again") from None
        if isinstance(value, dict):
            return {k: self._open_value(v, f"{where}.{k}") for k, v in value.items()}
        if isinstance(value, list):
            return [self._open_value(v, f"{where}.{i}") for i, v in enumerate(value)]
        return value
