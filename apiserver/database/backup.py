"""Owns the backup archive: a dump of the server's database and file store into one tar file, taken
while the server runs and writes go on, and its restore into an empty data folder (or database).

The archive (plain tar, gzip when its name ends in .gz or .tgz) holds, in this order:

- ``format.json``: format name and version, server version, database kind, when the backup began;
- per collection ``db/<name>/meta.bson`` (options, index specs) and ``db/<name>/NNNNNN.bson`` (its
  documents as concatenated BSON, mongodump's format, at most ``MEMBER_BYTES`` each);
- ``files/<key>``: every file of the file store (local folder or GridFS), copied after the database;
- ``data/admin_credentials.json``: the generated admin credentials of the data folder, if any;
- ``manifest.json``: counts, timings and the sha256 of every member before it (a restore checks them).

What the archive promises (README "Backup and restore"): every write acknowledged before the backup
began is in it, and every file such a record names. On SecantusDB the whole database is read in one
read-only transaction, which reads one WiredTiger snapshot (SecantusDB 0.7 accepts ``readConcern:
snapshot`` outside a transaction too, but does not pin those reads; inside one it does, and the
writes of other clients are neither blocked nor seen): the archive is the database as it was at
one instant (``snapshot_at``) and writes during the backup go on unblocked (SecantusDB ends a
transaction idle for 60 s; every batch read keeps it alive, so only a stalled archive disk ends it,
and the backup then fails with a message). MongoDB runs transactions
only on replica sets and ends them after 60 s, so there each collection is read with one cursor: a
document that existed when the backup began is read (a scan does not skip documents that change
under it) but collections are not from one instant; mongodump --oplog is the point-in-time tool
there. Files are copied after the database, so a file uploaded before a record that names it was
acknowledged is in the archive (unless it was deleted meanwhile).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote, unquote

import bson
import gridfs.errors
import pymongo
from bson.raw_bson import RawBSONDocument
from pymongo.errors import PyMongoError
from pymongo.read_concern import ReadConcern

from apiserver import __version__
from apiserver.config import Config
from apiserver.config.settings import ADMIN_CREDENTIALS, Settings
from apiserver.database.connection import client_options, database_kind, embedded_from_config, join_or_start
from apiserver.database.filestore import INCOMING, FileStore, GridFSStore, LocalStore, build_store, local_root

FORMAT = "apiserver-backup"
FORMAT_VERSION = 1
FORMAT_MEMBER = "format.json"
MANIFEST_MEMBER = "manifest.json"
MEMBER_BYTES = 32 << 20  # documents per tar member: bounds memory, on both sides
INSERT_BYTES = 8 << 20  # documents per insert_many on restore
COPY_CHUNK = 1 << 20

Progress = Callable[[str], None]


class BackupError(Exception):
    """A backup or restore that cannot go on; its message tells the operator what and why."""


@dataclass
class Summary:
    documents: int = 0
    collections: int = 0
    files: int = 0
    file_bytes: int = 0
    archive_bytes: int = 0
    seconds: float = 0.0
    snapshot: bool = False
    per_collection: dict[str, int] = field(default_factory=dict)
    phases: dict[str, float] = field(default_factory=dict)  # seconds each step took, in order
    _lap: float = field(default_factory=time.monotonic)

    def lap(self, phase: str) -> None:
        """``phase`` ended now: it took the time since the previous one ended."""
        now = time.monotonic()
        self.phases[phase] = self.phases.get(phase, 0.0) + now - self._lap
        self._lap = now


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _client(uri: str, config: Config) -> pymongo.MongoClient:
    # no operation timeout: a restore's index builds or a big insert may take longer than a request may
    return pymongo.MongoClient(uri, document_class=dict, **client_options(config))


def _doc_count(raw: bytes | memoryview) -> int:
    """Documents in concatenated BSON (each starts with its int32 length)."""
    count = pos = 0
    end = len(raw)
    while pos < end:
        pos += int.from_bytes(raw[pos:pos + 4], "little")
        count += 1
    return count


def _split_docs(raw: bytes) -> Iterator[bytes]:
    pos, end = 0, len(raw)
    while pos < end:
        size = int.from_bytes(raw[pos:pos + 4], "little")
        if size < 5 or pos + size > end:
            raise BackupError("the archive holds a damaged document (its length runs past its member)")
        yield raw[pos:pos + size]
        pos += size


def _bucket_collections(store: FileStore) -> set[str]:
    """GridFS's own collections: their files are archived as files, not as documents."""
    if not isinstance(store, GridFSStore):
        return set()
    return {store.files.name, store.chunks.name}


