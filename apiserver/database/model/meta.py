"""Owns the server's own record of its data: the schema version the stored shapes are at."""

from __future__ import annotations

from mongoengine import DateTimeField, Document, IntField, ListField, StringField


class ServerMeta(Document):
    """One document per fact; ``_id: "schema"`` holds the schema version (bll/migrations.py)."""

    meta = {"collection": "server_meta"}

    id = StringField(primary_key=True)
    version = IntField(required=True, default=0)
    server_version = StringField()  # the release that last raised the version
    done = ListField(StringField())  # names of the migrations applied, in order
    updated = DateTimeField()
