"""Owns building the stores of task events from the ``events`` settings (block and overview sizes)."""

from __future__ import annotations

from dataclasses import dataclass

from apiserver.config.settings import EventsSettings
from apiserver.database.events.events import EventStore
from apiserver.database.events.logs import LogStore
from apiserver.database.events.scalars import ScalarStore


@dataclass(frozen=True)
class EventStores:
    """The stores of task events, one per shape."""

    scalars: ScalarStore
    logs: LogStore
    events: EventStore  # plots, debug images and vectors (and events of the shape before blocks)

    @classmethod
    def from_settings(cls, settings: EventsSettings) -> EventStores:
        return cls(ScalarStore(settings.scalar_block_iterations, settings.scalar_overview_groups,
                               settings.scalar_coarse_groups, settings.scalar_fold_every, settings.scalar_fold_points),
                   LogStore(settings.log_block_lines, settings.log_block_bytes), EventStore())

    def ensure_indexes(self) -> None:
        self.scalars.ensure_indexes()
        self.logs.ensure_indexes()
