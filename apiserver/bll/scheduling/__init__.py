"""Owns once-per-deployment coordination of background jobs."""
