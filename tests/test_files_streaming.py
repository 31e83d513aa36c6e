"""A 2 GiB file through a real server process, both ways, without the server holding it: the
workers' memory stays within 100 MB of where it started, and the bytes come back the same.
FILES_STREAM_TEST_MB sets the size (2048 by default)."""

from __future__ import annotations

import hashlib
import os
from uuid import uuid4

import requests

from bench.common import PeakMemory

BLOCK = 1 << 20
SIZE_MB = int(os.environ.get("FILES_STREAM_TEST_MB", "2048"))
MAX_GROWTH = 100 * 1024 * 1024


def multipart(path: str, blocks: int, block: bytes, boundary: str):
    """A multipart body streamed block by block (requests sends it chunked)."""
    yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{path}\"; filename=\"big.bin\"\r\n"
           f"Content-Type: application/octet-stream\r\n\r\n").encode()
    for _ in range(blocks):
        yield block
    yield f"\r\n--{boundary}--\r\n".encode()


def test_two_gib_upload_and_download_stream(server, admin):
    block = os.urandom(BLOCK)
    expected = hashlib.sha256()
    for _ in range(SIZE_MB):
        expected.update(block)
    path = f"stream-{uuid4().hex[:8]}/big.bin"
    boundary = uuid4().hex
    headers = {"Authorization": admin.auth, "Content-Type": f"multipart/form-data; boundary={boundary}"}
    with PeakMemory(server.proc.pid) as upload_memory:
        resp = requests.post(f"{server.base_url}/files/", data=multipart(path, SIZE_MB, block, boundary),
                             headers=headers, timeout=600)
    assert resp.status_code == 200, resp.text
    assert resp.json() == [path]
    assert upload_memory.growth < MAX_GROWTH, f"workers grew by {upload_memory.growth / 2**20:.0f} MiB"

    got = hashlib.sha256()
    size = 0
    with PeakMemory(server.proc.pid) as download_memory, requests.get(
            f"{server.base_url}/files/{path}", headers={"Authorization": admin.auth}, stream=True, timeout=600) as r:
        assert r.status_code == 200
        assert int(r.headers["Content-Length"]) == SIZE_MB * BLOCK
        for chunk in r.iter_content(BLOCK):
            got.update(chunk)
            size += len(chunk)
    assert size == SIZE_MB * BLOCK and got.hexdigest() == expected.hexdigest()
    assert download_memory.growth < MAX_GROWTH, f"workers grew by {download_memory.growth / 2**20:.0f} MiB"
    # a range from the far end comes straight from there
    tail = requests.get(f"{server.base_url}/files/{path}", headers={"Authorization": admin.auth,
                                                                     "Range": f"bytes={SIZE_MB * BLOCK - 16}-"})
    assert tail.status_code == 206 and tail.content == block[-16:]
    print(f"{SIZE_MB} MiB: worker memory growth {upload_memory.growth / 2**20:.1f} MiB uploading, "
          f"{download_memory.growth / 2**20:.1f} MiB downloading")
    assert requests.delete(f"{server.base_url}/files/{path}", headers={"Authorization": admin.auth}).ok
