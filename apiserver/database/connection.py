"""Owns connecting mongoengine to MongoDB: a configured URI, or the embedded server."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import mongoengine
from pymongo import monitoring
from pymongo.database import Database

from apiserver.config import Config
from apiserver.database.embedded import EmbeddedDatabase

log = logging.getLogger(__name__)


def embedded_from_config(config: Config, data_dir: str | None = None) -> EmbeddedDatabase:
    emb = config["database.embedded"]
    return EmbeddedDatabase(
        data_dir=data_dir or emb["data_dir"], host=emb["host"], port=int(emb["port"]), cache_size=emb["cache_size"],
        sync_on_commit=bool(emb["sync_on_commit"]), start_timeout=float(emb["start_timeout_sec"]),
    )


def join_or_start(config: Config) -> tuple[str, EmbeddedDatabase | None]:
    """The database URI for a command run beside the server on its data folder or config (backup,
    restore, import): ``database.uri`` when set; else the embedded database that the folder's server
    runs, joined with the folder's credentials; else, when no server runs, one started here (returned
    too: the caller stops it when done)."""
    uri = config.get("database.uri") or ""
    if uri:
        return uri, None
    embedded = embedded_from_config(config)
    joined = embedded.running_uri()
    if joined is not None:
        return joined, None
    return embedded.ensure_running(), embedded


def client_options(config: Config) -> dict[str, Any]:
    """What every client of the server's database is opened with (the server's own adds its operation
    timeouts)."""
    return {"serverSelectionTimeoutMS": int(float(config["database.server_selection_timeout_sec"]) * 1000),
            "uuidRepresentation": "standard", "tz_aware": False}


class CommandTimer(monitoring.CommandListener):
    """Hands each database command's name and duration (seconds) to ``observe`` (the server's metrics)."""

    def __init__(self, observe: Callable[[str, float], None]):
        self.observe = observe

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        pass

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        self.observe(event.command_name, event.duration_micros / 1e6)

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self.observe(event.command_name, event.duration_micros / 1e6)


def connect(config: Config, on_command: Callable[[str, float], None] | None = None,
            ) -> tuple[Database, EmbeddedDatabase | None]:
    """Connect the default mongoengine alias; start the embedded server when no URI is set.
    ``on_command(name, seconds)`` is told of every command the connection runs.

    Returns the pymongo database and the embedded server this process started (to stop it), if any.
    """
    uri = config.get("database.uri") or ""
    embedded = None
    if not uri:
        embedded = embedded_from_config(config)
        uri = embedded.ensure_running()
        if not embedded.owner:
            embedded = None
    operation_ms = int(float(config["database.operation_timeout_sec"]) * 1000)
    mongoengine.disconnect_all()
    client = mongoengine.connect(
        db=config["database.name"], host=uri, alias="default", socketTimeoutMS=operation_ms,
        waitQueueTimeoutMS=operation_ms, event_listeners=[CommandTimer(on_command)] if on_command else [],
        **client_options(config),
    )
    db = client[config["database.name"]]
    db.command("ping")
    log.info("connected to MongoDB database %r", db.name)
    return db, embedded


def disconnect() -> None:
    """Close every connection ``connect`` made (the gunicorn master's, before it forks)."""
    mongoengine.disconnect_all()


def database_kind(db: Database) -> str:
    """'secantusdb' or 'mongodb', for server.info."""
    try:
        info = db.client.server_info()
    except Exception:  # noqa: BLE001 - informational only
        return "unknown"
    return "secantusdb" if "secantusVersion" in info else "mongodb"
