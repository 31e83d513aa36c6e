"""Owns the rules of the file server: who may read and write which files, upload limits, how a
file is presented to a browser, and deleting the files of deleted tasks and models.

Every file belongs to the company whose caller wrote it (its key starts with the company's
folder); a caller only ever reaches its own company's files. Reads without credentials are
served only with ``files.public_read``, from whichever company holds the path.
"""

from __future__ import annotations

import logging
import mimetypes
import urllib.parse
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from apiserver.apierrors import errors
from apiserver.bll import server_settings
from apiserver.bll.auth.identity import Identity
from apiserver.bll.files import paths
from apiserver.config.settings import FilesSettings
from apiserver.database.filestore import FileStore, StoredFile, Upload
from apiserver.database.model.auth import Company
from apiserver.database.model.base import new_id, utcnow
from apiserver.database.model.files import FileDeletion
from apiserver.database.store import store_of

log = logging.getLogger(__name__)

# Shown in the browser: types no browser runs script from. Everything else is an attachment, so an
# uploaded HTML or SVG file can never run on the API's origin.
INLINE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp", "image/x-ms-bmp",
                          "image/avif", "text/plain", "application/json"})
# Multipart framing on top of the file bytes a request may carry before its declared length alone
# refuses it (the exact limit is on the file bytes, counted while they stream).
FRAMING_ALLOWANCE = 1 << 20
MAX_RETRY_SEC = 3600

FILE_HOSTS = "files.hosts"  # the server_settings list of the Hosts uploads came to, the first 20 of them
FILE_HOSTS_KEPT = 20
Part = tuple[str, Iterable[bytes]]


@dataclass(frozen=True)
class Presentation:
    mimetype: str
    inline: bool
    download_name: str


