"""Owns file paths: a client's path as a store key, confined to its company's folder.

A path is relative to the company's store. One leading ``/`` is the store's root (the SDK sends
``/project/task.id/artifacts/...`` and ClearML's file server strips it too); anything still
absolute after that (``//host/share``, ``C:/...``, ``\\\\server``), a ``..`` segment, a backslash or a
control character is refused, so no path can name a file outside the company's folder. Empty and
``.`` segments are dropped (``a//./b`` is ``a/b``).
"""

from __future__ import annotations

import hashlib
import re
import urllib.parse

from apiserver.apierrors import errors

MAX_PATH_LENGTH = 1024
MAX_SEGMENT_LENGTH = 255
_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_PLAIN_COMPANY = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _refuse(path: str, why: str) -> errors.bad_request.InvalidFilePath:
    return errors.bad_request.InvalidFilePath(why, error_data={"field": "path", "rule": "path"}, path=path[:200])


def normalise(path: str, folder: bool = False) -> str:
    """The relative store path of ``path``, or 400/InvalidFilePath saying why not.

    ``folder`` allows a trailing ``/`` (a folder in batch deletes); files never end with one.
    """
    if not isinstance(path, str) or not path:
        raise _refuse(str(path), "empty path")
    if len(path) > MAX_PATH_LENGTH:
        raise _refuse(path, f"longer than {MAX_PATH_LENGTH} characters")
    if _CONTROL.search(path):
        raise _refuse(path, "control characters")
    if "\\" in path:
        raise _refuse(path, "backslashes are not path separators here")
    rest = path[1:] if path.startswith("/") else path
    if rest.startswith("/") or _DRIVE.match(rest):
        raise _refuse(path, "absolute paths are not allowed")
    if rest.endswith("/") and not folder:
        raise _refuse(path, "names a folder, not a file")
    parts = [p for p in rest.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise _refuse(path, "'..' is not allowed")
    if not parts:
        raise _refuse(path, "names no file")
    if any(len(p.encode()) > MAX_SEGMENT_LENGTH for p in parts):
        raise _refuse(path, f"a path segment is longer than {MAX_SEGMENT_LENGTH} bytes")
    return "/".join(parts)


def company_folder(company: str) -> str:
    """The top folder of a company's files: its id when that is a plain name, else a hash of it."""
    if _PLAIN_COMPANY.match(company):
        return company
    return "c" + hashlib.sha256(company.encode()).hexdigest()[:40]


def key_of(company: str, path: str) -> str:
    """The store key of a normalised path of a company."""
    return f"{company_folder(company)}/{path}"


def url_path(url: str, own_prefixes: list[str]) -> str | None:
    """The store path a URL names when it points into this server's file store, else None.

    ``own_prefixes`` are the URLs this server's ``/files`` is reached by (``http://host:port/files``).
    A URL elsewhere (another server, S3, a local path) is not ours and yields None.
    """
    if not isinstance(url, str) or not url:
        return None
    for prefix in own_prefixes:
        base = prefix.rstrip("/") + "/"
        if url.startswith(base):
            raw = urllib.parse.unquote(urllib.parse.urlsplit(url[len(base) - 1:]).path)
            try:
                return normalise(raw, folder=True).rstrip("/")
            except errors.bad_request.InvalidFilePath:
                return None
    return None
