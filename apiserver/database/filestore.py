"""Owns where file bytes live: one small interface, a local folder and GridFS behind it (the file
server's rules, paths and access are ``bll/files``).

Keys are ``<company folder>/<path>`` (see ``paths``). Uploads are two-phase so a request with
several files is all or nothing: ``begin`` returns an ``Upload`` that takes chunks, ``finish``
makes them durable out of sight, ``publish`` puts them under their key in one step (replacing an
older file) and ``abort`` leaves nothing behind. Readers never see a partial file.
"""

from __future__ import annotations

import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import gridfs
from bson import Binary

from apiserver.apierrors import errors
from apiserver.config.settings import FilesSettings

INCOMING = ".incoming"  # not a company folder: company folders never start with "."


@dataclass(frozen=True)
class StoredFile:
    key: str
    size: int
    modified: datetime  # UTC
    etag: str
    open: Callable[[], BinaryIO]  # a new seekable reader
    local_path: str | None = None  # set when the bytes are a file on this host (sendfile)


class Upload(Protocol):
    def write(self, chunk: bytes | memoryview) -> None: ...
    def finish(self) -> int: ...
    def publish(self) -> None: ...
    def abort(self) -> None: ...


class FileStore(Protocol):
    name: str

    def begin(self, key: str) -> Upload: ...
    def stat(self, key: str) -> StoredFile | None: ...
    def delete(self, key: str) -> bool: ...
    def delete_folder(self, key: str) -> int: ...
    def is_folder(self, key: str) -> bool: ...
    def sweep_incoming(self, older_than_sec: float) -> int: ...
    def file_keys(self) -> Iterator[str]: ...


# -- a folder on this host ----------------------------------------------------------------------

