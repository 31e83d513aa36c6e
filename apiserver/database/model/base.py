"""Owns what every document shares: 32-hex ids, UTC timestamps and company scoping."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

from mongoengine import DateTimeField, Document, StringField


def new_id() -> str:
    return uuid4().hex


def utcnow() -> datetime:
    """Naive UTC, as pymongo stores and returns it (tz_aware=False)."""
    return datetime.now(UTC).replace(tzinfo=None)


class CompanyDocument(Document):
    """A document owned by one company; an empty company marks a public record."""

    meta = {"abstract": True}

    id = StringField(primary_key=True, default=new_id)
    company = StringField(required=True, default="")
    created = DateTimeField(default=utcnow)


def date_fields(document: type[Document]) -> tuple[str, ...]:
    """The names of a document's date fields, as it declares them (what a listing filters by date)."""
    return tuple(name for name, field in document._fields.items() if isinstance(field, DateTimeField))
