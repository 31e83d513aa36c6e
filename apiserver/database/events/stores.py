"""Owns building the stores of task events from the ``events`` settings (block and overview sizes), and the
writes that span them: an add call's scalars and lines as one pending document per task, and deletes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from apiserver.config.settings import EventsSettings
from apiserver.database.events.events import EventStore
from apiserver.database.events.logs import LogStore
from apiserver.database.events.pending import PendingEvents
from apiserver.database.events.scalars import ScalarStore


@dataclass(frozen=True)
class EventStores:
    """The stores of task events, one per shape, and the pending events they fold."""

    pending: PendingEvents
    scalars: ScalarStore
    logs: LogStore
    events: EventStore  # plots, debug images and vectors (and events of the shape before blocks)

    @classmethod
    def from_settings(cls, settings: EventsSettings) -> EventStores:
        pending = PendingEvents(settings.scalar_fold_every, settings.scalar_fold_points)
        return cls(pending,
                   ScalarStore(settings.scalar_block_iterations, settings.scalar_overview_groups,
                               settings.scalar_coarse_groups, pending),
                   LogStore(settings.log_block_lines, settings.log_block_bytes, pending), EventStore())

    def ensure_indexes(self) -> None:
        self.pending.ensure_indexes()
        self.scalars.ensure_indexes()
        self.logs.ensure_indexes()

    def add(self, company: str, scalars: list[dict[str, Any]], lines: list[dict[str, Any]],
            others: list[dict[str, Any]]) -> None:
        """Store the company's events: scalars and console lines as one pending document per task,
        plots, debug images and vectors one document each."""
        per_task: dict[str, dict[str, list]] = {}
        for task, parts in ScalarStore.pending_parts(scalars).items():
            per_task.setdefault(task, {})["series"] = parts
        for task, task_lines in LogStore.pending_lines(lines).items():
            per_task.setdefault(task, {})["lines"] = task_lines
        if others:
            self.events.add(company, others)
        self.pending.add(company, per_task)

    def delete_task(self, company: str, task: str) -> int:
        """Every event of the task; returns how many there were. Its pending events are folded first, which
        also waits for a fold another process runs, so that no fold writes the blocks back afterwards."""
        self.pending.fold(task, wait=True)
        deleted = self.events.delete_task(company, task)
        deleted += self.scalars.delete_task(company, task) + self.logs.delete_task(company, task)
        self.pending.delete_task(company, task)
        return deleted
