"""Owns the serving container document (one clearml-serving inference container of a workspace)
and its status reports, which the endpoint charts are drawn from."""

from __future__ import annotations

from mongoengine import DateTimeField, DictField, Document, DynamicField, FloatField, IntField, ListField, StringField

from apiserver.database.model.base import CompanyDocument, new_id


class ServingContainer(CompanyDocument):
    meta = {
        "collection": "serving_containers",
        "strict": False,
        "indexes": [
            {"fields": ["company", "container_id"], "unique": True},
            ("company", "endpoint_url", "expires_at"),
            "expires_at",
        ],
    }

    container_id = StringField(required=True)
    user = StringField()
    ip = StringField()
    # What it serves, as its last register or report said.
    endpoint_name = StringField()
    endpoint_url = StringField()  # none while loading
    model_name = StringField()
    model_source = StringField()
    model_version = StringField()
    preprocess_artifact = StringField()
    input_type = StringField()
    input_size = DynamicField()  # a string, or a number of bytes
    tags = ListField(StringField())
    system_tags = ListField(StringField())
    reference = ListField(DictField())
    register_time = DateTimeField()
    register_timeout = IntField()
    last_activity_time = DateTimeField()
    expires_at = DateTimeField()
    # Its last report's counters.
    uptime_sec = IntField()
    requests_num = IntField()
    requests_min = FloatField()
    latency_ms = IntField()
    machine_stats = DictField()


class ServingStat(Document):
    """One status report of a container, reduced to the numbers the endpoint charts show."""

    meta = {"collection": "serving_stats", "strict": False,
            "indexes": [("company", "endpoint_url", "timestamp"), "timestamp"]}

    id = StringField(primary_key=True, default=new_id)
    company = StringField(required=True)
    endpoint_url = StringField(required=True)
    container_id = StringField(required=True)
    timestamp = DateTimeField(required=True)
    requests_num = IntField()
    requests_min = FloatField()
    latency_ms = IntField()
    cpu_usage = FloatField()
    cpu_num = IntField()
    gpu_usage = FloatField()
    gpu_num = IntField()
    memory_used = FloatField()  # GB, as the charts show it
    memory_free = FloatField()
    memory_total = FloatField()
    gpu_memory_used = FloatField()
    gpu_memory_free = FloatField()
    gpu_memory_total = FloatField()
    network_rx = FloatField()
    network_tx = FloatField()
