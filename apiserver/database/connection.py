"""Owns connecting mongoengine to MongoDB: a configured URI, or the embedded server."""

from __future__ import annotations

import logging

import mongoengine
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


def connect(config: Config) -> tuple[Database, EmbeddedDatabase | None]:
    """Connect the default mongoengine alias; start the embedded server when no URI is set.

    Returns the pymongo database and the embedded server this process started (to stop it), if any.
    """
    uri = config.get("database.uri") or ""
    embedded = None
    if not uri:
        embedded = embedded_from_config(config)
        uri = embedded.ensure_running()
        if not embedded.owner:
            embedded = None
    timeout_ms = int(float(config["database.server_selection_timeout_sec"]) * 1000)
    operation_ms = int(float(config["database.operation_timeout_sec"]) * 1000)
    mongoengine.disconnect_all()
    client = mongoengine.connect(
        db=config["database.name"], host=uri, alias="default",
        serverSelectionTimeoutMS=timeout_ms, socketTimeoutMS=operation_ms, waitQueueTimeoutMS=operation_ms,
        uuidRepresentation="standard", tz_aware=False,
    )
    db = client[config["database.name"]]
    db.command("ping")
    log.info("connected to MongoDB database %r", db.name)
    return db, embedded


def database_kind(db: Database) -> str:
    """'secantusdb' or 'mongodb', for server.info."""
    try:
        info = db.client.server_info()
    except Exception:  # noqa: BLE001 - informational only
        return "unknown"
    return "secantusdb" if "secantusVersion" in info else "mongodb"
