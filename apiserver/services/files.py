"""Handlers of the file server (/files/): multipart uploads in, streamed (ranged) downloads out.

These endpoints are declared in files.conf like every other surface; their http style is
``stream``, so the dispatcher authenticates and validates the path and query but leaves the body
to the handler: an upload goes from the socket to storage block by block, never whole in memory.
"""

from __future__ import annotations

from flask import Response
from werkzeug.exceptions import RequestedRangeNotSatisfiable
from werkzeug.wsgi import wrap_file

from apiserver.service_repo import Call, endpoint
from apiserver.service_repo.dispatcher import dumps
from apiserver.service_repo.multipart import iter_file_parts
from apiserver.state import get_state

DOWNLOAD_BLOCK = 1 << 20


def _files():
    return get_state().files


@endpoint("files.upload")
def upload(call: Call) -> Response:
    length = call.headers.get("Content-Length")
    parts = iter_file_parts(call.stream, call.headers.get("Content-Type"))
    stored = _files().upload(call.identity, parts, int(length) if length and length.isdigit() else None,
                             call.host)
    return Response(dumps(stored), status=200, mimetype="application/json")


@endpoint("files.download")
def download(call: Call) -> Response:
    files = _files()
    reader = files.reader(call.identity)
    found = files.find(reader, call.data["path"])
    shown = files.presentation(found.key, "download" in call.data)
    fileobj = found.open()
    response = Response(wrap_file(call.environ, fileobj, DOWNLOAD_BLOCK), mimetype=shown.mimetype,
                        direct_passthrough=True)
    response.content_length = found.size
    response.last_modified = found.modified
    response.set_etag(found.etag)
    response.cache_control.no_cache = True
    response.headers["X-Content-Type-Options"] = "nosniff"
    # Even a file that slips past the type check can run nothing: no scripts, no origin.
    response.headers["Content-Security-Policy"] = "default-src 'none'; img-src 'self'; sandbox"
    disposition = "inline" if shown.inline else "attachment"
    response.headers.set("Content-Disposition", disposition, filename=shown.download_name)
    try:
        return response.make_conditional(call.environ, accept_ranges=True, complete_length=found.size)
    except RequestedRangeNotSatisfiable:
        fileobj.close()
        return Response(status=416, headers={"Content-Range": f"bytes */{found.size}"})


@endpoint("files.ping")
def ping(call: Call) -> str:
    return "OK"


@endpoint("files.delete")
def delete(call: Call) -> str:
    return _files().delete(call.identity, call.data["path"])


@endpoint("files.delete_many")
def delete_many(call: Call) -> dict:
    return _files().delete_many(call.identity, call.data["files"])