# -- writing ------------------------------------------------------------------------------------

class _ArchiveWriter:
    """A tar stream whose members' sha256 are kept for the manifest."""

    def __init__(self, fileobj: BinaryIO, gz: bool):
        self.tar = tarfile.open(fileobj=fileobj, mode="w|gz" if gz else "w|",  # noqa: SIM115
                                format=tarfile.PAX_FORMAT)  # closed by close()
        self.sums: dict[str, str] = {}

    def add_bytes(self, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = len(data), int(time.time()), 0o600
        self.sums[name] = hashlib.sha256(data).hexdigest()
        self.tar.addfile(info, io.BytesIO(data))

    def add_stream(self, name: str, reader: BinaryIO, size: int, mtime: float) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = size, int(mtime), 0o600
        hashing = _Hashing(reader)
        self.tar.addfile(info, hashing)
        self.sums[name] = hashing.sha.hexdigest()

    def close(self) -> None:
        self.tar.close()


class _Hashing(io.RawIOBase):
    def __init__(self, inner: BinaryIO):
        self.inner, self.sha = inner, hashlib.sha256()

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self.inner.read(size)
        self.sha.update(data)
        return data


def _dump_collection(db: Any, name: str, meta: dict[str, Any], session: Any, out: _ArchiveWriter,
                     summary: Summary) -> None:
    folder = f"db/{quote(name, safe='')}"
    out.add_bytes(f"{folder}/meta.bson", bson.encode(meta))
    pending, part, count = bytearray(), 0, 0
    # One cursor per collection: SecantusDB answers a find from the whole result it computes, so paging
    # by _id ranges would scan the collection once per page.
    for raw in db[name].find_raw_batches({}, session=session, batch_size=1000):
        pending += raw
        count += _doc_count(raw)
        if len(pending) >= MEMBER_BYTES:
            part += 1
            out.add_bytes(f"{folder}/{part:06d}.bson", bytes(pending))
            pending = bytearray()
    if pending:
        part += 1
        out.add_bytes(f"{folder}/{part:06d}.bson", bytes(pending))
    summary.per_collection[name] = count
    summary.documents += count
    summary.collections += 1


def _collection_metas(db: Any, skip: set[str]) -> dict[str, dict[str, Any]]:
    metas = {}
    for info in db.list_collections():
        name = info["name"]
        if name.startswith("system.") or name in skip or info.get("type", "collection") != "collection":
            continue
        indexes = [{k: v for k, v in spec.items() if k not in ("v", "ns")}
                   for spec in db[name].list_indexes() if spec["name"] != "_id_"]
        metas[name] = {"name": name, "options": dict(info.get("options") or {}), "indexes": indexes}
    return metas


def _dump_database(db: Any, skip: set[str], snapshot: bool, out: _ArchiveWriter, summary: Summary,
                   progress: Progress) -> str:
    """Every collection into the archive; returns when the read view was taken (ISO time, UTC)."""
    metas = _collection_metas(db, skip)
    with db.client.start_session() as session:
        if snapshot:
            session.start_transaction(read_concern=ReadConcern("snapshot"))
        snapshot_at = _now()  # the transaction's snapshot is pinned by its first read, just after this
        done: set[str] = set()
        while True:
            for name in sorted(set(metas) - done):
                _dump_collection(db, name, metas[name], session if snapshot else None, out, summary)
                if summary.per_collection[name]:
                    progress(f"backup: {name}: {summary.per_collection[name]:,} documents")
                done.add(name)
            metas = _collection_metas(db, skip)  # one created while the others were read
            if not set(metas) - done:
                break
        if snapshot:
            session.abort_transaction()  # it only read
    return snapshot_at


def _readable(store: FileStore, key: str) -> tuple[BinaryIO, int, float] | None:
    """An open reader of a file's bytes as they are now, its size and mtime; None if it is gone."""
    stat = store.stat(key)
    if stat is None:
        return None
    try:
        reader = stat.open()
    except (OSError, PyMongoError):
        return None
    if stat.local_path is not None:  # the open file keeps these bytes even if the file is replaced
        return reader, os.fstat(reader.fileno()).st_size, stat.modified.timestamp()
    spool = tempfile.TemporaryFile()  # noqa: SIM115 - returned open; GridFS chunks may go while read
    try:
        with reader:
            shutil.copyfileobj(reader, spool, COPY_CHUNK)
    except (OSError, PyMongoError, gridfs.errors.GridFSError):  # replaced or deleted while read
        spool.close()
        return None
    size = spool.tell()
    spool.seek(0)
    return spool, size, stat.modified.timestamp()


def _dump_files(store: FileStore, out: _ArchiveWriter, summary: Summary, progress: Progress) -> None:
    for key in store.file_keys():
        opened = _readable(store, key)
        if opened is None:
            continue  # deleted since it was listed
        reader, size, mtime = opened
        with reader:
            out.add_stream(f"files/{key}", reader, size, mtime)
        summary.files += 1
        summary.file_bytes += size
        if summary.files % 1000 == 0:
            progress(f"backup: {summary.files:,} files, {summary.file_bytes / 1e6:,.1f} MB")


def backup(config: Config, target: str | os.PathLike, progress: Progress = _stderr) -> Summary:
    """Write the archive of the server that ``config`` names (joining its running database) to ``target``."""
    target = Path(target).resolve()
    if target.is_dir():
        raise BackupError(f"{target} is a folder; name the archive file to write")
    gz = target.name.endswith((".gz", ".tgz"))
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    if not target.parent.is_dir():
        raise BackupError(f"cannot write {target}: the folder {target.parent} does not exist")
    data_dir = config["database.embedded.data_dir"]
    if not config.get("database.uri") and not (Path(data_dir) / "db").is_dir():
        raise BackupError(f"there is no server data in {Path(data_dir).resolve()} (no db folder): name the "
                          f"server's data folder with --data-dir")
    settings = Settings.from_config(config)
    began = time.monotonic()
    summary = Summary()
    try:
        uri, started = join_or_start(config)
    except RuntimeError as exc:
        raise BackupError(str(exc)) from None
    summary.lap("database join" if started is None else "database start")
    client = _client(uri, config)
    try:
        db = client[config["database.name"]]
        kind = database_kind(db)
        summary.snapshot = kind == "secantusdb"
        store = build_store(settings.files, db, data_dir)
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # the archive holds secrets
        with os.fdopen(fd, "wb") as fh:
            out = _ArchiveWriter(fh, gz)
            header = {"format": FORMAT, "version": FORMAT_VERSION, "server_version": __version__,
                      "database": {"kind": kind,
                                   "name": config["database.name"]},
                      "files_backend": settings.files.backend, "began": _now()}
            out.add_bytes(FORMAT_MEMBER, json.dumps(header, indent=1).encode())
            snapshot_at = _dump_database(db, _bucket_collections(store), summary.snapshot, out, summary,
                                         progress)
            summary.lap("documents")
            _dump_files(store, out, summary, progress)
            summary.lap("files")
            credentials = Path(settings.auth.credentials_path(data_dir))
            if not config.get("database.uri") and credentials.is_file():
                out.add_bytes(f"data/{ADMIN_CREDENTIALS}", credentials.read_bytes())
            manifest = {**header, "snapshot": summary.snapshot, "snapshot_at": snapshot_at, "finished": _now(),
                        "collections": summary.per_collection, "documents": summary.documents,
                        "files": {"count": summary.files, "bytes": summary.file_bytes},
                        "sha256": out.sums}
            out.add_bytes(MANIFEST_MEMBER, json.dumps(manifest, indent=1).encode())
            out.close()
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(partial, target)
        summary.lap("archive sync")
    except PyMongoError as exc:
        if getattr(exc, "code", None) == 251:  # NoSuchTransaction: SecantusDB ends one idle for 60 s
            raise BackupError("the database ended the backup's snapshot (its transaction waited over 60 s between "
                              "two reads: is the archive's disk stalled?); run it again") from None
        raise BackupError(f"the database failed during the backup: {exc}") from None
    except OSError as exc:
        raise BackupError(f"cannot write {target}: {exc}") from None
    finally:
        partial.unlink(missing_ok=True)
        client.close()
        if started is not None:
            started.stop()
            summary.lap("database stop")
    summary.archive_bytes = target.stat().st_size
    summary.seconds = time.monotonic() - began
    return summary


# -- reading ------------------------------------------------------------------------------------

def _open_archive(source: Path) -> tuple[tarfile.TarFile, dict[str, Any]]:
    """The archive, read as a stream, and its format header (checked before anything is written; its
    sha256 is the header's ``_sha256``)."""
    try:
        tar = tarfile.open(source, mode="r|*")  # noqa: SIM115 - closed by restore()
    except FileNotFoundError:
        raise BackupError(f"{source} does not exist") from None
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise BackupError(f"{source} is not a backup archive of this server (not a tar file: {exc})") from None
    try:
        first = tar.next()
        if first is None or first.name != FORMAT_MEMBER:
            raise BackupError(f"{source} is not a backup archive of this server (no {FORMAT_MEMBER} at its start)")
        raw = tar.extractfile(first).read()
        header = json.loads(raw)
    except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
        tar.close()
        raise BackupError(f"{source} is not a readable backup archive: {exc}") from None
    except BackupError:
        tar.close()
        raise
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        tar.close()
        raise BackupError(f"{source} is not a backup archive of this server (format {header.get('format')!r})"
                          if isinstance(header, dict) else f"{source} has a damaged {FORMAT_MEMBER}")
    if header.get("version") != FORMAT_VERSION:
        tar.close()
        raise BackupError(f"{source} has archive format version {header.get('version')!r}; this server "
                          f"({__version__}) reads version {FORMAT_VERSION}")
    header["_sha256"] = hashlib.sha256(raw).hexdigest()
    return tar, header


class _Target:
    """Where a restore writes: a new data folder's embedded database (built in a temporary folder,
    renamed into place at the end) or an empty configured database; undone on failure."""

    def __init__(self, config: Config):
        self.config = config
        self.settings = Settings.from_config(config)
        self.uri = config.get("database.uri") or ""
        self.data_dir = Path(config["database.embedded.data_dir"]).resolve()
        self.work_dir = self.data_dir
        self.embedded = None
        self.client: pymongo.MongoClient | None = None
        self.local_dir: Path | None = None

    def check(self) -> None:
        """Refuse a target that holds anything, before anything is written."""
        local = local_root(self.settings.files, str(self.data_dir))
        outside = local is not None and (self.uri or self.settings.files.local.get("dir"))  # not in a new folder
        if outside and local.exists() and any(p.name != INCOMING for p in local.iterdir()):
            raise BackupError(f"the file store folder {local} is not empty; restore fills an empty one only")
        if self.uri:
            client = _client(self.uri, self.config)
            try:
                names = [n for n in client[self.config["database.name"]].list_collection_names()
                         if not n.startswith("system.")]
            except PyMongoError as exc:
                raise BackupError(f"cannot reach the configured database: {exc}") from None
            finally:
                client.close()
            if names:
                raise BackupError(f"the database {self.config['database.name']!r} at database.uri is not empty "
                                  f"({len(names)} collections); restore fills an empty database only")
            return
        if self.data_dir.exists() and (not self.data_dir.is_dir() or any(self.data_dir.iterdir())):
            raise BackupError(f"the data folder {self.data_dir} is not empty; restore fills an empty (or new) "
                              f"data folder only: name a new one with --data-dir")

    def open(self) -> tuple[Any, FileStore]:
        uri = self.uri
        if not uri:
            self.data_dir.parent.mkdir(parents=True, exist_ok=True)
            self.work_dir = Path(tempfile.mkdtemp(prefix=f".{self.data_dir.name}.restoring-",
                                                  dir=self.data_dir.parent))
            self.embedded = embedded_from_config(self.config, str(self.work_dir))
            try:
                uri = self.embedded.ensure_running()
            except RuntimeError as exc:
                raise BackupError(f"cannot start the database for the restore: {exc}") from None
        self.client = _client(uri, self.config)
        db = self.client[self.config["database.name"]]
        store = build_store(self.settings.files, db, str(self.work_dir))
        self.local_dir = store.root if isinstance(store, LocalStore) else None
        return db, store

    def write_credentials(self, data: bytes, progress: Progress) -> None:
        """The generated admin's keys where this server reads them, when that is inside the new data folder
        (one outside it is the operator's: not written, so that an undone restore leaves nothing there)."""
        path = Path(self.settings.auth.credentials_path(str(self.data_dir))).resolve()
        if not path.is_relative_to(self.data_dir):
            progress(f"restore: the generated admin credentials are not written to {path} (outside the data "
                     f"folder); they are the archive's data/{ADMIN_CREDENTIALS}")
            return
        path = self.work_dir / path.relative_to(self.data_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)

    def commit(self) -> None:
        self._close()
        if self.work_dir != self.data_dir:
            if self.data_dir.exists():
                self.data_dir.rmdir()  # empty (checked); a server started in it meanwhile fails this
            self.work_dir.rename(self.data_dir)

    def undo(self) -> None:
        with contextlib.suppress(PyMongoError):
            if self.uri and self.client is not None:
                self.client.drop_database(self.config["database.name"])
        self._close()
        if self.work_dir != self.data_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)
        if self.local_dir is not None and self.local_dir.exists():  # a files.local.dir of its own (empty before)
            for entry in self.local_dir.iterdir():
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)

    def _close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.embedded is not None:
            self.embedded.stop()
            self.embedded = None


