"""Upload and download throughput of one large file through /files, as ratios measured in the same
run: on the local-folder store against copying the same file on disk, on the GridFS store against
pymongo's ``gridfs`` writing and reading the same bytes directly (same bucket chunk size). Prints
the server workers' peak memory growth during each upload."""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from uuid import uuid4

import gridfs

from bench.common import ApiServer, PeakMemory

BLOCK = 1 << 20


def multipart(path: str, source: Path, boundary: str) -> Iterator[bytes]:
    """The SDK's upload (one part named by its target path), streamed from the file."""
    yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{path}\"; filename=\"{source.name}\"\r\n"
           "Content-Type: application/octet-stream\r\n\r\n").encode()
    with open(source, "rb") as f:
        while block := f.read(BLOCK):
            yield block
    yield f"\r\n--{boundary}--\r\n".encode()


def best_of(rounds: int, fn: Callable[[], None]) -> float:
    """The shortest of ``rounds`` timings (page cache and load noise hit every side alike)."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def through_files(server: ApiServer, source: Path, target: Path, rounds: int) -> tuple[float, float, int]:
    """(upload seconds, download seconds, largest worker memory growth during uploads)."""
    path = f"bench/{uuid4().hex}/{source.name}"
    growth = 0

    def upload() -> None:
        nonlocal growth
        boundary = uuid4().hex
        with PeakMemory(server.proc.pid) as memory:
            resp = server.http.post(f"{server.base}/files/", data=multipart(path, source, boundary),
                                    headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        assert resp.status_code == 200, resp.text
        growth = max(growth, memory.growth)

    def download() -> None:
        with server.http.get(f"{server.base}/files/{path}", stream=True) as resp, open(target, "wb") as out:
            assert resp.status_code == 200
            for chunk in resp.iter_content(BLOCK):
                out.write(chunk)

    up = best_of(rounds, upload)
    down = best_of(rounds, download)
    assert target.stat().st_size == source.stat().st_size
    return up, down, growth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=int, default=256, help="file size in MiB")
    parser.add_argument("--rounds", type=int, default=3, help="best of this many transfers per side")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-files-"))
    try:
        source, target = work / "source.bin", work / "target.bin"
        with open(source, "wb") as f:
            block = os.urandom(BLOCK)
            for _ in range(args.mb):
                f.write(block)
        size = args.mb * BLOCK
        rate = lambda seconds: size / seconds / 2**20  # noqa: E731 - MiB/s

        copy_s = best_of(args.rounds, lambda: shutil.copyfile(source, target))
        with ApiServer(env={"APISERVER__files__local__dir": str(work / "store")}) as server:
            local_up, local_down, local_mem = through_files(server, source, target, args.rounds)

        with ApiServer(env={"APISERVER__files__backend": "gridfs"}) as server:
            bucket = gridfs.GridFSBucket(server.db, bucket_name="direct", chunk_size_bytes=BLOCK)

            def grid_upload() -> None:
                with open(source, "rb") as f:
                    bucket.upload_from_stream("direct.bin", f)

            def grid_download() -> None:
                with open(target, "wb") as out:
                    bucket.download_to_stream_by_name("direct.bin", out)

            direct_up = best_of(args.rounds, grid_upload)
            direct_down = best_of(args.rounds, grid_download)
            grid_up, grid_down, grid_mem = through_files(server, source, target, args.rounds)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"{args.mb} MiB file, best of {args.rounds}")
    print(f"local store: upload {rate(local_up):.0f} MiB/s, download {rate(local_down):.0f} MiB/s; "
          f"disk copy {rate(copy_s):.0f} MiB/s")
    print(f"  ratio to disk copy: upload {copy_s / local_up:.2f}, download {copy_s / local_down:.2f}; "
          f"worker memory growth during upload {local_mem / 2**20:.1f} MiB")
    print(f"GridFS store: upload {rate(grid_up):.0f} MiB/s, download {rate(grid_down):.0f} MiB/s; "
          f"pymongo gridfs upload {rate(direct_up):.0f} MiB/s, download {rate(direct_down):.0f} MiB/s")
    print(f"  ratio to pymongo gridfs: upload {direct_up / grid_up:.2f}, download {direct_down / grid_down:.2f}; "
          f"worker memory growth during upload {grid_mem / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
