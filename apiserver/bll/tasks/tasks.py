"""Owns ClearML's tasks as one object for the services: ``TaskBLL`` is its parts, each a module that
reads on its own over the same base (``bll/tasks/base.py``: the tasks store, reads with access
checks, and the narrow access other domains have):

- ``records.py``: listing, creating, cloning and editing tasks, tags, archive, projects, models;
- ``parameters.py``: hyper-parameters, configuration and artifacts;
- ``lifecycle.py``: the status machine, enqueue and dequeue, stop, reset, the record's delete.

Deleting a task with what it owns goes through ``bll/tasks/deletion.py``; queue operations the
queues service asks for are ``bll/queues``'s.
"""

from __future__ import annotations

from apiserver.bll.tags import ARCHIVED_TAG
from apiserver.bll.tasks.base import TaskHook, TaskMetrics
from apiserver.bll.tasks.lifecycle import TaskLifecycle
from apiserver.bll.tasks.parameters import TaskParameters
from apiserver.bll.tasks.records import TaskRecords

__all__ = ["ARCHIVED_TAG", "TaskBLL", "TaskHook", "TaskMetrics"]


class TaskBLL(TaskRecords, TaskParameters, TaskLifecycle):
    """A task's records, parameters and life, over one store."""
