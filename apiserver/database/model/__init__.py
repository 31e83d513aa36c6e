"""Owns the mongoengine documents, one module per domain."""
