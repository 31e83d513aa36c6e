"""Owns the pipeline and step status sets; workflows.conf's enums are checked against them at start-up.

A pipeline moves created -> running -> completed, failed or stopped. Its steps move pending ->
starting -> started -> running -> completed, failed or stopped (``pipelines.py``)."""

from __future__ import annotations

CREATED, RUNNING, COMPLETED, FAILED, STOPPED = "created", "running", "completed", "failed", "stopped"
PIPELINE_STATUSES = (CREATED, RUNNING, COMPLETED, FAILED, STOPPED)

PENDING, STARTING, STARTED = "pending", "starting", "started"
STEP_STATUSES = (PENDING, STARTING, STARTED, RUNNING, COMPLETED, FAILED, STOPPED)
ACTIVE_STEP = (STARTING, STARTED, RUNNING)  # a member works on the step (or is being asked to)
UNFINISHED_STEP = (PENDING, *ACTIVE_STEP)  # a running pipeline will still call the step's member
