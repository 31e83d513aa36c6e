"""Owns the worker document: an agent that registered, reports status and runs tasks."""

from __future__ import annotations

from mongoengine import DateTimeField, DictField, IntField, ListField, StringField

from apiserver.database.model.base import CompanyDocument


class Worker(CompanyDocument):
    meta = {
        "collection": "workers",
        "strict": False,
        "indexes": [
            {"fields": ["company", "worker"], "unique": True},
            ("company", "last_activity_time"),
            ("company", "task"),
            "expires_at",
        ],
    }

    worker = StringField(required=True)  # the name the agent registered with
    user = StringField()
    ip = StringField()
    register_time = DateTimeField()
    last_activity_time = DateTimeField()
    expires_at = DateTimeField()
    register_timeout = IntField()
    task = StringField()
    project = StringField()
    queue = StringField()
    queues = ListField(StringField())
    tags = ListField(StringField())
    system_tags = ListField(StringField())
    runtime_properties = ListField(DictField())
    machine_stats = DictField()
