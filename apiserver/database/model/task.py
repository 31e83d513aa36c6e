"""Owns the task document: an experiment or job with its status, execution and results.

Nested sections are stored as given, with two internal shapes: ``execution.artifacts`` is a map
keyed by a hash of (mode, key) so one artifact is replaced with one ``$set``, and user-named keys
of ``hyperparams``/``configuration`` are escaped (``.``, ``$``, ``%``) so they are legal field names.
The bll converts both back to the API shapes.
"""

from __future__ import annotations

from mongoengine import DateTimeField, DictField, DynamicDocument, IntField, ListField, StringField

from apiserver.database.model.base import CompanyDocument


class Task(CompanyDocument):
    meta = {
        "collection": "tasks",
        "strict": False,
        "indexes": [
            # Every get_all filter and sort key has an index led by company (reads are company-scoped).
            ("company", "status", "-last_update"),
            ("company", "project", "-last_update"),
            ("company", "project", "-created"),  # the SDK's lookups in a project (its default order)
            ("company", "user"),
            ("company", "type", "-last_update"),  # the reports page (newest first among one type)
            ("company", "tags"),
            ("company", "system_tags"),
            ("company", "parent"),
            ("company", "name"),
            ("company", "-created"),
            ("company", "-last_update"),
            ("company", "-status_changed"),
            ("company", "execution.queue"),
            # the tasks a deleted model leaves (bll/tasks unlink_model, tasks_using_model)
            ("company", "models.input.model"),
            ("company", "models.output.model"),
            ("status", "last_update"),  # the stale in_progress sweep
        ],
    }

    name = StringField(required=True)
    user = StringField(required=True)
    company_origin = StringField()  # the owner of a task made public
    type = StringField(required=True)
    status = StringField(required=True, default="created")
    status_reason = StringField()
    status_message = StringField()
    status_changed = DateTimeField()
    comment = StringField()
    started = DateTimeField()
    completed = DateTimeField()
    published = DateTimeField()
    last_update = DateTimeField()
    parent = StringField()
    project = StringField()
    output = DictField()
    execution = DictField()
    script = DictField()
    hyperparams = DictField()
    configuration = DictField()
    runtime = DictField()
    container = DictField()
    models = DictField()
    tags = ListField(StringField())
    system_tags = ListField(StringField())
    last_worker = StringField()
    last_worker_report = DateTimeField()
    last_iteration = IntField()
    last_metrics = DictField()
    enqueue_status = StringField()


class TaskProgress(DynamicDocument):
    """What add calls said about a task since it was last written (``bll/tasks/progress.py``): the
    task's ``last_metrics`` paths, ``last_iteration`` and ``last_update`` as those calls updated them."""

    meta = {"collection": "task_progress"}

    id = StringField(primary_key=True)  # the task id
