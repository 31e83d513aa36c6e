"""Owns workers: registration, status reports, expiry, runtime properties and statistics."""
