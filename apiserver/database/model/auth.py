"""Owns identity records: companies (workspaces), users and their API credentials."""

from __future__ import annotations

from mongoengine import DateTimeField, Document, IntField, StringField

from apiserver.database.model.base import CompanyDocument, new_id, utcnow


class Company(Document):
    meta = {"collection": "companies", "indexes": [{"fields": ["name"], "unique": True}]}

    id = StringField(primary_key=True, default=new_id)
    name = StringField(required=True)
    created = DateTimeField(default=utcnow)


class User(CompanyDocument):
    meta = {
        "collection": "users",
        "indexes": [
            {"fields": ["company", "name"]},
            {"fields": ["email"], "unique": True, "sparse": True},
            {"fields": ["username"], "unique": True, "sparse": True},
        ],
    }

    name = StringField(required=True)
    username = StringField()
    email = StringField()  # checked by the request schema (format: email), the one rule
    role = StringField(required=True, default="user")
    password_hash = StringField()
    # Bumped when the role or password changes: tokens issued before carry the old value and stop working.
    token_version = IntField(default=0)
    # The web app's preferences, kept as JSON text: its keys are the app's, not valid BSON keys.
    preferences = StringField()


class Credentials(CompanyDocument):
    """An access key with its bcrypt-hashed secret; the secret itself is shown once, never stored."""

    meta = {
        "collection": "credentials",
        "indexes": [{"fields": ["access_key"], "unique": True}, {"fields": ["user", "revoked"]}],
    }

    access_key = StringField(required=True)
    secret_hash = StringField(required=True)
    user = StringField(required=True)
    label = StringField()
    revoked = DateTimeField()
    last_used = DateTimeField()


class ServerSetting(Document):
    """Deployment-wide values every process must agree on (e.g. the generated token secret)."""

    meta = {"collection": "server_settings"}

    id = StringField(primary_key=True)
    value = StringField(required=True)
    created = DateTimeField(default=utcnow)


class SignInFailure(Document):
    """Failed sign-ins of one account or address in the current window (bll/auth/throttle.py)."""

    meta = {"collection": "sign_in_failures", "indexes": [{"fields": ["expires"], "expireAfterSeconds": 0}]}

    id = StringField(primary_key=True)
    count = IntField(default=0)
    expires = DateTimeField(required=True)