class FileBLL:
    def __init__(self, store: FileStore, settings: FilesSettings):
        self.store = store
        self.max_upload_bytes = settings.max_upload_bytes
        self.public_read = settings.public_read
        self.server_urls = [str(u) for u in settings.server_urls]
        self.delete_delay_sec = settings.delete_delay_sec
        self._hosts_noted: set[str] = set()

    # -- who reads ----------------------------------------------------------------------------

    def reader(self, identity: Identity | None) -> Identity | None:
        """The reading caller: the request's identity (credentials or the web app's session cookie,
        both read by the dispatcher), else None, allowed only with public_read (401 otherwise)."""
        if identity is not None:
            return identity
        if self.public_read:
            return None
        raise errors.unauthorized.NoCredentials("files are read with the same credentials as the API "
                                                "(or set files.public_read)")

    # -- upload -------------------------------------------------------------------------------

    def upload(self, identity: Identity, parts: Iterator[Part], declared_length: int | None,
               host: str | None = None) -> list[str]:
        """Store every part under its name; all or nothing. 413 when the files pass the limit. ``host``:
        the Host the upload came to, noted as one this server's files are reached by (``own_prefixes``)."""
        self._note_host(host)
        if declared_length is not None and declared_length > self.max_upload_bytes + FRAMING_ALLOWANCE:
            raise self._too_large()
        uploads: list[Upload] = []
        stored: list[str] = []
        total = 0
        try:
            for name, chunks in parts:
                path = paths.normalise(name)
                upload = self.store.begin(paths.key_of(identity.company, path))
                uploads.append(upload)
                for chunk in chunks:
                    total += len(chunk)
                    if total > self.max_upload_bytes:
                        raise self._too_large()
                    upload.write(chunk)
                upload.finish()
                stored.append(path)
            for upload in uploads:
                upload.publish()
        except BaseException:
            for upload in uploads:
                upload.abort()
            raise
        return stored

    def _too_large(self) -> errors.payload_too_large.RequestTooLarge:
        mb = self.max_upload_bytes / (1024 * 1024)
        return errors.payload_too_large.RequestTooLarge(f"files.max_upload_size_mb is {mb:g}")

    # -- read ---------------------------------------------------------------------------------

    def find(self, reader: Identity | None, path: str) -> StoredFile:
        """The file at ``path`` of the reader's company (any company's with public_read), or 404."""
        path = paths.normalise(path)
        companies = [reader.company] if reader is not None else [c.id for c in Company.objects.only("id")]
        for company in companies:
            found = self.store.stat(paths.key_of(company, path))
            if found is not None:
                return found
        raise errors.not_found.ObjectNotFound("no such file", path=path)

    @staticmethod
    def presentation(path: str, download: bool) -> Presentation:
        """How a file is sent: images, plain text and JSON may show inline; anything else downloads."""
        name = path.rsplit("/", 1)[-1]
        mimetype, encoding = mimetypes.guess_type(name)
        if encoding or not mimetype:
            mimetype = "application/octet-stream"  # compressed bytes are never what the type says
        inline = mimetype in INLINE_TYPES and not download
        return Presentation(mimetype, inline, name)

    # -- delete -------------------------------------------------------------------------------

    def delete(self, identity: Identity, path: str) -> str:
        path = paths.normalise(path)
        if not self.store.delete(paths.key_of(identity.company, path)):
            raise errors.not_found.ObjectNotFound("no such file", path=path)
        return path

    def delete_many(self, identity: Identity, files: list[str]) -> dict[str, Any]:
        """ClearML's batch delete: files and folders; per-entry errors, never a partial exception."""
        deleted: dict[str, str] = {}
        failed: dict[str, list[str]] = defaultdict(list)
        for entry in files:
            raw = urllib.parse.unquote_plus(entry) if isinstance(entry, str) else ""
            if not raw.strip("/"):
                failed["Empty path not allowed"].append(str(entry))
                continue
            try:
                path = paths.normalise(raw, folder=True)
            except errors.bad_request.InvalidFilePath as exc:
                failed[exc.extra_message or "invalid path"].append(entry)
                continue
            key = paths.key_of(identity.company, path)
            if self.store.delete(key) or self.store.delete_folder(key):
                deleted[entry] = path
            else:
                failed["Not found"].append(entry)
        return {"deleted": deleted, "errors": dict(failed)}

    # -- files of deleted owners ----------------------------------------------------------------

    def _note_host(self, host: str | None) -> None:
        """Keep, once per deployment, each Host that uploads came to: background jobs, which have no
        request's Host, know by them which URLs point into this store."""
        if not host or host in self._hosts_noted:
            return
        server_settings.remember(FILE_HOSTS, host, FILE_HOSTS_KEPT)
        self._hosts_noted.add(host)

    def own_prefixes(self, host: str | None) -> list[str]:
        """The URL prefixes this server's file store is reached by: ``files.server_urls`` and the request's
        Host, or without a request (background jobs) every Host uploads came to."""
        prefixes = list(self.server_urls)
        hosts = [host] if host else server_settings.remembered(FILE_HOSTS)
        for known in hosts:
            prefixes += [f"http://{known}/files", f"https://{known}/files"]
        return prefixes

    def own_paths(self, urls: Iterable[str | None], host: str | None) -> dict[str, str]:
        """url -> store path, for the URLs that point into this server's store."""
        prefixes = self.own_prefixes(host)
        found = {}
        for url in urls:
            path = paths.url_path(url, prefixes) if url else None
            if path:
                found[url] = path
        return found

    def schedule_deletion(self, company: str, urls: Iterable[str | None], host: str | None, owner: str) -> int:
        """Queue the company's files these URLs name for deletion after ``delete_delay_sec``.

        Deleting runs after the records are gone, from a queue with retries, so a storage failure
        never leaves an owner half deleted. The delay lets ClearML clients that delete the files
        themselves after deleting a task (the SDK does) do so first, as with ClearML's own server.
        """
        own = self.own_paths(urls, host)
        if not own:
            return 0
        due = utcnow() + timedelta(seconds=self.delete_delay_sec)
        store_of(FileDeletion).insert_many([
            {"_id": new_id(), "company": company, "path": path, "url": url, "owner": owner, "due": due,
             "attempts": 0, "created": utcnow()} for url, path in own.items()])
        return len(own)

    def process_due_deletions(self, limit: int = 1000) -> tuple[int, int]:
        """Delete queued files that are due; (done, failed). A failure is retried with a back-off."""
        coll = store_of(FileDeletion)
        done = failed = 0
        for doc in coll.find({"due": {"$lte": utcnow()}}).sort("due", 1).limit(limit):
            key = paths.key_of(doc["company"], doc["path"])
            try:
                if not self.store.delete(key):
                    self.store.delete_folder(key)
            except Exception as exc:  # noqa: BLE001 - any storage failure is retried later
                attempts = int(doc.get("attempts", 0)) + 1
                retry = min(MAX_RETRY_SEC, 30 * 2 ** attempts)
                coll.update_one({"_id": doc["_id"]}, {"$set": {
                    "attempts": attempts, "last_error": str(exc)[:500],
                    "due": utcnow() + timedelta(seconds=retry)}})
                log.warning("deleting file %s of %s failed (attempt %d, retry in %ds): %s", doc["path"],
                            doc.get("owner"), attempts, retry, exc)
                failed += 1
                continue
            coll.delete_one({"_id": doc["_id"]})
            done += 1
        return done, failed

    def pending_deletions(self, company: str) -> list[dict[str, Any]]:
        return list(store_of(FileDeletion).find({"company": company}, {"_id": 0, "company": 0}))
