"""Owns deployments and registered model versions; both are soft-deleted and their keys never reused."""

from __future__ import annotations

from mongoengine import BooleanField, DateTimeField, DictField, Document, StringField


class Deployment(Document):
    meta = {"collection": "deployments", "strict": False, "indexes": [("company", "deleted")]}

    id = StringField(primary_key=True)  # deployment_key: unique forever, across workspaces
    company = StringField(required=True)
    user = StringField()
    registry_connector_class = StringField(required=True)
    registry_connector_init = DictField()
    server_proxy_class = StringField(required=True)
    server_proxy_init = DictField()
    created = DateTimeField()
    deleted = DateTimeField()


class RegistryModel(Document):
    meta = {
        "collection": "registry_models",
        "strict": False,
        # The listing: equality on company, deleted, explains; then the sort keys.
        "indexes": [("company", "deleted", "explains", "model_code", "version"), ("company", "-created")],
    }

    id = StringField(primary_key=True)  # "<model_code>@<version>": unique forever, across workspaces
    company = StringField(required=True)
    user = StringField()
    model_code = StringField(required=True)
    version = StringField(required=True)
    name = StringField()
    description = StringField()
    input_schema = DictField()
    output_schema = DictField()
    realtime_execution = BooleanField()
    allow_download = BooleanField()
    need_context = BooleanField()
    explainer = StringField()  # id of the explainer model, if any
    explains = StringField()  # id of the model this one explains
    deployment_key = StringField()
    created = DateTimeField()
    deleted = DateTimeField()
