"""Owns the queue document: an ordered list of task entries that agents pop from the front."""

from __future__ import annotations

from mongoengine import DateTimeField, DictField, ListField, StringField

from apiserver.database.model.base import CompanyDocument


class Queue(CompanyDocument):
    meta = {
        "collection": "queues",
        "strict": False,
        "indexes": [
            {"fields": ["company", "name"], "unique": True},
            ("company", "system_tags"),
            "entries.task",
        ],
    }

    name = StringField(required=True)
    user = StringField()
    tags = ListField(StringField())
    system_tags = ListField(StringField())
    entries = ListField(DictField())  # [{task, added}], front first
    metadata = DictField()
    last_update = DateTimeField()
