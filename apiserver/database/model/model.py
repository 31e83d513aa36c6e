"""Owns ClearML's model document: trained weights at a URI, with the task and project they belong to.

``metadata`` keys are user-named, so they are stored escaped (as task hyperparams are); the bll
converts them back. ``ready`` true is a published model. The archived state is the ``archived``
system tag, as for tasks.
"""

from __future__ import annotations

from mongoengine import BooleanField, DateTimeField, DictField, IntField, ListField, StringField

from apiserver.database.model.base import CompanyDocument


class Model(CompanyDocument):
    meta = {
        "collection": "models",
        "strict": False,
        "indexes": [
            # Every get_all filter and sort key has an index led by company.
            ("company", "project", "-last_update"),
            ("company", "task"),
            ("company", "name"),
            ("company", "user"),
            ("company", "tags"),
            ("company", "system_tags"),
            ("company", "framework"),
            ("company", "uri"),
            ("company", "ready"),
            ("company", "-created"),
            ("company", "-last_update"),
        ],
    }

    name = StringField(required=True)
    user = StringField()
    company_origin = StringField()
    task = StringField()
    parent = StringField()
    project = StringField()
    comment = StringField()
    tags = ListField(StringField())
    system_tags = ListField(StringField())
    framework = StringField()
    design = DictField()
    labels = DictField()
    uri = StringField()
    ready = BooleanField(default=False)
    ui_cache = DictField()
    metadata = DictField()
    last_update = DateTimeField()
    last_iteration = IntField()
    last_metrics = DictField()
