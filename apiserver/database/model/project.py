"""Owns the project document; names are unique per company and may be nested with '/'."""

from __future__ import annotations

from mongoengine import DateTimeField, ListField, StringField

from apiserver.database.model.base import CompanyDocument


class Project(CompanyDocument):
    meta = {
        "collection": "projects",
        "strict": False,
        "indexes": [
            {"fields": ["company", "name"], "unique": True},
            ("company", "tags"),
            ("company", "system_tags"),
            ("company", "-last_update"),
            ("company", "parent"),
            ("company", "path"),
        ],
    }

    name = StringField(required=True)
    basename = StringField()
    description = StringField()
    user = StringField()
    tags = ListField(StringField())
    system_tags = ListField(StringField())
    default_output_destination = StringField()
    parent = StringField()  # the project one level up ('a' for 'a/b')
    path = ListField(StringField())  # every ancestor's id, root first
    last_update = DateTimeField()
