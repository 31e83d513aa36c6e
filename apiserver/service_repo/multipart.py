"""Owns reading a ``multipart/form-data`` body as a stream of parts, never holding a whole file.

Werkzeug's form parser spools every file to a temporary file before a handler sees it; the file
server wants the bytes as they arrive (straight into GridFS, or one temporary file it renames),
so this feeds the body to Werkzeug's incremental decoder in blocks and yields each file part's
name with an iterator over its data. Each part's data must be read before the next part.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import NEED_DATA, Data, Epilogue, Field, File, MultipartDecoder

from apiserver.apierrors import errors

BLOCK = 1 << 20


def _invalid(why: str) -> errors.bad_request.InvalidUpload:
    return errors.bad_request.InvalidUpload(why, error_data={"field": "", "rule": "multipart"})


def boundary_of(content_type: str | None) -> bytes:
    mimetype, options = parse_options_header(content_type or "")
    if mimetype != "multipart/form-data" or not options.get("boundary"):
        raise _invalid("send multipart/form-data whose field names are the target paths")
    return options["boundary"].encode("latin-1")


def iter_file_parts(stream: BinaryIO, content_type: str | None) -> Iterator[tuple[str, Iterator[bytes]]]:
    """(field name, data chunks) for every file part; plain form fields are read and skipped."""
    decoder = MultipartDecoder(boundary_of(content_type), max_parts=10_000)
    finished = False

    def events():
        nonlocal finished
        while True:
            try:
                event = decoder.next_event()
            except ValueError as exc:
                raise _invalid(str(exc)) from None
            if event is NEED_DATA:
                if finished:
                    raise _invalid("the body ends inside a part")
                block = stream.read(BLOCK)
                if not block:
                    finished = True
                decoder.receive_data(block or None)
                continue
            yield event
            if isinstance(event, Epilogue):
                return

    source = events()

    def data() -> Iterator[bytes]:
        for event in source:
            if not isinstance(event, Data):
                raise _invalid("a part without data")
            if event.data:
                yield event.data
            if not event.more_data:
                return

    for event in source:
        if isinstance(event, File):
            chunks = data()
            yield event.name, chunks
            for _ in chunks:  # the handler stopped early: skip the rest of this part
                pass
        elif isinstance(event, Field):
            for _ in data():
                pass
        elif isinstance(event, Epilogue):
            return
