"""Owns pipeline records: ordered member steps, their state, and the log of every member call."""

from __future__ import annotations

from mongoengine import DateTimeField, DictField, Document, FloatField, IntField, ListField, StringField

from apiserver.database.model.base import CompanyDocument, new_id


class Pipeline(CompanyDocument):
    meta = {
        "collection": "pipelines",
        "strict": False,
        # The unique index on running pipelines is the rule "one running pipeline per user and
        # project": PipelineBLL.ensure_indexes creates it, next to the status set it names.
        "indexes": [("company", "-created"), ("status", "project_id", "user_id"), ("company", "project_id")],
    }

    user_id = StringField(required=True)
    project_id = StringField(required=True)
    status = StringField(required=True)  # bll/pipelines/status.py: PIPELINE_STATUSES
    current_step = IntField(default=0)
    # [{container_id, status, start_calls, claimed, started, finished, reason, misses, last_answer}]
    steps = ListField(DictField())
    reason = StringField()
    started = DateTimeField()
    finished = DateTimeField()
    last_beat = DateTimeField()


class PipelineLog(Document):
    """One call to or from a member, with its answer and time (workflows.get_log)."""

    meta = {"collection": "pipeline_log", "indexes": [("pipeline", "time"), ("company", "project_id", "time")]}

    id = StringField(primary_key=True, default=new_id)
    company = StringField()
    pipeline = StringField()
    project_id = StringField()
    time = DateTimeField(required=True)
    direction = StringField(required=True)  # to_member, from_member, note
    container_id = StringField()
    call = StringField()
    params = DictField()
    answer = StringField()
    error = StringField()
    duration_ms = IntField()


class PipelineMember(Document):
    """A company's member registered at run time (overrides the config URL for that company only),
    and its last readiness as that company saw it."""

    meta = {"collection": "pipeline_members", "strict": False, "indexes": [("company", "container_id")]}

    id = StringField(primary_key=True)  # "<company>:<container id>"
    company = StringField(required=True)
    container_id = StringField(required=True)
    url = StringField()  # none on a readiness record of a config member
    registered_by = StringField()
    registered = DateTimeField()
    ready = IntField()
    last_check = DateTimeField()
    last_answer = StringField()
    host_only = ListField(StringField())


class PipelineHeartbeat(Document):
    """The last heartbeat cycle: how many pipelines it stepped and how long that took."""

    meta = {"collection": "pipeline_heartbeat"}

    id = StringField(primary_key=True)
    pipelines = IntField()
    seconds = FloatField()
    at = DateTimeField()
    pid = IntField()
