"""Owns the queue document: an ordered list of task entries that agents pop from the front."""

from __future__ import annotations

from mongoengine import DateTimeField, DictField, Document, FloatField, IntField, ListField, StringField

from apiserver.database.model.base import CompanyDocument, new_id


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


class QueueMetric(Document):
    """A sample of one queue's length and average wait, taken by the scheduler."""

    meta = {"collection": "queue_metrics", "indexes": [("company", "queue", "timestamp"), "timestamp"]}

    id = StringField(primary_key=True, default=new_id)
    company = StringField(required=True)
    queue = StringField(required=True)
    timestamp = DateTimeField(required=True)
    queue_length = IntField()
    avg_waiting_time = FloatField()
