"""Owns the business rules of every surface; nothing in here imports Flask."""
