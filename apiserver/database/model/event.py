"""Owns task events: scalars, vectors, plots, debug images and log lines reported by a task."""

from __future__ import annotations

from mongoengine import DateTimeField, DynamicDocument, FloatField, IntField, LongField, StringField

from apiserver.database.model.base import new_id


class Event(DynamicDocument):
    meta = {
        "collection": "events",
        "indexes": [
            # per-task reads: logs by time, metrics by metric/variant/iteration
            ("task", "type", "timestamp"),
            ("task", "type", "metric", "variant", "iter"),
            ("company", "task"),
        ],
    }

    id = StringField(primary_key=True, default=new_id)
    company = StringField(required=True)
    task = StringField(required=True)
    type = StringField(required=True)
    timestamp = LongField(required=True)  # epoch milliseconds, as clients send it
    iter = IntField()
    metric = StringField()
    variant = StringField()
    value = FloatField()
    msg = StringField()
    level = StringField()
    worker = StringField()
    received = DateTimeField()