def _members(tar: tarfile.TarFile) -> Iterator[tuple[tarfile.TarInfo, BinaryIO]]:
    """The archive's members after its header, each with a reader; the manifest must come last."""
    seen_manifest = False
    for member in tar:
        if not member.isfile() or member.name == FORMAT_MEMBER:  # read by _open_archive; iterating from
            continue  # the start yields it again
        if seen_manifest:
            raise BackupError(f"the archive has a member after its manifest: {member.name}")
        name = member.name
        if not (name.startswith(("db/", "files/")) or name in (MANIFEST_MEMBER, f"data/{ADMIN_CREDENTIALS}")) \
                or (name.startswith("db/") and name.count("/") != 2):
            raise BackupError(f"the archive has a member this server does not know: {name}")
        seen_manifest = name == MANIFEST_MEMBER
        yield member, tar.extractfile(member)
    if not seen_manifest:
        raise BackupError("the archive ends before its manifest: it is truncated (an interrupted copy?)")


def verify(source: str | os.PathLike) -> dict[str, Any]:
    """Read the whole archive and check every member against the sha256 its manifest records; returns
    the manifest. A restore runs this first, so a damaged archive fails before anything is written."""
    source = Path(source).resolve()
    tar, header = _open_archive(source)
    sums: dict[str, str] = {FORMAT_MEMBER: header["_sha256"]}
    manifest: dict[str, Any] = {}
    try:
        with tar:
            for member, reader in _members(tar):
                if member.name == MANIFEST_MEMBER:
                    manifest = json.loads(reader.read())
                    continue
                sha = hashlib.sha256()
                while chunk := reader.read(COPY_CHUNK):
                    sha.update(chunk)
                sums[member.name] = sha.hexdigest()
    except (tarfile.TarError, EOFError, OSError, zlib.error, ValueError) as exc:
        raise BackupError(f"the archive is damaged or truncated: {exc}") from None
    expected = manifest.get("sha256") if isinstance(manifest, dict) else None
    if not isinstance(expected, dict):
        raise BackupError("the archive is damaged: its manifest has no checksums")
    if sums != expected:
        damaged = sorted(k for k in set(sums) | set(expected) if sums.get(k) != expected.get(k))
        raise BackupError(f"the archive is damaged: {len(damaged)} member(s) differ from its manifest, "
                          f"e.g. {damaged[0]}")
    return manifest


