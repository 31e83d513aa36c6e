"""Owns the queue of file deletions: files whose owner (task, model, project) is gone."""

from __future__ import annotations

from mongoengine import DateTimeField, IntField, StringField

from apiserver.database.model.base import CompanyDocument


class FileDeletion(CompanyDocument):
    """One file or folder of a company's store to delete once ``due``; retried until it is gone."""

    meta = {"collection": "file_deletions", "strict": False, "indexes": [("due",), ("company", "path")]}

    path = StringField(required=True)  # normalised store path inside the company's folder
    url = StringField()
    owner = StringField()  # "task <id>", "model <id>": for the log
    due = DateTimeField(required=True)
    attempts = IntField(default=0)
    last_error = StringField()
