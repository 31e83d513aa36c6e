"""Owns reading a ``multipart/form-data`` body as a stream of parts, never holding a whole file.

Werkzeug's form parser spools every file to a temporary file before a handler sees it, and its
incremental decoder copies each byte three or four times; the file server wants the bytes as they
arrive (straight into GridFS, or into the one temporary file it renames), so this reads the body
in blocks and hands out each part's data as slices of those blocks: one scan for the delimiter
and at most one copy per byte. Delimiters are CRLF-framed, as RFC 2046 has them and every
client this serves (the SDK's requests-toolbelt, curl, browsers) writes them. Each part's data
must be read before the next part.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from werkzeug.http import parse_options_header

from apiserver.apierrors import errors

BLOCK = 1 << 20
MAX_HEADER_BYTES = 16 * 1024
MAX_PARTS = 10_000


def _invalid(why: str) -> errors.bad_request.InvalidUpload:
    return errors.bad_request.InvalidUpload(why, error_data={"field": "", "rule": "multipart"})


def boundary_of(content_type: str | None) -> bytes:
    mimetype, options = parse_options_header(content_type or "")
    if mimetype != "multipart/form-data" or not options.get("boundary"):
        raise _invalid("send multipart/form-data whose field names are the target paths")
    return options["boundary"].encode("latin-1")


class _Body:
    """The body as a buffer that refills from the stream block by block."""

    def __init__(self, stream: BinaryIO):
        self.stream = stream
        self.buf = b""

    def fill(self) -> None:
        block = self.stream.read(BLOCK)
        if not block:
            raise _invalid("the body ends inside a part")
        self.buf = self.buf + block if self.buf else block

    def until(self, marker: bytes, limit: int, what: str) -> bytes:
        """Everything up to ``marker`` (consumed, not returned); at most ``limit`` bytes of it."""
        while True:
            at = self.buf.find(marker)
            if at >= 0:
                found, self.buf = self.buf[:at], self.buf[at + len(marker):]
                return found
            if len(self.buf) > limit + len(marker):
                raise _invalid(f"{what} longer than {limit} bytes")
            self.fill()

    def data(self, delimiter: bytes) -> Iterator[memoryview]:
        """The part's data up to ``delimiter``, as views of the blocks read."""
        keep = len(delimiter) - 1  # a delimiter may start in this block and end in the next
        while True:
            at = self.buf.find(delimiter)
            if at >= 0:
                if at:
                    yield memoryview(self.buf)[:at]
                self.buf = self.buf[at + len(delimiter):]
                return
            if len(self.buf) > keep:
                cut = len(self.buf) - keep
                yield memoryview(self.buf)[:cut]
                self.buf = self.buf[cut:]
            self.fill()


def _parse_headers(raw: bytes) -> tuple[str | None, str | None]:
    """(field name, file name) from a part's headers."""
    for line in raw.split(b"\r\n"):
        name, _, value = line.decode("utf-8", "replace").partition(":")
        if name.strip().lower() == "content-disposition":
            _, options = parse_options_header(value.strip())
            return options.get("name"), options.get("filename")
    raise _invalid("a part without Content-Disposition")


def iter_file_parts(stream: BinaryIO, content_type: str | None) -> Iterator[tuple[str, Iterator[memoryview]]]:
    """(field name, data chunks) for every file part; plain form fields are read and skipped.

    A chunk is a memoryview of the bytes read from the stream (no copy).
    """
    boundary = boundary_of(content_type)
    body = _Body(stream)
    body.until(b"--" + boundary, MAX_HEADER_BYTES, "the preamble")
    delimiter = b"\r\n--" + boundary
    for _ in range(MAX_PARTS):
        while len(body.buf) < 2:
            body.fill()
        if body.buf.startswith(b"--"):
            return  # the close delimiter; the epilogue is ignored
        rest = body.until(b"\r\n", MAX_HEADER_BYTES, "a boundary line")
        if rest.strip(b" \t"):
            raise _invalid("text after a boundary")
        name, filename = _parse_headers(body.until(b"\r\n\r\n", MAX_HEADER_BYTES, "part headers"))
        chunks = body.data(delimiter)
        if filename is not None:
            yield name or "", chunks
        for _ in chunks:  # a plain field, or the handler stopped early: skip the rest
            pass
    raise _invalid(f"more than {MAX_PARTS} parts")