def _insert(db: Any, name: str, raw: bytes, created: set[str], metas: dict[str, dict]) -> int:
    if name not in created:
        options = metas.get(name, {}).get("options") or {}
        db.create_collection(name, **options)
        created.add(name)
    batch: list[RawBSONDocument] = []
    size = count = 0
    for doc in _split_docs(raw):
        batch.append(RawBSONDocument(doc))
        size += len(doc)
        if size >= INSERT_BYTES:
            db[name].insert_many(batch, ordered=False)
            count += len(batch)
            batch, size = [], 0
    if batch:
        db[name].insert_many(batch, ordered=False)
        count += len(batch)
    return count


def _restore_members(tar: tarfile.TarFile, db: Any, store: FileStore, target: _Target, summary: Summary,
                     progress: Progress) -> None:
    """Every member of a verified archive into the target, then the collections' indexes."""
    metas: dict[str, dict[str, Any]] = {}
    created: set[str] = set()
    for member, reader in _members(tar):
        name = member.name
        if name.startswith("db/"):
            _, folder, part = name.split("/", 2)
            collection = unquote(folder)
            if part == "meta.bson":
                metas[collection] = bson.decode(reader.read())
                continue
            count = _insert(db, collection, reader.read(), created, metas)
            summary.per_collection[collection] = summary.per_collection.get(collection, 0) + count
            summary.documents += count
            summary.lap("documents")
            progress(f"restore: {collection}: {summary.per_collection[collection]:,} documents")
        elif name.startswith("files/"):
            upload = store.begin(name[len("files/"):])
            try:
                while chunk := reader.read(COPY_CHUNK):
                    upload.write(chunk)
                upload.finish()
                upload.publish()
            except BaseException:
                upload.abort()
                raise
            summary.files += 1
            summary.file_bytes += member.size
            if summary.files % 1000 == 0:
                progress(f"restore: {summary.files:,} files, {summary.file_bytes / 1e6:,.1f} MB")
        elif name == f"data/{ADMIN_CREDENTIALS}" and target.work_dir != target.data_dir:
            target.write_credentials(reader.read(), progress)
    summary.lap("files")
    for name, meta in metas.items():
        if name not in created:
            db.create_collection(name, **(meta.get("options") or {}))
        if meta["indexes"]:
            db.command("createIndexes", name, indexes=meta["indexes"])
    summary.collections = len(metas)
    summary.lap("indexes")


