"""Owns the worker document: an agent that registered, reports status and runs tasks."""

from __future__ import annotations

from mongoengine import BooleanField, DateTimeField, DictField, Document, IntField, ListField, StringField

from apiserver.database.model.base import CompanyDocument, new_id


class Worker(CompanyDocument):
    meta = {
        "collection": "workers",
        "strict": False,
        "indexes": [
            {"fields": ["company", "worker"], "unique": True},
            ("company", "last_activity_time"),
            ("company", "task"),
            "expires_at",
            {"fields": ["manager_id"], "unique": True, "sparse": True},
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
    expired = BooleanField(default=False)
    # Render/batch manager workers (registered through POST /workers) share this collection, so
    # workers.get_all lists them too.
    manager_id = IntField()
    hostname = StringField()
    system = StringField()
    mac_address = StringField()
    status = StringField()
    render_task = IntField()
    update_frequent = DictField()
    update_less_frequent = DictField()


class WorkerStat(Document):
    """One status report of a worker: machine stats and the task it ran, for stats and activity."""

    meta = {"collection": "worker_stats", "indexes": [("company", "timestamp"), ("company", "worker", "timestamp")]}

    id = StringField(primary_key=True, default=new_id)
    company = StringField(required=True)
    worker = StringField(required=True)
    timestamp = DateTimeField(required=True)
    task = StringField()
    stats = DictField()
