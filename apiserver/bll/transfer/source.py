"""Owns talking to the server an import reads from: one HTTP session, errors that name the problem.

The import does not go through the guarded client of ``bll/outbound.py``, on purpose. That client
protects the server from URLs that API callers choose (server-side request forgery): it refuses
loopback and private addresses unless allowlisted, caps every answer at ``outbound.max_response_bytes``
and hides upstream bodies. Here the URL is the operator's, typed at the shell of a machine that
reaches it anyway, the sources are usually on internal addresses, the files to copy are larger than
any cap (they are streamed to the store), and the operator needs the source's own error message. The
import reads only the ``--from`` server and the file-server prefixes it names; other links are kept
as links and never fetched.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import requests

CHUNK = 1 << 20


class SourceError(Exception):
    """The source cannot be read: unreachable, refused the credentials, or answered an error."""


class HttpSource:
    files_folder = ""  # where its copied files go in this server's store ("": the source's own paths)

    def __init__(self, base_url: str, timeout: float = 60):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        self.headers: dict[str, str] = {}

    def request(self, method: str, url: str, what: str, **kwargs: Any) -> requests.Response:
        try:
            return self.session.request(method, url, headers=self.headers, timeout=self.timeout,
                                        allow_redirects=False, **kwargs)
        except requests.ConnectionError as exc:
            raise SourceError(f"cannot reach {what} at {url}: {_reason(exc)}") from None
        except requests.Timeout:
            raise SourceError(f"{what} at {url} did not answer within {self.timeout:g}s") from None
        except requests.RequestException as exc:
            raise SourceError(f"{what} at {url}: {exc}") from None

    @staticmethod
    def json_body(resp: requests.Response) -> dict[str, Any] | None:
        """The answer's JSON object; None when its body is not one (an HTML error page, a list)."""
        try:
            body = resp.json()
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    def fetch(self, url: str) -> Iterator[bytes]:
        """A file's bytes from the source, streamed."""
        resp = self.request("GET", url, "the source's file server", stream=True)
        if resp.status_code != 200:
            resp.close()
            raise SourceError(f"HTTP {resp.status_code} for {url}")
        return _chunks(resp)


def _chunks(resp: requests.Response) -> Iterator[bytes]:
    with resp:
        yield from resp.iter_content(CHUNK)


def _reason(exc: Exception) -> str:
    text = str(exc)
    for marker in ("Connection refused", "Name or service not known", "No route to host", "timed out",
                   "Temporary failure in name resolution"):
        if marker in text:
            return marker.lower()
    return text[:200]