def restore(config: Config, source: str | os.PathLike, progress: Progress = _stderr) -> tuple[Summary, dict]:
    """Fill the empty data folder (or empty database) ``config`` names from the archive ``source``.
    Returns what was restored and the archive's manifest. On any failure nothing stays behind."""
    source = Path(source).resolve()
    began = time.monotonic()
    summary = Summary()
    target = _Target(config)
    target.check()
    manifest = verify(source)
    summary.lap("check")
    progress(f"restore: {source.name} is whole (taken {manifest.get('snapshot_at')}); restoring")
    tar, _header = _open_archive(source)
    try:
        db, store = target.open()
        summary.lap("database start")
        _restore_members(tar, db, store, target, summary, progress)
        target.commit()
        summary.lap("database stop")
    except BaseException as exc:
        target.undo()
        if isinstance(exc, BackupError):
            raise
        if isinstance(exc, (tarfile.TarError, EOFError, zlib.error, bson.errors.BSONError, ValueError, KeyError)):
            raise BackupError(f"the archive is damaged or truncated: {exc}") from None
        if isinstance(exc, PyMongoError):
            raise BackupError(f"the database refused the restore: {exc}") from None
        if isinstance(exc, OSError):
            raise BackupError(f"cannot restore: {exc}") from None
        raise
    finally:
        tar.close()
    summary.snapshot = bool(manifest.get("snapshot"))
    summary.archive_bytes = source.stat().st_size
    summary.seconds = time.monotonic() - began
    return summary, manifest
