"""Owns queues: their entries, the default queue, and atomic pops."""
