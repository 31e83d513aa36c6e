"""Owns lease documents: which process of a deployment runs a once-per-deployment job."""

from __future__ import annotations

from mongoengine import DateTimeField, Document, StringField


class Lease(Document):
    meta = {"collection": "leases"}

    id = StringField(primary_key=True)  # the job name
    holder = StringField(required=True)
    expires_at = DateTimeField(required=True)
