"""Owns the task rules: the status machine, editing, cloning, queues and listing."""
