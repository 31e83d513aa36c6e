"""Owns the prepared downloads collection: a table export the web app asked for
(``organization.prepare_download_for_get_all``), kept until its one download or its expiry
(bll/organization/export.py)."""

from __future__ import annotations

from mongoengine import DateTimeField, DictField, Document, ListField, StringField


class PreparedDownload(Document):
    meta = {"collection": "prepared_downloads", "indexes": [{"fields": ["expires_at"], "expireAfterSeconds": 0}]}

    id = StringField(primary_key=True)  # a random token: who holds it may download, if also its preparer
    company = StringField(required=True)
    user = StringField(required=True)
    entity = StringField(required=True)  # "task" or "model"
    query = StringField(required=True)  # the listing request, as JSON
    mappings = ListField(DictField())  # the columns: {field, name, values: [{key, value}]}
    created = DateTimeField(required=True)
    expires_at = DateTimeField(required=True)
