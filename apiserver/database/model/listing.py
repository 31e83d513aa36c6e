"""Owns the listing hints collection: where the newest page of a listing query last ended
(database/recent_page.py), kept so that every process of a deployment, and a restarted one, starts
from it. A hint holds a key value only (a date); its id is a digest of the query."""

from __future__ import annotations

from mongoengine import DateTimeField, Document, StringField


class ListingHint(Document):
    meta = {"collection": "listing_hints", "indexes": [{"fields": ["expires"], "expireAfterSeconds": 0}]}

    id = StringField(primary_key=True)  # sha256 of the collection, key, depth, prefixes and query
    k = DateTimeField(required=True)  # the key of the page's oldest document
    expires = DateTimeField(required=True)
