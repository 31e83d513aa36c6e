"""Owns the pipeline leader: member registry, member calls, workflow stepping and the heartbeat."""