class _LocalUpload:
    def __init__(self, store: LocalStore, key: str):
        self.store, self.key = store, key
        self.tmp = store.root / INCOMING / uuid.uuid4().hex
        self.tmp.parent.mkdir(parents=True, exist_ok=True)
        self.file: BinaryIO | None = open(self.tmp, "wb")  # noqa: SIM115 - closed in finish/abort
        self.size = 0

    def write(self, chunk: bytes | memoryview) -> None:
        self.file.write(chunk)
        self.size += len(chunk)

    def finish(self) -> int:
        self.file.flush()
        if self.store.fsync:
            os.fsync(self.file.fileno())
        self.file.close()
        self.file = None
        return self.size

    def publish(self) -> None:
        target = self.store.path_of(self.key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.is_dir():
                raise IsADirectoryError(str(target))
            os.replace(self.tmp, target)
        except (NotADirectoryError, IsADirectoryError, FileExistsError):
            self.abort()
            raise errors.conflict.PathInUse("a file and a folder cannot share a path",
                                            path=self.key.split("/", 1)[1]) from None

    def abort(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
        self.tmp.unlink(missing_ok=True)


class LocalStore:
    """Files under ``root/<company>/<path>``; uploads land in ``root/.incoming`` and are renamed."""

    name = "local"

    def __init__(self, root: str | os.PathLike, fsync: bool = False):
        self.root = Path(root).resolve()
        self.fsync = fsync
        (self.root / INCOMING).mkdir(parents=True, exist_ok=True)

    def path_of(self, key: str) -> Path:
        path = (self.root / key).resolve()
        # Keys are normalised before they get here; this is the last fence, not the rule.
        if self.root not in path.parents:
            raise errors.bad_request.InvalidFilePath("outside the store", path=key)
        return path

    def begin(self, key: str) -> _LocalUpload:
        return _LocalUpload(self, key)

    def stat(self, key: str) -> StoredFile | None:
        path = self.path_of(key)
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not path.is_file():
            return None
        return StoredFile(key=key, size=st.st_size, modified=datetime.fromtimestamp(st.st_mtime, UTC),
                          etag=f"{st.st_mtime_ns:x}-{st.st_size:x}", open=lambda: open(path, "rb"),
                          local_path=str(path))

    def _prune(self, path: Path) -> None:
        """Remove folders left empty, up to the company folder."""
        company_root = self.root / path.relative_to(self.root).parts[0]
        parent = path.parent
        while parent != company_root and company_root in parent.parents:
            try:
                parent.rmdir()
            except OSError:
                return
            parent = parent.parent

    def delete(self, key: str) -> bool:
        path = self.path_of(key)
        try:
            if not path.is_file():
                return False
            path.unlink()
        except FileNotFoundError:
            return False
        self._prune(path)
        return True

    def is_folder(self, key: str) -> bool:
        return self.path_of(key).is_dir()

    def delete_folder(self, key: str) -> int:
        path = self.path_of(key)
        if not path.is_dir():
            return 0
        count = sum(len(files) for _, _, files in os.walk(path))
        shutil.rmtree(path)
        self._prune(path)
        return count

    def file_keys(self) -> Iterator[str]:
        """Every stored file's key (uploads in progress are not files yet), for backups."""
        for folder, dirs, names in os.walk(self.root):
            if Path(folder) == self.root:
                dirs[:] = sorted(d for d in dirs if d != INCOMING)
            else:
                dirs.sort()
            rel = Path(folder).relative_to(self.root)
            for name in sorted(names):
                if rel.parts:
                    yield (rel / name).as_posix()

    def sweep_incoming(self, older_than_sec: float) -> int:
        cutoff = time.time() - older_than_sec
        removed = 0
        for entry in (self.root / INCOMING).iterdir():
            try:
                if entry.stat().st_mtime < cutoff:
                    entry.unlink()
                    removed += 1
            except FileNotFoundError:
                pass
        return removed


# -- GridFS in the configured MongoDB -----------------------------------------------------------

class _GridUpload:
    """Writes GridFS's own format (``<bucket>.files`` and ``<bucket>.chunks`` documents), so
    pymongo's ``gridfs`` and ``mongofiles`` read these files. Written here rather than with
    ``GridIn``, which gathers 32 MB of chunks (and their BSON) before each insert; this keeps at
    most ``WRITE_BATCH`` chunks in memory."""

    WRITE_BATCH = 4

    def __init__(self, store: GridFSStore, key: str):
        self.store, self.key = store, key
        self.id = uuid.uuid4().hex
        self.pending = bytearray()
        self.batch: list[dict[str, Any]] = []
        self.chunks = 0
        self.size = 0
        # Its document comes first, under .incoming/: an upload cut off by a crash is found (and
        # swept with its chunks) by sweep_incoming; readers never look there.
        store.files.insert_one({"_id": self.id, "length": 0, "chunkSize": store.chunk_size,
                                "uploadDate": _utcnow(), "filename": f"{INCOMING}/{self.id}",
                                "metadata": {"key": key}})

    def _flush(self, force: bool = False) -> None:
        size = self.store.chunk_size
        while len(self.pending) >= size or (force and self.pending):
            self.batch.append({"files_id": self.id, "n": self.chunks, "data": Binary(bytes(self.pending[:size]))})
            del self.pending[:size]
            self.chunks += 1
            if len(self.batch) >= self.WRITE_BATCH:
                self.store.chunks.insert_many(self.batch, ordered=True)
                self.batch = []
        if force and self.batch:
            self.store.chunks.insert_many(self.batch, ordered=True)
            self.batch = []

    def write(self, chunk: bytes | memoryview) -> None:
        self.pending += chunk
        self.size += len(chunk)
        if len(self.pending) >= self.store.chunk_size:
            self._flush()

    def finish(self) -> int:
        self._flush(force=True)
        self.store.files.update_one({"_id": self.id}, {"$set": {"length": self.size}})
        return self.size

    def publish(self) -> None:
        files = self.store.files
        files.update_one({"_id": self.id}, {"$set": {"filename": self.key, "uploadDate": _utcnow()}})
        for old in files.find({"filename": self.key, "_id": {"$ne": self.id}}, {"_id": 1}):
            self.store.remove(old["_id"])

    def abort(self) -> None:
        self.pending = bytearray()
        self.batch = []
        self.store.remove(self.id)


class GridFSStore:
    """Files in a GridFS bucket of the server's database, so every host serves every file."""

    name = "gridfs"

    def __init__(self, db: Any, bucket: str = "files", chunk_size: int = 1 << 20):
        self.bucket = gridfs.GridFSBucket(db, bucket_name=bucket, chunk_size_bytes=chunk_size)
        self.chunk_size = chunk_size
        self.files = db[f"{bucket}.files"]
        self.chunks = db[f"{bucket}.chunks"]
        self.files.create_index([("filename", 1), ("uploadDate", 1)])
        self.chunks.create_index([("files_id", 1), ("n", 1)], unique=True)

    def remove(self, file_id: Any) -> None:
        """A file's document first (so readers stop finding it), then its chunks."""
        self.files.delete_one({"_id": file_id})
        self.chunks.delete_many({"files_id": file_id})

    def begin(self, key: str) -> _GridUpload:
        return _GridUpload(self, key)

    def stat(self, key: str) -> StoredFile | None:
        doc = self.files.find_one({"filename": key}, sort=[("uploadDate", -1)])
        if doc is None:
            return None
        modified = doc["uploadDate"].replace(tzinfo=UTC)
        return StoredFile(key=key, size=int(doc["length"]), modified=modified, etag=str(doc["_id"]),
                          open=lambda: self.bucket.open_download_stream(doc["_id"]))

    def delete(self, key: str) -> bool:
        found = False
        for doc in self.files.find({"filename": key}, {"_id": 1}):
            self.remove(doc["_id"])
            found = True
        return found

    def _folder_filter(self, key: str) -> dict[str, Any]:
        return {"filename": {"$regex": "^" + re.escape(key.rstrip("/") + "/")}}

    def is_folder(self, key: str) -> bool:
        return self.files.count_documents(self._folder_filter(key), limit=1) > 0

    def delete_folder(self, key: str) -> int:
        ids = [d["_id"] for d in self.files.find(self._folder_filter(key), {"_id": 1})]
        for file_id in ids:
            self.remove(file_id)
        return len(ids)

    def file_keys(self) -> Iterator[str]:
        """Every stored file's key (uploads in progress, under .incoming/, are not files yet), for backups."""
        seen = None
        for doc in self.files.find({"filename": {"$not": re.compile("^" + re.escape(INCOMING + "/"))}},
                                   {"filename": 1}).sort("filename", 1):
            if doc["filename"] != seen:
                seen = doc["filename"]
                yield seen

    def sweep_incoming(self, older_than_sec: float) -> int:
        cutoff = datetime.fromtimestamp(time.time() - older_than_sec, UTC).replace(tzinfo=None)
        ids = [d["_id"] for d in self.files.find({**self._folder_filter(INCOMING), "uploadDate": {"$lt": cutoff}},
                                                  {"_id": 1})]
        for file_id in ids:
            self.remove(file_id)
        return len(ids)


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def local_root(settings: FilesSettings, data_dir: str) -> Path | None:
    """The local store's folder (``files.local.dir``, else the data folder's ``files``); None for GridFS."""
    if settings.backend != "local":
        return None
    return Path(settings.local.get("dir") or os.path.join(data_dir, "files")).resolve()


def build_store(settings: FilesSettings, db: Any, data_dir: str) -> FileStore:
    """The store the ``files`` settings name (``backend: local`` or ``gridfs``)."""
    backend = settings.backend
    if backend == "local":
        return LocalStore(local_root(settings, data_dir), bool(settings.local["fsync"]))
    if backend == "gridfs":
        grid = settings.gridfs
        return GridFSStore(db, grid.get("bucket", "files"), int(grid.get("chunk_size_kb", 1024)) * 1024)
    raise errors.server_error.ConfigError(f"files.backend must be 'local' or 'gridfs', not {backend!r}")
