"""Owns the database's errors as the rest of the server names them: the rules catch these, never the
driver's own modules (only ``database/`` imports pymongo)."""

from pymongo.errors import BulkWriteError, ConnectionFailure, DuplicateKeyError, PyMongoError

__all__ = ["BulkWriteError", "ConnectionFailure", "DuplicateKeyError", "PyMongoError"]
