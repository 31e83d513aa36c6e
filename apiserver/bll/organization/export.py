"""Owns the web app's CSV export of a table: a listing request is kept for a short time under a random
id (``prepare``), then read back as CSV rows by whoever prepared it (``rows``).

The rows come from the same listing (TaskBLL/ModelBLL ``get_all``) the table shows, read a page at a
time, so an export sees exactly what the caller may read, and at most ``max_rows`` rows. A cell that a
spreadsheet would run as a formula (one starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage
return) is written with a leading apostrophe.
"""

from __future__ import annotations

import csv
import io
import json
import secrets
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

from apiserver.apierrors import errors
from apiserver.bll.auth.identity import Identity
from apiserver.bll.query import MAX_PAGE_SIZE
from apiserver.database.model.base import utcnow
from apiserver.database.model.export import PreparedDownload
from apiserver.database.store import store_of

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

Lister = Callable[[str, dict[str, Any]], list[dict[str, Any]]]


def _value_at(doc: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(doc, list):
            doc = [item.get(part) if isinstance(item, dict) else None for item in doc]
        elif isinstance(doc, dict):
            doc = doc.get(part)
        else:
            return None
    return doc


def _cell(value: Any, names: dict[str, str]) -> str:
    if value is None:
        text = ""
    elif isinstance(value, list):
        text = ", ".join(_cell(v, names) for v in value if v is not None)
    elif isinstance(value, dict):
        text = json.dumps(value, default=str, sort_keys=True)
    else:
        text = names.get(str(value), str(value))
    return "'" + text if text.startswith(FORMULA_STARTS) else text


class ExportBLL:
    def __init__(self, listers: dict[str, Lister], ttl_sec: int, max_rows: int):
        self.listers = listers
        self.ttl_sec = ttl_sec
        self.max_rows = max_rows
        self.store = store_of(PreparedDownload)  # its expiry index is declared on the document

    def prepare(self, identity: Identity, entity: str, query: dict[str, Any], mappings: list[dict[str, Any]]) -> str:
        if entity not in self.listers:
            raise errors.bad_request.ValidationError(f"no export of {entity}s", field="entity_type")
        prepare_id = secrets.token_urlsafe(24)
        now = utcnow()
        self.store.insert_one({"_id": prepare_id, "company": identity.company, "user": identity.user,
                              "entity": entity, "query": json.dumps(query), "mappings": mappings,
                              "created": now, "expires_at": now + timedelta(seconds=self.ttl_sec)})
        return prepare_id

    def rows(self, identity: Identity, prepare_id: str) -> tuple[str, Iterator[str]]:
        """(file name, CSV text chunks) of a prepared export; only its preparer reads it, once."""
        # small collection: exports awaiting download (find_one_and_delete scans it on SecantusDB)
        kept = self.store.find_one_and_delete({"_id": prepare_id, "company": identity.company,
                                              "user": identity.user, "expires_at": {"$gt": utcnow()}})
        if kept is None:
            raise errors.bad_request.ValidationError("no such export, or it expired: prepare it again",
                                                     field="prepare_id")
        mappings = kept["mappings"] or []
        fields = [m["field"] for m in mappings]
        headers = [m.get("name") or m["field"] for m in mappings]
        names = [{str(v.get("key")): str(v.get("value")) for v in m.get("values") or []} for m in mappings]
        query = {**json.loads(kept["query"]), "only_fields": ["id", *fields]}
        query.pop("page", None)
        query.pop("page_size", None)
        lister = self.listers[kept["entity"]]

        def chunks() -> Iterator[str]:
            out = io.StringIO()
            writer = csv.writer(out)
            writer.writerow(headers)
            sent, page_no = 0, 0
            while sent < self.max_rows:
                page = lister(identity.company, {**query, "page": page_no, "page_size": MAX_PAGE_SIZE})
                full = len(page) == MAX_PAGE_SIZE
                page = page[:self.max_rows - sent]
                for doc in page:
                    writer.writerow([_cell(_value_at(doc, f), n) for f, n in zip(fields, names, strict=True)])
                sent, page_no = sent + len(page), page_no + 1
                yield out.getvalue()
                out.seek(0)
                out.truncate()
                if not full:
                    break

        return f"{kept['entity']}s.csv", chunks()
