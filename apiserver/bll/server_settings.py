"""Owns deployment-wide generated values (kept in ``server_settings``) that every process must share."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from mongoengine.errors import NotUniqueError

from apiserver.database.model.auth import ServerSetting


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
