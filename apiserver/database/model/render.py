"""Owns the render/batch manager's task records (integer ids, frame ranges) and id counters."""

from __future__ import annotations

from mongoengine import DateTimeField, Document, IntField, StringField
from mongoengine.fields import DynamicField


class RenderTask(Document):
    meta = {
        "collection": "render_tasks",
        "strict": False,
        "indexes": [("company", "status", "-priority", "_id"), ("company", "worker_id"), ("status", "worker_id")],
    }

    id = IntField(primary_key=True)
    company = StringField(required=True)
    user = StringField()
    type = StringField(required=True)
    parser = StringField(required=True)
    settings = DynamicField()
    command = StringField()
    priority = IntField(default=0)
    frame_start = IntField(required=True)
    frame_end = IntField(required=True)
    frame_current = IntField()
    status = StringField(required=True)
    worker_id = IntField()
    format = StringField(default="")
    created = DateTimeField()
    updated = DateTimeField()


class Counter(Document):
    """A named sequence for integer ids; advanced with compare-and-set."""

    meta = {"collection": "counters"}

    id = StringField(primary_key=True)
    seq = IntField(required=True, default=0)
