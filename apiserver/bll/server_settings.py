"""Owns deployment-wide generated values (kept in ``server_settings``) that every process must share."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from mongoengine.errors import NotUniqueError

from apiserver.database.errors import DuplicateKeyError
from apiserver.database.model.auth import ServerSetting
from apiserver.database.model.base import utcnow
from apiserver.database.store import store_of


def configured_or_generated(setting_id: str, configured: str, generate: Callable[[], str]) -> str:
    """``configured`` when set, else the value generated once for the deployment and kept in the
    database; of processes racing to create it, the first one's value is the one everybody uses."""
    if configured:
        return configured
    setting = ServerSetting.objects(id=setting_id).first()
    if setting is None:
        with contextlib.suppress(NotUniqueError):  # another process won the race: use its value
            ServerSetting(id=setting_id, value=generate()).save(force_insert=True)
        setting = ServerSetting.objects(id=setting_id).first()
    return setting.value


def remember(setting_id: str, value: str, keep: int) -> None:
    """Add ``value`` to the deployment-wide list ``setting_id``, which keeps its first ``keep`` values
    (values come from requests: the list stays bounded)."""
    with contextlib.suppress(DuplicateKeyError):  # the list is full: the upsert found no match
        store_of(ServerSetting).update_one({"_id": setting_id, f"values.{keep - 1}": {"$exists": False}},
                                           {"$addToSet": {"values": value},
                                            "$setOnInsert": {"value": "", "created": utcnow()}}, upsert=True)


def remembered(setting_id: str) -> list[str]:
    """The values of the deployment-wide list ``setting_id`` (``remember``)."""
    return (store_of(ServerSetting).find_one({"_id": setting_id}, {"values": 1}) or {}).get("values", [])
