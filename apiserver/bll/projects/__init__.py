"""Owns projects: names unique per company, nesting with '/', and their task statistics."""
