"""Owns identity rules: tokens, credentials, users and companies."""
